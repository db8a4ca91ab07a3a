"""Load and soak: N clients against the HTTP server on loopback for a bounded time, then the books are checked.

    python -m bench.load [--clients 8] [--duration 60] [--abuse N] [--json FILE] [--url http://127.0.0.1:PORT]
    python -m bench.load --replicas 2 --redis [--clients 8] [--duration 60] [--json FILE]

Without ``--url`` it starts ``higgs-worker serve`` on the tiny model on 127.0.0.1. Each client loops over a mix:
whole files in every format, chunked audio streams, SSE streams, queued jobs (``/run`` then ``/status``),
jobs cancelled mid-way, streams dropped mid-way, and bad inputs. Afterwards it checks that every accepted job
reached a final state, every success decodes, the server's memory stayed flat, and the server still answers.

``--abuse N`` adds N attackers beside the normal clients: hostile references (a few KB of FLAC claiming hours of
8-channel audio, sent as ``ref_audio`` and as voice uploads), streams whose client never reads, jobs carrying a
megabyte of junk, and parallel uploads racing for one voice name. A probe then asks for a short speech every
second: ``slot_availability`` is the share it got served, and the server's peak memory (VmHWM) is reported.
Prints a table and JSON; exits 1 when a check fails. Traffic goes to loopback only.

``--replicas N --redis`` starts ``redis-server`` (Debian's, on loopback, no persistence) and measures queued jobs:
clients submit ``/run`` to the replicas in turn and read ``/status`` from another replica; first against one
replica, then against N sharing the Redis job store. It reports jobs per second for both, the ratio, how the jobs
spread over the replicas (``workerId``), and lost jobs (accepted but never final, or forgotten), which must be 0.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import av
import httpx

from bench.server import process_helpers, report, server_env, tiny_model, tiny_server

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
        self._deck: list[str] = []

    def next_kind(self, kinds: list[str]) -> str:
        """The kinds dealt from a shuffled deck: every kind comes once in each run of ``len(kinds)`` requests, so a
        short run still covers them all, in an order that differs from client to client."""
        if not self._deck:
            self._deck = self.rng.sample(kinds, len(kinds))
        return self._deck.pop()

    def speech(self, client: httpx.Client, **extra) -> dict:
        fmt = self.rng.choice(FORMATS)
        return {"model": "tts-1", "input": f"Load test sentence {self.rng.randint(0, 999)}.", "voice": "default",
                "response_format": fmt, "max_new_tokens": self.rng.randint(10, 40), "seed": self.rng.randint(0, 99),
                **extra}

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=120) as client:
            while time.monotonic() < self.until:
                kind = self.next_kind(["whole", "whole", "stream", "sse", "job", "cancel", "drop", "bad"])
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


def hwm_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class Attacker(Client):
    """Abuse beside the normal traffic; every answer must be a clean refusal or a success, never a 5xx."""

    def run(self) -> None:
        from hostile_media import silent_flac

        self.flac = silent_flac(150, declared_total=0)  # a few KB that decode to hundreds of MB at full rate
        with httpx.Client(base_url=self.base, timeout=120) as client:
            while time.monotonic() < self.until:
                kind = self.next_kind(["hostile_ref", "hostile_upload", "stall", "junk_job", "upload_race"])
                try:
                    getattr(self, kind)(client)
                except Exception as exc:  # noqa: BLE001 - recorded, the loop goes on
                    self.errors.append(f"{kind}: {exc.__class__.__name__}: {exc}")
                self.stats[kind] += 1

    def hostile_ref(self, client):
        r = client.post("/v1/audio/speech", json={"model": "tts-1", "input": "x", "voice": "default",
                                                  "ref_audio": base64.b64encode(self.flac).decode(), "ref_text": "x"})
        self._check(r.status_code in (400, 429), "hostile_ref", r)

    def hostile_upload(self, client):
        r = client.post("/v1/audio/voices", data={"name": f"evil{self.rng.randint(0, 9)}", "transcript": "x"},
                        files={"audio": ("evil.flac", self.flac, "audio/flac")})
        self._check(r.status_code in (400, 413, 429), "hostile_upload", r)

    def stall(self, client):
        """Open a long stream and never read it, then vanish: the slot must come back by itself."""
        host, port = httpx.URL(self.base).host, httpx.URL(self.base).port
        body = json.dumps({"model": "tts-1", "input": " ".join(["never read"] * 40), "voice": "default",
                           "stream_format": "audio", "response_format": "wav", "max_new_tokens": 2000}).encode()
        with socket.create_connection((host, port), timeout=30) as sock:
            sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            time.sleep(self.rng.uniform(1.0, 8.0))  # a client that holds the socket and reads nothing

    def junk_job(self, client):
        r = client.post("/run", json={"input": {"transcript": "x", "junk": "j" * (1024 * 1024)}})
        refused = r.status_code == 200 and r.json().get("status") == "FAILED" and "junk" in r.json().get("error", "")
        self._check(refused or r.status_code in (400, 429), "junk_job", r)  # refused at once, nothing queued

    def upload_race(self, client):
        from fixture_voices import encoded

        name = f"race{self.rng.randint(0, 999)}"
        audio = encoded("wav", seconds=1.0)

        def one(out: list):
            with httpx.Client(base_url=self.base, timeout=60) as c:
                out.append(c.post("/v1/audio/voices", data={"name": name, "transcript": "Race."},
                                  files={"audio": ("v.wav", audio, "audio/wav")}).status_code)

        codes: list[int] = []
        racers = [threading.Thread(target=one, args=(codes,)) for _ in range(4)]
        for t in racers:
            t.start()
        for t in racers:
            t.join()
        ok = codes.count(201) == 1 and all(c in (201, 409) for c in codes) or all(c in (400, 429) for c in codes)
        if not ok:
            self.errors.append(f"upload_race: {sorted(codes)}")
        client.delete(f"/v1/audio/voices/{name}")


class Probe(threading.Thread):
    """A polite user asking for a short speech every second; counts how often it is served."""

    def __init__(self, base: str, until: float) -> None:
        super().__init__(daemon=True)
        self.base, self.until = base, until
        self.served = self.asked = 0
        self.latencies: list[float] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as client:
            while time.monotonic() < self.until:
                t = time.monotonic()
                try:
                    r = client.post("/v1/audio/speech", json={"model": "tts-1", "input": "Probe.", "voice": "default",
                                                              "response_format": "wav", "max_new_tokens": 10})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.asked += 1
                if ok:
                    self.served += 1
                    self.latencies.append(time.monotonic() - t)
                time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))


def run(base: str, clients: int, duration: float, pid: int | None, abuse: int = 0) -> dict:
    with httpx.Client(base_url=base, timeout=60) as client:  # warm-up, then the memory baseline
        for fmt in FORMATS:
            client.post("/v1/audio/speech", json={"model": "tts-1", "input": "Warm up.", "voice": "default",
                                                  "response_format": fmt, "max_new_tokens": 20}).raise_for_status()
        if abuse:  # the attackers' long streams grow the slot KV cache to its full size once: do that first
            client.post("/v1/audio/speech", json={"model": "tts-1", "input": "Warm up long.", "voice": "default",
                                                  "response_format": "pcm", "max_new_tokens": 2000},
                        timeout=600).raise_for_status()
    rss_start = rss_bytes(pid) if pid else 0
    stats: Counter = Counter()
    jobs: list[str] = []
    errors: list[str] = []
    until = time.monotonic() + duration
    threads = [Client(base, i, until, stats, jobs, errors) for i in range(clients)]
    threads += [Attacker(base, 1000 + i, until, stats, jobs, errors) for i in range(abuse)]
    probe = Probe(base, until) if abuse else None
    started = time.monotonic()
    for t in threads + ([probe] if probe else []):
        t.start()
    for t in threads + ([probe] if probe else []):
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
    extra = {}
    if probe is not None:
        availability = probe.served / probe.asked if probe.asked else 0.0
        lat = sorted(probe.latencies) or [0.0]
        extra = {"abusers": abuse, "peak_rss_mb": round(hwm_bytes(pid) / 2**20, 1) if pid else None,
                 "slot_availability": round(availability, 3), "probe_p50_s": round(lat[len(lat) // 2], 2),
                 "probe_max_s": round(lat[-1], 2)}
    return {
        "date": time.strftime("%Y-%m-%d"), "clients": clients, "duration_s": round(elapsed, 1),
        "requests": sum(stats.values()), "by_kind": dict(stats), "jobs": len(jobs), "job_states": dict(states),
        "lost_jobs": len(lost), "client_errors": len(errors), "first_errors": errors[:5],
        "rss_start_mb": round(rss_start / 2**20, 1), "rss_end_mb": round(rss_end / 2**20, 1),
        "rss_growth": round(growth, 3), "server_alive": alive, **extra,
        "ok": (not lost and not errors and alive and growth < 0.25
               and (probe is None or extra["slot_availability"] >= 0.9)),
    }


REPLICA_JOB = {"transcript": "Shared jobs spread over replicas.", "max_new_tokens": 40, "temperature": 1.0}


def job_throughput(urls: list[str], clients: int, duration: float) -> dict:
    """Clients submit jobs round-robin over ``urls`` and poll their status on the next replica, for ``duration``
    seconds; then every accepted job is followed to its final state."""
    accepted: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    until = time.monotonic() + duration

    def client(i: int) -> None:
        with httpx.Client(timeout=120) as http:
            n = 0
            while time.monotonic() < until:
                submit, read = urls[(i + n) % len(urls)], urls[(i + n + 1) % len(urls)]
                n += 1
                r = http.post(f"{submit}/run", json={"input": {**REPLICA_JOB, "seed": i * 1000 + n}})
                if r.status_code != 200:
                    errors.append(f"/run {r.status_code}: {r.text[:200]}")
                    time.sleep(0.5)
                    continue
                job_id = r.json()["id"]
                with lock:
                    accepted.append(job_id)
                while time.monotonic() < until + 300:
                    state = http.get(f"{read}/status/{job_id}")
                    if state.status_code != 200 or state.json()["status"] in FINAL:
                        break
                    time.sleep(0.1)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    states: Counter = Counter()
    workers: Counter = Counter()
    lost = 0
    with httpx.Client(timeout=60) as http:
        for job_id in accepted:
            deadline = time.monotonic() + 300
            while True:
                r = http.get(f"{urls[0]}/status/{job_id}")
                status = r.json()["status"] if r.status_code == 200 else "MISSING"
                if status in FINAL or status == "MISSING" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            states[status] += 1
            if status not in FINAL:
                lost += 1
            elif r.json().get("workerId"):
                workers[r.json()["workerId"]] += 1
    done = states.get("COMPLETED", 0)
    return {"replicas": len(urls), "jobs": len(accepted), "job_states": dict(states), "lost_jobs": lost,
            "client_errors": len(errors), "first_errors": errors[:3], "duration_s": round(elapsed, 1),
            "jobs_per_s": round(done / elapsed, 3) if elapsed else 0.0,
            "jobs_by_replica": sorted(workers.values(), reverse=True)}


def run_replicas(replicas: int, clients: int, duration: float, redis_server: str,
                 model_dir: Path | None = None) -> dict:
    """One replica, then ``replicas`` on one Redis job store (tiny model, loopback)."""
    import shutil
    import subprocess

    helpers = process_helpers()
    with tempfile.TemporaryDirectory() as tmp:
        port = helpers.free_port()
        redis_proc = subprocess.Popen([redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", tmp],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers: list = []
        try:
            helpers.wait_until(lambda: _redis_up(port), 20, "redis-server", redis_proc)
            env = server_env(tiny_model(tmp, model_dir), tmp, JOB_RETENTION_S="3600",
                             JOB_STORE=f"redis://127.0.0.1:{port}/0", JOB_LEASE_S="10")

            def start() -> None:
                server = helpers.Server(env, Path(tmp))
                servers.append(server)
                server.wait_ready()
                with httpx.Client(base_url=server.url, timeout=120) as http:  # warm-up
                    http.post("/runsync", json={"input": REPLICA_JOB}).raise_for_status()

            start()
            one = job_throughput([servers[0].url], clients, duration)
            while len(servers) < replicas:
                start()
            many = job_throughput([s.url for s in servers], clients, duration)
        finally:
            for server in servers:
                server.stop()
            redis_proc.terminate()
            redis_proc.wait(10)
            shutil.rmtree(Path(tmp) / "vol", ignore_errors=True)
    lost = one["lost_jobs"] + many["lost_jobs"]
    ratio = many["jobs_per_s"] / one["jobs_per_s"] if one["jobs_per_s"] else 0.0
    return {"date": time.strftime("%Y-%m-%d"), "clients": clients, "replicas": replicas,
            "jobs_per_s_one": one["jobs_per_s"], f"jobs_per_s_{replicas}": many["jobs_per_s"],
            "speedup": round(ratio, 2), "jobs_by_replica": many["jobs_by_replica"], "lost_jobs": lost,
            "client_errors": one["client_errors"] + many["client_errors"],
            "first_errors": one["first_errors"] + many["first_errors"], "one": one, "many": many,
            "ok": lost == 0 and not one["client_errors"] and not many["client_errors"]}


def _redis_up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--abuse", type=int, default=0, help="attackers beside the normal clients")
    parser.add_argument("--url")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model", type=Path,
                        help="a tiny-model folder from 'higgs-worker make-tiny-model' (default: one made afresh)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="with --redis: queued-job throughput of this many replicas against one")
    parser.add_argument("--redis", action="store_true",
                        help="share jobs through a redis-server started on loopback (JOB_STORE=redis://...)")
    args = parser.parse_args(argv)
    if args.replicas > 1 and not args.redis:
        parser.error("--replicas above 1 needs --redis (replicas share jobs only through Redis)")
    if args.redis:
        import shutil

        redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(redis_server).exists():
            parser.error("--redis needs redis-server (apt-get install redis-server)")
        if args.url or args.abuse:
            parser.error("--redis starts its own servers: no --url or --abuse with it")
        result = run_replicas(max(args.replicas, 1), args.clients, args.duration, redis_server, args.model)
    elif args.url:
        if not httpx.URL(args.url).host.startswith("127."):
            parser.error("--url must be a loopback address")
        result = run(args.url, args.clients, args.duration, None, args.abuse)
    else:
        with tiny_server(args.model, JOB_RETENTION_S="3600", STREAM_STALL_TIMEOUT_S="5") as server:
            result = run(server.url, args.clients, args.duration, server.proc.pid, args.abuse)
    report(result, args.json)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
