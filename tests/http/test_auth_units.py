"""``http/auth.py`` as bare ASGI, without an app around it: the exact refusal, what passes through, the header forms.

``test_auth.py`` checks the wired app in-process and ``test_auth_routes.py`` every route of the real server;
these are the fast checks a mutation run can afford.
"""

from __future__ import annotations

import json

import pytest

from higgs_worker.http.auth import DOC_PATHS, RequireKey
from servers import run_coroutine

KEYS = ["alpha-key-1f", "beta-key-2e"]


class Inner:
    """The wrapped app: records that it ran and answers 200."""

    def __init__(self) -> None:
        self.scopes: list[dict] = []

    async def __call__(self, scope, receive, send) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})


def run(gate: RequireKey, path: str = "/v1/models", authorization: bytes | None = None, kind: str = "http",
        name: bytes = b"authorization"):
    headers = [(b"host", b"test")]
    if authorization is not None:
        headers.append((name, authorization))
    scope = {"type": kind, "path": path, "headers": headers, "method": "GET"}
    sent: list[dict] = []

    async def receive():
        raise AssertionError("the body must not be read")

    async def send(message):
        sent.append(message)

    run_coroutine(gate(scope, receive, send))
    return sent


def status(gate: RequireKey, *args, **kwargs) -> int:
    return run(gate, *args, **kwargs)[0]["status"]


def test_the_refusal_is_a_complete_json_401_asking_for_a_bearer_key():
    inner = Inner()
    sent = run(RequireKey(inner, KEYS))
    assert inner.scopes == []
    start, body = sent
    assert start == {"type": "http.response.start", "status": 401,
                     "headers": [(b"content-type", b"application/json"),
                                 (b"content-length", str(len(body["body"])).encode()),
                                 (b"www-authenticate", b"Bearer")]}
    assert body["type"] == "http.response.body" and not body.get("more_body", False)
    assert json.loads(body["body"]) == {"error": {
        "message": "missing or invalid API key (Authorization: Bearer <key>)", "type": "authentication_error",
        "param": None, "code": None}}


def test_each_key_passes_to_the_app_and_nothing_else_does():
    inner = Inner()
    gate = RequireKey(inner, KEYS)
    for key in KEYS:
        assert status(gate, authorization=b"Bearer " + key.encode()) == 200
        assert status(gate, authorization=b"bearer " + key.encode()) == 200
        assert status(gate, authorization=b"BEARER " + key.encode()) == 200
        assert status(gate, authorization=b"  Bearer   " + key.encode() + b"  ") == 200  # spaces around are slack
    assert len(inner.scopes) == 8
    for bad in (b"", b"Bearer", b"Bearer ", b"Bearer  ", b"Token " + KEYS[0].encode(), KEYS[0].encode(),
                b"Bearer " + KEYS[0].encode() + b" x", b"Bearer x " + KEYS[0].encode(), b"Bearer alpha-key-1",
                b"Bearer " + KEYS[0].upper().encode()):
        assert status(gate, authorization=bad) == 401, bad
    assert status(gate) == 401  # no header at all


def test_the_header_name_is_matched_in_any_case():
    gate = RequireKey(Inner(), KEYS)
    for name in (b"Authorization", b"AUTHORIZATION"):
        assert status(gate, authorization=b"Bearer " + KEYS[1].encode(), name=name) == 200
    assert status(gate, authorization=b"Bearer " + KEYS[1].encode(), name=b"x-authorization") == 401


def test_open_paths_and_the_docs():
    inner = Inner()
    closed, open_docs = RequireKey(inner, KEYS), RequireKey(inner, KEYS, public_docs=True)
    for path in ("/ping", "/health", "/"):
        assert status(closed, path) == 200 and status(open_docs, path) == 200
    for path in sorted(DOC_PATHS):
        assert status(closed, path) == 401 and status(open_docs, path) == 200
    for path in ("/pingx", "/health/", "/metrics", "/run", "//ping", "/PING"):
        assert status(closed, path) == 401 and status(open_docs, path) == 401, path


def test_no_keys_means_open_and_other_scopes_pass():
    inner = Inner()
    assert status(RequireKey(inner, []), "/v1/models") == 200
    gate = RequireKey(inner, KEYS)
    for kind in ("websocket", "lifespan"):
        run(gate, kind=kind)
    assert [s["type"] for s in inner.scopes] == ["http", "websocket", "lifespan"]


@pytest.mark.parametrize("key", ["with space", "ünïcode-key", "x"])
def test_any_configured_key_text_works(key):
    assert status(RequireKey(Inner(), [key]), authorization=b"Bearer " + key.encode()) == 200
