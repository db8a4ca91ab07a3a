"""Every route the API describes needs a key: the real server in a subprocess, on the tiny model, with several keys.

The list of routes comes from the server's own OpenAPI document, so a route added later is covered without
editing this file; only ``/ping`` and ``/health`` (load balancers) may answer without a key. Each route must
refuse a request with no key and one with a wrong key, and let each configured key through (whatever it answers
then: 200, 400 for an empty body or 404 for a made-up id all mean the key check passed).
"""

from __future__ import annotations

import re

import httpx
import pytest

from fixture_voices import write_voices
from servers import Server

KEYS = ["first-key-7d2a", "second-key-91c4", "third-key-e03b"]
OPEN = {"/ping", "/health"}
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("auth-routes")
    voices = write_voices(root / "voices", ["tenor"])
    # spaces around the keys and an empty item: the setting is a loose comma list
    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "VOICES_DIR": str(voices), "API_KEYS": f" {KEYS[0]}, {KEYS[1]} ,,{KEYS[2]}",
                  "LOG_DIR": str(root / "logs"), "VOLUME_ROOT": str(root / "vol")}, root)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def operations(server) -> list[tuple[str, str]]:
    """(method, concrete path) of every operation in the server's OpenAPI document, path parameters filled in."""
    document = httpx.get(f"{server.url}/openapi.json", headers=bearer(KEYS[0]), timeout=30).json()
    found = []
    for template, item in document["paths"].items():
        path = re.sub(r"\{[^}]+\}", "no-such-id-4242", template)
        found.extend((method, path) for method in item if method in METHODS)
    return found


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def call(server, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    body = {"json": {}} if method in ("post", "put", "patch") else {}
    return httpx.request(method.upper(), f"{server.url}{path}", headers=headers, timeout=60, **body)


def test_the_document_lists_the_routes_that_matter(operations):
    paths = {path for _, path in operations}
    # a sanity floor: if the document loses these, the test below would prove nothing
    assert {"/run", "/runsync", "/v1/audio/speech", "/v1/models"} <= paths, sorted(paths)
    assert len([op for op in operations if op[1] not in OPEN]) >= 8


def test_every_documented_route_refuses_a_missing_or_wrong_key(server, operations):
    refused_wrongly = []
    for method, path in operations:
        if path in OPEN:
            continue
        for headers in ({}, bearer("wrong-key"), bearer(KEYS[0] + "x"), bearer(KEYS[0][:-1]),
                        {"Authorization": KEYS[1]}, {"Authorization": f"Basic {KEYS[1]}"},
                        bearer(f"{KEYS[0]},{KEYS[1]}"), {"X-Api-Key": KEYS[2]}):
            response = call(server, method, path, headers)
            if response.status_code != 401:
                refused_wrongly.append((method.upper(), path, headers, response.status_code))
    assert refused_wrongly == [], "routes answering without a valid key"


def test_every_documented_route_accepts_each_configured_key(server, operations):
    shut_out = []
    for method, path in operations:
        for key in KEYS:
            response = call(server, method, path, bearer(key))
            if response.status_code == 401:
                shut_out.append((method.upper(), path, key))
    assert shut_out == [], "a configured key was refused"


def test_the_open_routes_need_no_key(server):
    for path in sorted(OPEN):
        assert httpx.get(f"{server.url}{path}", timeout=30).status_code == 200, path


def test_undocumented_routes_are_open_only_where_meant(server):
    # routes left out of the document (the try-it page, the metrics, the docs) follow the same rule, with the
    # page and the two probes open by design
    for path, expected in (("/", 200), ("/metrics", 401), ("/docs", 401), ("/redoc", 401),
                           ("/openapi.json", 401)):
        assert httpx.get(f"{server.url}{path}", timeout=30).status_code == expected, path
        assert httpx.get(f"{server.url}{path}", headers=bearer(KEYS[2]), timeout=30).status_code == 200, path
