import logging

import pytest

from higgs_worker.core.logs import RedactingFilter, setup_logging
from higgs_worker.core.settings import Settings


@pytest.fixture(autouse=True)
def root_logging_restored():
    """setup_logging reconfigures the process's root logger; later tests in this process must get it back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


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


def test_quoted_header_dicts_and_url_encoded_forms_are_redacted():
    f = RedactingFilter([])
    cases = {
        "{'Authorization': 'Bearer tok-quoted-1', 'Accept': '*/*'}": "tok-quoted-1",
        '{"authorization": "Bearer tok-json-2"}': "tok-json-2",
        "GET /status?authorization=Bearer%20tok-url-3&x=1": "tok-url-3",
        "body: authorization%3DBearer%20tok-form-4": "tok-form-4",
        "authorization=Bearer+tok-plus-5": "tok-plus-5",
        "{'Proxy-Authorization': 'Basic dXNlcjpwYXNz'}": "dXNlcjpwYXNz",
        "{'X-Api-Key': 'tok-header-6'}": "tok-header-6",
        "Authorization: AWS4-HMAC-SHA256 Credential=x/y, Signature=tok-sig-7": "tok-sig-7",
    }
    for line, secret in cases.items():
        out = f.redact(line)
        assert secret not in out and "***" in out, (line, out)
    assert f.redact("{'Accept': '*/*', 'count': 3}") == "{'Accept': '*/*', 'count': 3}"
