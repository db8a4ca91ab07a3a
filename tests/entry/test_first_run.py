"""First run on a workstation: nothing outside HOME, and a demo that has voices with the network unreachable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import httpx
import pytest
import soundfile as sf

from higgs_worker.core import settings as settings_module
from higgs_worker.core.settings import Settings
from readme_examples import first_screen_curl_body, openai_client_example, realtime_client_command
from servers import Server

NOBODY = 65534
ROOT = Path(__file__).resolve().parents[2]
CLOSED = "http://127.0.0.1:9"  # nothing listens: the network is "unreachable", and no packet leaves loopback


def _can_run_as_nobody() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        probe = subprocess.run([sys.executable, "-c", "import higgs_worker"], capture_output=True,
                               preexec_fn=lambda: (os.setgid(NOBODY), os.setuid(NOBODY)), check=False)
    except OSError:  # the interpreter lives where that user may not go (a root-only install)
        return False
    return probe.returncode == 0


def _clean_env(home: Path) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update({"HOME": str(home), "TMPDIR": str(home / "tmp"), "HF_ENDPOINT": CLOSED, "HF_HUB_OFFLINE": "1",
                "VOICE_PRESETS_URL": CLOSED, "PYTHONUNBUFFERED": "1"})
    return env


def test_defaults_off_runpod_live_in_the_user_cache(monkeypatch, tmp_path):
    for name in ("VOLUME_ROOT", "LOG_DIR", "DEMO_DIR", "MODEL_PATH", "TOKENIZER_PATH", "VOICES_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(settings_module, "RUNPOD_VOLUME", tmp_path / "no-volume")
    monkeypatch.setattr(settings_module, "APP_LOGS", tmp_path / "no-app" / "logs")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    s = Settings()
    assert s.volume_root == tmp_path / "xdg" / "higgs-worker" and "cache" in s.volume_root_reason
    assert s.log_dir == tmp_path / "xdg" / "higgs-worker" / "logs"
    assert s.voices_dir == s.volume_root / "voices" and s.demo_dir == s.volume_root / "tiny-model"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Settings().volume_root == tmp_path / "home" / ".cache" / "higgs-worker"


def test_a_mounted_volume_and_app_folder_are_used_when_writable(monkeypatch, tmp_path):
    for name in ("VOLUME_ROOT", "LOG_DIR"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "volume").mkdir()
    (tmp_path / "app").mkdir()
    monkeypatch.setattr(settings_module, "RUNPOD_VOLUME", tmp_path / "volume")
    monkeypatch.setattr(settings_module, "APP_LOGS", tmp_path / "app" / "logs")
    s = Settings()
    assert s.volume_root == tmp_path / "volume" and "mounted" in s.volume_root_reason
    assert s.log_dir == tmp_path / "app" / "logs"


@pytest.fixture()
def fresh_home():
    """A home folder a non-root user can reach (pytest's own temporary root is private to its owner)."""
    home = Path(tempfile.mkdtemp(prefix="higgs-home-"))
    (home / "tmp").mkdir()
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_first_run_writes_nothing_outside_home(fresh_home):
    """The README's demo command on a fresh machine, as a non-root user where this machine allows it."""
    home = fresh_home
    as_nobody = _can_run_as_nobody()
    if as_nobody:
        for folder in (home, home / "tmp"):
            os.chown(folder, NOBODY, NOBODY)
    top_before = set(os.listdir("/"))
    env = {**_clean_env(home), "HIGGS_DEMO": "1"}
    run = dict(env=env, cwd=home, capture_output=True, text=True, timeout=300,
               preexec_fn=(lambda: (os.setgid(NOBODY), os.setuid(NOBODY))) if as_nobody else None)
    out = home / "hello.wav"
    proc = subprocess.run([sys.executable, "-m", "higgs_worker.cli", "synth", "--text", "Hello!", "--voice",
                           "synthetic_alto", "--max-new-tokens", "20", "--out", str(out)], **run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.stat().st_size > 44
    assert "wrote synthetic demo voices" in proc.stderr and "the user's cache folder" in proc.stderr
    cache = home / ".cache" / "higgs-worker"
    assert (cache / "tiny-model" / "model" / "config.json").exists()
    assert {p.stem for p in (cache / "voices").glob("*.wav")} == {"synthetic_alto", "synthetic_bass"}
    assert set(os.listdir("/")) == top_before  # no /runpod-volume, no /app
    shown = subprocess.run([sys.executable, "-m", "higgs_worker.cli", "settings"], **run)
    values = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line and not line.startswith("#"))
    assert values["VOLUME_ROOT"] == str(cache) and values["LOG_DIR"] == str(cache / "logs")
    print(json.dumps({"ran_as_nobody": as_nobody}))


def test_demo_server_offline_lists_voices_and_speaks_with_one(tmp_path):
    home = tmp_path / "home"
    (home / "tmp").mkdir(parents=True)
    srv = Server({**_clean_env(home), "HIGGS_DEMO": "1"}, tmp_path)
    try:
        srv.wait_ready(timeout=300)
        voices = httpx.get(f"{srv.url}/v1/audio/voices", timeout=30).json()["data"]
        names = sorted(v["name"] for v in voices if v.get("kind") != "alias")  # OpenAI's names follow the voices
        assert len(names) >= 2 and all(n.startswith("synthetic_") for n in names)
        speech = httpx.post(f"{srv.url}/v1/audio/speech", json={"model": "tts-1", "voice": names[0],
                                                                "input": "Demo voice.", "response_format": "wav",
                                                                "max_new_tokens": 20}, timeout=120)
        assert speech.status_code == 200 and speech.content[:4] == b"RIFF"
        # the README's first-screen example, as written, works on this fresh offline demo server
        example = httpx.post(f"{srv.url}/v1/audio/speech", json=first_screen_curl_body(), timeout=120)
        assert example.status_code == 200 and example.content[:4] == b"RIFF", example.text
        # the README's openai client example, and its realtime client command, as written (pointed at this server)
        work = tmp_path / "examples"
        work.mkdir()
        code = openai_client_example().replace("http://localhost:8080", srv.url)
        ran = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=300)
        assert ran.returncode == 0, ran.stderr
        with av.open(str(work / "hello.mp3")) as mp3:
            assert mp3.format.name == "mp3" and mp3.streams.audio[0].codec_context.sample_rate == 24000
        words = realtime_client_command()
        words[words.index("--url") + 1] = srv.url.replace("http://", "ws://")
        words[words.index("--key") + 1] = "unused-without-API_KEYS"
        ran = subprocess.run([sys.executable, str(ROOT / words[0]), *words[1:], "--tokens-per-s", "200"], cwd=work,
                             capture_output=True, text=True, timeout=300)
        assert ran.returncode == 0, ran.stderr + ran.stdout
        wave, rate = sf.read(work / "reply.wav")
        assert rate == 24000 and len(wave) > 0
    finally:
        srv.stop()
