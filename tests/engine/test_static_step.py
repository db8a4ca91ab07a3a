"""The fast decode step (fixed shapes, bucketed batches) against the eager step and ``model.generate``."""

from __future__ import annotations

import threading

import pytest
import torch

from higgs_worker.engine import Prompt
from higgs_worker.engine.prompt import model_inputs
from higgs_worker.engine.scheduler import Job, Scheduler
from higgs_worker.engine.static_step import BATCH_BUCKETS, bucket_for, decode_and_choose, span_for

TEXTS = [f"Request number {i}, with a few words of its own." for i in range(16)]


def job(inputs, seed=0, temperature=0.0, frames=24, top_k=50, top_p=0.95, ras=0):
    return Job(inputs=inputs, temperature=temperature, top_k=top_k, top_p=top_p, ras_win_len=ras, ras_max_repeat=2,
               max_new_tokens=frames, seed=seed, stop_at_eos=False)


def run(scheduler, jobs):
    for j in jobs:
        scheduler.submit(j)
    for j in jobs:
        assert j.done.wait(120)
        assert j.error is None, j.error
    return [torch.stack(j.frames) for j in jobs]


@pytest.fixture(scope="module")
def inputs(engine):
    return [model_inputs(engine.processor, Prompt(text=t)) for t in TEXTS]


@pytest.fixture(scope="module")
def schedulers(engine):
    made = {"eager": Scheduler(engine.model, max_batch=16), "fast": Scheduler(engine.model, max_batch=16, fast=True),
            "fixed": Scheduler(engine.model, max_batch=16, fast=True)}
    made["fixed"].static.fixed_shapes = True  # what a GPU captures, run eagerly: bucketed span, mask, full ranking
    yield made
    for s in made.values():
        s.close()


def test_buckets_and_spans():
    assert [bucket_for(n) for n in (1, 2, 3, 5, 8, 9, 17, 33, 64, 65)] == [1, 2, 4, 8, 8, 16, 32, 64, 64, 128]
    assert BATCH_BUCKETS == (1, 2, 4, 8, 16, 32, 64)
    assert [span_for(m, 4096) for m in (0, 127, 128, 300, 4000)] == [128, 128, 256, 512, 4096]
    assert span_for(1000, 512) == 512  # never past the cache


@pytest.mark.parametrize("path", ["fast", "fixed"])
def test_greedy_fast_path_equals_generate_alone(engine, inputs, schedulers, path):
    with torch.inference_mode():
        out = engine.model.generate(**inputs[0], do_sample=False, max_new_tokens=24, eos_token_id=None,
                                    return_dict_in_generate=True)
    reference = out.audio_sequences[0]
    fast = run(schedulers[path], [job(inputs[0])])[0]
    assert torch.equal(fast, reference[: fast.shape[0]].to(fast.dtype)) and fast.shape[0] == 24


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 8, 13])
def test_greedy_fast_path_equals_eager_in_every_bucket(inputs, schedulers, batch):
    # 3, 5 and 13 rows pad up to buckets of 4, 8 and 16: the padding rows must change nothing
    eager = run(schedulers["eager"], [job(inputs[i]) for i in range(batch)])
    for path in ("fast", "fixed"):
        fast = run(schedulers[path], [job(inputs[i]) for i in range(batch)])
        for a, b in zip(eager, fast, strict=True):
            assert torch.equal(a, b), path


def test_seeded_sampling_same_across_buckets_neighbours_and_paths(inputs, schedulers):
    def sampled(i, seed):
        return job(inputs[i], seed=seed, temperature=0.9, top_k=40, top_p=0.9, ras=7)

    alone = run(schedulers["fast"], [sampled(0, 11)])[0]
    among_four = run(schedulers["fast"], [sampled(0, 11)] + [sampled(i, 50 + i) for i in range(1, 4)])[0]
    among_eleven = run(schedulers["fast"], [sampled(i, 60 + i) for i in range(1, 6)] + [sampled(0, 11)]
                       + [sampled(i, 70 + i) for i in range(6, 11)])[5]
    eager = run(schedulers["eager"], [sampled(0, 11), sampled(2, 5)])[0]
    fixed = run(schedulers["fixed"], [sampled(3, 1), sampled(0, 11), sampled(2, 5)])[1]
    assert torch.equal(alone, among_four) and torch.equal(alone, among_eleven) and torch.equal(alone, eager)
    assert torch.equal(alone, fixed)
    other_seed = run(schedulers["fast"], [sampled(0, 12)])[0]
    assert not torch.equal(alone, other_seed)


