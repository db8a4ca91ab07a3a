"""Incremental codec decoding: audio for codes as they arrive, equal to one decode of all codes.

The codec's decoder is convolutional, so the samples of a frame depend on a few neighbouring frames. Each
window is decoded with ``left`` frames of already-emitted context and emits only frames that have ``right``
frames after them; the last window is flushed at the end. The real codec's decoder (kernel 7, dilations 1, 3 and
9, upsampling 8, 5, 4, 2, 3) lets one code frame change the output 10 frames before and 10 after it
(:func:`decoder_reach`, from the layers' shapes alone, whatever the weights); so 10 frames each side make the
streamed samples equal one whole decode up to float rounding (measured on the full-size architecture by
``python -m bench.codec_field``: 9.4e-6 of peak, against 7.4e-2 with the 8 frames of right context used before).
"""

from __future__ import annotations

import queue
from collections.abc import Iterator

import numpy as np
import torch

from .codes import end_column

LEFT_CONTEXT_FRAMES = 10
RIGHT_CONTEXT_FRAMES = 10


def decoder_reach(decoder, hop: int) -> tuple[int, int]:
    """Frames of context a window needs on its (left, right) so its samples equal one whole decode: how far one
    code frame's influence reaches after and before it through ``decoder``'s convolutions (the residual branches'
    skips reach less far than their convolutions, so the convolutions bound it)."""
    from torch import nn

    frame = 1000
    lo, hi = frame, frame  # the indices one frame influences at the current layer's rate
    for module in decoder.modules():
        if isinstance(module, nn.ConvTranspose1d):
            s, k, p = module.stride[0], module.kernel_size[0], module.padding[0]
            lo, hi = lo * s - p, hi * s - p + k - 1
        elif isinstance(module, nn.Conv1d):
            k, d, p = module.kernel_size[0], module.dilation[0], module.padding[0]
            lo, hi = lo + p - d * (k - 1), hi + p
    before, after = frame - lo // hop, hi // hop - frame
    return after, before  # a frame's samples need the frames after it on the right, and those before on the left


class StreamDecoder:
    """Feed plain codes ``(frames, codebooks)`` with :meth:`push`; get the new samples back."""

    def __init__(self, decode, samples_per_frame: int, num_codebooks: int,
                 left: int = LEFT_CONTEXT_FRAMES, right: int = RIGHT_CONTEXT_FRAMES) -> None:
        self._decode = decode
        self._hop = samples_per_frame
        self._left = left
        self._right = right
        self._codes = torch.zeros((0, num_codebooks), dtype=torch.long)
        self.emitted_frames = 0

    @property
    def frames(self) -> int:
        return int(self._codes.shape[0])

    def push(self, codes: torch.Tensor) -> np.ndarray:
        self._codes = torch.cat([self._codes, codes.to(torch.long).cpu()])
        return self._emit(self.frames - self._right)

    def flush(self) -> np.ndarray:
        return self._emit(self.frames)

    def _emit(self, upto: int) -> np.ndarray:
        if upto <= self.emitted_frames:
            return np.zeros(0, dtype=np.float32)
        start = max(0, self.emitted_frames - self._left)
        wave = self._decode(self._codes[start:])
        out = wave[(self.emitted_frames - start) * self._hop:(upto - start) * self._hop]
        self.emitted_frames = upto
        return out


class DelayReverter:
    """Delay-patterned frames in (the all-BOS frame first), plain frames out as soon as they are known to be kept.

    Codebook k of plain frame t arrives at column t + 1 + k, so frame t is complete at column t + K. The audio ends
    at :func:`~.codes.end_column` (known from the first column where a codebook draws the EOS), and, as upstream,
    the frame that column completes is dropped; a generation cut at ``max_new_tokens`` drops its last complete
    frame instead, so the newest frame is held back until the next column, or :meth:`close`, says it is kept. The
    output equals :func:`~.codes.generated_codes` of all the frames, piece by piece.
    """

    def __init__(self, num_codebooks: int, bos: int = 1024, eos: int = 1025) -> None:
        self.k = num_codebooks
        self.bos = bos
        self.eos = eos
        self.rows: list[torch.Tensor] = []
        self.ended = False
        self.end: int | None = None  # the last column, once a codebook drew the EOS
        self._held: torch.Tensor | None = None

    def _none(self) -> torch.Tensor:
        return torch.zeros((0, self.k), dtype=torch.long)

    def push(self, frame: torch.Tensor) -> torch.Tensor:
        if self.ended:
            return self._none()
        frame = frame.to(torch.long).cpu()
        column = len(self.rows)
        self.rows.append(frame)
        hits = (frame == self.eos).nonzero()
        if self.end is None and len(hits):
            self.end = end_column(column, int(hits[0, 0]), self.k)
        if self.end is not None and column >= self.end:
            self.ended = True  # this column completes the dropped frame; the held one is kept
            return self.close(truncated=False)
        if column < self.k:
            return self._none()
        t = column - self.k
        plain = torch.stack([self.rows[t + 1 + i][i] for i in range(self.k)]).clamp(0, self.bos - 1)[None]
        out, self._held = (self._held if self._held is not None else self._none()), plain
        return out

    def close(self, truncated: bool) -> torch.Tensor:
        """The frame held back: kept unless the generation was cut at ``max_new_tokens`` (``truncated``)."""
        held, self._held = self._held, None
        return held if held is not None and not truncated else self._none()


#: Frames decoded together while streaming: a small first group for early audio, larger ones after.
FIRST_GROUP = 4
GROUP = 12


def stream_job(job, frames: queue.Queue, decoder: StreamDecoder, num_codebooks: int) -> Iterator[np.ndarray]:
    """Waveform pieces of one running generation, from the frames its ``on_frame`` puts into ``frames``.

    Frames are reverted from the delay pattern as they complete and decoded in small groups; the caller flushes
    ``decoder`` after the last generation of a request.
    """
    reverter = DelayReverter(num_codebooks)
    waiting: list[torch.Tensor] = []
    while True:
        try:
            frame = frames.get(timeout=0.05)
        except queue.Empty:
            if job.done.is_set() and frames.empty():
                break
            continue
        plain = reverter.push(frame)
        if plain.shape[0]:
            waiting.append(plain)
        group = FIRST_GROUP if decoder.emitted_frames == 0 else GROUP
        if sum(p.shape[0] for p in waiting) >= group:
            piece = decoder.push(torch.cat(waiting))
            waiting = []
            if piece.size:
                yield piece
    waiting.append(reverter.close(truncated=not reverter.ended))
    if sum(p.shape[0] for p in waiting):
        piece = decoder.push(torch.cat(waiting))
        if piece.size:
            yield piece
