"""Pronunciation lexicons: whole words respelled before the model sees them, and the text as finally sent.

Two sources: a request's ``pronunciations`` (``{"Nguyen": "Win", "SQL": "sequel"}``) and the server's lexicon file
(``LEXICON_PATH``, a JSON object of the same shape, read again whenever its modification time changes; a file
that cannot be read or parsed is logged and the last good one kept).

Case rules: a key written all in lower case matches the word in any case (``nguyen`` matches ``Nguyen`` and
``NGUYEN``); a key with a capital letter matches only that exact spelling (``US`` is not ``us``). Keys match whole
words only (``SQL`` is not replaced inside ``MySQL``), the longest key first; bracketed tags are never touched.
A request's entries are applied first, so where both name a word, the request wins. Replacements are not
rewritten again by the spoken-form rules (:mod:`higgs_worker.core.spoken`), which run after them unless the
request sets ``normalize_text: false``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..core import spoken
from ..core.spoken import Piece

log = logging.getLogger(__name__)


def _pattern(entries: Mapping[str, str], exact: bool) -> re.Pattern[str] | None:
    keys = sorted((k for k in entries if (k != k.lower()) == exact), key=len, reverse=True)
    if not keys:
        return None
    words = "|".join(re.escape(k) for k in keys)
    return re.compile(rf"(?<!\w)(?:{words})(?!\w)", 0 if exact else re.IGNORECASE)


def respell(pieces: Sequence[Piece], entries: Mapping[str, str]) -> list[Piece]:
    """``entries``' whole words in the unfixed pieces replaced (case rules above)."""
    out = list(pieces)
    lowered = {k.lower(): v for k, v in entries.items() if k == k.lower()}
    for exact in (True, False):
        pattern = _pattern(entries, exact)
        if pattern is not None:
            table = entries if exact else lowered
            out = spoken.rewrite(out, pattern, lambda m, table=table, exact=exact:
                                 table[m.group(0) if exact else m.group(0).lower()])
    return out


class Lexicon:
    """The server's lexicon file, read again when it changes."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._entries: dict[str, str] = {}
        self._mtime: int | None = None
        self._lock = threading.Lock()

    def entries(self) -> dict[str, str]:
        if self.path is None:
            return {}
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError as exc:
            if self._mtime is not None:
                log.warning("LEXICON_PATH %s cannot be read (%s); keeping the last lexicon", self.path, exc.strerror)
                self._mtime = None
            return self._entries
        with self._lock:
            if mtime != self._mtime:
                self._mtime = mtime
                self._entries = self._load()
            return self._entries

    def _load(self) -> dict[str, str]:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not all(isinstance(k, str) and k.strip() and isinstance(v, str)
                                                     for k, v in data.items()):
                raise ValueError("it must be a JSON object of words and their respellings")
        except (OSError, ValueError) as exc:
            log.error("LEXICON_PATH %s is not a valid lexicon (%s); keeping the last one", self.path, exc)
            return self._entries
        log.info("lexicon %s: %d entries", self.path, len(data))
        return {k.strip(): v for k, v in data.items()}

    def sent_text(self, transcript: str, pronunciations: Mapping[str, str] | None,
                  normalize_text: bool = True) -> list[Piece]:
        """The transcript as it goes to the model, in pieces: the request's respellings, then the file's, then
        (with ``normalize_text``) the spoken forms of numbers, dates, units and abbreviations."""
        pieces = spoken.pieces_of(transcript)
        if pronunciations:
            pieces = respell(pieces, pronunciations)
        entries = self.entries()
        if entries:
            pieces = respell(pieces, entries)
        return spoken.spoken_pieces(pieces) if normalize_text else pieces
