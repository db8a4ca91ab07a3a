"""The Whisper repo through the model store, against a local hub endpoint, as for the TTS model; ASR=auto|on|off."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fake_hub import FakeHub
from higgs_worker.speech.recognition import build_recognizer
from higgs_worker.weights import policy
from higgs_worker.weights.folders import MARKER
from higgs_worker.weights.fetch import asr_spec, specs
from higgs_worker.core.settings import DEFAULT_ASR_REVISION, Settings

MODEL_REPO, CODEC_REPO, ASR_REPO = "test-org/tiny-higgs", "test-org/tiny-higgs-tokenizer", "test-org/tiny-whisper"


def hub_repos(tiny_model_dir):
    return {MODEL_REPO: tiny_model_dir / "model", CODEC_REPO: tiny_model_dir / "tokenizer",
            ASR_REPO: tiny_model_dir / "asr"}


def child_env(hub, volume, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ASR"))}
    env.update({"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(volume / "hf-home"),
                "HF_HUB_DISABLE_PROGRESS_BARS": "1", "MODEL_REPO": MODEL_REPO, "TOKENIZER_REPO": CODEC_REPO,
                "ASR_REPO": ASR_REPO, "VOLUME_ROOT": str(volume), "LOG_DIR": str(volume / "logs"),
                "PYTHONUNBUFFERED": "1", **extra})
    return env


def fetch_models(hub, volume, **extra):
    return subprocess.run([sys.executable, "-m", "higgs_worker.cli", "fetch-models"], check=False,
                          env=child_env(hub, volume, **extra), capture_output=True, text=True, timeout=300)


def asr_files(hub):
    return {f"{ASR_REPO}/{e['path']}" for e in hub.tree(ASR_REPO)}


def test_fetch_models_with_asr_on_fetches_whisper_verified_and_loadable(tiny_model_dir, tmp_path):
    with FakeHub(hub_repos(tiny_model_dir)) as hub:
        done = fetch_models(hub, tmp_path, ASR="on")
        assert done.returncode == 0, done.stdout + done.stderr
        assert asr_files(hub) <= set(hub.gets) and all(hub.gets[f] == 1 for f in asr_files(hub))
    folder = tmp_path / "models" / "tiny-whisper"
    marker = json.loads((folder / MARKER).read_text())
    assert marker["repo_id"] == ASR_REPO and marker["commit"] == hub.commits[ASR_REPO]
    assert marker["revision"] == DEFAULT_ASR_REVISION  # the pinned revision is what was asked for
    for name in ("model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (folder / name).read_bytes() == (tiny_model_dir / "asr" / name).read_bytes()
    assert any(m["repo_id"] == ASR_REPO for m in json.loads(done.stdout))

    import numpy as np

    from higgs_worker.asr.loader import load_asr
    from higgs_worker.asr.recognizer import Recognizer

    with Recognizer(load_asr(folder, "cpu")) as rec:
        transcript = rec.transcribe(np.random.default_rng(0).standard_normal(24000).astype(np.float32) * 0.1, "en")
    assert transcript.text and transcript.words


def test_fetch_models_with_asr_off_leaves_whisper_alone(tiny_model_dir, tmp_path):
    with FakeHub(hub_repos(tiny_model_dir)) as hub:
        done = fetch_models(hub, tmp_path, ASR="off")
        assert done.returncode == 0, done.stdout + done.stderr
        assert not asr_files(hub) & set(hub.gets)
        assert hub.gets  # the TTS repos were fetched
    assert not (tmp_path / "models" / "tiny-whisper").exists()


def test_build_recognizer_fetches_an_empty_asr_path_then_loads_it(tiny_model_dir, tmp_path):
    script = ("from higgs_worker.speech.recognition import build_recognizer\n"
              "from higgs_worker.core.settings import get_settings\n"
              "import numpy as np\n"
              "rec = build_recognizer(get_settings())\n"
              "t = rec.transcribe(np.zeros(24000, np.float32) + 0.01, 'en')\n"
              "print('OK', rec.batch_window_s, rec.max_batch_size, bool(t.text))\n"
              "rec.close()\n")
    with FakeHub(hub_repos(tiny_model_dir)) as hub:
        done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300,
                              env=child_env(hub, tmp_path, ASR="on", ASR_BATCH_WINDOW_MS="20",
                                            ASR_MAX_BATCH_SIZE="4", DEVICE="cpu"))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "OK 0.02 4 True" in done.stdout
        assert asr_files(hub) <= set(hub.gets)
        assert not {f for f in hub.gets if not f.startswith(ASR_REPO)}  # only Whisper: the TTS repos are not its job
    assert (tmp_path / "models" / "tiny-whisper" / MARKER).is_file()


def test_a_failed_fetch_is_a_load_error_naming_the_repo(tmp_path):
    from higgs_worker.asr.loader import ASRLoadError

    # conftest points HF_ENDPOINT at a closed local port: the fetch fails without leaving the machine
    settings = Settings(volume_root=tmp_path, log_dir=tmp_path / "logs", asr="on", asr_repo=ASR_REPO)
    with pytest.raises(ASRLoadError, match=f"fetching {ASR_REPO}@{DEFAULT_ASR_REVISION} failed"):
        build_recognizer(settings)
    with pytest.raises(ASRLoadError, match="ASR_PATH folder .* does not exist"):  # a failed fetch leaves no folder
        build_recognizer(settings.model_copy(update={"auto_fetch_models": False}))
    off = Settings(volume_root=tmp_path / "other", log_dir=tmp_path / "logs", asr="on", asr_repo=ASR_REPO,
                   auto_fetch_models=False)
    with pytest.raises(ASRLoadError, match="ASR_PATH folder .* does not exist"):
        build_recognizer(off)


def settings_for(tmp_path, **values):
    return Settings(volume_root=tmp_path, log_dir=tmp_path / "logs", **values)


def test_asr_path_defaults_follow_the_repo_name_and_demo_mode(tmp_path):
    s = settings_for(tmp_path)
    assert s.asr == "auto" and s.asr_repo == "openai/whisper-large-v3-turbo"
    assert s.asr_path == tmp_path / "models" / "whisper-large-v3-turbo"
    assert asr_spec(s).local_dir == s.asr_path and asr_spec(s).revision == DEFAULT_ASR_REVISION
    demo = settings_for(tmp_path, higgs_demo=True, demo_dir=tmp_path / "demo")
    assert demo.asr_path == tmp_path / "demo" / "asr"
    assert settings_for(tmp_path, asr_path=tmp_path / "mine").asr_path == tmp_path / "mine"


@pytest.mark.parametrize("mode, gpu, fetched", [
    ("auto", True, True), ("auto", False, False), ("on", False, True), ("on", True, True),
    ("off", True, False), ("off", False, False),
])
def test_which_repos_the_store_fetches(tmp_path, monkeypatch, mode, gpu, fetched):
    monkeypatch.setattr(policy, "gpu_present", lambda: gpu)
    repos = [spec.repo_id for spec in specs(settings_for(tmp_path, asr=mode))]
    assert repos[:2] == ["bosonai/higgs-audio-v2-generation-3B-base", "bosonai/higgs-audio-v2-tokenizer"]
    assert ("openai/whisper-large-v3-turbo" in repos) is fetched
    # demo mode never fetches: it writes its own tiny Whisper
    assert len(specs(settings_for(tmp_path, asr=mode, higgs_demo=True, demo_dir=tmp_path / "d"))) == 2


def test_when_the_service_should_load_a_recognizer(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setattr(policy, "gpu_present", lambda: False)
    assert not policy.asr_load_wanted(settings_for(tmp_path, asr="auto"))  # a laptop: nothing fetched, nothing loaded
    assert policy.asr_load_wanted(settings_for(tmp_path, asr="auto"), gpu=True)  # a GPU worker fetches and loads
    assert not policy.asr_load_wanted(settings_for(tmp_path, asr="auto", auto_fetch_models=False), gpu=True)
    assert policy.asr_load_wanted(settings_for(tmp_path, asr="on"))
    ready = settings_for(tmp_path, asr="auto", asr_path=tiny_model_dir / "asr")
    assert policy.asr_load_wanted(ready)  # a folder holding a model is used
    assert not policy.asr_load_wanted(settings_for(tmp_path, asr="off", asr_path=tiny_model_dir / "asr"))
