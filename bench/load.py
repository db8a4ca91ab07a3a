"""Load and soak: N clients against the HTTP server on loopback for a bounded time, then the books are checked.

    python -m bench.load [--clients 8] [--duration 60] [--json FILE] [--url http://127.0.0.1:PORT]

Without ``--url`` it starts ``higgs-worker serve`` on the tiny model on 127.0.0.1. Each client loops over a mix:
whole files in every format, chunked audio streams, SSE streams, queued jobs (``/run`` then ``/status``),
jobs cancelled mid-way, streams dropped mid-way, and bad inputs. Afterwards it checks that every accepted job
reached a final state, every success decodes, the server's memory stayed flat, and the server still answers.
Prints a table and JSON; exits 1 when a check fails. Traffic goes to loopback only.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import av
import httpx

FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]


def decodes(data: bytes, fmt: str) -> bool:
    if fmt == "pcm":
        return len(data) > 0 and len(data) % 2 == 0
    try:
        with av.open(io.BytesIO(data)) as container:
            return sum(f.samples for f in container.decode(container.streams.audio[0])) > 0
    except Exception:  # noqa: BLE001 - a failed decode is what we count
        return False


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Client(threading.Thread):
    def __init__(self, base: str, seed: int, until: float, stats: Counter, jobs: list, errors: list) -> None:
        super().__init__(daemon=True)
        self.base, self.rng, self.until = base, random.Random(seed), until
        self.stats, self.jobs, self.errors = stats, jobs, errors

    def speech(self, client: httpx.Client, **extra) -> dict:
        fmt = self.rng.choice(FORMATS)
        return {"model": "tts-1", "input": f"Load test sentence {self.rng.randint(0, 999)}.", "voice": "default",
                "response_format": fmt, "max_new_tokens": self.rng.randint(10, 40), "seed": self.rng.randint(0, 99),
                **extra}

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=120) as client:
            while time.monotonic() < self.until:
                kind = self.rng.choice(["whole", "whole", "stream", "sse", "job", "cancel", "drop", "bad"])
                try:
                    getattr(self, kind)(client)
                except Exception as exc:  # noqa: BLE001 - recorded, the loop goes on
                    self.errors.append(f"{kind}: {exc.__class__.__name__}: {exc}")
                self.stats[kind] += 1

    def whole(self, client):
        body = self.speech(client)
        r = client.post("/v1/audio/speech", json=body)
        self._check(r.status_code == 200 and decodes(r.content, body["response_format"]), "whole", r)

    def stream(self, client):
        body = self.speech(client, stream_format="audio")
        with client.stream("POST", "/v1/audio/speech", json=body) as r:
            data = b"".join(r.iter_bytes())
        self._check(r.status_code == 200 and decodes(data, body["response_format"]), "stream", r)

    def sse(self, client):
        body = self.speech(client, stream_format="sse", response_format="pcm")
        done = False
        with client.stream("POST", "/v1/audio/speech", json=body) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:])["type"] == "speech.audio.done":
                    done = True
        self._check(r.status_code == 200 and done, "sse", r)

    def job(self, client):
        r = client.post("/run", json={"input": {"transcript": "Queued load job.", "max_new_tokens": 20,
                                                "format": self.rng.choice(FORMATS), "seed": 1}})
        if r.status_code == 200:
            self.jobs.append(r.json()["id"])
        self._check(r.status_code in (200, 429), "job", r)

    def cancel(self, client):
        r = client.post("/run", json={"input": {"transcript": " ".join(["word"] * 30), "chunk_method": "word",
                                                "chunk_max_word_num": 2, "max_new_tokens": 60}})
        if r.status_code != 200:
            self._check(r.status_code == 429, "cancel", r)
            return
        job_id = r.json()["id"]
        self.jobs.append(job_id)
        time.sleep(self.rng.uniform(0.0, 0.3))
        c = client.post(f"/cancel/{job_id}")
        self._check(c.status_code == 200 and c.json()["status"] in FINAL, "cancel", c)

    def drop(self, client):
        body = self.speech(client, stream_format="audio", max_new_tokens=200, input="A stream the client drops.")
        with client.stream("POST", "/v1/audio/speech", json=body) as r:
            for _chunk in r.iter_bytes():
                break  # go away mid-stream: the server must cancel the generation
        self._check(r.status_code == 200, "drop", r)

    def bad(self, client):
        body = self.rng.choice([{"model": "tts-1", "input": "", "voice": "default"},
                                {"model": "tts-1", "input": "x", "voice": "default", "speed": 9},
                                {"model": "tts-1", "input": "x", "voice": "nobody"},
                                {"model": "tts-1", "input": "x", "voice": "default", "temperature": -1}])
        r = client.post("/v1/audio/speech", json=body)
        self._check(r.status_code == 400 and "error" in r.json(), "bad", r)

    def _check(self, ok: bool, kind: str, response: httpx.Response) -> None:
        if not ok:
            self.errors.append(f"{kind}: HTTP {response.status_code}")


def run(base: str, clients: int, duration: float, pid: int | None) -> dict:
    with httpx.Client(base_url=base, timeout=60) as client:  # warm-up, then the memory baseline
        for fmt in FORMATS:
            client.post("/v1/audio/speech", json={"model": "tts-1", "input": "Warm up.", "voice": "default",
                                                  "response_format": fmt, "max_new_tokens": 20}).raise_for_status()
    rss_start = rss_bytes(pid) if pid else 0
    stats: Counter = Counter()
    jobs: list[str] = []
    errors: list[str] = []
    until = time.monotonic() + duration
    threads = [Client(base, i, until, stats, jobs, errors) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + 300)
    elapsed = time.monotonic() - started
    lost, states = [], Counter()
    with httpx.Client(base_url=base, timeout=60) as client:
        deadline = time.monotonic() + 300
        for job_id in jobs:
            while True:
                r = client.get(f"/status/{job_id}")
                status = r.json().get("status") if r.status_code == 200 else "MISSING"
                if status in FINAL or status == "MISSING" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            states[status] += 1
            if status not in FINAL:
                lost.append(job_id)
        health = client.get("/health")
        alive = health.status_code == 200 and health.json()["model"]["state"] == "ready"
    rss_end = rss_bytes(pid) if pid else 0
    growth = (rss_end - rss_start) / rss_start if rss_start else 0.0
    return {
        "date": time.strftime("%Y-%m-%d"), "clients": clients, "duration_s": round(elapsed, 1),
        "requests": sum(stats.values()), "by_kind": dict(stats), "jobs": len(jobs), "job_states": dict(states),
        "lost_jobs": len(lost), "client_errors": len(errors), "first_errors": errors[:5],
        "rss_start_mb": round(rss_start / 2**20, 1), "rss_end_mb": round(rss_end / 2**20, 1),
        "rss_growth": round(growth, 3), "server_alive": alive,
        "ok": not lost and not errors and alive and growth < 0.25,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--url")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.url:
        if not httpx.URL(args.url).host.startswith("127."):
            parser.error("--url must be a loopback address")
        result = run(args.url, args.clients, args.duration, None)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from servers import Server

        from higgs_worker.engine.tiny import make_tiny_model

        with tempfile.TemporaryDirectory() as tmp:
            model = make_tiny_model(Path(tmp) / "tiny", seed=0)
            server = Server({"MODEL_PATH": str(model / "model"), "TOKENIZER_PATH": str(model / "tokenizer"),
                             "VOLUME_ROOT": str(Path(tmp) / "vol"), "LOG_DIR": str(Path(tmp) / "logs"),
                             "HF_ENDPOINT": "http://127.0.0.1:9", "JOB_RETENTION_S": "3600"}, Path(tmp))
            try:
                server.wait_ready()
                result = run(server.url, args.clients, args.duration, server.proc.pid)
            finally:
                server.stop()
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key.ljust(width)}  {value}")
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
