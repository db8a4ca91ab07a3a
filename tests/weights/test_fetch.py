"""The model store against a local hub endpoint serving the tiny model over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fake_hub import FakeHub
from higgs_worker.weights.folders import MARKER
from higgs_worker.weights.fetch import RepoSpec, fetch_repo
from servers import wait_until

MODEL_REPO, CODEC_REPO = "test-org/tiny-higgs", "test-org/tiny-higgs-tokenizer"


def fetch_env(hub, volume):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(volume / "hf-home"),
                "MODEL_REPO": MODEL_REPO, "TOKENIZER_REPO": CODEC_REPO, "VOLUME_ROOT": str(volume), "ASR": "off",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1", "PYTHONUNBUFFERED": "1"})
    return env


def fetch_proc(hub, volume, *args):
    return subprocess.Popen([sys.executable, "-m", "higgs_worker.cli", "fetch-models", *args],
                            env=fetch_env(hub, volume), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def repos(tiny_model_dir):
    return {MODEL_REPO: tiny_model_dir / "model", CODEC_REPO: tiny_model_dir / "tokenizer"}


def test_two_processes_download_each_file_once(tiny_model_dir, tmp_path):
    with FakeHub(repos(tiny_model_dir), chunk=256 * 1024, delay=0.01) as hub:
        procs = [fetch_proc(hub, tmp_path) for _ in range(2)]
        outs = [p.communicate(timeout=300)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        files = {f"{MODEL_REPO}/{e['path']}" for e in hub.tree(MODEL_REPO)} | {
            f"{CODEC_REPO}/{e['path']}" for e in hub.tree(CODEC_REPO)}
        assert set(hub.gets) == files
        assert all(n == 1 for n in hub.gets.values()), hub.gets
    model_dir = tmp_path / "models" / "tiny-higgs"
    marker = json.loads((model_dir / MARKER).read_text())
    assert marker["commit"] == hub.commits[MODEL_REPO] and marker["repo_id"] == MODEL_REPO
    assert (model_dir / "model.safetensors").read_bytes() == (tiny_model_dir / "model/model.safetensors").read_bytes()


def test_offline_after_the_marker(tiny_model_dir, tmp_path):
    with FakeHub(repos(tiny_model_dir)) as hub:
        env = fetch_env(hub, tmp_path)
        assert subprocess.run([sys.executable, "-m", "higgs_worker.cli", "fetch-models"], env=env,
                              capture_output=True, timeout=300).returncode == 0
        first = sum(hub.gets.values())
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens: a network call would fail
    again = subprocess.run([sys.executable, "-m", "higgs_worker.cli", "fetch-models"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert first > 0


def test_fetch_killed_half_way_resumes(tiny_model_dir, tmp_path):
    # A 24 MB weights file of random bytes (fetching never loads it), served slowly enough to be caught half-way.
    big_repo = tmp_path / "big-repo"
    big_repo.mkdir()
    (big_repo / "config.json").write_text("{}")
    payload = os.urandom(24 * 1024 * 1024)
    (big_repo / "model.safetensors").write_bytes(payload)
    big = f"{MODEL_REPO}/model.safetensors"
    volume = tmp_path / "volume"
    with FakeHub({MODEL_REPO: big_repo, CODEC_REPO: tiny_model_dir / "tokenizer"}, chunk=256 * 1024,
                 delay=0.02) as hub:
        proc = fetch_proc(hub, volume)
        part = volume / "models" / "tiny-higgs" / ".model.safetensors.part"

        def partial():
            if proc.poll() is not None:
                pytest.fail(f"the fetch ended before it could be interrupted:\n{proc.stdout.read()}")
            return part.exists() and part.stat().st_size >= 4 * 1024 * 1024

        wait_until(partial, 120, "a partial download")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        hub.delay = 0
        resumed = fetch_proc(hub, volume)
        out = resumed.communicate(timeout=300)[0]
        assert resumed.returncode == 0, out
        assert hub.ranged[big] == 1  # the second run asked only for the rest of the file
    assert (volume / "models" / "tiny-higgs" / "model.safetensors").read_bytes() == payload


def test_corrupted_file_is_detected_and_fetched_again(tiny_model_dir, tmp_path, monkeypatch):
    with FakeHub(repos(tiny_model_dir)) as hub:
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        spec = RepoSpec(MODEL_REPO, "main", tmp_path / "m")
        fetch_repo(spec, endpoint=hub.url)
        weights = spec.local_dir / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[1000] ^= 0xFF  # same size, different bytes: only the sha256 can tell
        weights.write_bytes(bytes(data))
        before = hub.gets[f"{MODEL_REPO}/model.safetensors"]
        marker = fetch_repo(spec, endpoint=hub.url, force_verify=True)
        assert marker["repaired"] == ["model.safetensors"] and marker["downloaded_bytes"] == len(data)
        assert hub.gets[f"{MODEL_REPO}/model.safetensors"] == before + 1
    assert weights.read_bytes() == (tiny_model_dir / "model/model.safetensors").read_bytes()


def test_fetched_model_loads_through_the_engine(tiny_model_dir, tmp_path, monkeypatch):
    from higgs_worker.engine import load_model

    with FakeHub(repos(tiny_model_dir)) as hub:
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        model, codec = RepoSpec(MODEL_REPO, "main", tmp_path / "m"), RepoSpec(CODEC_REPO, "main", tmp_path / "t")
        fetch_repo(model, endpoint=hub.url)
        fetch_repo(codec, endpoint=hub.url)
    started = time.perf_counter()
    loaded = load_model(model.local_dir, codec.local_dir, "cpu", "float32")
    assert loaded.sample_rate == 24000 and time.perf_counter() - started < 120
