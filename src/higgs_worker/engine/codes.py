"""Audio codes and the delay pattern.

Inside the worker, audio is held as plain codes ``(frames, codebooks)``: what the codec encodes and decodes.
The model reads and writes them delay-patterned (codebook k lags k steps, framed by stream BOS/EOS); the
helpers here convert both ways exactly as the transformers processor does.
"""

from __future__ import annotations

import torch

STREAM_BOS = 1024
STREAM_EOS = 1025


def with_delay(codes: torch.Tensor, num_codebooks: int, bos: int = STREAM_BOS, eos: int = STREAM_EOS) -> torch.Tensor:
    """Plain ``(T, K)`` codes to the ``(T + K + 1, K)`` delay-patterned frames the model reads."""
    t = codes.shape[0]
    framed = torch.cat([codes.new_full((1, num_codebooks), bos), codes, codes.new_full((1, num_codebooks), eos)])
    out = codes.new_empty((t + 2 + num_codebooks - 1, num_codebooks))
    for k in range(num_codebooks):
        out[:k, k] = bos
        out[k:k + t + 2, k] = framed[:, k]
        out[k + t + 2:, k] = eos
    return out


def revert_delay(delayed: torch.Tensor) -> torch.Tensor:
    """Delay-patterned ``(L, K)`` frames (without their leading all-BOS frame) to ``(L - K + 1, K)`` codes."""
    length, k_total = delayed.shape
    keep = length - k_total + 1
    if keep <= 0:
        return delayed.new_empty((0, k_total))
    return torch.stack([delayed[k:k + keep, k] for k in range(k_total)], dim=1)


def end_column(first_eos_column: int, lowest_eos_codebook: int, num_codebooks: int) -> int:
    """The last column of a generation, as upstream's ``HiggsAudioModel.generate`` ends it.

    At the first column ``t`` where any codebook draws the stream EOS, with ``e`` the lowest such codebook, the
    lower codebooks are forced to EOS and one more codebook a column after; the audio ends at column
    ``t + (K - 1) - e`` whatever the last codebook then draws (``modeling_higgs_audio.py``, the delay countdown)."""
    return first_eos_column + num_codebooks - 1 - lowest_eos_codebook


def chunk_end(generated: torch.Tensor, eos: int = STREAM_EOS) -> int | None:
    """:func:`end_column` of delay-patterned ``generated`` frames, or None when no codebook drew the EOS."""
    hits = (generated == eos).any(dim=-1).nonzero()
    if not len(hits):
        return None
    t = int(hits[0, 0])
    lowest = int((generated[t] == eos).nonzero()[0, 0])
    return end_column(t, lowest, generated.shape[-1])


def generated_codes(generated: torch.Tensor, bos: int = STREAM_BOS, eos: int = STREAM_EOS) -> torch.Tensor:
    """The plain codes of one generated utterance, cut as upstream cuts it.

    ``generated`` holds the delay-patterned frames the model produced for one row, starting with its all-BOS
    frame. The audio ends at :func:`chunk_end` (or at the last frame made, when no codebook drew the EOS); the
    delay is reverted, stray BOS/EOS are clipped into the codebook, and the first (all-BOS) and last plain frames
    are dropped, as upstream's ``examples/generation.py`` keeps ``[:, 1:-1]``. The last plain frame is the one
    whose lowest codebook holds the EOS (or, cut at ``max_new_tokens``, the last one made)."""
    end = chunk_end(generated, eos)
    last = generated.shape[0] - 1 if end is None else min(end, generated.shape[0] - 1)
    body = generated[1:last]
    return revert_delay(body).clamp(0, bos - 1)
