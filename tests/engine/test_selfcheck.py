"""The decode-path self-check (``DECODE_PATH=auto``): the fast step against the eager step, teacher-forced, on the CPU
stand-in for the graph; and the choice of path it makes."""

from __future__ import annotations

import copy
import logging

import httpx
import pytest
import torch

from higgs_worker.engine import static_step
from higgs_worker.engine.selfcheck import (
    BATCHES,
    choose_decode_path,
    run_selfcheck,
    tolerance_for,
    unit_roundoff,
)
from higgs_worker.engine.static_step import StaticStep, _StaticCache

FRAMES = 8  # a few steps are enough on the tiny model; the worker runs 32


@pytest.fixture(scope="module")
def model(engine):
    return engine.model


@pytest.fixture(scope="module")
def model_bf16(model):
    return copy.deepcopy(model).to(torch.bfloat16)


def perturbed(model, scale: float):
    """A copy of ``model`` whose first layer's attention output projection is scaled: a difference on one path."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.model.layers[0].self_attn.o_proj.weight.mul_(scale)
    return other


def test_float32_on_cuda_reads_tf32_from_whichever_api_set_it():
    """torch >= 2.9 raises on its legacy TF32 flags once the new ``fp32_precision`` has been set: the tolerance
    reads the new one, and falls back to the legacy ones only while it is unset."""
    matmul, cuda = torch.backends.cuda.matmul, torch.device("cuda")
    try:
        matmul.fp32_precision = "tf32"
        assert unit_roundoff(torch.float32, cuda) == 2 ** -11
        matmul.fp32_precision = "ieee"
        assert unit_roundoff(torch.float32, cuda) == 2 ** -24
        matmul.fp32_precision = "none"
        assert unit_roundoff(torch.float32, cuda) == 2 ** -24  # the legacy default: highest precision
    finally:
        matmul.fp32_precision = "none"
    assert unit_roundoff(torch.float32, torch.device("cpu")) == 2 ** -24


def test_tolerances_follow_the_dtype_and_depth():
    assert unit_roundoff(torch.bfloat16) == 2 ** -8 and unit_roundoff(torch.float16) == 2 ** -11
    assert tolerance_for(torch.bfloat16, 28) == pytest.approx(2 ** -8 * 140 ** 0.5)  # 0.046: Higgs Audio V2
    assert tolerance_for(torch.float16, 28) == pytest.approx(2 ** -11 * 140 ** 0.5)
    assert tolerance_for(torch.float32, 28) == 1e-5  # the floor
    assert tolerance_for(torch.bfloat16, 2) < tolerance_for(torch.bfloat16, 28)


def test_the_paths_agree_on_the_tiny_model_in_float32(model):
    check = run_selfcheck(model, frames=FRAMES)
    assert check.passed and check.dtype == "float32" and not check.graphs and check.tolerance == 1e-5
    assert [(b.rows, b.bucket, b.frames) for b in check.batches] == [(1, 1, FRAMES), (6, 8, FRAMES)]
    assert check.max_rel < 1e-5 and check.max_abs < 1e-4
    assert all(b.top1_agreement == 1.0 for b in check.batches)
    assert check.seconds > 0 and "passed" in check.summary()


def test_a_perturbed_weight_on_the_fast_path_is_caught_in_float32(model):
    check = run_selfcheck(model, fast_model=perturbed(model, 1.1), frames=FRAMES)
    assert not check.passed, check.summary()
    assert check.max_rel > 100 * check.tolerance and check.max_abs > 0
    assert check.summary().startswith("FAILED") and "OVER the tolerance" in check.summary()


def test_a_nan_on_the_fast_path_fails_and_its_figures_stay_valid_json(model):
    import json

    check = run_selfcheck(model, fast_model=perturbed(model, float("nan")), frames=2)
    assert not check.passed
    figures = json.loads(json.dumps(check.as_dict(), allow_nan=False))  # what /health serves
    assert figures["max_rel"] is None and figures["passed"] is False


def test_bfloat16_paths_agree_within_its_tolerance_and_a_doubled_projection_is_caught(model_bf16):
    check = run_selfcheck(model_bf16, frames=FRAMES)
    assert check.passed and check.dtype == "bfloat16", check.summary()
    assert check.tolerance == pytest.approx(tolerance_for(torch.bfloat16, 2))
    assert 0 < check.max_rel < check.tolerance / 2  # bf16 rounding shows, well within
    caught = run_selfcheck(model_bf16, fast_model=perturbed(model_bf16, 2.0), frames=FRAMES)
    assert not caught.passed, caught.summary()


def masking_the_newest_key(model, keys, values, frames_in, positions, rows, span, masked=True):
    """:func:`static_step.decode_logits` with a bug: each row's mask hides the key it has just written."""
    base = model.model
    pos = positions[:rows]
    hidden = base.embed_audio_tokens(frames_in[:rows, None, :])
    cos_sin = base.rotary_emb(hidden, pos[:, None])
    mask = (torch.arange(span)[None, :] < pos[:, None])[:, None, None, :]
    cache = _StaticCache(keys, values, pos, rows, span)
    for layer in base.layers[: model.config.num_hidden_layers]:
        hidden = layer(hidden, position_embeddings=cos_sin, attention_mask=mask, audio_token_mask=None,
                       position_ids=pos[:, None], cache=cache)
    return model.audio_lm_head(base.norm(hidden)[:, -1]).float()