def test_fast_path_survives_the_cache_growing_mid_request(engine, inputs):
    small = {"eager": Scheduler(engine.model, max_batch=4, capacity=8),
             "fast": Scheduler(engine.model, max_batch=4, capacity=8, fast=True)}
    small["fast"].static.fixed_shapes = True
    try:
        eager = run(small["eager"], [job(inputs[i], frames=40) for i in range(3)])
        fast = run(small["fast"], [job(inputs[i], frames=40) for i in range(3)])
        assert small["fast"].cache.peak > 8  # it grew mid-request (and may have shrunk back once idle)
    finally:
        for s in small.values():
            s.close()
    for a, b in zip(eager, fast, strict=True):
        assert torch.equal(a, b)


def test_the_static_step_compiles_as_one_graph(engine, inputs):
    """``fullgraph=True`` fails on any graph break: no data-dependent branch, no host sync in the step."""
    scheduler = Scheduler(engine.model, max_batch=4, fast=True)
    try:
        run(scheduler, [job(inputs[i], seed=i, temperature=0.8, top_k=40, top_p=0.9, ras=7, frames=6)
                        for i in range(3)])  # leave real state in the slots
        scheduler.close()  # its thread may still be tidying the slots after the last job ended: let it finish
        s = scheduler.static
        rows, span = 4, span_for(int(scheduler.positions.max()), scheduler.cache.capacity)
        # the step writes the cache at each row's position: run both on copies of the same state
        keys = [k.clone() for k in scheduler.cache.keys]
        values = [v.clone() for v in scheduler.cache.values]

        def step(keys, values):
            return decode_and_choose(engine.model, keys, values, s.frames_in, s.positions, s.state.view(0, rows),
                                     rows, span, 64, s.stream_bos, s.stream_eos)

        with torch.inference_mode():
            want_frames, want_state = step(keys, values)
            torch._dynamo.reset()
            compiled = torch.compile(step, fullgraph=True, backend="eager")
            got_frames, got_state = compiled([k.clone() for k in keys], [v.clone() for v in values])
        assert torch.equal(got_frames, want_frames)
        assert torch.equal(got_state.history, want_state.history) and torch.equal(got_state.eos, want_state.eos)
    finally:
        scheduler.close()
        torch._dynamo.reset()


def test_decode_path_setting_builds_the_fast_engine_with_the_same_speech(tiny_model_dir, tmp_path, engine):
    from higgs_worker.engine import Sampling
    from higgs_worker.speech.service import engine_factory
    from higgs_worker.core.settings import Settings

    settings = Settings(model_path=tiny_model_dir / "model", tokenizer_path=tiny_model_dir / "tokenizer",
                        device="cpu", warmup=False, decode_path="fast", volume_root=tmp_path / "vol")
    fast = engine_factory(settings)()
    try:
        assert fast.scheduler.static is not None and engine.scheduler.static is None  # auto: eager off a GPU
        sampling = Sampling(temperature=0.7, max_new_tokens=30)
        prompt = Prompt(text="The same speech on either path.")
        assert torch.equal(fast.generate(prompt, sampling, seed=5).codes, engine.generate(prompt, sampling, seed=5).codes)
    finally:
        fast.close()
    with pytest.raises(ValueError, match="decode_path"):
        Settings(decode_path="graphs")


