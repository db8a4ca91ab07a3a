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
