"""The real server (a subprocess on the tiny model) against clients that misbehave: streams nobody reads, sockets
closed mid-stream, requests without a key that announce a huge body, floods of junk jobs, a model that failed to
load. Each test names the limit it proves and fails when the server holds the slot, reads the body, keeps the
junk, or shows internals."""

from __future__ import annotations

import base64
import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from fixture_voices import write_voices
from servers import Server, wait_until

KEY = "abuse-key-3c9e51"
AUTH = {"Authorization": f"Bearer {KEY}"}
SMALL = {"model": "tts-1", "voice": "default", "input": "Next please.", "response_format": "wav",
         "max_new_tokens": 40, "seed": 1}
STALL_S = 2.0


def start(tiny_model_dir, root, **env: str) -> Server:
    voices = write_voices(root / "voices", ["tenor"])
    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "VOICES_DIR": str(voices), "LOG_DIR": str(root / "logs"), "VOLUME_ROOT": str(root / "vol"),
                  "API_KEYS": KEY, "MAX_CONCURRENT_JOBS": "1", **env}, root)
    try:
        srv.wait_ready()
    except BaseException:
        srv.stop()
        raise
    return srv


@pytest.fixture(scope="module")
def stall_server(tiny_model_dir, tmp_path_factory):
    """One speech slot, and streams cancelled after 2 s without a read."""
    srv = start(tiny_model_dir, tmp_path_factory.mktemp("stall"), STREAM_STALL_TIMEOUT_S=str(STALL_S))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def patient_server(tiny_model_dir, tmp_path_factory):
    """One slot, a stall timeout far beyond any test (so only a disconnect can free a stream quickly), and a
    small job store: 4 finished jobs or 300 kB of them."""
    srv = start(tiny_model_dir, tmp_path_factory.mktemp("patient"), STREAM_STALL_TIMEOUT_S="600",
                JOB_RETAIN_MAX="4", JOB_RETAIN_BYTES="300000")
    yield srv
    srv.stop()


def long_stream(kind: str) -> dict:
    """A long speech stream: 60 one-word chunks of up to 4000 frames each (over five minutes of audio, about 30 s of
    generation on two CPU cores when read at full speed)."""
    return {"model": "tts-1", "voice": "default", "input": " ".join(f"w{i}" for i in range(60)),
            "response_format": "pcm", "stream_format": kind, "chunk_method": "word", "chunk_max_word_num": 1,
            "max_new_tokens": 4000, "temperature": 1.0, "seed": 2}


def raw_post(port: int, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
             content_length: int | None = None, rcvbuf: int | None = None) -> socket.socket:
    """Send a request's head (and ``body``) on a plain socket; read nothing."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # a client that will not take data
    sock.connect(("127.0.0.1", port))
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             f"Content-Length: {len(body) if content_length is None else content_length}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return sock


def read_head(sock: socket.socket, timeout: float = 10.0) -> tuple[int, bytes]:
    """The status code and the bytes read so far (at least the whole head)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def until_a_second_request_succeeds(srv: Server, timeout: float) -> tuple[float, list[int]]:
    """Poll with a small whole-file request; seconds until it got 200, and the codes seen on the way."""
    codes: list[int] = []
    began = time.monotonic()

    def succeeded():
        code = httpx.post(f"{srv.url}/v1/audio/speech", json=SMALL, headers=AUTH, timeout=60).status_code
        codes.append(code)
        assert code in (200, 429), code
        return code == 200

    wait_until(succeeded, timeout, "a second speech request to succeed", srv.proc)
    return time.monotonic() - began, codes