def test_a_bug_in_the_fast_step_is_caught(model, monkeypatch):
    monkeypatch.setattr(static_step, "decode_logits", masking_the_newest_key)
    check = run_selfcheck(model, frames=FRAMES)
    assert not check.passed and check.max_rel > 100 * check.tolerance, check.summary()


class LogitsGraphOnTheCpu:
    """Stands in for ``torch.cuda.CUDAGraph`` on the CPU: replay recomputes the captured forward into the tensor the
    capture returned, as a replay does, so the check must read each replay's logits before the next one."""

    def __init__(self, fn, stale: bool = False):
        self.fn, self.stale = fn, stale
        self.outputs = fn()
        self.replays = 0

    def replay(self):
        if not self.stale:  # a stale graph replays nothing new: its output keeps what the capture computed
            self.outputs.copy_(self.fn())
        self.replays += 1


@pytest.mark.parametrize("stale", [False, True])
def test_the_graph_path_is_checked_through_replays(model, monkeypatch, stale):
    graphs: list[LogitsGraphOnTheCpu] = []

    def capture(self, key, fn):
        graph = LogitsGraphOnTheCpu(fn, stale)
        graphs.append(graph)
        self.captures += 1
        return graph, graph.outputs

    monkeypatch.setattr(StaticStep, "_capture", capture)
    check = run_selfcheck(model, frames=FRAMES, graphs=True)
    assert check.graphs and len(graphs) == len(BATCHES) and all(g.replays == FRAMES for g in graphs)
    assert check.passed is not stale, check.summary()


def test_auto_is_eager_off_a_gpu_and_explicit_choices_stand(model, caplog):
    with caplog.at_level(logging.INFO, logger="higgs_worker.engine.selfcheck"):
        auto = choose_decode_path("auto", model)
    assert auto.path == "eager" and auto.check is None and "DECODE_PATH=auto off a GPU" in auto.reason
    assert auto.as_dict() == {"path": "eager", "setting": "auto", "reason": auto.reason, "self_check": None}
    assert [r.getMessage() for r in caplog.records] == [f"decode path eager: {auto.reason}"]
    assert choose_decode_path("fast", model).path == "fast" and choose_decode_path("eager", model).path == "eager"
    with pytest.raises(ValueError, match="auto, eager or fast"):
        choose_decode_path("graphs", model)


def test_auto_on_a_gpu_serves_fast_when_the_check_passes_else_eager_saying_why(model, caplog):
    with caplog.at_level(logging.INFO, logger="higgs_worker.engine.selfcheck"):
        good = choose_decode_path("auto", model, gpu=True, frames=FRAMES)
        bad = choose_decode_path("auto", model, gpu=True, frames=FRAMES, fast_model=perturbed(model, 1.1))
    assert good.path == "fast" and good.check.passed and "the self-check passed" in good.reason
    assert good.as_dict()["self_check"]["batches"][1]["bucket"] == 8
    assert bad.path == "eager" and not bad.check.passed
    assert f"differ from the eager path's by up to {bad.check.max_rel:.3g} relative" in bad.reason
    assert f"largest logit difference {bad.check.max_abs:.3g}" in bad.reason and "serving eager" in bad.reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"decode path eager: {bad.reason}"]
    # a small batch limit checks only the buckets it can use
    assert [b.rows for b in choose_decode_path("auto", model, gpu=True, frames=2, max_batch=2).check.batches] == [1, 2]


def test_a_check_that_cannot_run_serves_eager(model):
    def no_prompts():
        raise RuntimeError("CUDA out of memory")

    choice = choose_decode_path("auto", model, gpu=True, prompts=no_prompts)
    assert choice.path == "eager" and choice.check is None
    assert "the self-check could not run (RuntimeError: CUDA out of memory)" in choice.reason


def test_the_engine_serves_the_path_it_chose(tiny_model_dir, engine, monkeypatch):
    from higgs_worker.engine import Engine, load_model
    from higgs_worker.engine import engine as engine_module

    assert engine.decode_choice.path == "eager" and engine.decode_choice.setting == "auto"
    assert engine.scheduler.static is None
    real = engine_module.choose_decode_path
    monkeypatch.setattr(engine_module, "choose_decode_path",
                        lambda setting, model, **kw: real(setting, model, gpu=True, frames=4, **kw))
    checked = Engine(load_model(tiny_model_dir / "model", tiny_model_dir / "tokenizer", "cpu", "float32"))
    try:
        assert checked.decode_choice.path == "fast" and checked.scheduler.static is not None
        check = checked.decode_choice.check
        assert check.passed and [b.rows for b in check.batches] == [1, 6]  # the engine's own prompts, 8 rows max
    finally:
        checked.close()


def test_health_says_auto_resolved_to_eager(tiny_model_dir, tmp_path):
    from servers import Server

    server = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                     "LOG_DIR": str(tmp_path / "logs"), "VOLUME_ROOT": str(tmp_path / "vol"), "DEVICE": "cpu"},
                    tmp_path)
    try:
        server.wait_ready()
        model = httpx.get(f"{server.url}/health", timeout=10).json()["model"]
    finally:
        server.stop()
    assert model["decode"]["path"] == "eager" and model["decode"]["setting"] == "auto"
    assert "DECODE_PATH=auto off a GPU" in model["decode"]["reason"] and model["decode"]["self_check"] is None
    assert model["decode"]["graph_failure"] is None  # no graph was ever captured, none failed
    assert model["canary"] is None  # no fitness checks run in the HTTP server
    assert "decode path eager: DECODE_PATH=auto off a GPU" in (tmp_path / "logs" / "server.log").read_text()
