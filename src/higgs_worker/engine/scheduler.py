"""The batching scheduler: requests join a running batch, leave when done, and stream their frames.

One thread owns the model. Each request is prefilled alone (its own prompt length, exactly as ``generate``
does), its keys and values are copied into a free row of a shared slot cache, and from then on it decodes with
every other active row in one forward pass per step. Rows have their own lengths and positions; the attention
mask lets each see only its own positions. Finished and cancelled rows leave at once (the last row moves into the
hole, so active rows stay a contiguous prefix of the cache and each step computes only them).

Per-row sampling settings and state (delay pattern counters, repetition window, seed and step of the
counter-based draws) live in slot tensors on the model's device and never leak between rows, so a request's
frames do not depend on its neighbours. Each step chooses every row's frame on the device and copies the frames
to the host once; with ``fast=True`` the step runs on fixed shapes (:mod:`.static_step`) and, on a GPU, is
replayed from a captured CUDA graph.

On the fast path the host overlaps the device: step t+1 is launched before step t's frames are handled (their
copy to the host goes, without blocking, into pinned memory), so the host's bookkeeping of step t (each row's
frame, its end, the callbacks) runs while the device computes step t+1. Step t+1 is speculative for a row that
step t ends: its result for that row is dropped (a finished row's slot is closed only after the launch, in stream
order, so nothing it wrote survives into another row). A row's frames are the same either way.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..core.errors import DeviceFault
from .codes import end_column
from .prefill import PiecewisePrefill
from .sampling import DelayState, RowSettings, SlotState, choose_frames
from .static_step import CaptureFailed, StaticStep, bucket_for

log = logging.getLogger(__name__)

FrameCallback = Callable[[torch.Tensor], None]


class SchedulerClosed(RuntimeError):
    pass


#: Words of CUDA errors after which the CUDA context is unusable for the rest of the process (torch raises them as
#: ``torch.AcceleratorError``, a ``RuntimeError``). Out-of-memory is not among them: it is recovered from.
_FATAL_DEVICE_ERRORS = ("device-side assert", "illegal memory access", "illegal address", "illegal instruction",
                        "misaligned address", "launch failure", "launch timed out", "uncorrectable ecc",
                        "cublas_status_execution_failed", "hardware stop", "gpu has fallen off the bus")


def is_fatal_device_error(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) is an unrecoverable CUDA error."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, DeviceFault):
            return True
        if isinstance(exc, RuntimeError) and not isinstance(exc, torch.OutOfMemoryError):
            text = str(exc).lower()
            if ("cuda" in text or "cublas" in text) and any(m in text for m in _FATAL_DEVICE_ERRORS):
                return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def device_fault(exc: BaseException) -> DeviceFault:
    """The caller-facing fault for an unrecoverable device error ``exc``."""
    if isinstance(exc, DeviceFault):
        return exc
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), exc.__class__.__name__)
    return DeviceFault(f"the GPU hit an unrecoverable error ({first[:200]}); this worker cannot generate again "
                       "and must be restarted")


@dataclass(eq=False)
class Job:
    """One generation: model inputs for a prompt, how to sample, and where frames go."""

    inputs: dict[str, torch.Tensor]
    temperature: float
    top_k: int
    top_p: float
    ras_win_len: int
    ras_max_repeat: int
    max_new_tokens: int
    seed: int
    cancel: threading.Event | None = None
    on_frame: FrameCallback | None = None
    stop_at_eos: bool = True
    frames: list[torch.Tensor] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    cancelled: bool = False
    started: float = 0.0
    first_frame_s: float | None = None
    finished_s: float = 0.0
    ended_at_eos: bool = False  # False when the row stopped at max_new_tokens (or was cancelled) instead
    end_step: int | None = None  # the column the audio ends at (codes.end_column), once a codebook drew the EOS


@dataclass(eq=False)
class _Row:
    job: Job
    length: int  # positions filled in the cache, as far as the host has handled the row's steps
    steps: int = 0
    pending: int = 0  # steps launched on the device whose frames the host has not handled yet (fast path: 0 or 1)


@dataclass(eq=False)
class _Flight:
    """A launched fast-path step: its rows (in slot order at launch) and where their frames land on the host."""

    rows: list[_Row]
    frames: torch.Tensor  # (rows, K) on the host, pinned on a GPU; valid once ``ready`` has passed
    ready: torch.cuda.Event | None  # None on the CPU, where the copy is done when it returns


class SlotCache:
    """Per-layer key/value tensors ``[rows, kv_heads, capacity, head_dim]`` with a length per row.

    Behaves as a transformers ``Cache`` for the decoder layers during a decode step: ``update`` writes each
    row's new key and value at that row's own position and returns the keys and values to attend over.
    """

    def __init__(self, layers: int, rows: int, kv_heads: int, head_dim: int, capacity: int,
                 dtype: torch.dtype, device: torch.device) -> None:
        shape = (rows, kv_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.capacity = capacity
        self.initial = capacity  # what the cache goes back to once the rows that grew it have gone
        self.peak = capacity  # the most it has held since it was made (it shrinks back once idle)
        self.generation = 0  # counts reallocations: captured graphs hold the addresses of one generation's tensors
        self.positions: torch.Tensor | None = None  # (active,) write positions of this step
        self.span = 0  # keys visible this step
        self.row_offset = 0  # first cache row of the rows in this forward pass

    def ensure(self, needed: int) -> None:
        """Grow the capacity (doubling) so ``needed`` positions fit."""
        if needed <= self.capacity:
            return
        new = self.capacity
        while new < needed:
            new *= 2
        for store in (self.keys, self.values):
            for i, t in enumerate(store):
                grown = t.new_zeros((t.shape[0], t.shape[1], new, t.shape[3]))
                grown[:, :, : self.capacity] = t
                store[i] = grown
        self.capacity = new
        self.generation += 1
        self.peak = max(self.peak, new)

    def shrink(self, needed: int) -> bool:
        """Give memory back: when every row left fits in a quarter of the capacity, reallocate to the smallest
        doubling of the initial capacity that holds ``needed`` positions (one long prompt grows every row's
        slot; without this the growth stayed for good). True when it shrank."""
        new = self.initial
        while new < needed:
            new *= 2
        if new > self.capacity // 4:
            return False
        for store in (self.keys, self.values):
            for i, t in enumerate(store):
                store[i] = t[:, :, :new].clone()
        self.capacity = new
        self.generation += 1
        return True

    @property
    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for store in (self.keys, self.values) for t in store)

    def load(self, row: int, prefill_cache) -> int:
        """Copy a batch-1 prefill cache into ``row``; returns its length."""
        length = 0
        for i, layer in enumerate(prefill_cache.layers):
            k, v = layer.keys[0], layer.values[0]
            length = k.shape[1]
            self.ensure(length + 1)
            self.keys[i][row, :, :length] = k
            self.values[i][row, :, :length] = v
        return length

    def move(self, src: int, dst: int, length: int) -> None:
        for store in (self.keys, self.values):
            for t in store:
                t[dst, :, :length] = t[src, :, :length]

    # -- the transformers Cache surface the decoder layers use ----------------------------------------------
    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        rows = key_states.shape[0]
        a = self.row_offset
        index = torch.arange(a, a + rows, device=key_states.device)
        self.keys[layer_idx][index, :, self.positions] = key_states[:, :, 0]
        self.values[layer_idx][index, :, self.positions] = value_states[:, :, 0]
        return (self.keys[layer_idx][a:a + rows, :, : self.span],
                self.values[layer_idx][a:a + rows, :, : self.span])

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.span


def decode_forward(model, cache: SlotCache, frames: torch.Tensor, position_ids: torch.Tensor,
                   mask: torch.Tensor | None) -> torch.Tensor:
    """One audio decode step for the rows ``cache`` is set to: the model's own layers over the slot cache."""
    base = model.model
    hidden = base.embed_audio_tokens(frames)
    cos_sin = base.rotary_emb(hidden, position_ids)
    for layer in base.layers[: model.config.num_hidden_layers]:
        hidden = layer(hidden, position_embeddings=cos_sin, attention_mask=mask, audio_token_mask=None,
                       position_ids=position_ids, cache=cache)
    return model.audio_lm_head(base.norm(hidden)[:, -1])


