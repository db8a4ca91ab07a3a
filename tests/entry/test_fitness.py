"""Fitness checks (GPU, model folders, one short generation) and ``higgs-worker check``, which runs them anywhere.

The RunPod SDK running them before the first job is in ``test_runpod_worker.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from higgs_worker.fitness import FitnessError, check_generation, check_gpu, check_model_folders, run_check
from higgs_worker.core.settings import get_settings


@pytest.fixture()
def model_copy(tmp_path, tiny_model_dir):
    """A copy of the tiny model that a test may break."""
    shutil.copytree(tiny_model_dir / "model", tmp_path / "model")
    shutil.copytree(tiny_model_dir / "tokenizer", tmp_path / "tokenizer")
    return tmp_path


def settings_for(env, folder, **more):
    env(MODEL_PATH=str(folder / "model"), TOKENIZER_PATH=str(folder / "tokenizer"), **more)
    return get_settings()


def test_complete_folders_pass(env, model_copy):
    assert check_model_folders(settings_for(env, model_copy)) == "MODEL_PATH complete, TOKENIZER_PATH complete"


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda d: (d / "model" / "model.safetensors").unlink(), "MODEL_PATH {d}/model has no weights"),
    (lambda d: (d / "tokenizer" / "config.json").unlink(), "TOKENIZER_PATH {d}/tokenizer lacks config.json"),
    (lambda d: (d / "model" / "config.json").write_text("{"), "MODEL_PATH {d}/model config.json is unreadable"),
    (lambda d: shutil.rmtree(d / "tokenizer"), "TOKENIZER_PATH {d}/tokenizer does not exist"),
    (lambda d: (d / "model" / ".model.safetensors.part").write_bytes(b"x"), "interrupted download"),
])
def test_broken_folders_fail_naming_the_folder_and_the_fault(env, model_copy, damage, expected):
    damage(model_copy)
    with pytest.raises(FitnessError) as info:
        check_model_folders(settings_for(env, model_copy))
    assert expected.format(d=model_copy) in str(info.value)


def test_a_sharded_model_needs_every_shard_its_index_names(env, model_copy):
    model = model_copy / "model"
    (model / "model.safetensors").rename(model / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(FitnessError, match="lacks weight shard.s. model-00002-of-00002.safetensors"):
        check_model_folders(settings_for(env, model_copy))


def test_a_folder_smaller_than_its_completion_marker_fails(env, model_copy):
    tokenizer = model_copy / "tokenizer"
    files = [p for p in tokenizer.iterdir() if p.is_file()]
    marker = {"repo_id": "x/y", "revision": "main", "files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    (tokenizer / ".higgs-complete.json").write_text(json.dumps(marker))
    settings = settings_for(env, model_copy)
    check_model_folders(settings)  # as fetched: fine
    weights = tokenizer / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # cut short after the fetch
    with pytest.raises(FitnessError, match="where its completion marker records"):
        check_model_folders(settings)


def test_gpu_check_on_a_host_without_a_gpu(env, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this host has a GPU")
    env(DEVICE="cpu")
    assert check_gpu(get_settings()) == "skipped: DEVICE=cpu"
    env(DEVICE="cuda")
    with pytest.raises(FitnessError, match="DEVICE=cuda but torch sees no CUDA device"):
        check_gpu(get_settings())
    env(DEVICE="auto")
    monkeypatch.setattr("higgs_worker.fitness._nvidia_smi_sees_a_gpu", lambda: False)
    assert "runs on the CPU" in check_gpu(get_settings())
    monkeypatch.setattr("higgs_worker.fitness._nvidia_smi_sees_a_gpu", lambda: True)
    with pytest.raises(FitnessError, match="nvidia-smi lists a GPU but torch cannot use it"):
        check_gpu(get_settings())


def test_generation_check_runs_the_model_and_reports_a_load_failure(service, env, model_copy):
    assert "frames" in check_generation(service) and "s of audio" in check_generation(service)

    from higgs_worker.engine import EngineHolder, ModelLoadError
    from higgs_worker.speech.service import SpeechService

    def broken():
        raise ModelLoadError("MODEL_PATH folder /nowhere does not exist")

    outcome = run_check("generation", lambda: check_generation(SpeechService(get_settings(), EngineHolder(broken))))
    assert not outcome.ok and "the model does not load: ModelLoadError: MODEL_PATH folder /nowhere" in outcome.detail


def run_cli_check(model_dir, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "AWS_", "HIGGS_DEMO"))}
    env.update({"MODEL_PATH": str(model_dir / "model"), "TOKENIZER_PATH": str(model_dir / "tokenizer"),
                "LOG_DIR": str(tmp_path / "logs"), "VOLUME_ROOT": str(tmp_path / "vol"), "DEVICE": "cpu",
                "AUTO_FETCH_MODELS": "false", "PYTHONUNBUFFERED": "1"})
    return subprocess.run([sys.executable, "-m", "higgs_worker.cli", "check", "--json"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_check_command_passes_on_a_working_host(model_copy, tmp_path):
    out = run_cli_check(model_copy, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)  # stdout is the report alone: log lines go to stderr and server.log
    assert [(r["check"], r["ok"]) for r in report] == [("gpu", True), ("model_folders", True), ("generation", True)]
    assert report[0]["detail"] == "skipped: DEVICE=cpu"


def test_check_command_fails_a_broken_model_folder(model_copy, tmp_path):
    (model_copy / "model" / "model.safetensors").unlink()
    out = run_cli_check(model_copy, tmp_path)
    assert out.returncode == 1
    report = {r["check"]: r for r in json.loads(out.stdout)}
    assert not report["model_folders"]["ok"] and "has no weights" in report["model_folders"]["detail"]
    assert not report["generation"]["ok"] and "the model does not load" in report["generation"]["detail"]
    log = (tmp_path / "logs" / "server.log").read_text()
    assert "fitness check model_folders failed: MODEL_PATH" in log
