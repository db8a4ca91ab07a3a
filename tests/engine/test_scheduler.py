"""The batching scheduler against the reference ``model.generate`` on the tiny model."""

from __future__ import annotations

import threading

import pytest
import torch

from higgs_worker.engine import Cancelled, Prompt, Sampling
from higgs_worker.engine.codes import generated_codes
from higgs_worker.engine.prompt import model_inputs

GREEDY = Sampling(temperature=0.0, ras_win_len=0, max_new_tokens=40)
SAMPLED = Sampling(temperature=1.0, top_p=0.9, top_k=40, max_new_tokens=40)
TEXTS = ["The first request.", "Another one, longer than the first by a bit.", "Third.",
         "Number four is here.", "Five.", "Six sentences? No, one.", "Seventh request text.", "Eight!"]


def reference_codes(engine, prompt: Prompt, max_new_tokens: int) -> torch.Tensor:
    inputs = model_inputs(engine.processor, prompt)
    with torch.inference_mode():
        out = engine.model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens,
                                    return_dict_in_generate=True)
    start = inputs["audio_input_ids"].shape[1] if "audio_input_ids" in inputs else 0
    return generated_codes(out.audio_sequences[0, start:])


def run_together(engine, prompts, sampling, seeds):
    jobs = [engine.start(p, sampling, s) for p, s in zip(prompts, seeds, strict=True)]
    return [engine.finish(j).codes for j in jobs]


def test_greedy_equals_generate_alone_and_beside_seven_others(engine):
    prompts = [Prompt(text=t) for t in TEXTS]
    expected = [reference_codes(engine, p, GREEDY.max_new_tokens) for p in prompts]
    alone = engine.generate(prompts[1], GREEDY, seed=0).codes
    assert torch.equal(alone, expected[1]) and alone.shape[0] > 0
    engine.scheduler.batch_sizes.clear()
    together = run_together(engine, prompts, GREEDY, [0] * 8)
    assert max(engine.scheduler.batch_sizes) > 1  # they really shared decode steps
    for got, want in zip(together, expected, strict=True):
        assert torch.equal(got, want)


def test_seeded_sampling_same_alone_and_in_a_batch(engine):
    prompts = [Prompt(text=t) for t in TEXTS]
    alone = [engine.generate(p, SAMPLED, seed=100 + i).codes for i, p in enumerate(prompts)]
    together = run_together(engine, prompts, SAMPLED, [100 + i for i in range(8)])
    for a, b in zip(alone, together, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(alone[0], engine.generate(prompts[0], SAMPLED, seed=999).codes)


def test_joining_and_cancelling_mid_batch_leave_others_unchanged(engine):
    prompts = [Prompt(text=t) for t in TEXTS[:4]]
    long = Sampling(temperature=1.0, top_p=0.95, top_k=50, max_new_tokens=60)
    alone = [engine.generate(p, long, seed=7 + i).codes for i, p in enumerate(prompts)]

    joined: list = []
    cancel = threading.Event()
    seen = {"n": 0}

    def on_frame(frame):
        seen["n"] += 1
        if seen["n"] == 5:  # mid-batch: a newcomer joins and a neighbour is cancelled
            joined.append(engine.start(prompts[3], long, seed=10))
            cancel.set()

    first = engine.start(prompts[0], long, seed=7, on_frame=on_frame)
    second = engine.start(prompts[1], long, seed=8)
    doomed = engine.start(prompts[2], long, seed=9, cancel=cancel)
    assert torch.equal(engine.finish(first).codes, alone[0])
    assert torch.equal(engine.finish(second).codes, alone[1])
    assert torch.equal(engine.finish(joined[0]).codes, alone[3])
    with pytest.raises(Cancelled):
        engine.finish(doomed)
    assert len(doomed.frames) < 60


def test_time_to_first_frame_is_reported(engine):
    job = engine.start(Prompt(text="Timing."), SAMPLED, seed=1)
    result = engine.finish(job)
    assert result.first_frame_s is not None and 0 < result.first_frame_s <= result.seconds


def test_gpu_bench_script_runs_on_a_tiny_config(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import REPO

    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_bench.py"), "--tiny", "--device", "cpu",
                           "--frames", "24", "--batches", "1,4", "--ttfa-streams", "4", "--ttfa-frames", "4",
                           "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["complete"] and result["errors"] == [] and "check" not in result  # the check only with --check
    assert result["dtype"] == "float32" and result["torch"] and result["transformers"] and result["device"]
    assert [r["batch"] for r in result["runs"]] == [1, 4]
    for path in ("plain", "eager", "fast"):
        assert all(r[f"{path}_frames_per_s"] > 0 and r[f"{path}_rtf"] > 0 for r in result["runs"]), path
        assert result["batch1_fraction_of_bound"][path] > 0
    assert result["batch1_bound_frames_per_s"] > 0
    assert result["ttfa"]["streams"] == 4 and 0 < result["ttfa"]["fast"]["p50_s"] <= result["ttfa"]["fast"]["p95_s"]


def test_a_long_prompt_grows_the_slot_cache_only_while_it_runs(tiny_model_dir):
    """One long prompt doubles every row's slot; once it has gone the cache goes back to its initial size, and the
    short requests beside it keep their codes."""
    from higgs_worker.engine import Engine, load_model

    engine = Engine(load_model(tiny_model_dir / "model", tiny_model_dir / "tokenizer", "cpu", "float32"),
                    max_batch_size=4, cache_capacity=256)
    try:
        cache = engine.scheduler.cache
        small = cache.bytes
        short = Sampling(temperature=0.0, ras_win_len=0, max_new_tokens=40, stop_at_eos=False)
        alone = engine.generate(Prompt(text="Short."), short, seed=1).codes
        long_text = " ".join(f"word{i}" for i in range(150))  # about 1,000 byte tokens: four times the slot
        grew: list[int] = []
        watcher = Sampling(temperature=0.0, ras_win_len=0, max_new_tokens=60, stop_at_eos=False)
        job_long = engine.start(Prompt(text=long_text), watcher, 2,
                                on_frame=lambda frame: grew.append(cache.capacity))
        job_short = engine.start(Prompt(text="Short."), short, 1)
        assert torch.equal(engine.finish(job_short).codes, alone)
        engine.finish(job_long)
        assert max(grew) >= 1024  # it grew for the long prompt...
        engine.generate(Prompt(text="Short."), short, seed=1)  # ...and the next rows' removal gives it back
        assert cache.capacity == 256 and cache.bytes == small
    finally:
        engine.close()
