"""Examples the README shows, read from it, so tests run them as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def first_screen_curl_body() -> dict:
    """The JSON body of the README's first-screen curl example."""
    head = README.read_text(encoding="utf-8")[:2500]
    found = re.search(r"curl -s localhost:8080/v1/audio/speech .*?-d '(\{.*?\})'", head, re.S)
    assert found, "the first screen shows a curl example"
    return json.loads(found.group(1))


def python_blocks() -> list[str]:
    """Every ```python block of the README, in order."""
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def openai_client_example() -> str:
    """The README's `openai` client example (the HTTP API section's python block)."""
    found = [b for b in python_blocks() if "client.audio.speech.create" in b]
    assert len(found) == 1, "the README shows one openai client example"
    return found[0]


def realtime_client_command() -> list[str]:
    """The README's command line for ``examples/realtime_client.py``, as words."""
    found = re.search(r"^python (examples/realtime_client\.py .*)$", README.read_text(encoding="utf-8"), re.M)
    assert found, "the README shows how to run the realtime client"
    return found.group(1).split()
