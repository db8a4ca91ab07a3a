"""The agent frameworks' OpenAI TTS clients against the real server (a subprocess on the tiny model), base URL
pointed at it: LiveKit Agents' ``openai.TTS`` plugin and Pipecat's ``OpenAITTSService``. Both send only OpenAI's
voice names, so they also prove the aliases (``VOICE_ALIASES`` and the built-in mapping)."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from fixture_voices import write_voices
from openai import OpenAI
from servers import Server, run_coroutine

KEY = "frameworks-key-3d9e"
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXT = "Hello from an agent framework."


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
    assert len(samples) > 2400 and np.abs(samples).max() > 0  # the SSE stream's mp3, decoded by LiveKit


def test_pipecat_openai_tts_service_gets_audio_frames(server):
    pytest.importorskip("pipecat", reason="pipecat-ai cannot be installed beside this project's pins "
                                          "(it needs protobuf<7 and soundfile<0.14); see the README")
    from pipecat.frames.frames import EndFrame, TTSAudioRawFrame, TTSSpeakFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.runner import PipelineRunner
    from pipecat.pipeline.task import PipelineParams, PipelineTask
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.services.openai.tts import OpenAITTSService

    class Collect(FrameProcessor):
        def __init__(self) -> None:
            super().__init__()
            self.frames: list[TTSAudioRawFrame] = []

        async def process_frame(self, frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, TTSAudioRawFrame):
                self.frames.append(frame)
            await self.push_frame(frame, direction)

    async def run() -> list:
        tts = OpenAITTSService(api_key=KEY, base_url=f"{server.url}/v1", settings=OpenAITTSService.Settings(
            voice="nova", model="gpt-4o-mini-tts"))
        collect = Collect()
        task = PipelineTask(Pipeline([tts, collect]), params=PipelineParams(audio_out_sample_rate=24000))
        await task.queue_frames([TTSSpeakFrame(TEXT), EndFrame()])
        await asyncio.wait_for(PipelineRunner(handle_sigint=False).run(task), 120)
        return collect.frames

    frames = run_coroutine(run())
    assert frames and {f.sample_rate for f in frames} == {24000} and {f.num_channels for f in frames} == {1}
    samples = np.concatenate([np.frombuffer(f.audio, "<i2") for f in frames])
    assert len(samples) > 2400 and np.abs(samples).max() > 0
