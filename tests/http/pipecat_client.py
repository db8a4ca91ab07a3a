"""Pipecat's ``OpenAITTSService`` in a Pipeline against a running server: the client half of the Pipecat test in
``test_frameworks.py``.

It runs only in Pipecat's own environment (``.venv-pipecat``, built by ``scripts/setup-pipecat.sh`` from
``requirements-pipecat.lock``), never in the project's: no pipecat-ai release fits the project's pins. Its name has
no ``test_`` prefix, so pytest neither collects nor imports it.

It speaks TEXT once and prints one JSON line on stdout: the pipeline's errors; the speech requests Pipecat sent
and the server's answers (status, ``X-Seed``), seen by event hooks on the HTTP client handed to the service, which
change nothing; and the audio frames (sample rates, channel counts, sample count, peak, sha256 of the PCM), so the
test can replay the request with that seed and expect the same bytes. Pipecat's log goes to stderr.

Usage: ``.venv-pipecat/bin/python tests/http/pipecat_client.py BASE_URL API_KEY VOICE TEXT``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json

import httpx2
import numpy as np
from pipecat.frames.frames import EndFrame, ErrorFrame, TTSAudioRawFrame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.workers.runner import WorkerRunner

SAMPLE_RATE = 24000
RUN_TIMEOUT_S = 120


class Collect(FrameProcessor):
    """Keeps every TTS audio frame that passes, and passes every frame on; ``errors`` gets the pipeline's errors
    (Pipecat reports a failed request as an error frame and carries on, so without them a refusal would look like
    mere silence)."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[TTSAudioRawFrame] = []
        self.errors: list[str] = []

    async def process_frame(self, frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.frames.append(frame)
        await self.push_frame(frame, direction)


class Exchanges:
    """The speech requests' JSON bodies and the answers' status and seed, recorded by httpx event hooks."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.responses: list[dict] = []

    async def on_request(self, request: httpx2.Request) -> None:
        if request.url.path.endswith("/audio/speech"):
            self.requests.append(json.loads(request.content))

    async def on_response(self, response: httpx2.Response) -> None:
        if response.request.url.path.endswith("/audio/speech"):
            self.responses.append({"status": response.status_code, "seed": response.headers.get("x-seed")})


async def synthesize(base_url: str, key: str, voice: str, text: str) -> tuple[Collect, Exchanges]:
    """The README's Pipecat setup (base URL pointed at the server), one utterance through a Pipeline."""
    exchanges = Exchanges()
    hooks = {"request": [exchanges.on_request], "response": [exchanges.on_response]}
    async with httpx2.AsyncClient(event_hooks=hooks) as http:
        tts = OpenAITTSService(api_key=key, base_url=base_url, http_client=http, settings=OpenAITTSService.Settings(
            voice=voice, model="gpt-4o-mini-tts"))
        collect = Collect()
        worker = PipelineWorker(Pipeline([tts, collect]), params=PipelineParams(audio_out_sample_rate=SAMPLE_RATE))

        @worker.event_handler("on_pipeline_error")
        async def on_pipeline_error(_worker: PipelineWorker, frame: ErrorFrame) -> None:
            collect.errors.append(str(frame.error))

        await worker.queue_frames([TTSSpeakFrame(text), EndFrame()])
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await asyncio.wait_for(runner.run(), RUN_TIMEOUT_S)
    return collect, exchanges


def describe(collect: Collect, exchanges: Exchanges) -> dict:
    """What the test checks: errors, the exchanges, the frames' formats, and the 16-bit PCM they carry."""
    frames = collect.frames
    pcm = b"".join(f.audio for f in frames)
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.int32)
    return {"errors": collect.errors, "requests": exchanges.requests, "responses": exchanges.responses,
            "frames": len(frames), "sample_rates": sorted({f.sample_rate for f in frames}),
            "num_channels": sorted({f.num_channels for f in frames}), "bytes": len(pcm), "samples": len(samples),
            "peak": int(np.abs(samples).max()) if len(samples) else 0, "sha256": hashlib.sha256(pcm).hexdigest()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url", help="the server's OpenAI base URL, ending in /v1")
    parser.add_argument("key", help="an API key of the server")
    parser.add_argument("voice", help="an OpenAI voice name (Pipecat sends no others)")
    parser.add_argument("text", help="the text to speak")
    args = parser.parse_args()
    collect, exchanges = asyncio.run(synthesize(args.base_url, args.key, args.voice, args.text))
    print(json.dumps(describe(collect, exchanges)), flush=True)


if __name__ == "__main__":
    main()
