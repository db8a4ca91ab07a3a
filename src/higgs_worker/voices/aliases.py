"""OpenAI's voice names (``alloy``, ``onyx``, ...) as aliases of library voices.

OpenAI TTS clients in agent frameworks (Pipecat's ``OpenAITTSService``, LiveKit's ``openai.TTS``) only send OpenAI's
voice names and refuse others before sending. Each name is an alias of a library voice: by default one of the
pinned presets chosen by the character of the OpenAI voice, or the model's own voice (no reference) where that
preset is not installed. ``VOICE_ALIASES`` (``alloy=belinda,onyx=broom_salesman``, a target ``default`` for the
model's own voice) replaces entries or adds new aliases; an overridden alias whose voice is missing is an error
naming it, never a silent fallback. A real voice of the same name always wins over an alias.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping

from ..core.errors import RequestError
from ..core.schema import SpeechRequest
from .library import Reference, VoiceLibrary, valid_name

__all__ = ["DEFAULT_ALIASES", "MODEL_VOICE", "OPENAI_VOICES", "VoiceAliases", "parse_aliases"]

#: The alias target meaning "no reference: the model picks its own voice".
MODEL_VOICE = "default"

#: Every voice name OpenAI's speech API documents (its clients accept no others).
OPENAI_VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage",
                 "shimmer", "verse")

#: The default mapping onto the pinned presets (:mod:`.presets`), by the OpenAI voice's register: lighter voices to
#: the feminine presets, deeper ones to the masculine presets.
DEFAULT_ALIASES: dict[str, str] = {
    "alloy": "en_woman", "ash": "en_man", "ballad": "chadwick", "cedar": "en_man", "coral": "belinda",
    "echo": "en_man", "fable": "chadwick", "marin": "mabel", "nova": "mabel", "onyx": "broom_salesman",
    "sage": "en_woman", "shimmer": "belinda", "verse": "broom_salesman",
}


def parse_aliases(text: str) -> dict[str, str]:
    """``alloy=belinda, onyx=broom_salesman`` as a mapping; :class:`ValueError` naming the first bad entry."""
    out: dict[str, str] = {}
    for entry in (e.strip() for e in (text or "").split(",")):
        if not entry:
            continue
        alias, sep, target = (p.strip() for p in entry.partition("="))
        if not sep or not valid_name(alias) or not valid_name(target):
            raise ValueError(f"VOICE_ALIASES entry {entry[:80]!r} is not NAME=VOICE (voice names: letters, digits, "
                             f"'_' or '-'; VOICE `{MODEL_VOICE}` for the model's own voice)")
        out[alias.lower()] = target
    return out


class VoiceAliases:
    """Alias names and the voices they stand for; resolves a request's voices through them."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self.overrides = {k.lower(): v for k, v in (overrides or {}).items()}
        self.targets = {**DEFAULT_ALIASES, **self.overrides}

    @classmethod
    def from_setting(cls, text: str) -> VoiceAliases:
        return cls(parse_aliases(text))

    def target(self, alias: str, available: Collection[str]) -> str | None:
        """The library voice ``alias`` stands for, or None for the model's own voice. :class:`KeyError` when
        ``alias`` is none; :class:`RequestError` (on ``voice``) when an overridden alias names a missing voice."""
        target = self.targets[alias.lower()]
        if target == MODEL_VOICE:
            return None
        if target in available:
            return target
        if alias.lower() in self.overrides:
            raise RequestError("voice", f"{alias!r} is an alias (VOICE_ALIASES) of the voice {target!r}, which is "
                                        "not in the library")
        return None  # a default alias whose preset is not installed: the model's own voice

    def resolve(self, library: VoiceLibrary, request: SpeechRequest, cancel: threading.Event | None = None,
                ) -> list[Reference]:
        """The request's reference voices as :meth:`VoiceLibrary.resolve` gives them, with aliases followed."""
        names = request.voice_names
        if not names:
            return library.resolve(request, cancel)
        available = set(library.names())
        wanted: list[str | None] = []
        for name in names:
            if name in available or name.lower() not in self.targets:
                wanted.append(name)  # a real voice wins; an unknown name is refused by the library, naming it
            else:
                wanted.append(self.target(name, available))
        if None in wanted:
            if len(names) == 1:
                return []  # the model's own voice: no reference
            alias = names[wanted.index(None)]
            raise RequestError("ref_audio", f"{alias!r} stands for the model's own voice, which cannot be one of "
                                            "several voices (name an installed voice for each speaker)")
        return [library.get(name) for name in wanted if name is not None]

    def describe(self, available: Collection[str]) -> list[dict[str, object]]:
        """Every alias with the voice it stands for (``None``: the model's own voice), for the voice list."""
        out = []
        for alias in sorted(self.targets):
            if alias in available:
                continue  # a real voice of that name hides the alias
            try:
                voice = self.target(alias, available)
                error = None
            except RequestError as exc:
                voice, error = None, exc.message
            entry: dict[str, object] = {"name": alias, "kind": "alias", "voice": voice,
                                        "openai": alias in OPENAI_VOICES}
            if error:
                entry["error"] = error
            out.append(entry)
        return out
