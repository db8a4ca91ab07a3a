"""How much one request may take: its prompt per chunk (reference audio, history, text), and its frames per chunk.

A prompt's positions are the KV cache it holds while its chunk runs, and the slot cache gives every row the room
of the longest one; so a prompt is bounded (``MAX_PROMPT_TOKENS``) and refused by name before any model work where
its reference audio alone cannot fit, and a chunk's history is trimmed, oldest first, to fit both that bound and the
model's own context.
"""

from __future__ import annotations

import math

from ..core.errors import RequestError
from ..core.schema import SpeechRequest
from ..engine import AudioTurn, Context, Engine
from .prompt_view import reference_frames
from .quality import longest_plausible_s

#: Frames a chunk may always take, however short its text (4 s at 25 frames a second).
MIN_CHUNK_FRAMES = 100

#: Positions a reference voice takes beyond its frames: the delay pattern's extra frames and its turn's markup.
_PER_VOICE = 8 + 16


def check_references(references: list, limit: int) -> None:
    """Refuse, before the model runs, reference audio that alone fills more than ``limit`` prompt positions."""
    frames = sum(reference_frames(len(r.wave)) + _PER_VOICE for r in references)
    if frames > limit:
        seconds = sum(r.duration_s for r in references)
        raise RequestError("ref_audio", f"{len(references)} reference voice(s) of {seconds:.1f} s in all take about "
                                        f"{frames} prompt positions; the limit is {limit} (MAX_PROMPT_TOKENS)")


def fit_history(engine: Engine, context: Context, chunk: str, history: list[AudioTurn], buffer: int | None,
                max_new_tokens: int, limit: int) -> list[AudioTurn]:
    """The previous chunks fed back with ``chunk``: the last ``buffer`` of them (all with ``None``, as upstream),
    the oldest dropped first while the prompt would pass ``limit`` or, with ``max_new_tokens``, the model's context.

    Raises a :class:`RequestError` naming ``MAX_PROMPT_TOKENS`` only when the prompt passes it with no history at
    all (:func:`check_references` refuses the usual cause, long reference audio, before any model work)."""
    kept = list(history) if buffer is None else (history[-buffer:] if buffer else [])
    room = min(limit, engine.context_limit - max_new_tokens)
    size = engine.prompt_tokens(context.prompt(chunk, kept))
    while kept and size > room:
        kept = kept[1:]
        size = engine.prompt_tokens(context.prompt(chunk, kept))
    if size > limit:
        raise RequestError("ref_audio", f"the prompt of this chunk takes {size} positions (reference audio, scene "
                                        f"and text); the limit is {limit} (MAX_PROMPT_TOKENS)")
    return kept


def chunk_frames(request: SpeechRequest, chunk: str) -> int:
    """The frame budget of one chunk: a request's own ``max_new_tokens`` when it gives one; otherwise the
    default, capped by the longest its text could plausibly take (1.2 s a word or 0.6 s a CJK character, plus
    2 s; never under 4 s), so a model that fails to end its audio stops at a plausible length and says
    ``truncated`` instead of running on with silence to ``max_new_tokens``."""
    if "max_new_tokens" in request.model_fields_set:
        return request.max_new_tokens
    return min(request.max_new_tokens, max(MIN_CHUNK_FRAMES, math.ceil(25 * longest_plausible_s(chunk))))
