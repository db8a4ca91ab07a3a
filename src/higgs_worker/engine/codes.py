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


def generated_codes(generated: torch.Tensor, bos: int = STREAM_BOS, eos: int = STREAM_EOS) -> torch.Tensor:
    """The plain codes of one generated utterance.

    ``generated`` holds the delay-patterned frames the model produced for one row, starting with its all-BOS
    frame. Cut at the first all-EOS frame, revert the delay and clip stray BOS/EOS into the codebook, as
    ``HiggsAudioV2Processor.batch_decode`` does.
    """
    all_eos = (generated == eos).all(dim=-1).nonzero()
    end = int(all_eos[0, 0]) if len(all_eos) else generated.shape[0]
    body = generated[1:end]
    return revert_delay(body).clamp(0, bos - 1)
