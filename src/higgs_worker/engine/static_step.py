"""The fast decode step: fixed shapes, one function from the slots' last frames to their next frames.

The eager step computes exactly the active rows over exactly the keys they need, so its shapes change every step
and every kernel is launched from Python. This one pads the batch up to a bucket (1, 2, 4, 8, 16, 32, 64 rows:
the rows past the active ones are free slots, whose results are dropped) and the attention span up to a power of
two, and reads and writes only persistent tensors (the slot cache, the slots' last frames, positions and sampling
state). So each (bucket, span, candidates) shape is one pure function of fixed shapes: embedding, every layer,
the audio head and the frame choice. On a GPU it is captured once as a CUDA graph and then replayed, one launch per
step; elsewhere it runs eagerly on exactly the active rows and keys (and compiles with
``torch.compile(fullgraph=True)``, the proof that it has no data-dependent control flow and no host sync).

The step is pure with respect to the sampling state (the new state is returned and committed after it), and the
key/value writes it makes are the same each time it runs on the same inputs, so warming up and capturing a graph
with live requests in the batch changes nothing they see.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from .sampling import Slots, SlotState, choose_frames

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
MIN_SPAN = 128


def bucket_for(rows: int) -> int:
    """The smallest batch bucket that holds ``rows`` rows (rows beyond the largest bucket round up to a multiple)."""
    for bucket in BATCH_BUCKETS:
        if rows <= bucket:
            return bucket
    top = BATCH_BUCKETS[-1]
    return -(-rows // top) * top


def span_for(max_length: int, capacity: int) -> int:
    """Keys attended to when the longest row has ``max_length`` positions: a power of two, within the capacity."""
    span = MIN_SPAN
    while span < max_length + 1:
        span *= 2
    return min(span, capacity)


class _StaticCache:
    """The transformers ``Cache`` surface over slot rows ``0:rows``: writes at each row's position, reads a span."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], positions: torch.Tensor,
                 rows: int, span: int) -> None:
        self.keys, self.values, self.positions, self.rows, self.span = keys, values, positions, rows, span

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        index = torch.arange(self.rows, device=key_states.device)
        self.keys[layer_idx][index, :, self.positions] = key_states[:, :, 0]
        self.values[layer_idx][index, :, self.positions] = value_states[:, :, 0]
        return self.keys[layer_idx][: self.rows, :, : self.span], self.values[layer_idx][: self.rows, :, : self.span]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.span


def decode_logits(model, keys: list[torch.Tensor], values: list[torch.Tensor], frames_in: torch.Tensor,
                  positions: torch.Tensor, rows: int, span: int, masked: bool = True) -> torch.Tensor:
    """The model's forward for slots ``0:rows`` on fixed shapes: float32 audio logits ``(rows, K * V)``.

    Reads ``frames_in`` and ``positions`` (the slots' last frames and write positions), writes each row's key and
    value at its position, attends over the first ``span`` positions (each row sees only its own filled ones).
    ``masked=False`` only where every row that counts fills exactly ``span`` positions (no mask is then needed).
    """
    base = model.model
    pos = positions[:rows]
    frames = frames_in[:rows, None, :]
    hidden = base.embed_audio_tokens(frames)
    position_ids = pos[:, None]
    cos_sin = base.rotary_emb(hidden, position_ids)
    mask = (torch.arange(span, device=pos.device)[None, :] <= pos[:, None])[:, None, None, :] if masked else None
    cache = _StaticCache(keys, values, pos, rows, span)
    for layer in base.layers[: model.config.num_hidden_layers]:
        hidden = layer(hidden, position_embeddings=cos_sin, attention_mask=mask, audio_token_mask=None,
                       position_ids=position_ids, cache=cache)
    return model.audio_lm_head(base.norm(hidden)[:, -1]).float()


def decode_and_choose(model, keys: list[torch.Tensor], values: list[torch.Tensor], frames_in: torch.Tensor,
                      positions: torch.Tensor, slots: Slots, rows: int, span: int, candidates: int | None,
                      stream_bos: int, stream_eos: int, branch_free: bool = True,
                      masked: bool = True) -> tuple[torch.Tensor, Slots]:
    """One whole decode step of slots ``0:rows`` on fixed shapes: their next frames ``(rows, K)`` and new state.

    ``branch_free`` as in :func:`~.sampling.choose_frames`: required for a captured graph; off on the CPU."""
    logits = decode_logits(model, keys, values, frames_in, positions, rows, span, masked)
    return choose_frames(logits, slots, stream_bos, stream_eos, candidates, branch_free=branch_free)


class CaptureFailed(RuntimeError):
    """A decode step's CUDA graph could not be captured (for want of memory it is not: that is raised as it is)."""


