"""Fitness checks (GPU, model folders, one short generation, the decode path, the spoken canary) and
``higgs-worker check``, which runs them anywhere.

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

from higgs_worker.fitness import (
    CANARY_TEXT,
    FitnessError,
    canary_wanted,
    check_canary,
    check_decode_path,
    check_generation,
    check_gpu,
    check_model_folders,
    run_check,
)
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


def run_cli_check(model_dir, tmp_path, **more: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "AWS_", "HIGGS_DEMO"))}
    env.update({"MODEL_PATH": str(model_dir / "model"), "TOKENIZER_PATH": str(model_dir / "tokenizer"),
                "LOG_DIR": str(tmp_path / "logs"), "VOLUME_ROOT": str(tmp_path / "vol"), "DEVICE": "cpu",
                "AUTO_FETCH_MODELS": "false", "PYTHONUNBUFFERED": "1", **more})
    return subprocess.run([sys.executable, "-m", "higgs_worker.cli", "check", "--json"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_check_command_passes_on_a_working_host(model_copy, tmp_path):
    out = run_cli_check(model_copy, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)  # stdout is the report alone: log lines go to stderr and server.log
    assert [(r["check"], r["ok"]) for r in report] == [("gpu", True), ("model_folders", True), ("generation", True),
                                                       ("decode_path", True), ("canary", True)]
    assert report[0]["detail"] == "skipped: DEVICE=cpu"
    decode = report[3]
    assert decode["facts"] == {"path": "eager", "setting": "auto", "reason": decode["facts"]["reason"],
                               "self_check": None, "graph_failure": None}
    assert decode["detail"] == f"eager: {decode['facts']['reason']}" and "off a GPU" in decode["detail"]
    assert report[4]["detail"] == "skipped: no speech recognizer (ASR=off, or no model in ASR_PATH; FITNESS_CANARY=auto)"
    log = (tmp_path / "logs" / "server.log").read_text()
    assert "fitness check decode_path passed: eager: DECODE_PATH=auto off a GPU" in log
    assert "fitness check canary passed: skipped: no speech recognizer" in log


def test_check_command_fails_a_broken_model_folder(model_copy, tmp_path):
    (model_copy / "model" / "model.safetensors").unlink()
    out = run_cli_check(model_copy, tmp_path)
    assert out.returncode == 1
    report = {r["check"]: r for r in json.loads(out.stdout)}
    assert not report["model_folders"]["ok"] and "has no weights" in report["model_folders"]["detail"]
    assert not report["generation"]["ok"] and "the model does not load" in report["generation"]["detail"]
    log = (tmp_path / "logs" / "server.log").read_text()
    assert "fitness check model_folders failed: MODEL_PATH" in log


# -- the spoken canary ------------------------------------------------------------------------------------------

class Hears:
    """A recognizer stand-in: hears ``texts`` in turn (the last one again and again), counting what it was given."""

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)
        self.heard: list[int] = []  # samples of each waveform it was given

    def transcribe(self, wave, language=None, *, sample_rate=24000):
        from types import SimpleNamespace

        self.heard.append(len(wave))
        return SimpleNamespace(text=self.texts[min(len(self.heard), len(self.texts)) - 1], words=())


@pytest.fixture()
def canary_service(env, engine, voices_dir, monkeypatch):
    """A service on the tiny model with the canary on and a recognizer stand-in (set ``.hears``)."""
    from higgs_worker.engine import EngineHolder
    from higgs_worker.speech.service import SpeechService

    env(VOICES_DIR=str(voices_dir), ASR="on", FITNESS_CANARY="on", VERIFY_MAX_ATTEMPTS="3")
    stand_in = {"hears": Hears(CANARY_TEXT)}
    monkeypatch.setattr("higgs_worker.speech.service.build_recognizer",
                        lambda settings, metrics=None: stand_in["hears"])
    service = SpeechService(get_settings(), EngineHolder(lambda: engine))
    service.stand_in = stand_in
    return service


def test_a_canary_heard_saying_its_sentence_passes(canary_service, engine):
    engine.canary = None
    detail, facts = check_canary(get_settings(), canary_service)
    assert detail.startswith(f"asked for {CANARY_TEXT!r} in the model's own voice, heard {CANARY_TEXT!r} "
                             "(word error rate 0.00, 1 attempt(s), ")
    assert facts["passed"] and facts["wer"] == 0 and facts["attempts"] == 1 and facts["heard"] == CANARY_TEXT
    assert facts["seconds"] > 0 and facts["audio_s"] > 0 and facts["max_wer"] == 0.4
    assert engine.canary == facts  # what /health shows
    assert len(canary_service.stand_in["hears"].heard) == 1 and canary_service.stand_in["hears"].heard[0] > 0


def test_a_canary_heard_saying_nothing_fails_after_retries_naming_what_was_heard(canary_service, engine):
    canary_service.stand_in["hears"] = hears = Hears("")
    outcome = run_check("canary", lambda: check_canary(get_settings(), canary_service))
    assert not outcome.ok
    assert outcome.detail.startswith(f"the spoken canary failed: asked for {CANARY_TEXT!r} in the model's own "
                                     "voice, heard ''; best of 3 seed(s): word error rate 1.00 is over 0.40")
    assert "FITNESS_CANARY_MAX_WER=0.4" in outcome.detail and "mis-loaded codec" in outcome.detail
    assert len(hears.heard) == 3  # the usual retries, with other seeds
    assert engine.canary["passed"] is False and engine.canary["attempts"] == 3


def test_a_canary_that_passes_on_a_later_seed_passes_with_the_pinned_voice(canary_service, voices_dir):
    for ext in (".wav", ".txt"):  # the pinned preset, installed (a fixture voice under its name)
        (voices_dir / f"en_woman{ext}").write_bytes((voices_dir / f"alto{ext}").read_bytes())
    canary_service.stand_in["hears"] = Hears("the morning brain", CANARY_TEXT.upper())
    detail, facts = check_canary(get_settings(), canary_service)
    assert facts["voice"] == "en_woman" and facts["attempts"] == 2 and facts["passed"] and facts["wer"] == 0
    assert "in en_woman voice" in detail


def test_when_the_canary_runs(env, tmp_path):
    env(FITNESS_CANARY="auto", ASR="on")
    assert canary_wanted(get_settings()) == (False, "a tiny random model, which says nothing (FITNESS_CANARY=auto)")
    env(MODEL_PATH=str(tmp_path / "real" / "model"))  # no tiny marker beside it
    assert canary_wanted(get_settings()) == (True, "a speech recognizer is configured (FITNESS_CANARY=auto)")
    env(ASR="off")
    assert canary_wanted(get_settings())[0] is False
    assert check_canary(get_settings(), None).startswith("skipped: no speech recognizer")
    env(FITNESS_CANARY="on")
    with pytest.raises(FitnessError, match="FITNESS_CANARY=on but there is no speech recognizer"):
        check_canary(get_settings(), None)
    env(FITNESS_CANARY="off", ASR="on")
    assert canary_wanted(get_settings()) == (False, "FITNESS_CANARY=off")
    env(FITNESS_CANARY="auto", HIGGS_DEMO="true", DEMO_DIR=str(tmp_path / "demo"))
    assert canary_wanted(get_settings())[1].startswith("demo mode")


def test_the_decode_path_check_reports_the_choice(service, monkeypatch):
    detail, facts = check_decode_path(service)
    assert facts["path"] == "eager" and detail == f"eager: {facts['reason']}" and facts["graph_failure"] is None
    # what serving found since the choice: a graph that could not be captured
    monkeypatch.setattr(service.engine.scheduler, "graph_failure", "capturing the decode graph failed: nope")
    detail, facts = check_decode_path(service)
    assert detail.endswith("; serving without CUDA graphs: capturing the decode graph failed: nope")
    assert facts["graph_failure"] == "capturing the decode graph failed: nope"


def test_check_command_fails_a_model_the_real_tiny_whisper_cannot_hear(model_copy, tiny_model_dir, tmp_path):
    out = run_cli_check(model_copy, tmp_path, FITNESS_CANARY="on", ASR_PATH=str(tiny_model_dir / "asr"),
                        VERIFY_MAX_ATTEMPTS="2")
    assert out.returncode == 1, out.stderr[-3000:]
    report = {r["check"]: r for r in json.loads(out.stdout)}
    assert all(report[name]["ok"] for name in ("gpu", "model_folders", "generation", "decode_path"))
    canary = report["canary"]
    assert not canary["ok"] and canary["detail"].startswith(f"the spoken canary failed: asked for {CANARY_TEXT!r}")
    heard = canary["detail"].split(", heard ", 1)[1].split("; best of 2 seed(s)", 1)[0]
    assert heard.startswith("'") and heard.endswith("'") and heard != repr(CANARY_TEXT)  # the random Whisper's
    log = (tmp_path / "logs" / "server.log").read_text()
    assert f"fitness check canary failed: the spoken canary failed: asked for {CANARY_TEXT!r}" in log


def test_the_runpod_worker_ends_when_the_canary_is_not_heard(model_copy, tiny_model_dir, tmp_path):
    from fake_runpod import unfit_worker_exit_code

    env = {"MODEL_PATH": str(model_copy / "model"), "TOKENIZER_PATH": str(model_copy / "tokenizer"),
           "LOG_DIR": str(tmp_path / "logs"), "VOLUME_ROOT": str(tmp_path / "vol"), "DEVICE": "cpu",
           "AUTO_FETCH_MODELS": "false", "FITNESS_CANARY": "on", "ASR_PATH": str(tiny_model_dir / "asr"),
           "VERIFY_MAX_ATTEMPTS": "1"}
    assert unfit_worker_exit_code(env, tmp_path, timeout=240) != 0
    log = (tmp_path / "logs" / "server.log").read_text()
    assert f"fitness check canary failed: the spoken canary failed: asked for {CANARY_TEXT!r}" in log
    assert "fitness check decode_path passed: eager" in log
