"""Voice-agent benchmark: N realtime sessions fed text at an LLM's pace, against the real server on loopback.

    python -m bench.voice_agent [--sessions 4] [--tokens-per-s 20] [--repeats 5] [--json FILE] [--url URL]

Without ``--url`` it starts ``higgs-worker serve`` on the tiny model on 127.0.0.1 (``--model`` reuses a tiny-model
folder). Each session opens ``WS /v1/realtime/speech`` and sends a reply of three sentences as LLM-like tokens
(word pieces of up to four characters) at ``--tokens-per-s``, then commits the turn. It reports:

* ``first_audio_after_boundary_ms``: from sending the token that ends the first sentence (where the server may
  start speaking) to the first audio delta, per session (p50, p95, max); ``server_first_audio_ms`` is the server's
  own figure (segment ready to first encoded bytes);
* ``underruns`` / ``underrun_s``: gaps in each stream played at real time from its first audio (a delta that
  arrives after everything before it has been played), summed over sessions;
* ``frames_per_s``: audio frames (25 a second of speech) all sessions made, over the run's wall time;
* ``route_overhead_ms``: the route's own cost against a plain streamed ``POST /v1/audio/speech`` of the same
  sentence (same seed, so the same frames): the same text sent whole and committed at once, ``--repeats`` times
  each way, one at a time; the difference of the medians of time to first audio and of total time.

Prints a table and a JSON document (also written to ``--json``). Traffic goes to loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import statistics
import sys
import time
from pathlib import Path

import httpx

from bench.server import report, tiny_server
from examples.realtime_client import tokens as llm_tokens  # the pieces the example client sends

REPLY = ("Sure, I can help you with that booking today. The next free table is at eight in the evening. "
         "Shall I reserve it for two people?")
SENTENCE_END = re.compile(r"[.!?]")
SETTINGS = {"seed": 7, "temperature": 1.0, "ras_win_len": 0, "response_format": "pcm"}
BYTES_PER_SECOND = 24000 * 2  # pcm: 16-bit mono at 24 kHz


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def underruns(arrivals: list[tuple[float, int]]) -> tuple[int, float]:
    """Gaps when ``(arrival time, pcm bytes)`` deltas play at real time from the first one's arrival."""
    count, gaps = 0, 0.0
    if not arrivals:
        return 0, 0.0
    clock = arrivals[0][0]  # when the audio received so far runs out, playing at real time
    for at, size in arrivals:
        if at > clock + 1e-3:
            count += 1
            gaps += at - clock
            clock = at
        clock += size / BYTES_PER_SECOND
    return count, gaps


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://").replace("https://", "wss://") + "/v1/realtime/speech"


async def session(base: str, key: str | None, index: int, rate: float, max_new_tokens: int) -> dict:
    """One voice-agent turn: tokens at ``rate``, commit, collect the audio; timings on one monotonic clock."""
    from websockets.asyncio.client import connect

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with connect(ws_url(base), additional_headers=headers, max_size=None, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "session.update", "session": {**SETTINGS, "seed": 7 + index,
                                                                        "max_new_tokens": max_new_tokens}}))
        arrivals: list[tuple[float, int]] = []
        done: dict = {}
        boundary_at: list[float] = []

        async def feed() -> None:
            for token in llm_tokens(REPLY):
                await ws.send(json.dumps({"type": "input_text_buffer.append", "text": token}))
                if not boundary_at and SENTENCE_END.search(token):
                    boundary_at.append(time.monotonic())
                await asyncio.sleep(1 / rate)
            await ws.send(json.dumps({"type": "input_text_buffer.commit"}))

        feeder = asyncio.create_task(feed())
        async for raw in ws:
            event = json.loads(raw)
            if event["type"] == "speech.audio.delta":
                arrivals.append((time.monotonic(), len(base64.b64decode(event["audio"]))))
            elif event["type"] == "speech.audio.done":
                done = event
                break
            elif event["type"] == "error":
                raise RuntimeError(f"session {index}: {event['error']['message']}")
        await feeder
    gaps, gap_s = underruns(arrivals)
    return {"first_audio_after_boundary_ms": (arrivals[0][0] - boundary_at[0]) * 1000 if arrivals else None,
            "server_first_audio_ms": done.get("first_audio_s", 0) * 1000, "frames": done["usage"]["output_tokens"],
            "audio_s": sum(size for _, size in arrivals) / BYTES_PER_SECOND, "underruns": gaps, "underrun_s": gap_s,
            "status": done.get("status")}


async def one_ws(base: str, key: str | None, text: str, max_new_tokens: int) -> tuple[float, float, int]:
    """The whole ``text`` in one append and a commit: (ms to first audio, ms to done, pcm bytes)."""
    from websockets.asyncio.client import connect

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with connect(ws_url(base), additional_headers=headers, max_size=None, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "session.update", "session": {**SETTINGS, "max_new_tokens": max_new_tokens}}))
        while json.loads(await ws.recv())["type"] != "session.updated":
            pass
        start = time.monotonic()
        await ws.send(json.dumps({"type": "input_text_buffer.append", "text": text}))
        await ws.send(json.dumps({"type": "input_text_buffer.commit"}))
        first, size = None, 0
        async for raw in ws:
            event = json.loads(raw)
            if event["type"] == "speech.audio.delta":
                first = first if first is not None else time.monotonic()
                size += len(base64.b64decode(event["audio"]))
            elif event["type"] == "speech.audio.done":
                return (first - start) * 1000, (time.monotonic() - start) * 1000, size
    raise RuntimeError("the session ended before its turn was done")


