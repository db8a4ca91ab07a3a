"""Reference voices: the library (presets on disk, uploads, base64 and URL references) and the pinned presets.

* :mod:`.library`: :class:`~.library.VoiceLibrary`, every reference resolved to 24 kHz mono audio and its transcript.
* :mod:`.names`: what a voice name may be, and the voice a near miss was likely meant as ("did you mean").
* :mod:`.inline`: base64 audio sent with a request: strict decoding, and where and why a value is not base64.
* :mod:`.presets`: the upstream voice presets, fetched at a pinned commit and checked by sha256.
* :mod:`.demo`: the offline demo's voices (the presets when the network allows, else synthetic stand-ins).
* :mod:`.aliases`: OpenAI's voice names (``alloy``, ``onyx``, ...) as aliases of library voices.

May import: ``audio`` and ``core``.
"""

from __future__ import annotations

from .library import Reference, VoiceExists, VoiceLibrary, valid_name

__all__ = ["Reference", "VoiceExists", "VoiceLibrary", "valid_name"]