class StaticStep:
    """Runs the scheduler's decode steps on fixed shapes, from captured CUDA graphs where ``graphs`` is set."""

    def __init__(self, model, cache, state: SlotState, frames_in: torch.Tensor, positions: torch.Tensor,
                 graphs: bool = False) -> None:
        self.model = model
        self.cache = cache  # the scheduler's SlotCache (it may grow: graphs are then captured again)
        self.state = state
        self.frames_in = frames_in
        self.positions = positions
        self.graphs = graphs
        cfg = model.config
        self.stream_bos, self.stream_eos = cfg.audio_stream_bos_id, cfg.audio_stream_eos_id
        self.vocab = cfg.codebook_size
        self.branch_free = graphs or frames_in.device.type != "cpu"
        #: The shapes a captured graph needs (bucketed span, a mask, a whole-vocabulary ranking). Always with
        #: graphs; settable without them, to run the captured computation eagerly (the CPU tests do).
        self.fixed_shapes = graphs
        self.captures = 0
        self._forget_graphs()

    def _forget_graphs(self) -> None:
        self._captured: dict[tuple, tuple[torch.cuda.CUDAGraph, object]] = {}  # shape key -> graph, its outputs
        self._captured_for: int | None = None  # the cache generation the graphs were captured on
        self._pool = None  # their memory pool: the next capture starts a new one

    def _run(self, rows: int, span: int, candidates: int | None, masked: bool = True) -> tuple[torch.Tensor, Slots]:
        return decode_and_choose(self.model, self.cache.keys, self.cache.values, self.frames_in, self.positions,
                                 self.state.view(0, rows), rows, span, candidates, self.stream_bos, self.stream_eos,
                                 self.branch_free, masked)

    def step(self, n: int, lengths: list[int]) -> torch.Tensor:
        """Decode the first ``n`` slots (filled to ``lengths``) one step, their state committed; their frames
        ``(n, K)`` on the device."""
        candidates = self.state.candidates(n)
        if self.fixed_shapes:
            rows, span = bucket_for(n), span_for(max(lengths), self.cache.capacity)
            if candidates is not None:
                candidates = self.vocab  # one ranking shape on the GPU, where sorting a whole vocabulary is cheap
            if self.graphs:
                frames, new = self._replay((rows, span, candidates), lambda: self._run(rows, span, candidates))
            else:
                frames, new = self._run(rows, span, candidates)
        else:  # nothing is captured: exactly the rows and keys needed, unmasked when every row needs them all
            frames, new = self._run(n, max(lengths) + 1, candidates, masked=len(set(lengths)) > 1)
        self.state.commit(0, n, new)
        self.frames_in[:n] = frames[:n]
        self.positions[:n] += 1
        return frames[:n]

    def logits(self, n: int, lengths: list[int]) -> torch.Tensor:
        """The float32 audio logits ``(n, K * V)`` of the first ``n`` slots on the fixed shapes a GPU captures
        (bucketed rows and span, a mask), replayed from a captured graph where ``graphs`` is set: the forward of
        :meth:`step` without the frame choice. Writes each row's key and value at its position; commits nothing
        (the caller sets the next inputs). The self-check (:mod:`.selfcheck`) compares it with the eager step.

        On a GPU the result is the graph's own output, overwritten by the next replay of the same shape."""
        rows, span = bucket_for(n), span_for(max(lengths), self.cache.capacity)

        def forward() -> torch.Tensor:
            return decode_logits(self.model, self.cache.keys, self.cache.values, self.frames_in, self.positions,
                                 rows, span)

        return (self._replay(("logits", rows, span), forward) if self.graphs else forward())[:n]

    def _replay(self, key: tuple, fn: Callable):
        """Replay the graph captured for ``key`` (capturing ``fn`` the first time); its outputs."""
        # A counter, not the tensors' ids or addresses, which a grow then a shrink between two steps may hand out
        # again for new tensors
        layout = self.cache.generation
        if layout != self._captured_for:  # the cache was reallocated: the graphs point at freed memory
            self._forget_graphs()
            self._captured_for = layout
        entry = self._captured.get(key)
        if entry is None:
            try:
                entry = self._capture(key, fn)
            except torch.OutOfMemoryError:
                raise  # recovered from as any step's: the rows fail, the graphs stay
            except Exception as exc:  # noqa: BLE001 - named for the scheduler, which decides what follows
                raise CaptureFailed(f"capturing the decode graph for {key} failed: {exc}") from exc
            self._captured[key] = entry
        graph, outputs = entry
        graph.replay()
        return outputs

    def drop_graphs(self) -> None:
        """Run the same fixed shapes without graphs from now on (after a capture failed)."""
        self.graphs = False
        self._forget_graphs()

    def _capture(self, key: tuple, fn: Callable):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # kernel selection and allocator warm-up, outside the capture
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread-local: request threads (the codec, reference encoding) may use the device during a capture
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            outputs = fn()
        self._pool = graph.pool()
        self.captures += 1
        log.info("captured a decode graph for %s", key)  # (rows, span, candidates), or ("logits", rows, span)
        return graph, outputs
