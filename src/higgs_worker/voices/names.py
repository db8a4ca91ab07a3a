"""Voice names: what a name may be, and the voice a name that is none was likely meant as.

Names are case-sensitive (they are file names on disk): a near miss is suggested, never taken silently.
"""

from __future__ import annotations

import difflib

from ..core.schema import VOICE_NAME


def valid_name(name: str) -> bool:
    """A preset or uploaded voice name, matched whole (``fullmatch``: no trailing newline slips through)."""
    return isinstance(name, str) and VOICE_NAME.fullmatch(name) is not None


def likely_meant(name: str, names: list[str]) -> list[str]:
    """The voices of ``names`` that ``name`` was likely meant as: the same name in other letter case (names are
    case-sensitive), else up to three close spellings (:func:`difflib.get_close_matches`, case ignored)."""
    folded = name.strip().casefold()
    same = [n for n in names if n.casefold() == folded]
    if same:
        return same
    by_folded = {n.casefold(): n for n in names}
    return [by_folded[m] for m in difflib.get_close_matches(folded, list(by_folded), n=3)]


def case_note(name: str, meant: list[str]) -> list[str]:
    """A reminder that names are case-sensitive, when ``name`` differs from a meant voice only in letter case."""
    return ["voice names are case-sensitive"] if any(m.casefold() == name.casefold() for m in meant) else []


def did_you_mean(name: str, names: list[str]) -> str:
    """``; did you mean 'alto'?`` (saying names are case-sensitive when only the case differs), or ``""``."""
    meant = likely_meant(name, names)
    if not meant:
        return ""
    case = case_note(name, meant)
    return f"; did you mean {' or '.join(repr(m) for m in meant)}?" + (f" ({case[0]})" if case else "")


def unknown_voice(name: str, names: list[str], note: str = "") -> str:
    """``unknown voice 'Alto'; did you mean 'alto'? (voice names are case-sensitive; available: alto, tenor)``:
    the voice ``name`` was likely meant as, when there is one, then those available and ``note``."""
    meant = likely_meant(name, names)
    notes = [*case_note(name, meant), f"available: {', '.join(names) or 'none installed'}", *([note] if note else [])]
    if not meant:
        return f"unknown voice {name!r}; {notes[0]}" + (f" ({note})" if note else "")
    return f"unknown voice {name!r}; did you mean {' or '.join(repr(m) for m in meant)}? ({'; '.join(notes)})"