@pytest.mark.parametrize("fast", [False, True])
def test_cancelling_a_row_after_the_cache_grew_leaves_the_others_running(engine, inputs, fast):
    """The grown cache's tensors are inference tensors: closing the cancelled row's hole must still work."""
    scheduler = Scheduler(engine.model, max_batch=4, capacity=8, fast=fast)
    cancel = threading.Event()
    try:
        doomed = job(inputs[0], frames=60)
        doomed.cancel = cancel
        doomed.on_frame = lambda frame: cancel.set() if len(doomed.frames) == 3 else None
        other = job(inputs[1], frames=30)
        seen: list[int] = []
        other.on_frame = lambda frame: seen.append(scheduler.cache.capacity)
        scheduler.submit(doomed)
        scheduler.submit(other)
        assert doomed.done.wait(60) and other.done.wait(60)
    finally:
        scheduler.close()
    assert max(seen) > 8 and doomed.cancelled  # it grew while the rows ran...
    assert scheduler.cache.capacity == 8  # ...and was given back once they had gone
    assert other.error is None and len(other.frames) == 30


def test_a_failed_step_frees_its_slots_so_padding_rows_stay_inside_a_shrunk_cache(engine, inputs):
    """A step that raises (out of memory, say) fails its rows; their slots must be free as ``_remove`` leaves them,
    at position 0, or the fixed-shape path's padding rows later write at a stale position past a cache that shrank
    (an index out of bounds: on CUDA a device-side assert that ends the process)."""
    scheduler = Scheduler(engine.model, max_batch=4, capacity=16, fast=True)
    scheduler.static.fixed_shapes = True  # what a GPU runs: every bucket row, padding included, writes its slot
    try:
        long = [job(inputs[i], seed=i, frames=60) for i in range(4)]
        started = [threading.Event() for _ in long]
        for j, seen in zip(long, started):
            j.on_frame = lambda frame, j=j, seen=seen: seen.set() if len(j.frames) >= 25 else None
            scheduler.submit(j)
        assert all(seen.wait(60) for seen in started)
        scheduler.inject_fault = RuntimeError("a step that failed, not the device")
        assert all(j.done.wait(60) for j in long) and all(j.error is not None for j in long)
        assert scheduler.positions.tolist() == [0] * len(scheduler.positions)
        assert scheduler.cache.capacity == 16  # grown for the long rows, given back with them
        frames = run(scheduler, [job(inputs[6 + i], seed=i, frames=5) for i in range(3)])  # padded to bucket 4
    finally:
        scheduler.close()
    assert [len(f) for f in frames] == [5, 5, 5]


class ReplayedOnTheCpu:
    """Stands in for ``torch.cuda.CUDAGraph`` on the CPU: replay recomputes the captured step and writes the
    results into the tensors the capture returned, as a graph replay does, so the scheduler must read them there."""

    def __init__(self, fn):
        self.fn = fn
        self.outputs = fn()
        self.replays = 0

    def replay(self):
        frames, new = self.fn()
        self.outputs[0].copy_(frames)
        for name in ("step", "bos", "eos", "last_delay", "history", "seen"):
            getattr(self.outputs[1], name).copy_(getattr(new, name))
        self.replays += 1


