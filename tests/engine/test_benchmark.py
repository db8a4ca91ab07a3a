"""The self-benchmark: ``higgs-worker bench`` (a table and JSON), its time budget, and ``SELF_BENCH=1`` at start."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from higgs_worker.engine import benchmark


def bench(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "HIGGS_DEMO"))}
    return subprocess.run([sys.executable, "-m", "higgs_worker.cli", "bench", "--tiny", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_bench_tiny_prints_the_table_then_the_json(tmp_path):
    out = bench("--batches", "1,4", "--streams", "4", "--frames", "12", "--out", str(tmp_path / "bench.json"))
    assert out.returncode == 0, out.stderr[-3000:]
    table, _, text = out.stdout.partition("\n{")
    results = json.loads("{" + text)
    assert json.loads((tmp_path / "bench.json").read_text()) == results
    assert results["model"] == "tiny random model" and results["dtype"] == "float32"
    assert results["errors"] == [] and results["skipped"] == [] and results["seconds"] <= results["budget_s"]
    assert [run["batch"] for run in results["runs"]] == [1, 4]
    for run in results["runs"]:
        for path in ("eager", "fast"):
            assert run[f"{path}_frames_per_s"] > 0 and run[f"{path}_decode_frames_per_s"] > 0, run
        assert run["fast_over_eager"] > 0 and run["fast_captures_during_timing"] == 0
    ttfa = results["ttfa"]
    assert ttfa["streams"] == 4 and all(0 < ttfa[p]["p50_s"] <= ttfa[p]["p95_s"] for p in ("eager", "fast"))
    assert results["self_check"]["passed"] and results["self_check"]["max_rel"] < 1e-5
    assert results["batch1_bound_frames_per_s"] > 0 and set(results["batch1_fraction_of_bound"]) == {"eager", "fast"}
    lines = table.splitlines()
    assert lines[0].startswith("higgs-worker bench: tiny random model on cpu")
    assert "| batch | eager frames/s | fast frames/s | fast / eager | eager decode-only | fast decode-only |" in lines
    assert any(line.startswith("| 4 | ") for line in lines)
    assert any(line.startswith("time to first audio, 4 streams at once, fast: p50 ") for line in lines)
    assert any(line.startswith("batch-1 bound: ") for line in lines)
    assert any(line.startswith("decode self-check: passed") for line in lines)


def test_bench_skips_what_would_start_past_its_budget():
    out = bench("--budget", "0", "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout)  # --json: the JSON alone
    assert results["runs"] == [] and results["ttfa"] is None and results["self_check"] is None
    assert results["skipped"] == ["batch 1 eager", "batch 1 fast", "self-check", "batch 8 eager", "batch 8 fast",
                                  "ttfa 16 eager", "ttfa 16 fast", "batch 32 eager", "batch 32 fast"]


def test_self_bench_at_start_logs_its_table(env, monkeypatch, caplog):
    from higgs_worker.core.settings import get_settings
    from higgs_worker.speech.service import engine_factory

    real = benchmark.self_bench
    monkeypatch.setattr(benchmark, "self_bench", lambda model, **kw: real(
        model, **{**kw, "batches": (1,), "streams": 2, "frames": 6, "self_check": False}))
    env(SELF_BENCH="true", DEVICE="cpu", WARMUP="false")
    with caplog.at_level(logging.INFO, logger="higgs_worker.engine.benchmark"):
        engine = engine_factory(get_settings())()
    engine.close()
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("self-benchmark (SELF_BENCH=1)")]
    assert len(logged) == 1 and "| 1 | " in logged[0] and "time to first audio, 2 streams at once" in logged[0]


def test_the_random_model_keeps_float32_rotary_frequencies_as_loaded_weights_do():
    import torch

    model, _ = benchmark.build_model(True, torch.device("cpu"), torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.model.rotary_emb.inv_freq.dtype == torch.float32  # bf16 positions would blur past a few hundred
