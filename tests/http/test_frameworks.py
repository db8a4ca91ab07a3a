"""The agent frameworks' OpenAI TTS clients against the real server (a subprocess on the tiny model), base URL
pointed at it: LiveKit Agents' ``openai.TTS`` plugin and Pipecat's ``OpenAITTSService``. Both send only OpenAI's
voice names, so they also prove the aliases (``VOICE_ALIASES`` and the built-in mapping).

Pipecat cannot be installed beside the project's pins, so its half runs ``pipecat_client.py`` in Pipecat's own
environment (``.venv-pipecat``, from ``scripts/setup-pipecat.sh``) as a subprocess. Without that environment the test
skips with the reason locally and fails with ``CI=true``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import unavailable
from fixture_voices import write_voices
from openai import OpenAI
from servers import Server, run_coroutine

KEY = "frameworks-key-3d9e"
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXT = "Hello from an agent framework."
REPO = Path(__file__).resolve().parents[2]
# Pipecat runs in its own environment (scripts/setup-pipecat.sh, requirements-pipecat.lock): no pipecat-ai release
# fits the project's pins (1.10 and later need protobuf<7 and soundfile<0.14, 1.9 and earlier openai<3).
PIPECAT_PYTHON = REPO / ".venv-pipecat" / "bin" / "python"
PIPECAT_CLIENT = Path(__file__).with_name("pipecat_client.py")
PIPECAT_TIMEOUT_S = 240  # the client gives its pipeline 120 s; this covers its start and Pipecat's imports too


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("frameworks")
    voices = write_voices(root / "voices", ["tenor", "alto"])
    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "VOICES_DIR": str(voices), "API_KEYS": KEY, "LOG_DIR": str(root / "logs"),
                  "VOLUME_ROOT": str(root / "vol"), "VOICE_ALIASES": "ash=tenor,nova=alto,echo=default"}, root)
    try:
        srv.wait_ready(headers=AUTH)
        yield srv
    finally:
        srv.stop()


def test_openai_voice_names_are_aliases_listed_with_their_voices(server):
    listed = httpx.get(f"{server.url}/v1/audio/voices", headers=AUTH, timeout=60).json()["data"]
    aliases = {v["name"]: v for v in listed if v["kind"] == "alias"}
    assert aliases["ash"]["voice"] == "tenor" and aliases["nova"]["voice"] == "alto"
    assert aliases["echo"]["voice"] is None  # VOICE_ALIASES: the model's own voice
    assert aliases["onyx"]["voice"] is None  # the default preset (broom_salesman) is not installed here
    assert {"alloy", "ash", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer"} <= set(aliases)
    client = OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120)

    def speak(voice: str) -> bytes:
        return client.audio.speech.create(model="tts-1", voice=voice, input="Alias.", response_format="pcm",
                                          extra_body={"seed": 4, "max_new_tokens": 30}).content

    assert speak("ash") == speak("tenor")  # the alias is the voice it names
    assert speak("nova") != speak("ash")
    assert len(speak("alloy")) > 0  # default alias, preset missing: the model's own voice, no refusal


def test_livekit_openai_tts_plugin_gets_audio_frames(server):
    from livekit.plugins import openai as lk_openai

    async def synthesize() -> list:
        tts = lk_openai.TTS(model="gpt-4o-mini-tts", voice="ash", base_url=f"{server.url}/v1", api_key=KEY)
        frames = []
        try:
            async with tts.synthesize(TEXT) as stream:
                async for event in stream:
                    frames.append(event.frame)
        finally:
            await tts.aclose()
        return frames

    frames = run_coroutine(synthesize())
    assert frames and {f.sample_rate for f in frames} == {24000} and {f.num_channels for f in frames} == {1}
    samples = np.concatenate([np.frombuffer(bytes(f.data), "<i2") for f in frames])
    # some audio, not silent: unseeded, the random model may end after a frame or two (1,920 samples were seen)
    assert len(samples) >= 960 and np.abs(samples).max() > 0  # the SSE stream's mp3, decoded by LiveKit


def pipecat_python() -> Path:
    """Pipecat's own interpreter (``.venv-pipecat``): a skip naming the set-up script where it is missing, a failure
    with ``CI=true``."""
    if not PIPECAT_PYTHON.exists():
        unavailable(f"{PIPECAT_PYTHON.relative_to(REPO)} is missing (run scripts/setup-pipecat.sh)")
    return PIPECAT_PYTHON


def run_pipecat_client(server: Server, voice: str) -> dict:
    """``pipecat_client.py`` in Pipecat's environment against ``server``: its JSON line, or a failure that shows
    the client's stderr (Pipecat's log)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    command = [str(pipecat_python()), str(PIPECAT_CLIENT), f"{server.url}/v1", KEY, voice, TEXT]
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=PIPECAT_TIMEOUT_S,
                              env=env, cwd=REPO)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(f"the Pipecat client ran past {PIPECAT_TIMEOUT_S} s; its stderr:\n{stderr[-6000:]}")
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, (f"the Pipecat client exited {done.returncode} with stdout "
                                            f"{done.stdout[-500:]!r}; its stderr:\n{done.stderr[-6000:]}")
    got = json.loads(lines[-1])
    assert got["errors"] == [], f"Pipecat reported errors: {got['errors']}; its stderr:\n{done.stderr[-6000:]}"
    return got


def test_pipecat_openai_tts_service_gets_audio_frames(server):
    got = run_pipecat_client(server, "nova")
    [sent] = got["requests"]
    assert sent["voice"] == "nova" and sent["response_format"] == "pcm"  # the README's setup: an alias, raw PCM
    [answer] = got["responses"]
    assert answer["status"] == 200 and answer["seed"] is not None, answer
    assert got["frames"] > 0 and got["sample_rates"] == [24000] and got["num_channels"] == [1], got
    assert got["samples"] > 0 and got["peak"] > 0, got  # not silent
    # The same request with the seed the server used gives the same audio: Pipecat framed every byte, unchanged.
    direct = httpx.post(f"{server.url}/v1/audio/speech", json={**sent, "seed": int(answer["seed"])}, headers=AUTH,
                        timeout=120)
    assert direct.status_code == 200, direct.text
    assert (got["bytes"], got["sha256"]) == (len(direct.content), hashlib.sha256(direct.content).hexdigest())
