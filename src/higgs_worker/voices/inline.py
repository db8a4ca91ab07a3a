"""Base64 audio sent with a request (raw or a ``data:`` URI): strict decoding a step at a time, and where and why
a value is not base64, in words a caller can act on."""

from __future__ import annotations

import binascii
import re

#: A ``data:`` URI's head, before its base64.
DATA_URI = re.compile(r"data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)

#: Base64 characters decoded per step, so a large reference never exists twice as text and bytes.
_B64_STEP = 4 * 256 * 1024


def b64decode(data: str, start: int) -> bytes | None:
    """Strict base64 of ``data[start:]``, decoded a step at a time (never a second full-size copy as bytes); None
    when it is not valid base64."""
    out = bytearray()
    try:
        for pos in range(start, len(data), _B64_STEP):
            out += binascii.a2b_base64(data[pos:pos + _B64_STEP].encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    return bytes(out)


def strict_base64(value: str) -> bytes | None:
    """``value`` decoded as strict base64 of at least four bytes, or None (a voice name seldom is either)."""
    raw = b64decode(value, 0) if len(value) >= 8 else None
    return raw if raw is not None and len(raw) >= 4 else None


#: A character standard base64 does not use.
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=]")


def base64_problem(data: str, start: int) -> str:
    """Where and why ``data[start:]`` is not strict base64, in words a caller can act on."""
    body = data[start:]
    bad = _NOT_BASE64.search(body)
    if bad is not None:
        char, at = bad.group(), start + bad.start()
        if char in "-_":
            return (f"it holds {char!r} at character {at}, which is URL-safe base64; send standard base64 "
                    "('+' and '/')")
        if char.isspace():
            return (f"it holds whitespace ({char!r}) at character {at}; send base64 without spaces or line breaks "
                    "(GNU base64: -w 0)")
        return f"it holds {char!r} at character {at}, which base64 does not use"
    if "=" in body.rstrip("="):
        return f"it has '=' padding at character {start + body.index('=')}, before its end"
    return (f"it is {len(body)} base64 characters, not a multiple of 4 (base64 comes in groups of four): is it cut "
            "short?")