def eager_logits(model, cache: SlotCache, frames_in: torch.Tensor, positions: torch.Tensor, lengths: list[int],
                 a: int = 0, b: int | None = None, forward: Callable | None = None) -> torch.Tensor:
    """The eager step's float32 audio logits of slots ``a:b`` (filled to ``lengths``): their own shapes, exactly
    the keys they need, masked only when their lengths differ. ``forward``: :func:`decode_forward` or a compiled
    form of it bound to ``model`` and ``cache``."""
    b = len(lengths) if b is None else b
    pos = positions[a:b]
    cache.row_offset = a
    cache.positions = pos
    cache.span = max(lengths[a:b]) + 1
    mask = None
    if len(set(lengths[a:b])) > 1:
        mask = (torch.arange(cache.span, device=pos.device)[None, :] <= pos[:, None])[:, None, None, :]
    try:
        if forward is None:
            return decode_forward(model, cache, frames_in[a:b, None, :], pos[:, None], mask).float()
        return forward(frames_in[a:b, None, :], pos[:, None], mask).float()
    finally:
        cache.row_offset = 0


class Scheduler:
    """Runs every generation of one model; many requests share each decode step."""

    def __init__(self, model, max_batch: int = 8, capacity: int = 2048, compile_decode: bool = False,
                 fast: bool = False, graphs: bool | None = None, prefill_chunk_tokens: int = 512) -> None:
        self.model = model
        cfg = model.config
        self.cfg = cfg
        self.max_batch = max_batch
        self.num_codebooks = cfg.num_codebooks
        self.codebook_size = cfg.codebook_size
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        slots = bucket_for(max_batch) if fast else max_batch  # the fast path pads a batch up to its bucket
        self.cache = SlotCache(cfg.num_hidden_layers, slots, cfg.num_key_value_heads, head_dim, capacity,
                               self.dtype, self.device)
        self.state = SlotState(slots, self.num_codebooks, self.codebook_size, self.device)
        self.frames_in = torch.full((slots, self.num_codebooks), cfg.audio_stream_bos_id, dtype=torch.long,
                                    device=self.device)  # each slot's last frame: the next step's input
        self.positions = torch.zeros(slots, dtype=torch.long, device=self.device)  # each slot's next write position
        self.stream_bos, self.stream_eos = cfg.audio_stream_bos_id, cfg.audio_stream_eos_id
        self.static: StaticStep | None = None
        if fast:
            self.static = StaticStep(model, self.cache, self.state, self.frames_in, self.positions,
                                     graphs=self.device.type == "cuda" if graphs is None else graphs)
        # the fast path's frames land here, two buffers used in turn (a step in flight while the last is handled)
        pinned = self.device.type == "cuda"
        self._host_frames = [torch.empty((slots, self.num_codebooks), dtype=torch.long, pin_memory=pinned)
                             for _ in range(2)]
        self._next_buffer = 0
        self._flight: _Flight | None = None  # the fast step launched whose frames the host has not handled yet
        self.launched_ahead = 0  # fast steps launched before the previous step's frames were handled
        self.dropped_rows = 0  # rows' results of those steps dropped because the previous step ended the row
        self.rows: list[_Row] = []
        self.pending: queue.Queue[Job] = queue.Queue()
        #: Prefill work between two decode steps while rows are decoding, in prompt tokens through every layer
        #: (a longer prompt runs a few layers per step); with no row decoding a prefill runs to its end at once.
        self.prefill_budget = prefill_chunk_tokens * cfg.num_hidden_layers
        self._filling: tuple[Job, PiecewisePrefill] | None = None  # the prefill in progress
        self._wake = threading.Event()
        self._stop = False
        self.steps = 0
        self.batch_sizes: deque[int] = deque(maxlen=4096)  # the recent steps' batch sizes (bounded: runs forever)
        self.on_step: Callable[[int], None] | None = None  # observer (metrics) of each step's batch size
        self.split = 0  # rows per forward pass after an out-of-memory (0: all at once)
        self._split_since = 0
        self.oom_events = 0
        self.fault: DeviceFault | None = None  # set once the device failed unrecoverably: every job fails with it
        #: Test hook: an exception raised at the next decode step as if the model had raised it (then cleared).
        self.inject_fault: BaseException | None = None
        #: Why the fast path serves without CUDA graphs, once a capture has failed (None while it has not).
        self.graph_failure: str | None = None
        self._forward = self._decode_forward
        if compile_decode:  # GPU fast path: fewer kernel launches per step; shapes vary, so dynamic
            self._forward = torch.compile(self._decode_forward, dynamic=True)
        self._thread = threading.Thread(target=self._loop, name="higgs-scheduler", daemon=True)
        self._thread.start()

    # -- public ---------------------------------------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        if self.fault is not None:
            raise DeviceFault(str(self.fault))
        if self._stop:
            raise SchedulerClosed("the scheduler is stopped")
        job.started = time.perf_counter()
        self.pending.put(job)
        self._wake.set()
        return job

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=30)

    @property
    def active(self) -> int:
        return len(self.rows)

    def declare_fault(self, exc: BaseException) -> DeviceFault:
        """Record an unrecoverable device error (from any thread); the loop then fails every job, now and later."""
        if self.fault is None:
            self.fault = device_fault(exc)
            log.critical("unrecoverable device error; this process cannot generate again: %s", exc, exc_info=exc)
            self._wake.set()
        return self.fault

    # -- the loop -------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        while not self._stop:
            if self.fault is not None:  # nothing can run on this device again: fail whatever is waiting
                for row in self.rows:
                    self._finish(row, error=self.fault)
                self.rows = []
                self._flight = None
                self._drop_filling(self.fault)
                while not self.pending.empty():
                    self._fail(self.pending.get_nowait(), self.fault)
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                self._admit()
                if not self.rows:
                    self._flight = None  # every row it ran for has gone: nothing of it is wanted
                    self._wake.wait(0.5)
                    self._wake.clear()
                    continue
                self._drop_cancelled()
                if self.rows:
                    self._step()
                else:
                    self._flight = None
            except Exception as exc:  # noqa: BLE001 - fail the rows in flight, keep serving
                self._flight = None
                if is_fatal_device_error(exc):
                    self.declare_fault(exc)  # the next turn fails the rows in flight and everything queued
                    continue
                log.exception("decode step failed; failing %d request(s)", len(self.rows))
                failed, self.rows = self.rows, []
                self._free_all_slots()
                for row in failed:
                    self._finish(row, error=exc)
        for row in self.rows:
            self._finish(row, error=SchedulerClosed("the scheduler stopped"))
        self._drop_filling(SchedulerClosed("the scheduler stopped"))
        while not self.pending.empty():
            self._fail(self.pending.get_nowait(), SchedulerClosed("the scheduler stopped"))

    def _free_all_slots(self) -> None:
        """Every slot free, as :meth:`_remove` leaves one, before the failed rows are told: the fixed-shape path's
        padding rows write at a free slot's position, which must stay inside the cache once it shrinks."""
        try:
            self.positions.zero_()
            self.cache.shrink(0)
        except Exception:  # noqa: BLE001 - the rows are failed either way; the next step tells whether it serves
            log.exception("could not reset the free slots after a failed step")

    def _admit(self) -> None:
        """Prefill waiting requests into free slots: all at once when no row is decoding, else a bounded piece of
        work per step (a long prompt joins over a few steps instead of stalling the rows already speaking)."""
        budget = self.prefill_budget if self.rows else None
        while budget is None or budget > 0:
            if self._filling is None:
                if len(self.rows) >= self.max_batch:
                    return
                try:
                    job = self.pending.get_nowait()
                except queue.Empty:
                    return
                if job.cancel is not None and job.cancel.is_set():
                    job.cancelled = True
                    job.done.set()
                    continue
                if not self._guard(job, lambda job=job: self._begin(job)):
                    continue
            job, fill = self._filling
            if job.cancel is not None and job.cancel.is_set():
                self._filling = None
                job.cancelled = True
                job.done.set()
                continue
            layers = fill.remaining_layers if budget is None else max(1, min(fill.remaining_layers,
                                                                                budget // fill.tokens))
            if not self._guard(job, lambda: fill.advance(layers)):
                continue
            if budget is not None:
                budget -= layers * fill.tokens
            if fill.finished:
                self._filling = None
                self._guard(job, lambda: self._join(job, fill))

    def _guard(self, job: Job, action: Callable[[], None]) -> bool:
        """Run one prefill action for ``job``; on failure the job fails (alone) and False is returned."""
        try:
            action()
            return True
        except Exception as exc:  # noqa: BLE001 - this request fails; others go on
            self._filling = None
            if is_fatal_device_error(exc):
                self._fail(job, self.declare_fault(exc))
            else:
                log.exception("prefill failed")
                self._fail(job, exc)
            return False

    def _drop_filling(self, error: BaseException) -> None:
        if self._filling is not None:
            self._fail(self._filling[0], error)
            self._filling = None

    @torch.inference_mode()
    def _begin(self, job: Job) -> None:
        self._filling = (job, PiecewisePrefill(self.model, {k: v.to(self.device) for k, v in job.inputs.items()}))

    @torch.inference_mode()
    def _join(self, job: Job, fill: PiecewisePrefill) -> None:
        """A finished prefill takes the next free slot and chooses its first frame."""
        prompt_ids = job.inputs["input_ids"][0].tolist()
        history = None
        if job.ras_win_len > 0 and "audio_input_ids" in job.inputs:
            history = job.inputs["audio_input_ids"][0, -job.ras_win_len:]
        settings = RowSettings(temperature=job.temperature, top_k=job.top_k, top_p=job.top_p,
                               ras_win_len=job.ras_win_len, ras_max_repeat=job.ras_max_repeat, seed=job.seed)
        delay = DelayState.from_prompt(prompt_ids, self.num_codebooks, self.cfg.audio_bos_token_id,
                                       self.cfg.audio_delay_token_id)
        slot = len(self.rows)
        length = self.cache.load(slot, fill.cache)
        self.state.assign(slot, settings, delay, history)
        self.positions[slot] = length
        logits = fill.logits().float()
        frame, new = choose_frames(logits, self.state.view(slot, slot + 1), self.stream_bos, self.stream_eos,
                                   self.state.candidates_of([settings]), branch_free=self.device.type != "cpu")
        self.state.commit(slot, slot + 1, new)
        self.frames_in[slot] = frame[0]
        first = frame[0].cpu()
        row = _Row(job=job, length=length)  # the slot is the row's only once nothing of the prefill can fail
        self.rows.append(row)
        if not self._take(row, first):
            self._remove(row)

    def _take(self, row: _Row, frame: torch.Tensor, at_eos: bool | None = None) -> bool:
        """Record the row's next frame (``at_eos``: whether any codebook drew the stream EOS, if known); False when
        the row has finished: at the column upstream ends the audio (:func:`~.codes.end_column`), or at
        ``max_new_tokens``."""
        row.steps += 1
        job = row.job
        job.frames.append(frame)
        if job.first_frame_s is None:
            job.first_frame_s = time.perf_counter() - job.started
        if job.on_frame is not None:
            job.on_frame(frame)
        if at_eos is None:
            at_eos = bool((frame == self.stream_eos).any())
        if job.stop_at_eos and (job.end_step is not None or at_eos):
            column = len(job.frames) - 1
            if job.end_step is None:
                lowest = int((frame == self.stream_eos).nonzero()[0, 0])
                job.end_step = end_column(column, lowest, frame.shape[-1])
            if column >= job.end_step:
                job.ended_at_eos = True
                self._finish(row)
                return False
        if row.steps >= job.max_new_tokens:
            self._finish(row)
            return False
        return True

    @torch.inference_mode()  # closing the hole writes the cache, whose tensors are inference tensors once grown
    def _drop_cancelled(self) -> None:
        for row in [r for r in self.rows if r.job.cancel is not None and r.job.cancel.is_set()]:
            row.job.cancelled = True
            self._finish(row)
            self._remove(row)

    @torch.inference_mode()
    def _step(self) -> None:
        if self.inject_fault is not None:
            fault, self.inject_fault = self.inject_fault, None
            raise fault
        if self.static is not None:
            self._fast_step()
            return
        rows = self.rows
        n = len(rows)
        lengths = [r.length for r in rows]
        self.cache.ensure(max(lengths) + 1)
        chosen, failed = self._eager_step(lengths)
        frames = chosen.to("cpu", copy=True)  # the one host sync
        self.steps += 1
        self.batch_sizes.append(n)
        if self.on_step is not None:
            self.on_step(n)
        finished = []
        at_eos = (frames == self.stream_eos).any(dim=1).tolist()  # once for the batch, not per row
        for i, row in enumerate(rows):
            if i in failed:
                continue
            row.length += 1
            if not self._take(row, frames[i], at_eos[i]):
                finished.append(row)
        for i in failed:
            self._finish(rows[i], error=MemoryError(f"out of accelerator memory even alone (context {rows[i].length} "
                                                    "tokens); shorten the text or the reference audio"))
        for row in finished + [rows[i] for i in failed]:
            self._remove(row)

    def _fast_step(self) -> None:
        """One fast-path step, overlapped with the host: launch the next step before handling this one's frames."""
        if self._flight is None:  # the first step of a run (or after a pause): nothing is in flight yet
            self._flight = self._launch()
        current = self._flight
        # every row of the step in flight is due to end by max_new_tokens: nothing further is worth launching
        ahead = any(r.steps + r.pending < r.job.max_new_tokens for r in self.rows)
        self._flight = self._launch() if ahead else None
        if ahead:
            self.launched_ahead += 1
        self._land(current)

    def _launch(self) -> _Flight:
        """Launch a fast step for every active row; its frames are copied to the host without waiting."""
        rows = list(self.rows)
        lengths = [r.length + r.pending for r in rows]  # the positions filled on the device
        self.cache.ensure(max(lengths) + 1)
        try:
            chosen = self.static.step(len(rows), lengths)
        except CaptureFailed as exc:
            if is_fatal_device_error(exc):
                raise
            self._serve_without_graphs(exc)
            chosen = self.static.step(len(rows), lengths)
        # copied now, before anything is launched after it: a replayed graph writes its next frames in place
        host = self._host_frames[self._next_buffer][: len(rows)]
        self._next_buffer ^= 1
        host.copy_(chosen, non_blocking=True)
        ready = None
        if chosen.device.type == "cuda":
            ready = torch.cuda.Event()
            ready.record()
        for row in rows:
            row.pending += 1
        return _Flight(rows=rows, frames=host, ready=ready)

    def _serve_without_graphs(self, exc: CaptureFailed) -> None:
        """A graph that cannot be captured would fail every request the same way: run the fast path's fixed shapes
        (the computation the self-check compared) without graphs from now on, slower but serving, and say so."""
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        self.graph_failure = first[:300]  # shown on /health: one line; the whole error is in the log
        self.static.drop_graphs()
        log.error("serving without CUDA graphs from now on (the fast path's batched steps, launched one kernel at "
                  "a time): %s", exc, exc_info=exc)

    def _land(self, flight: _Flight) -> None:
        """Hand a launched step's frames to its rows that are still active; finished rows leave."""
        if flight.ready is not None:
            flight.ready.synchronize()
        frames = flight.frames.clone()  # its buffer takes a later step's frames; the jobs keep these
        n = len(flight.rows)
        self.steps += 1
        self.batch_sizes.append(n)
        if self.on_step is not None:
            self.on_step(n)
        at_eos = (frames == self.stream_eos).any(dim=1).tolist()  # once for the batch, not per row
        active = set(self.rows)
        finished = []
        for i, row in enumerate(flight.rows):
            row.pending -= 1
            if row not in active:  # ended (or cancelled) after this step was launched
                self.dropped_rows += 1
                continue
            row.length += 1
            if not self._take(row, frames[i], at_eos[i]):
                finished.append(row)
        for row in finished:
            self._remove(row)

    def _eager_step(self, lengths: list[int]) -> tuple[torch.Tensor, list[int]]:
        """The decode step on the batch's own shapes: forward (split on out-of-memory), then the frame choice."""
        n = len(lengths)
        logits = torch.zeros((n, self.num_codebooks * self.codebook_size), device=self.device)
        failed: list[int] = []
        size = min(n, self.split or n)
        for a in range(0, n, size):
            self._forward_or_split(a, min(n, a + size), lengths, logits, failed)
        if self.split and self.steps - self._split_since > 200:
            self.split = 0  # memory pressure was transient: try full batches again
        chosen, new = choose_frames(logits, self.state.view(0, n), self.stream_bos, self.stream_eos,
                                    self.state.candidates(n), branch_free=self.device.type != "cpu")
        self.state.commit(0, n, new)
        self.frames_in[:n] = chosen
        self.positions[:n] += 1
        return chosen, failed

    def _forward_or_split(self, a: int, b: int, lengths: list[int], logits: torch.Tensor, failed: list[int]) -> None:
        """Run rows ``a:b``; on out-of-memory retry them in halves, and give up only on a single row."""
        try:
            logits[a:b] = eager_logits(self.model, self.cache, self.frames_in, self.positions, lengths, a, b,
                                       self._forward)
        except torch.OutOfMemoryError:
            self.oom_events += 1
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if b - a == 1:
                log.error("out of memory decoding one request alone; failing it")
                failed.append(a)
                return
            half = (b - a + 1) // 2
            self.split = half
            self._split_since = self.steps
            log.warning("out of memory with %d rows; retrying in batches of %d", b - a, half)
            self._forward_or_split(a, a + half, lengths, logits, failed)
            self._forward_or_split(a + half, b, lengths, logits, failed)

    def _decode_forward(self, frames: torch.Tensor, position_ids: torch.Tensor,
                        mask: torch.Tensor | None) -> torch.Tensor:
        """One audio decode step for the active rows: the model's own layers over the slot cache."""
        return decode_forward(self.model, self.cache, frames, position_ids, mask)

    def _remove(self, row: _Row) -> None:
        index = self.rows.index(row)
        last = len(self.rows) - 1
        if index != last:
            moved = self.rows[last]
            self.cache.move(last, index, moved.length + moved.pending)  # with what a step in flight writes
            self.state.move(last, index)
            self.frames_in[index] = self.frames_in[last]
            self.positions[index] = self.positions[last]
            self.rows[index] = moved
        self.rows.pop()
        self.positions[last] = 0  # a free slot: the fast path's padding rows write there, harmlessly
        needed = max((r.length + r.pending + 1 for r in self.rows), default=0)
        if self.cache.shrink(needed):
            log.info("slot cache shrank to %d positions a row (%.0f MiB)", self.cache.capacity,
                     self.cache.bytes / 2**20)

    def _finish(self, row: _Row, error: BaseException | None = None) -> None:
        job = row.job
        job.error = error
        job.finished_s = time.perf_counter() - job.started
        job.done.set()

    def _fail(self, job: Job, error: BaseException) -> None:
        job.error = error
        job.done.set()
