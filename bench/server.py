"""The worker server the loopback benches (:mod:`bench.load`, :mod:`bench.voice_agent`) run against when no
``--url`` is given: ``higgs-worker serve`` on the tiny random model in a subprocess on 127.0.0.1, ready before the
bench starts and stopped after it; and the report both benches print (a table, then one JSON line).

The process helpers are the tests' own (``tests/servers.py``), so a bench starts the server as the tests do.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

TESTS = Path(__file__).resolve().parents[1] / "tests"


def process_helpers() -> ModuleType:
    """The tests' process helpers (``Server``, ``free_port``, ``wait_until``), importable from a bench run."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import servers

    return servers


def tiny_model(tmp: str, given: Path | None) -> Path:
    """The tiny-model folder (``model/`` and ``tokenizer/``): the one given, or a fresh one made here."""
    if given is not None:
        if not (given / "model").is_dir() or not (given / "tokenizer").is_dir():
            raise SystemExit(f"--model {given}: expected a folder made by 'higgs-worker make-tiny-model'")
        return given
    from higgs_worker.weights.tiny import make_tiny_model

    return make_tiny_model(Path(tmp) / "tiny", seed=0)


def server_env(model: Path, tmp: str, **extra: str) -> dict[str, str]:
    """A server's settings on the tiny model folder ``model``: its volume and logs under ``tmp``, no hub (the
    endpoint is a closed loopback port), then ``extra``."""
    return {"MODEL_PATH": str(model / "model"), "TOKENIZER_PATH": str(model / "tokenizer"),
            "VOLUME_ROOT": str(Path(tmp) / "vol"), "LOG_DIR": str(Path(tmp) / "logs"),
            "HF_ENDPOINT": "http://127.0.0.1:9", **extra}


@contextmanager
def tiny_server(given: Path | None, **extra: str) -> Iterator[Any]:
    """A ready server (a ``tests/servers.py`` ``Server``) on the tiny model (``given``, or one made afresh) with
    the settings ``extra``, in a temporary folder; stopped on leaving the block."""
    with tempfile.TemporaryDirectory() as tmp:
        server = process_helpers().Server(server_env(tiny_model(tmp, given), tmp, **extra), Path(tmp))
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()


def report(result: dict[str, Any], json_path: Path | None) -> None:
    """Print ``result`` as a table and as one JSON line, and write it to ``json_path`` when one is given."""
    width = max(len(k) for k in result)
    for name, value in result.items():
        print(f"{name.ljust(width)}  {value}")
    print(json.dumps(result))
    if json_path:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
