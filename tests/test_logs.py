import logging

from higgs_worker.logs import RedactingFilter, setup_logging
from higgs_worker.settings import Settings


def test_known_and_pattern_secrets_are_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("API_KEYS", "sk-live-123456")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG")
    monkeypatch.setenv("LOG_DIR", str(tmp_path))
    path = setup_logging(Settings(), "server.log")
    log = logging.getLogger("test.redact")
    log.info("key %s used", "sk-live-123456")
    log.warning("headers: Authorization: Bearer abcdef123 and aws_secret_access_key=%s", "wJalrXUtnFEMI/K7MDENG")
    log.error("id AKIAABCDEFGHIJKLMNOP leaked? X-Amz-Signature=deadbeef")
    try:
        raise RuntimeError("boom with sk-live-123456")
    except RuntimeError:
        log.exception("failed")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = path.read_text()
    for secret in ("sk-live-123456", "wJalrXUtnFEMI", "abcdef123", "AKIAABCDEFGHIJKLMNOP", "deadbeef"):
        assert secret not in text, secret
    assert text.count("***") >= 5 and "boom with ***" in text


def test_filter_leaves_plain_messages_alone():
    f = RedactingFilter(["topsecret"])
    assert f.redact("nothing to hide here") == "nothing to hide here"
