"""Decode the streaming windows of concurrent streams together: one batched codec call per round.

Each stream decodes a window of codes every few frames (:class:`~.streaming.StreamDecoder`). With many streams
on a GPU, one codec call per window per stream costs a launch-bound call each; here windows that arrive while a
call is running are gathered and decoded in one call per window length. In steady state every stream's window has
the same length (left context + a group + right context), so most rounds are one call for every stream. Windows
are never padded: a batch holds windows of one length only, so each stream's samples are those of its own decode.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
import torch

BatchDecode = Callable[[torch.Tensor], list[np.ndarray]]  # (B, T, K) codes of one length -> B waveforms


class CodecBatcher:
    """A thread that decodes queued windows in batches; :meth:`decode` blocks until its window is done."""

    def __init__(self, decode_batch: BatchDecode, max_batch: int = 32) -> None:
        self._decode_batch = decode_batch
        self._max_batch = max_batch
        self._queue: list[tuple[torch.Tensor, Future]] = []
        self._cond = threading.Condition()
        self._closed = False
        self.calls = 0  # batched codec calls made
        self.windows = 0  # windows decoded
        self._thread = threading.Thread(target=self._loop, name="higgs-codec-batch", daemon=True)
        self._thread.start()

    def decode(self, codes: torch.Tensor) -> np.ndarray:
        """The waveform of plain codes ``(T, K)``, decoded with whatever other windows are waiting."""
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the codec batcher is closed")
            self._queue.append((codes, future))
            self._cond.notify()
        return future.result()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                waiting, self._queue = self._queue, []
            by_length: dict[int, list[tuple[torch.Tensor, Future]]] = defaultdict(list)
            for codes, future in waiting:
                by_length[int(codes.shape[0])].append((codes, future))
            for group in by_length.values():
                for start in range(0, len(group), self._max_batch):
                    self._run(group[start:start + self._max_batch])

    def _run(self, group: list[tuple[torch.Tensor, Future]]) -> None:
        try:
            waves = self._decode_batch(torch.stack([codes for codes, _ in group]))
        except BaseException as exc:  # noqa: BLE001 - every caller of this batch gets the error
            for _, future in group:
                future.set_exception(exc)
            return
        self.calls += 1
        self.windows += len(group)
        for (_, future), wave in zip(group, waves, strict=True):
            future.set_result(wave)