def unsent_bytes(server_port: int, client_port: int) -> int | None:
    """Bytes the server's socket for this connection holds unacknowledged (``tx_queue`` in /proc/net/tcp)."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return int(fields[4].split(":")[0], 16)
    return None


def until_the_server_is_blocked(sock: socket.socket, server_port: int) -> None:
    """Wait until the server's writes for ``sock`` stopped: its socket holds unsent audio, unchanged over several
    polls (the client's window is closed and the server has stopped pushing)."""
    client_port = sock.getsockname()[1]
    seen: list[int | None] = []

    def blocked():
        seen.append(unsent_bytes(server_port, client_port))
        last = seen[-8:]
        return len(last) == 8 and last[0] and all(v == last[0] for v in last)

    wait_until(blocked, 60, "the server to stop writing to a client that does not read")


def decoding(srv: Server) -> int:
    return httpx.get(f"{srv.url}/health", timeout=10).json()["model"]["decoding"]


# -- item 2: streams cannot hold the slot -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["audio", "sse"])
def test_a_stream_nobody_reads_is_cancelled_after_the_stall_timeout(stall_server, kind):
    sock = raw_post(stall_server.port, "/v1/audio/speech", json.dumps(long_stream(kind)).encode(), AUTH,
                    rcvbuf=4096)
    try:
        opened = time.monotonic()
        seconds, codes = until_a_second_request_succeeds(stall_server, 90)
        assert codes[0] == 429  # the stalled stream held the only slot ...
        # ... until its buffers filled and nothing was read for STALL_S; the generation itself had minutes to go
        print(f"\n{kind}: second request succeeded {time.monotonic() - opened:.1f} s after the stream opened")
        assert seconds < 60
        wait_until(lambda: decoding(stall_server) == 0, 20, "the stalled generation to stop")
        assert "STREAM_STALL_TIMEOUT_S" in stall_server.output()
    finally:
        sock.close()


@pytest.mark.parametrize("kind", ["audio", "sse"])
def test_a_closed_stream_frees_its_slot_at_once(patient_server, kind):
    sock = raw_post(patient_server.port, "/v1/audio/speech", json.dumps(long_stream(kind)).encode(), AUTH,
                    rcvbuf=4096)
    until_the_server_is_blocked(sock, patient_server.port)  # the worst moment: mid-write to a full socket
    assert httpx.post(f"{patient_server.url}/v1/audio/speech", json=SMALL, headers=AUTH,
                      timeout=60).status_code == 429
    sock.close()  # unread audio in the socket: the client's kernel resets the connection
    closed = time.monotonic()
    seconds, _ = until_a_second_request_succeeds(patient_server, 60)
    print(f"\n{kind}: second request succeeded {time.monotonic() - closed:.2f} s after the socket closed")
    assert time.monotonic() - closed < 10  # the stall timeout here is 600 s: only the disconnect freed it
    assert decoding(patient_server) == 0


# -- item 3: the key is checked before the body ------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": KEY}])
def test_no_valid_key_is_401_before_any_body_is_read(stall_server, headers):
    # Over MAX_BODY_BYTES: a body limit looked at first would answer 413.
    sock = raw_post(stall_server.port, "/v1/audio/speech", headers=headers, content_length=10**12)
    with sock:
        assert read_head(sock)[0] == 401
    # Under the limit but never sent: a server that read the body first would wait for it (and time out here).
    sock = raw_post(stall_server.port, "/runsync", headers=headers, content_length=1_000_000)
    with sock:
        status, head = read_head(sock)
        assert status == 401 and b"www-authenticate: bearer" in head.lower()


def test_with_a_key_the_body_limit_still_applies(stall_server):
    sock = raw_post(stall_server.port, "/v1/audio/speech", headers=AUTH, content_length=10**12)
    with sock:
        assert read_head(sock)[0] == 413


def test_api_description_needs_the_key_health_does_not(stall_server):
    for path in ("/docs", "/redoc", "/openapi.json", "/metrics", "/v1/models"):
        assert httpx.get(f"{stall_server.url}{path}").status_code == 401, path
        assert httpx.get(f"{stall_server.url}{path}", headers=AUTH).status_code == 200, path
    for path in ("/ping", "/health", "/"):
        assert httpx.get(f"{stall_server.url}{path}").status_code == 200, path


# -- item 4: the job store stays bounded -------------------------------------------------------------------------

def rss_bytes(srv: Server) -> int:
    with open(f"/proc/{srv.proc.pid}/status") as status:
        line = next(ln for ln in status if ln.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_junk_jobs_do_not_accumulate(patient_server):
    url = patient_server.url
    junk = "j" * (6 * 1024 * 1024)
    bad_audio = base64.b64encode(b"\0" * (4 * 1024 * 1024)).decode()  # valid base64, not audio

    def unknown_field(client):
        answer = client.post("/run", json={"input": {"transcript": "x", "junk_field": junk}}).json()
        assert answer["status"] == "FAILED" and "junk_field: unknown field" in answer["error"], answer
        return answer["id"]

    def undecodable(client):
        job = client.post("/runsync", json={"input": {"transcript": "x", "ref_audio": bad_audio,
                                                      "ref_text": "words"}}).json()
        assert job["status"] == "FAILED" and "ref_audio" in job["error"], job
        return job["id"]

    with httpx.Client(base_url=url, headers=AUTH, timeout=120) as client:
        for _ in range(2):  # warm the allocator's pools with one request of each kind
            unknown_field(client)
            undecodable(client)
        before = rss_bytes(patient_server)
        refused = [unknown_field(client) for _ in range(20)]
        assert [client.get(f"/status/{i}").status_code for i in refused] == [404] * 16 + [200] * 4
        assert client.get(f"/status/{refused[-1]}").json()["status"] == "FAILED"
        # queued, run, failed: each keeps its input for /retry, counted in the store's byte cap, so only the newest
        # (always kept) survives the bound
        failed = [undecodable(client) for _ in range(10)]
        after = rss_bytes(patient_server)
        assert [client.get(f"/status/{i}").status_code for i in failed] == [404] * 9 + [200]
        health = client.get("/health").json()["jobs"]
        assert health["inQueue"] == 0 and health["inProgress"] == 0
    sent = 20 * len(junk) + 10 * len(bad_audio)
    print(f"\nRSS before {before / 2**20:.0f} MiB, after {after / 2**20:.0f} MiB "
          f"({sent / 2**20:.0f} MiB of junk sent)")
    assert after - before < 48 * 2**20  # kept inputs would add at least the ~160 MiB sent


def test_finished_jobs_are_evicted_oldest_first_by_bytes(patient_server):
    with httpx.Client(base_url=patient_server.url, headers=AUTH, timeout=120) as client:
        jobs = [client.post("/runsync", json={"input": {"transcript": f"Kept or not {i}.", "max_new_tokens": 60,
                                                        "seed": i, "temperature": 1.0}}).json()
                for i in range(4)]
        assert all(j["status"] == "COMPLETED" for j in jobs), jobs
        sizes = [len(j["output"]["audio_base64"]) for j in jobs]
        present = [client.get(f"/status/{j['id']}").status_code == 200 for j in jobs]
    print(f"\noutput sizes {sizes}, kept {present}")
    assert present[-1] and present == sorted(present)  # the newest is kept; what is gone is the oldest
    kept = [s for s, p in zip(sizes, present, strict=True) if p]
    assert sum(kept) <= 300_000 or len(kept) == 1
    assert not present[0] and sum(sizes) > 300_000  # four results do not fit in 300 kB: the first went
