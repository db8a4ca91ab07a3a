"""``speed``: a pitch-preserving time stretch of generated audio, with FFmpeg's ``atempo`` filter through PyAV.

``atempo`` takes factors from 0.5 to 2.0 per instance, so wider factors are a chain (0.25 = 0.5 x 0.5,
4.0 = 2.0 x 2.0). The stretcher works on a stream of blocks, so streamed responses are stretched as they are
made, and a whole file is one block. Speed 1.0 passes audio through untouched.
"""

from __future__ import annotations

import av
import numpy as np
from av.filter import Graph

MIN_SPEED, MAX_SPEED = 0.25, 4.0


def atempo_chain(speed: float) -> list[float]:
    """Factors within ``atempo``'s 0.5-2.0 whose product is ``speed``."""
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise ValueError(f"speed {speed} is outside {MIN_SPEED}-{MAX_SPEED}")
    chain = []
    while speed > 2.0:
        chain.append(2.0)
        speed /= 2.0
    while speed < 0.5:
        chain.append(0.5)
        speed /= 0.5
    chain.append(speed)
    return chain


class TempoStretcher:
    """Feed mono float blocks at ``rate``; get the stretched audio out as it becomes ready."""

    def __init__(self, speed: float, rate: int) -> None:
        self.speed, self.rate = speed, rate
        self._pts = 0
        self._graph: Graph | None = None
        if speed != 1.0:
            graph = Graph()
            nodes = [graph.add_abuffer(format="flt", sample_rate=rate, layout="mono", time_base=f"1/{rate}")]
            nodes += [graph.add("atempo", f"{factor:.6f}") for factor in atempo_chain(speed)]
            nodes.append(graph.add("abuffersink"))
            for a, b in zip(nodes, nodes[1:], strict=False):
                a.link_to(b)
            graph.configure()
            self._graph = graph

    def feed(self, wave: np.ndarray) -> np.ndarray:
        if self._graph is None or len(wave) == 0:
            return wave
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave, dtype=np.float32)[None, :], format="flt",
                                           layout="mono")
        frame.sample_rate, frame.pts = self.rate, self._pts
        self._pts += len(wave)
        self._graph.push(frame)
        return self._drain()

    def close(self) -> np.ndarray:
        if self._graph is None:
            return np.zeros(0, dtype=np.float32)
        self._graph.push(None)
        return self._drain()

    def _drain(self) -> np.ndarray:
        out = []
        while True:
            try:
                out.append(self._graph.pull().to_ndarray()[0])
            except (av.BlockingIOError, av.EOFError):
                break
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, dtype=np.float32)


def stretch(wave: np.ndarray, rate: int, speed: float) -> np.ndarray:
    """The whole of ``wave`` played at ``speed`` (same pitch)."""
    if speed == 1.0:
        return wave
    stretcher = TempoStretcher(speed, rate)
    return np.concatenate([stretcher.feed(wave), stretcher.close()])
