"""The API key check in-process: which paths are open, PUBLIC_DOCS, every key compared, nothing read before it.

The real server, a raw socket and a huge announced body are in ``tests/http/test_abuse.py``.
"""

from __future__ import annotations

import hmac

import pytest
from fastapi.testclient import TestClient

from higgs_worker.http import auth as auth_module
from higgs_worker.http import create_app
from higgs_worker.http.auth import RequireKey
from higgs_worker.core.settings import Settings
from servers import run_coroutine

KEYS = "first-key-0a1b,second-key-2c3d,third-key-4e5f"


def client(tmp_path, **overrides) -> TestClient:
    settings = Settings(api_keys=KEYS, preload_models=False, volume_root=tmp_path / "vol", **overrides)
    return TestClient(create_app(settings))


@pytest.mark.parametrize("public_docs", [False, True])
def test_docs_need_a_key_unless_public_docs(tmp_path, public_docs):
    with client(tmp_path, public_docs=public_docs) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == (200 if public_docs else 401), path
            assert c.get(path, headers={"Authorization": "Bearer second-key-2c3d"}).status_code == 200
        assert c.get("/metrics").status_code == 401  # only the description opens, not the data
        for path in ("/ping", "/health", "/"):
            assert c.get(path).status_code == 200, path


def test_every_configured_key_works_and_nothing_else(tmp_path):
    with client(tmp_path) as c:
        for key in KEYS.split(","):
            assert c.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
            assert c.get("/v1/models", headers={"Authorization": f"bearer {key}"}).status_code == 200
        for header in ("Bearer first-key-0a1", "Bearer first-key-0a1bX", "Basic first-key-0a1b", "first-key-0a1b",
                       "Bearer ", "Bearer first-key-0a1b,second-key-2c3d"):
            response = c.get("/v1/models", headers={"Authorization": header})
            assert response.status_code == 401, header
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["type"] == "authentication_error"
        assert c.get("/v1/models").status_code == 401


def test_each_key_is_compared_every_time(monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(auth_module.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    gate = RequireKey(None, KEYS.split(","))
    for header in (b"Bearer first-key-0a1b", b"Bearer third-key-4e5f", b"Bearer nope"):
        calls.clear()
        gate.allowed([(b"authorization", header)])
        assert len(calls) == 3  # a match on the first key does not stop the loop


def test_refused_without_reading_the_body():
    received = []

    async def app(scope, receive, send):
        raise AssertionError("the app must not run")

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": b"{}", "more_body": True}

    sent = []

    async def send(message):
        sent.append(message)

    gate = RequireKey(app, ["k"])
    scope = {"type": "http", "path": "/runsync", "method": "POST",
             "headers": [(b"content-length", b"999999999999")]}
    run_coroutine(gate(scope, receive, send))
    assert received == [] and sent[0]["status"] == 401


def test_no_keys_configured_means_open(tmp_path):
    settings = Settings(preload_models=False, volume_root=tmp_path / "vol")
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/models").status_code == 200 and c.get("/docs").status_code == 200


def test_auth_sits_outside_the_body_limit(tmp_path):
    with client(tmp_path, max_body_bytes=2048) as c:
        big = {"input": {"transcript": "x" * 5000}}
        assert c.post("/runsync", json=big).status_code == 401  # not 413: the key comes first
        assert c.post("/runsync", json=big, headers={"Authorization": "Bearer third-key-4e5f"}).status_code == 413
