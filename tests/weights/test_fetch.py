"""The model store against a local hub endpoint serving the tiny model over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
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


# -- progress ----------------------------------------------------------------------------------------------------

def test_a_server_fetching_on_its_first_start_shows_the_download_on_health(tiny_model_dir, tmp_path):
    """The model's weights served slowly: /health carries the download's progress (files, bytes, rate) and it
    grows; once the hub is fast again the model loads and the download is gone from /health."""
    from servers import Server

    with FakeHub(repos(tiny_model_dir), chunk=64 * 1024, delay=0.2) as hub:
        env = {**{k: v for k, v in fetch_env(hub, tmp_path).items() if k.startswith(("HF_", "MODEL_", "TOKENIZER_"))},
               "VOLUME_ROOT": str(tmp_path / "vol"), "ASR": "off", "VOICES_DIR": str(tmp_path / "voices"),
               "LOG_DIR": str(tmp_path / "logs")}
        server = Server(env, tmp_path)
        try:
            def download():
                try:
                    model = httpx.get(f"{server.url}/health", timeout=10).json()["model"]
                except httpx.TransportError:  # not listening yet
                    return None
                assert model["state"] != "failed", model
                d = model.get("download")
                return d if d and d["file"] == "model.safetensors" and 0 < d["file_bytes_done"] else None

            first = wait_until(download, 120, "the weights' download on /health", server.proc)
            assert first["repo"] == MODEL_REPO
            total = sum(e["size"] for e in hub.tree(MODEL_REPO))
            assert first["bytes"] == total and first["files"] == len(hub.tree(MODEL_REPO))
            assert first["file_bytes"] == (tiny_model_dir / "model" / "model.safetensors").stat().st_size
            assert 0 < first["bytes_done"] < total and first["files_done"] < first["files"]
            # speech meanwhile is refused, naming the download and its progress
            busy = httpx.post(f"{server.url}/v1/audio/speech", json={"model": "tts-1", "input": "Hi.",
                                                                       "voice": "default"}, timeout=10)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "5", busy.text
            assert busy.json()["error"]["type"] == "server_error"
            assert re.fullmatch(rf"the model is still downloading \({MODEL_REPO}: \d+ of \d+ files, [\d.]+ [kMG]?B of "
                                rf"[\d.]+ [kMG]?B \(\d+%\), .+, .+\); retry when it is done \(GET /health shows the "
                                r"progress\)", busy.json()["error"]["message"]), busy.json()
            later = wait_until(lambda: (d := download()) and d["bytes_done"] > first["bytes_done"] and d, 120,
                               "the download to move on", server.proc)
            assert later["file_bytes_done"] > first["file_bytes_done"]
            assert later["rate_bytes_s"] is None or later["rate_bytes_s"] > 0
            hub.delay = 0
            server.wait_ready()
            model = httpx.get(f"{server.url}/health", timeout=10).json()["model"]
            assert model["state"] == "ready" and "download" not in model
        finally:
            server.stop()
    # without a terminal, the log says what was fetched, file by file, with the totals
    assert re.search(r"fetched model\.safetensors \(4\.\d MB\); test-org/tiny-higgs: \d+ of \d+ files, .* \(\d+%\)",
                     server.output())


def test_progress_counts_bytes_rate_and_time_left_and_logs_every_few_seconds(caplog):
    from higgs_worker.weights import progress

    now = [100.0]
    p = progress.DownloadProgress("org/repo", files=3, total_bytes=1000, done_bytes=100, files_done=1,
                                  terminal=False, clock=lambda: now[0])
    with caplog.at_level("INFO", logger="higgs_worker.weights.progress"), progress.shown(p):
        p.start_file("big.bin", size=800, have=200)  # resumed: 200 bytes were on disk
        assert progress.current()["bytes_done"] == 300 and progress.current()["rate_bytes_s"] is None
        for _ in range(4):
            now[0] += 1.0
            p.advance(50)  # 50 bytes a second
        snap = progress.current()
        assert snap == {"repo": "org/repo", "file": "big.bin", "file_bytes_done": 400, "file_bytes": 800,
                        "files_done": 1, "files": 3, "bytes_done": 500, "bytes": 1000, "rate_bytes_s": 50,
                        "eta_s": 10.0}
        assert not [r for r in caplog.records if r.getMessage().startswith("fetching")]  # under 5 s: no line yet
        now[0] += progress.LOG_EVERY_S
        p.advance(50)
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fetching")]
        assert lines == ["fetching big.bin: 450 B of 800 B; org/repo: 1 of 3 files, 550 B of 1.0 kB (55%), "
                         "28 B/s, 16 s left"]  # 250 bytes in 9 s; 450 to go
        p.end_file()
        assert progress.current()["files_done"] == 2
    assert progress.current() is None
    assert any(r.getMessage().startswith("fetched org/repo: 3 files") for r in caplog.records)