async def one_http(client: httpx.AsyncClient, text: str, max_new_tokens: int) -> tuple[float, float, int]:
    """The same text as a plain streamed ``POST /v1/audio/speech``: (ms to first audio, ms to the end, bytes)."""
    body = {"model": "tts-1", "voice": "default", "input": text, "stream_format": "audio",
            "max_new_tokens": max_new_tokens, **{k: v for k, v in SETTINGS.items() if k != "response_format"},
            "response_format": "pcm", "trim_silence": False}
    start = time.monotonic()
    first, size = None, 0
    async with client.stream("POST", "/v1/audio/speech", json=body) as response:
        response.raise_for_status()
        async for chunk in response.aiter_bytes():
            if chunk:
                first = first if first is not None else time.monotonic()
                size += len(chunk)
    return (first - start) * 1000, (time.monotonic() - start) * 1000, size


async def overhead(base: str, key: str | None, repeats: int, max_new_tokens: int) -> dict:
    text = REPLY.split(". ")[0] + "."  # one sentence: one segment by both routes, the same generation
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    ws_runs, http_runs = [], []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=300) as client:
        await one_http(client, text, max_new_tokens)  # warm both paths once
        await one_ws(base, key, text, max_new_tokens)
        for _ in range(repeats):  # interleaved, so a drift in the machine's speed hits both alike
            http_runs.append(await one_http(client, text, max_new_tokens))
            ws_runs.append(await one_ws(base, key, text, max_new_tokens))
    med = statistics.median
    return {"ws_first_audio_ms_p50": round(med(r[0] for r in ws_runs), 2),
            "http_first_audio_ms_p50": round(med(r[0] for r in http_runs), 2),
            "ws_total_ms_p50": round(med(r[1] for r in ws_runs), 2),
            "http_total_ms_p50": round(med(r[1] for r in http_runs), 2),
            "route_overhead_first_audio_ms": round(med(r[0] for r in ws_runs) - med(r[0] for r in http_runs), 2),
            "route_overhead_total_ms": round(med(r[1] for r in ws_runs) - med(r[1] for r in http_runs), 2),
            "same_audio": all(w[2] == h[2] for w, h in zip(ws_runs, http_runs, strict=True))}


async def run_all(base: str, key: str | None, sessions: int, rate: float, repeats: int, max_new_tokens: int) -> dict:
    await one_ws(base, key, "Warm up.", 16)  # the first turn of a fresh server pays one-time costs: not measured
    start = time.monotonic()
    results = await asyncio.gather(*(session(base, key, i, rate, max_new_tokens) for i in range(sessions)))
    wall = time.monotonic() - start
    firsts = [r["first_audio_after_boundary_ms"] for r in results if r["first_audio_after_boundary_ms"] is not None]
    servers = [r["server_first_audio_ms"] for r in results]
    out = {"sessions": sessions, "tokens_per_s": rate, "completed": sum(r["status"] == "completed" for r in results),
           "first_audio_after_boundary_ms_p50": round(percentile(firsts, 0.5), 2),
           "first_audio_after_boundary_ms_p95": round(percentile(firsts, 0.95), 2),
           "first_audio_after_boundary_ms_max": round(max(firsts, default=float("nan")), 2),
           "server_first_audio_ms_p50": round(percentile(servers, 0.5), 2),
           "underruns": sum(r["underruns"] for r in results),
           "underrun_s": round(sum(r["underrun_s"] for r in results), 3),
           "audio_s": round(sum(r["audio_s"] for r in results), 3),
           "frames_per_s": round(sum(r["frames"] for r in results) / wall, 1), "wall_s": round(wall, 3)}
    out.update(await overhead(base, key, repeats, max_new_tokens))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--tokens-per-s", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=5, help="runs each way for the route's overhead")
    parser.add_argument("--max-new-tokens", type=int, default=300, help="most frames per segment")
    parser.add_argument("--url", help="a running server on loopback (default: start one on the tiny model)")
    parser.add_argument("--key", help="its API key, if it has keys")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model", type=Path,
                        help="a tiny-model folder from 'higgs-worker make-tiny-model' (default: one made afresh)")
    args = parser.parse_args(argv)
    run = (args.sessions, args.tokens_per_s, args.repeats, args.max_new_tokens)
    if args.url:
        if not httpx.URL(args.url).host.startswith("127.") and httpx.URL(args.url).host != "localhost":
            parser.error("--url must be a loopback address")
        result = asyncio.run(run_all(args.url.rstrip("/"), args.key, *run))
        result["model"] = "the server's"
    else:
        with tiny_server(args.model) as server:
            result = asyncio.run(run_all(server.url, None, *run))
        result["model"] = "tiny random model"
    result["date"] = time.strftime("%Y-%m-%d")
    report(result, args.json)
    return 0 if result["completed"] == args.sessions and result["same_audio"] else 1


if __name__ == "__main__":
    sys.exit(main())
