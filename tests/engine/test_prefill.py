"""Prefill in pieces: the same keys, values and logits as the model's own forward, and decoding goes on meanwhile."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from higgs_worker.engine import Prompt
from higgs_worker.engine.prefill import PiecewisePrefill
from higgs_worker.engine.prompt import AudioTurn, model_inputs
from higgs_worker.engine.scheduler import Job, Scheduler


def voiced_inputs(engine, frames=120, seed=0):
    """A prompt with a reference voice turn of ``frames`` random codes: a long prompt, as real voices make."""
    codes = torch.randint(0, 1024, (frames, engine.num_codebooks), generator=torch.Generator().manual_seed(seed))
    prompt = Prompt(text="Speak in the reference voice.", turns=[AudioTurn(text="A reference line.", codes=codes)])
    return model_inputs(engine.processor, prompt)


def test_pieces_give_the_models_own_prefill(engine):
    inputs = voiced_inputs(engine)
    assert "audio_input_ids" in inputs
    with torch.inference_mode():
        cache = DynamicCache(config=engine.model.config)
        want = engine.model(**inputs, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    fill = PiecewisePrefill(engine.model, inputs)
    steps = 0
    while not fill.finished:
        fill.advance(1)
        steps += 1
    assert steps == engine.model.config.num_hidden_layers and fill.tokens == inputs["input_ids"].shape[1]
    assert torch.allclose(fill.logits(), want, atol=1e-5, rtol=0)
    for mine, theirs in zip(fill.cache.layers, cache.layers, strict=True):
        assert torch.allclose(mine.keys, theirs.keys, atol=1e-6) and torch.allclose(mine.values, theirs.values, atol=1e-6)


def test_a_long_prompt_joins_over_several_steps_while_others_keep_decoding(engine):
    short = model_inputs(engine.processor, Prompt(text="Already speaking."))
    long = voiced_inputs(engine, frames=200, seed=1)

    def job(inputs, frames):
        return Job(inputs=inputs, temperature=0.0, top_k=50, top_p=1.0, ras_win_len=0, ras_max_repeat=2,
                   max_new_tokens=frames, seed=0, stop_at_eos=False)

    alone = Scheduler(engine.model, max_batch=4)
    try:
        want_first = alone.submit(job(short, 40))
        want_first.done.wait(60)
        want_second = alone.submit(job(long, 10))
        want_second.done.wait(60)
    finally:
        alone.close()

    # a budget of 8 tokens per layer between steps: the long prompt takes one layer per step
    scheduler = Scheduler(engine.model, max_batch=4, prefill_chunk_tokens=8)
    filling_steps = []
    scheduler.on_step = lambda n: filling_steps.append(scheduler._filling is not None)
    second: list[Job] = []

    def on_frame(frame):
        if len(first.frames) == 5:
            second.append(scheduler.submit(job(long, 10)))

    try:
        first = job(short, 40)
        first.on_frame = on_frame
        scheduler.submit(first)
        assert first.done.wait(60) and second and second[0].done.wait(60)
    finally:
        scheduler.close()
    assert first.error is None and second[0].error is None
    assert sum(filling_steps) >= engine.model.config.num_hidden_layers - 1  # decode steps ran during its prefill
    assert torch.equal(torch.stack(first.frames), torch.stack(want_first.frames))
    assert torch.equal(torch.stack(second[0].frames), torch.stack(want_second.frames))


def test_a_request_cancelled_during_its_prefill_ends_cancelled(engine):
    import threading

    short = model_inputs(engine.processor, Prompt(text="Already speaking."))
    long = voiced_inputs(engine, frames=200, seed=2)
    scheduler = Scheduler(engine.model, max_batch=4, prefill_chunk_tokens=1)
    cancel = threading.Event()
    doomed = Job(inputs=long, temperature=0.0, top_k=50, top_p=1.0, ras_win_len=0, ras_max_repeat=2,
                 max_new_tokens=10, seed=0, cancel=cancel)

    def on_step(n):
        if scheduler._filling is not None and scheduler._filling[0] is doomed:
            cancel.set()

    scheduler.on_step = on_step
    try:
        runner = scheduler.submit(Job(inputs=short, temperature=0.0, top_k=50, top_p=1.0, ras_win_len=0,
                                      ras_max_repeat=2, max_new_tokens=30, seed=0, stop_at_eos=False))
        while not runner.frames:
            runner.done.wait(0.01)
        scheduler.submit(doomed)
        assert doomed.done.wait(60) and runner.done.wait(60)
    finally:
        scheduler.close()
    assert doomed.cancelled and not doomed.frames and runner.error is None and len(runner.frames) == 30