def test_the_graph_path_replays_captured_steps_and_captures_again_when_the_cache_grows(engine, inputs, monkeypatch):
    from higgs_worker.engine.static_step import StaticStep

    graphs: list[ReplayedOnTheCpu] = []

    def capture(self, key, fn):
        graph = ReplayedOnTheCpu(fn)
        graphs.append(graph)
        self.captures += 1
        return graph, graph.outputs

    monkeypatch.setattr(StaticStep, "_capture", capture)
    eager = Scheduler(engine.model, max_batch=4, capacity=8)
    replayed = Scheduler(engine.model, max_batch=4, capacity=8, fast=True, graphs=True)
    try:
        assert replayed.static.fixed_shapes and replayed.static.branch_free
        sampled = dict(temperature=0.9, top_k=40, top_p=0.9, ras=7)
        want = run(eager, [job(inputs[i], seed=i, frames=40 - 5 * i, **sampled) for i in range(3)])
        got = run(replayed, [job(inputs[i], seed=i, frames=40 - 5 * i, **sampled) for i in range(3)])
        captures_before_growth = replayed.static.captures
        # greedy for the long run: a sampled one may part ways where a draw falls within rounding of a boundary,
        # as the padded, masked attention of the fixed shapes rounds differently from the exact span
        longer = run(replayed, [job(inputs[0], seed=0, frames=200, ras=7)])[0]
        alone = run(eager, [job(inputs[0], seed=0, frames=200, ras=7)])[0]
    finally:
        eager.close()
        replayed.close()
    for a, b in zip(want, got, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(longer, alone), (longer != alone).any(-1).nonzero().flatten().tolist()[:5]
    assert sum(g.replays for g in graphs) > 100  # the steps really came from replays
    assert replayed.static.captures > captures_before_growth  # a longer context and a grown cache: new shapes


def test_graphs_are_captured_again_after_a_grow_and_shrink_back_to_the_same_capacity(engine, monkeypatch):
    """Graphs hold the addresses of the cache's tensors: a grow then a shrink between two steps leaves the capacity
    as it was but the tensors new (Python may even give them the old ids), so the graphs must go."""
    from higgs_worker.engine.scheduler import SlotCache
    from higgs_worker.engine.static_step import StaticStep

    cache = SlotCache(layers=1, rows=2, kv_heads=1, head_dim=4, capacity=8, dtype=torch.float32,
                      device=torch.device("cpu"))
    step = StaticStep.__new__(StaticStep)  # only the capture bookkeeping: no model behind it
    step.cache = cache
    step._forget_graphs()
    captured: list[torch.Tensor] = []  # the tensor each "graph" reads, fixed at capture as a graph's addresses are

    class Graph:
        def __init__(self, read: torch.Tensor) -> None:
            self.read, self.out = read, read.sum().reshape(1)

        def replay(self) -> None:
            self.out.copy_(self.read.sum().reshape(1))

    def capture(self, key, fn):
        captured.append(cache.keys[0])
        graph = Graph(cache.keys[0])
        return graph, graph.out

    monkeypatch.setattr(StaticStep, "_capture", capture)
    step._replay(("k",), None)
    step._replay(("k",), None)
    assert len(captured) == 1  # replayed, not captured again
    cache.ensure(40)
    step._replay(("k",), None)
    assert len(captured) == 2 and cache.capacity == 64  # grown: captured again
    assert cache.shrink(0) and cache.capacity == 8
    cache.keys[0].fill_(1.0)  # the new tensors' contents
    assert step._replay(("k",), None).item() == 2 * 8 * 4  # read from the tensors of now, not the freed ones
    assert len(captured) == 3


@pytest.mark.parametrize("failure", ["unsupported", "fatal", "memory"])
def test_a_graph_that_cannot_be_captured(engine, inputs, monkeypatch, failure):
    """An op the capture refuses would fail every request alike: the scheduler serves on without graphs, same
    frames, and says why. A fatal device error ends the device; running out of memory fails only that step."""
    from higgs_worker.engine.static_step import StaticStep

    errors = {"unsupported": RuntimeError("operation not permitted when stream is capturing\n"
                                          "Exception raised from capture_end at /build/torch/CUDAGraph.cpp:42"),
              "fatal": RuntimeError("CUDA error: an illegal memory access was encountered"),
              "memory": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")}

    def capture(self, key, fn):
        raise errors[failure]

    monkeypatch.setattr(StaticStep, "_capture", capture)
    fixed = Scheduler(engine.model, max_batch=4, capacity=8, fast=True)
    fixed.static.fixed_shapes = True
    refused = Scheduler(engine.model, max_batch=4, capacity=8, fast=True, graphs=True)
    try:
        want = run(fixed, [job(inputs[i], seed=i, frames=12) for i in range(3)])
        jobs = [job(inputs[i], seed=i, frames=12) for i in range(3)]
        for j in jobs:
            refused.submit(j)
        assert all(j.done.wait(60) for j in jobs)
        if failure == "unsupported":
            assert [j.error for j in jobs] == [None] * 3
            for a, b in zip(want, [torch.stack(j.frames) for j in jobs], strict=True):
                assert torch.equal(a, b)
            assert not refused.static.graphs and refused.fault is None
            assert "operation not permitted when stream is capturing" in refused.graph_failure
            assert "\n" not in refused.graph_failure and "/build/" not in refused.graph_failure  # one line shown
            assert len(run(refused, [job(inputs[4], frames=5)])[0]) == 5  # and it goes on serving
        elif failure == "fatal":
            assert all(j.error is not None for j in jobs) and refused.fault is not None
            assert refused.graph_failure is None
        else:
            assert all(isinstance(j.error, torch.OutOfMemoryError) for j in jobs) and refused.fault is None
            assert refused.static.graphs and refused.graph_failure is None  # the next step captures again
    finally:
        fixed.close()
        refused.close()


def test_the_next_step_is_launched_before_a_steps_frames_are_handled(engine, inputs):
    """The host overlaps the device: when a decode step's frame reaches its request, the next step is already
    launched (but for the last, which no row needs)."""
    scheduler = Scheduler(engine.model, max_batch=4, fast=True)
    launches: list[int] = []
    real_step = scheduler.static.step

    def counting(n, lengths):
        launches.append(n)
        return real_step(n, lengths)

    scheduler.static.step = counting
    one = job(inputs[0], frames=12)
    seen: list[tuple[int, int]] = []  # (frames the request has, steps launched) as each frame arrives
    one.on_frame = lambda frame: seen.append((len(one.frames), len(launches)))
    try:
        run(scheduler, [one])
    finally:
        scheduler.close()
    # frame 1 comes from the prefill; frame k >= 2 from step k - 1, handled once step k is launched
    assert seen == [(1, 0)] + [(k, k) for k in range(2, 12)] + [(12, 11)]
    assert scheduler.launched_ahead == 10 and scheduler.dropped_rows == 0


def test_overlapped_steps_keep_every_rows_codes_through_joins_cancels_and_a_growing_cache(engine, inputs):
    """Rows join, leave and are cancelled while a step is in flight, the cache grows under it: each request's
    seeded frames stay those it makes alone on the eager path."""
    sampled = dict(temperature=0.9, top_k=40, top_p=0.9, ras=7)
    lengths = (30, 12, 40, 20)
    eager = Scheduler(engine.model, max_batch=4, capacity=8)
    fast = Scheduler(engine.model, max_batch=4, capacity=8, fast=True)
    try:
        alone = [run(eager, [job(inputs[i], seed=i, frames=n, **sampled)])[0] for i, n in enumerate(lengths)]
        cancel = threading.Event()
        jobs = [job(inputs[i], seed=i, frames=n, **sampled) for i, n in enumerate(lengths)]
        doomed = job(inputs[5], seed=5, frames=60, **sampled)
        doomed.cancel = cancel
        first, late = jobs[0], jobs[3]

        seen: list[int] = []

        def on_frame(frame):
            seen.append(fast.cache.capacity)
            if len(first.frames) == 6:
                fast.submit(late)  # waits for a slot: joins when the 12-frame request leaves, a step in flight
            if len(first.frames) == 16:
                cancel.set()  # leaves while a step is in flight

        first.on_frame = on_frame
        for j in jobs[:3] + [doomed]:
            fast.submit(j)
        for j in jobs + [doomed]:
            assert j.done.wait(120) and j.error is None, j.error
    finally:
        eager.close()
        fast.close()
    for got, want in zip(jobs, alone, strict=True):
        assert torch.equal(torch.stack(got.frames), want)
    assert doomed.cancelled and 16 <= len(doomed.frames) < 60
    assert max(seen) > 8 and fast.cache.capacity == 8  # grown while they ran (steps in flight), then given back
    assert fast.launched_ahead > 30 and fast.dropped_rows >= 2
