"""scripts/gpu-check.sh, the one command of the GPU machine, run whole on the CPU with the tiny config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from conftest import REPO

PATHS = ("plain", "eager", "fast")


def gpu_check(args: list[str], out, script=REPO / "scripts" / "gpu-check.sh") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OUT"] = str(out)
    return subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=300)


def test_gpu_check_runs_whole_on_the_cpu_and_writes_every_figure(tmp_path):
    proc = gpu_check(["--tiny"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "results-gpu.json").read_text())
    assert result["complete"] and result["errors"] == [] and result["skipped"] == []
    assert result["dtype"] == "float32" and result["config"] == "tiny" and result["device"].startswith("cpu")
    for key in ("date", "torch", "transformers", "python", "command", "parameters"):
        assert result[key], key
    assert result["paths"] == list(PATHS) and result["batches"] == [1, 4]

    check = result["check"]  # float32 on the CPU: the fast path must match exactly
    for key in ("greedy_alone_equal", "greedy_batch_equal", "greedy_fast_alone_vs_batch_equal",
                "sampled_alone_vs_batch_equal", "sampled_fast_vs_eager_equal", "passed"):
        assert check[key] is True, (key, check["differences"])
    assert check["greedy_equal_frame_fraction"] == 1.0 and check["sampled_equal_frame_fraction"] == 1.0
    assert check["differences"] == [] and check["batch"] == 8 and check["frames"] > 0
    exact = result["check_float32"]  # the fixed shapes a GPU captures, run eagerly, with a cache that grows
    assert exact["passed"] is True and exact["differences"] == [], exact
    assert exact["greedy_equal_frame_fraction"] == 1.0 and exact["sampled_equal_frame_fraction"] == 1.0
    for part in (check, exact):  # the worker's own decode self-check (DECODE_PATH=auto), on the bench's models
        selfcheck = part["selfcheck"]
        assert selfcheck["passed"] and selfcheck["max_rel"] <= selfcheck["tolerance"] == 1e-5, selfcheck
        assert [b["rows"] for b in selfcheck["batches"]] == [1, 6] and selfcheck["seconds"] > 0

    assert [run["batch"] for run in result["runs"]] == [1, 4]
    for run in result["runs"]:
        for path in PATHS:
            assert run[f"{path}_frames_per_s"] > 0 and run[f"{path}_rtf"] > 0, (path, run)
            if path != "plain":  # decoding alone, without the prompts prefilled one by one before it
                assert run[f"{path}_decode_frames_per_s"] > 0, (path, run)
        assert run["fast_captures_during_timing"] == 0  # no graphs on the CPU, and none due in timing anyway

    ttfa = result["ttfa"]
    assert ttfa["streams"] == 16 and ttfa["prompt_tokens"] == 64
    for path in ("eager", "fast"):
        assert 0 < ttfa[path]["p50_s"] <= ttfa[path]["p95_s"] <= ttfa[path]["max_s"], (path, ttfa)

    assert result["batch1_bound_frames_per_s"] > 0 and result["copy_bandwidth_gb_s"] > 0
    assert set(result["batch1_fraction_of_bound"]) == set(PATHS)
    assert all(v > 0 for v in result["batch1_fraction_of_bound"].values())
    assert set(result["batch4_over_batch1"]) == set(PATHS)

    bench = json.loads((tmp_path / "bench.json").read_text())  # `higgs-worker bench`, what users run
    assert bench["errors"] == [] and bench["skipped"] == [] and bench["model"] == "tiny random model"
    assert [run["batch"] for run in bench["runs"]] == [1, 4] and bench["ttfa"]["streams"] == 4
    assert all(run["eager_frames_per_s"] > 0 and run["fast_frames_per_s"] > 0 for run in bench["runs"])
    assert bench["self_check"]["passed"]

    log = (tmp_path / "gpu-check.log").read_text()
    assert "plain fr/s" in log and "first frame, 16 streams at once, fast" in log
    assert "check (" in log and "passed True" in log
    assert "decode self-check (float32): passed" in log and "check float32: decode self-check passed" in log
    assert "higgs-worker bench: tiny random model on cpu" in log and "| 4 | " in log
    assert "done: exit 0" in log


def test_gpu_check_fails_loudly_without_carried_wheels(tmp_path):
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    script = shutil.copy(REPO / "scripts" / "gpu-check.sh", tree / "scripts" / "gpu-check.sh")
    proc = gpu_check([], tmp_path / "out", script=script)
    assert proc.returncode == 1 and "FAILED: no wheels in .whl/" in proc.stdout, proc.stdout + proc.stderr
    assert "no wheels in .whl/" in (tmp_path / "out" / "gpu-check.log").read_text()
    assert gpu_check(["--frobnicate"], tmp_path / "out", script=script).returncode == 2
