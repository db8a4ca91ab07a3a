"""Fixtures shared by the in-process HTTP tests."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.fixture()
def client_for(service):
    """``make(**settings)``: a TestClient around the real app and the tiny engine, with those settings changed;
    every client made is closed after the test."""
    from higgs_worker.http import create_app

    clients = []

    def make(**overrides):
        for key, value in overrides.items():
            setattr(service.settings, key, value)
        client = TestClient(create_app(service.settings, service))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
