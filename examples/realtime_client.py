"""Stream an LLM-like token stream into ``WS /v1/realtime/speech`` and save (or play) the speech as it arrives.

    pip install websockets
    python examples/realtime_client.py --url ws://127.0.0.1:8080 --key "$API_KEY" --voice alloy --out reply.wav
    python examples/realtime_client.py ... --play     # pipe the PCM to ffplay as it comes (needs ffmpeg)

The text goes in as word pieces at ``--tokens-per-s`` (what an LLM streaming its reply looks like); the server
starts speaking at the first clause or sentence boundary, long before the text is complete, and the audio
(16-bit PCM, mono, 24 kHz) is written to a WAV file once the turn is done. Type a turn of your own with ``--text``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import time
import wave

from websockets.asyncio.client import connect

REPLY = ("Of course! The museum opens at nine in the morning, and tickets are cheaper online. "
         "If you go on a weekday, the queue is usually short.")


def tokens(text: str) -> list[str]:
    """Word pieces of up to four characters, as an LLM streams its output."""
    out = []
    for i, word in enumerate(text.split(" ")):
        pieces = [word[j:j + 4] for j in range(0, len(word), 4)] or [""]
        pieces[0] = (" " if i else "") + pieces[0]
        out.extend(pieces)
    return out


async def speak(args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    player = None
    if args.play:
        player = subprocess.Popen(["ffplay", "-nodisp", "-autoexit", "-loglevel", "quiet", "-f", "s16le", "-ar",
                                   "24000", "-ch_layout", "mono", "-"], stdin=subprocess.PIPE)
    audio = bytearray()
    async with connect(args.url.rstrip("/") + "/v1/realtime/speech", additional_headers=headers,
                       max_size=None) as ws:
        await ws.send(json.dumps({"type": "session.update",
                                  "session": {"voice": args.voice, "response_format": "pcm", "speed": args.speed}}))
        started = time.monotonic()

        async def feed() -> None:  # the "LLM": tokens at its pace, then the end of the turn
            for token in tokens(args.text):
                await ws.send(json.dumps({"type": "input_text_buffer.append", "text": token}))
                await asyncio.sleep(1 / args.tokens_per_s)
            await ws.send(json.dumps({"type": "input_text_buffer.commit"}))
            print(f"{time.monotonic() - started:6.2f} s  text complete")

        feeder = asyncio.create_task(feed())
        async for raw in ws:
            event = json.loads(raw)
            if event["type"] == "speech.audio.delta":
                chunk = base64.b64decode(event["audio"])
                if not audio:
                    print(f"{time.monotonic() - started:6.2f} s  first audio")
                audio += chunk
                if player is not None:
                    player.stdin.write(chunk)
                    player.stdin.flush()
            elif event["type"] == "speech.audio.done":
                print(f"{time.monotonic() - started:6.2f} s  done: {event['duration_s']} s of speech, "
                      f"{event['segments']} segments, usage {event['usage']}")
                break
            elif event["type"] == "error":
                print("error:", event["error"]["message"])
        await feeder
    if player is not None:
        player.stdin.close()
        player.wait()
    with wave.open(args.out, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(24000)
        out.writeframes(bytes(audio))
    print(f"saved {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8080", help="the server, ws:// or wss://")
    parser.add_argument("--key", help="an API key, when the server has API_KEYS")
    parser.add_argument("--voice", default="alloy", help="a library voice, or an OpenAI voice name (an alias)")
    parser.add_argument("--text", default=REPLY)
    parser.add_argument("--tokens-per-s", type=float, default=20.0)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--out", default="reply.wav")
    parser.add_argument("--play", action="store_true", help="also play the audio with ffplay as it arrives")
    asyncio.run(speak(parser.parse_args()))


if __name__ == "__main__":
    main()
