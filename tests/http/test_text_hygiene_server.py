"""Invisible characters against the real server: a transcript with nothing to speak is refused by name."""

from __future__ import annotations

import httpx
import pytest

from servers import Server


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("hygiene")
    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "LOG_DIR": str(root / "logs"), "VOLUME_ROOT": str(root / "vol")}, root)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize("junk", ["\x00\x00\x00", "\u200b\u200c\u200d", "\ufeff\x07 \x1b"])
def test_invisible_only_text_is_refused_on_both_apis(server, junk):
    speech = httpx.post(f"{server.url}/v1/audio/speech", json={"model": "tts-1", "voice": "default", "input": junk},
                        timeout=60)
    assert speech.status_code == 400
    assert speech.json()["error"]["param"] == "input" and "nothing to speak" in speech.json()["error"]["message"]
    job = httpx.post(f"{server.url}/runsync", json={"input": {"transcript": junk}}, timeout=60).json()
    assert job["status"] == "FAILED" and "transcript" in job["error"] and "nothing to speak" in job["error"]


def test_hidden_characters_do_not_reach_the_model(server):
    """The same text with and without zero-width and control characters gives the same audio (same seed)."""
    body = {"model": "tts-1", "voice": "default", "response_format": "pcm", "seed": 9, "max_new_tokens": 20,
            "temperature": 1.0}
    plain = httpx.post(f"{server.url}/v1/audio/speech", json={**body, "input": "Hidden words."}, timeout=120)
    hidden = httpx.post(f"{server.url}/v1/audio/speech", json={**body, "input": "Hid\u200bden\x00 wo\u00adrds.\ufeff"},
                        timeout=120)
    assert plain.status_code == hidden.status_code == 200
    assert plain.content == hidden.content and len(plain.content) > 0
