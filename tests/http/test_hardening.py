"""Issue 25's HTTP findings, each reproduced at a small scale against the real server (a subprocess on the tiny
model, loopback only) or the real app in-process, with the bound it must keep:

- open routes (``/health``, ``/ping``, ``/``, ``/static/…``) refuse a body unread: a keyless flood of large bodies
  leaves the server's memory where it was;
- keyed bodies: how many are received at once and how many bytes they hold are bounded (503 before reading past
  either), and every body has a deadline (408);
- a flood of half-sent requests (descriptors limited to a few hundred) cannot stop ``/ping`` answering, on
  ``PORT`` or ``PORT_HEALTH``, and the half-sent connections are closed at the head deadline;
- a flood of garbage requests writes a bounded number of log lines;
- the stream stall detector judges progress: a client reading steadily at 0.8x real time gets its whole stream;
- every speech route has a time limit, and ``/captioned`` an inline size cap;
- the studio and the docs carry security headers, and ``/docs`` loads nothing from elsewhere;
- ``API_KEYS=","`` refuses to start.

Figures (RSS growth, ``/ping`` latencies) are printed with ``-s``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import unavailable
from fixture_voices import write_voices
from servers import Server, free_port, wait_until

KEY = "hardening-key-81d0c4"
AUTH = {"Authorization": f"Bearer {KEY}"}
MIB = 1024 * 1024
BODY_LIMIT = 8 * MIB
STALL_S = 2.0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    """Small bounds: 8 MiB bodies, 16 MiB of them and 4 being received at once, 2 s for a body or a request head,
    100 connections, 5 log lines of a kind per minute; ``/ping`` also on ``PORT_HEALTH``."""
    root = tmp_path_factory.mktemp("hardening")
    health_port = free_port()
    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "VOICES_DIR": str(write_voices(root / "voices", ["tenor"])), "LOG_DIR": str(root / "logs"),
                  "VOLUME_ROOT": str(root / "vol"), "API_KEYS": KEY, "PORT_HEALTH": str(health_port),
                  "MAX_BODY_BYTES": str(BODY_LIMIT), "MAX_BODY_BYTES_IN_FLIGHT": str(2 * BODY_LIMIT),
                  "MAX_CONCURRENT_BODIES": "4", "BODY_TIMEOUT_S": "2", "HEADER_TIMEOUT_S": "2",
                  "MAX_CONNECTIONS": "100", "LOG_REPEAT_LIMIT": "5"}, root)
    srv.health_port = health_port
    srv.log_dir = root / "logs"
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


# -- helpers: raw connections, memory ------------------------------------------------------------------------------

def send_head(port: int, method: str, path: str, length: int | None, headers: dict[str, str] | None = None,
              end: bool = True) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + ("\r\n\r\n" if end else "\r\n")).encode())
    return sock


def read_answer(sock: socket.socket, timeout: float = 30.0) -> tuple[int, bytes]:
    """Status code and the whole answer: its head, and its body by ``Content-Length`` (0: closed unanswered)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if sep and (length is None or len(body) >= int(length.group(1))):
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return (int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0), data


def error_of(answer: bytes) -> str:
    return json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["message"]


def gauge(server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", headers=AUTH).text
    return float(re.search(rf"(?m)^{name} (\S+)$", text).group(1))


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS:")).split()[1]) * 1024


class PeakRSS:
    """Samples a process's resident memory on a thread for the length of a ``with`` block."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = self.start = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss(self.pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss(self.pid))

    @property
    def growth(self) -> int:
        return self.peak - self.start


def post_whole_body(port: int, method: str, path: str, size: int, headers: dict[str, str] | None = None) -> int:
    """Send a request with a ``size``-byte body as fast as the server takes it; the status it got (0: none)."""
    sock = send_head(port, method, path, size, headers)
    with sock:
        answer: list[tuple[int, bytes]] = []
        reader = threading.Thread(target=lambda: answer.append(read_answer(sock, 60)))
        reader.start()
        try:
            sock.sendall(b"x" * size)
        except OSError:
            pass  # refused and closed before the body was taken
        reader.join()
        return answer[0][0]


def flood(count: int, task) -> list:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(task, range(count)))


# -- item 1: bodies ----------------------------------------------------------------------------------------------

def test_open_routes_refuse_a_body_unread(server):
    """A keyless flood of 8 MiB bodies at the routes that need no key: each is refused with 413 before a byte of
    the body is read, so the server's memory does not follow what was sent."""
    targets = [("GET", "/health"), ("GET", "/ping"), ("GET", "/"), ("GET", "/static/studio.js"), ("POST", "/ping")]
    httpx.get(f"{server.url}/health")  # warm
    with PeakRSS(server.proc.pid) as memory:
        codes = flood(16, lambda i: post_whole_body(server.port, *targets[i % len(targets)], BODY_LIMIT))
    print(f"\nkeyless flood of 16 x 8 MiB: RSS {memory.start / MIB:.0f} MiB, peak +{memory.growth / MIB:.1f} MiB")
    assert codes == [413] * 16
    assert memory.growth < 24 * MIB  # buffering them would add up to 128 MiB
    sock = send_head(server.port, "GET", "/health", 10**9)  # never sent: a server that waited for it hangs here
    with sock:
        status, answer = read_answer(sock)
    assert status == 413 and b"connection: close" in answer.lower()
    assert error_of(answer) == "body: this route (GET /health) takes no request body"
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_a_route_without_a_body_refuses_one_with_a_key_too(server):
    answer = httpx.post(f"{server.url}/cancel/nope", content=b"{}", headers=AUTH)
    assert answer.status_code == 413
    assert answer.json()["error"]["message"] == "body: this route (POST /cancel/nope) takes no request body"


def test_keyed_bodies_are_bounded_in_number_bytes_and_time(server):
    """With a key: 4 bodies received at once, 16 MiB held at once; past either, 503 with Retry-After before a byte
    is read; an admitted body that does not arrive gets 408 at BODY_TIMEOUT_S."""
    answers = []
    for path, size in (("/v1/audio/speech", BODY_LIMIT), ("/run", 1000)):  # no body byte is ever sent
        socks = [send_head(server.port, "POST", path, size, AUTH) for _ in range(6)]
        answers.append([read_answer(sock) for sock in socks])
        for sock in socks:
            sock.close()
    big, small = ([code for code, _ in group] for group in answers)
    print(f"\n6 heads of 8 MiB, no body: {big}; then 6 heads of 1000 B: {small}")
    assert sorted(big) == [408] * 2 + [503] * 4  # 2 x 8 MiB fill the 16 MiB
    assert sorted(small) == [408] * 4 + [503] * 2  # 4 bodies at once
    messages = [error_of(answer) for group in answers for code, answer in group]
    assert all("BODY_TIMEOUT_S" in m for m, (code, _) in zip(messages, answers[0] + answers[1]) if code == 408)
    assert [m for m in messages if "MAX_BODY_BYTES_IN_FLIGHT" in m].__len__() == 4
    assert [m for m in messages if "MAX_CONCURRENT_BODIES" in m].__len__() == 2
    assert all(b"retry-after: 2" in answer.lower() for group in answers for code, answer in group if code == 503)
    assert gauge(server, "higgs_http_bodies_receiving") == 0 and gauge(server, "higgs_http_body_bytes_held") == 0


def test_a_chunked_body_is_bounded_as_it_arrives(server):
    """A chunked body declares no length: it reserves bytes as they arrive, and is refused when they do not fit."""
    held = [send_head(server.port, "POST", "/v1/audio/speech", BODY_LIMIT, AUTH) for _ in range(2)]
    try:
        wait_until(lambda: gauge(server, "higgs_http_body_bytes_held") == 2 * BODY_LIMIT, 30,
                   "two 8 MiB bodies to be admitted")
        chunked = httpx.post(f"{server.url}/run", content=iter([b"x" * 4096] * 400), headers=AUTH)
        assert chunked.status_code == 503 and "MAX_BODY_BYTES_IN_FLIGHT" in chunked.json()["error"]["message"]
    finally:
        for sock in held:
            sock.close()
    too_big = httpx.post(f"{server.url}/run", content=iter([b"x" * 65536] * 200), headers=AUTH)
    assert too_big.status_code == 413 and "MAX_BODY_BYTES" in too_big.json()["error"]["message"]


def test_keyed_flood_of_whole_bodies_holds_bounded_memory(server):
    """16 clients with the key each send 8 MiB at once: at most 16 MiB are admitted, the rest refused unread."""
    with PeakRSS(server.proc.pid) as memory:
        codes = flood(16, lambda i: post_whole_body(server.port, "POST", "/v1/audio/speech", BODY_LIMIT, AUTH))
    print(f"\nkeyed flood of 16 x 8 MiB: {sorted(codes)}; RSS {memory.start / MIB:.0f} MiB, "
          f"peak +{memory.growth / MIB:.1f} MiB")
    assert set(codes) <= {400, 503} and codes.count(503) >= 8
    assert memory.growth < 64 * MIB  # all 16 buffered: 128 MiB and their copies


# -- item 3: log flooding ----------------------------------------------------------------------------------------

def test_a_flood_of_garbage_requests_writes_few_log_lines(server):
    def garbage(_):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"\x00\x01 not http at all\r\n\r\n")
            return read_answer(sock)[0]

    codes = flood(8, lambda i: [garbage(i) for _ in range(25)])
    assert all(code == 400 for batch in codes for code in batch)
    log_file = server.log_dir / "server.log"
    wait_until(lambda: "Invalid HTTP request" in log_file.read_text(errors="replace"), 10, "the first log line")
    lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if "Invalid HTTP request" in ln]
    print(f"\n200 garbage requests: {len(lines)} log lines about them")
    assert 1 <= len(lines) <= 5  # LOG_REPEAT_LIMIT


# -- item 3: half-sent requests cannot stop /ping ------------------------------------------------------------------

def ping_latency(port: int) -> float:
    began = time.monotonic()
    answer = httpx.get(f"http://127.0.0.1:{port}/ping", timeout=10)
    assert answer.status_code == 200
    return time.monotonic() - began


def test_half_sent_requests_cannot_stop_ping(server):
    """The server's open-file limit lowered to what it holds plus 400: 600 half-sent requests would take every
    descriptor. /ping on PORT and PORT_HEALTH keeps answering; the half-sent connections are closed at
    HEADER_TIMEOUT_S."""
    pid = server.proc.pid
    held = len(os.listdir(f"/proc/{pid}/fd"))
    limit = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (held + 400, limit[1]))
    socks: list[socket.socket] = []
    try:
        quiet = [ping_latency(server.port) for _ in range(3)]
        for _ in range(600):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and never the rest
            socks.append(sock)
        health = [ping_latency(server.health_port) for _ in range(5)]
        flooded = [ping_latency(server.port) for _ in range(5)]
        print(f"\n/ping quiet {max(quiet) * 1000:.0f} ms; with 600 half-sent requests open: PORT worst "
              f"{max(flooded) * 1000:.0f} ms, PORT_HEALTH worst {max(health) * 1000:.0f} ms")
        open_ = set(socks)

        def all_closed() -> bool:  # closed by the server: readable, and a read gives b"" (or a reset)
            for sock in select.select(list(open_), [], [], 0)[0]:
                try:
                    if sock.recv(4096, socket.MSG_DONTWAIT) == b"":
                        open_.discard(sock)
                except ConnectionResetError:
                    open_.discard(sock)
                except BlockingIOError:
                    pass
            return not open_

        wait_until(all_closed, 30, "the server to close every half-sent connection")
        assert len(os.listdir(f"/proc/{pid}/fd")) < held + 50
    finally:
        for sock in socks:
            sock.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, limit)
    assert httpx.get(f"{server.url}/health").status_code == 200


# -- item 4 and 10, in-process: time limits, the inline cap, headers, docs ------------------------------------------

@pytest.fixture()
def with_asr(env, tiny_model_dir):
    """The tiny Whisper beside the engine (``/captioned`` hears the words it returns)."""
    env(ASR="on", ASR_PATH=str(tiny_model_dir / "asr"))


@pytest.fixture()
def client_for(with_asr, client_for):
    """The shared in-process clients (tests/conftest.py), with the tiny Whisper loaded."""
    return client_for


# -- item 10: the stall detector judges progress -----------------------------------------------------------------

class InProcessServer:
    """An ASGI app under uvicorn on loopback (a thread of this process), with the given protocol class."""

    def __init__(self, app, protocol) -> None:
        import asyncio

        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, loop="asyncio",
                                                    http=protocol, log_config=None))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_until(lambda: self.server.started, 60, "the in-process server to start")
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(60)


class SmallSendBuffer(InProcessServer):
    """The real app, each connection's kernel send buffer held at 16 KiB: as on a real network, where a far
    client's window, not loopback's megabytes of buffer, limits what the server can push ahead of the reader."""

    def __init__(self, app) -> None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        class Protocol(AutoHTTPProtocol):
            def connection_made(self, transport) -> None:
                transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
                super().connection_made(transport)

        super().__init__(app, Protocol)


def open_stream(port: int, body: dict) -> socket.socket:
    payload = json.dumps(body).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    return sock


def read_stream_at(sock: socket.socket, bytes_per_s: float) -> tuple[bytes, bool]:
    """Read a chunked response at a steady rate; the body and whether its last chunk came."""
    sock.settimeout(60)
    began = time.monotonic()
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):
        ahead = len(data) / bytes_per_s - (time.monotonic() - began)
        if ahead > 0:
            time.sleep(ahead)  # pacing the reader, not waiting for the server
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return data, False
        if not chunk:
            return data, False
        data += chunk
    return data, True


def test_the_stall_detector_judges_progress(client_for, caplog):
    """A verified chunk of 6 s of audio comes as one 288 KB piece; read at 0.8x real time that takes 7.5 s, far past
    the 2 s stall timeout, though the reader never stops: it gets the whole stream. One that stops reading is cut."""
    app = client_for(stream_stall_timeout_s=STALL_S).app
    body = {"model": "tts-1", "voice": "default", "input": "Steady reader.", "response_format": "pcm",
            "stream_format": "audio", "max_new_tokens": 150, "temperature": 1.0, "seed": 3,
            "verify": {"max_attempts": 1}, "trim_silence": False}
    with SmallSendBuffer(app) as server, caplog.at_level(logging.WARNING):
        with open_stream(server.port, body) as sock:
            data, complete = read_stream_at(sock, 0.8 * 24000 * 2)
        assert data.startswith(b"HTTP/1.1 200"), data[:300]
        audio_bytes = len(data.partition(b"\r\n\r\n")[2])
        print(f"\nread {audio_bytes} bytes at 0.8x real time; complete: {complete}")
        assert complete, "the stream was cut: the stall detector took a slow reader for a stalled one"
        assert "STREAM_STALL_TIMEOUT_S" not in caplog.text
        with open_stream(server.port, body) as sock:  # reads the head, then nothing
            wait_until(lambda: "STREAM_STALL_TIMEOUT_S" in caplog.text, 120, "the stalled stream to be cancelled")
    wait_until(lambda: app.state.speech_inflight == 0, 30, "the slot to come back")


LONG = {"model": "tts-1", "voice": "default", "input": " ".join(f"w{i}" for i in range(40)), "chunk_method": "word",
        "chunk_max_word_num": 1, "max_new_tokens": 2000, "temperature": 1.0, "seed": 4, "response_format": "pcm"}


def test_whole_speech_stops_at_the_time_limit(client_for):
    client = client_for(speech_timeout_s=1.0)
    answer = client.post("/v1/audio/speech", json=LONG)
    assert answer.status_code == 504, answer.text[:300]
    assert "SPEECH_TIMEOUT_S" in answer.json()["error"]["message"]
    captioned = client.post("/v1/audio/speech/captioned", json=LONG)
    assert captioned.status_code == 504 and "SPEECH_TIMEOUT_S" in captioned.json()["error"]["message"]
    assert client.app.state.speech_inflight == 0


def test_sse_speech_ends_with_an_error_event_at_the_time_limit(client_for):
    client = client_for(speech_timeout_s=1.0)
    with client.stream("POST", "/v1/audio/speech", json={**LONG, "stream_format": "sse"}) as answer:
        events = [json.loads(line[5:]) for line in answer.iter_lines() if line.startswith("data:")]
    assert events[-1]["type"] == "error" and "SPEECH_TIMEOUT_S" in events[-1]["error"], events[-1]
    assert not any(e["type"] == "speech.audio.done" for e in events)
    wait_until(lambda: client.app.state.speech_inflight == 0, 30, "the slot to come back")


def test_an_audio_stream_is_cut_at_the_time_limit(client_for):
    """An audio stream has no in-band error: past the limit it ends without its last chunk, so the client sees a
    broken stream, not a short file it would take for the whole speech."""
    app = client_for(speech_timeout_s=1.0).app
    with SmallSendBuffer(app) as server, open_stream(server.port, {**LONG, "stream_format": "audio"}) as sock:
        data, complete = read_stream_at(sock, 10**9)
    assert data.startswith(b"HTTP/1.1 200") and not complete
    wait_until(lambda: app.state.speech_inflight == 0, 30, "the slot to come back")


def test_captioned_audio_is_capped_inline(client_for):
    client = client_for(max_inline_bytes=1024)
    answer = client.post("/v1/audio/speech/captioned", json={"model": "tts-1", "voice": "default", "input": "Hi.",
                                                             "max_new_tokens": 20, "response_format": "wav"})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "response_format" and "MAX_INLINE_BYTES" in error["message"]


def test_pages_carry_security_headers_and_docs_load_nothing_from_elsewhere(client_for):
    client = client_for()
    for path in ("/", "/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy and "unsafe" not in policy
        assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    docs = client.get("/docs").text
    assert "<script" not in docs and not re.search(r"""(src|href)=["']?(https?:)?//""", docs)
    assert "/v1/audio/speech" in docs and "response_format" in docs and "openapi.json" in docs
    data = client.get("/v1/models")
    assert data.headers["x-content-type-options"] == "nosniff"
    assert data.headers["content-security-policy"].startswith("default-src 'none'")


def chromium() -> str | None:
    for candidate in (os.environ.get("STUDIO_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """The system's chromium, as the studio's tests use it (a skip without one, a failure in CI)."""
    path = chromium()
    if path is None:
        unavailable("no chromium browser found (apt-get install chromium; or set STUDIO_CHROMIUM)")
    return {**browser_type_launch_args, "executable_path": path,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]}


def test_the_studio_and_the_docs_break_no_rule_of_their_policy(server, page):
    """In a real browser: the studio's scripts, styles and icon, and the docs page, load under the policy with no
    violation reported."""
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.set_extra_http_headers(AUTH)
    page.goto(f"{server.url}/")
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    assert page.evaluate("getComputedStyle(document.body).fontFamily")  # the stylesheet applied
    page.goto(f"{server.url}/docs")
    assert page.locator("h1").inner_text().startswith("higgs-audio-worker")
    assert violations == []


def test_docs_escape_what_they_show():
    from higgs_worker.http.docs import render_docs

    page = render_docs({"openapi": "3.1.0", "info": {"title": "<b>t</b>", "version": "1"},
                        "paths": {"/x": {"get": {"summary": "<script>alert(1)</script>", "tags": ["A"]}}}})
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>t</b>" not in page


# -- item 10: API_KEYS="," ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("keys", [",", " , ,"])
def test_api_keys_without_a_key_refuse_to_start(keys, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEYS", "HIGGS_DEMO")}
    env.update({"API_KEYS": keys, "LOG_DIR": str(tmp_path / "logs"), "VOLUME_ROOT": str(tmp_path / "vol"),
                "PRELOAD_MODELS": "false"})
    done = subprocess.run([sys.executable, "-m", "higgs_worker.cli", "serve", "--host", "127.0.0.1", "--port",
                           str(free_port())], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "invalid setting API_KEYS: Value error, is set but names no key" in done.stderr


def test_api_keys_with_a_key_among_commas_still_start():
    from higgs_worker.core.settings import Settings

    assert Settings(api_keys=" ,k1,, k2 ,").api_key_list == ["k1", "k2"]
    assert Settings(api_keys="").api_key_list == []  # empty: no keys, as when unset


# -- item 3: the log filter itself ---------------------------------------------------------------------------------

def test_repeated_log_lines_are_dropped_and_counted():
    from higgs_worker.core.logs import RepeatFilter

    now = [0.0]
    repeats = RepeatFilter(3, window_s=60, clock=lambda: now[0])

    def record(msg: str, *args) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, msg, args, None)

    passed = [repeats.filter(record("Invalid HTTP request from %s", i)) for i in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert repeats.filter(record("another message"))  # counted apart
    now[0] = 61.0
    later = record("Invalid HTTP request from %s", 99)
    assert repeats.filter(later)
    assert later.getMessage() == ("Invalid HTTP request from 99 [7 more like this were dropped in the last 60 s "
                                  "(LOG_REPEAT_LIMIT)]")
    same = record("x")
    assert repeats.filter(same) and repeats.filter(same)  # a record judged once serves every handler


# -- item 3: the connection guard on either of uvicorn's HTTP protocols ---------------------------------------------

async def answer_unread(scope, receive, send) -> None:
    """Answers 200 without reading any body."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def closed_by_server(sock: socket.socket, timeout: float = 30) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("kind", ["httptools", "h11"])
def test_the_connection_guard(kind):
    """A cap of 4: a fifth connection closes the one that waited longest for its head, and is served; a half-sent
    head is closed at the deadline; an answer sent before the body arrived closes the connection, undrained."""
    from higgs_worker.http.connections import guarded_protocol

    if kind == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    else:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    protocol = guarded_protocol(base, max_connections=4, header_timeout_s=1.0, reserved_fds=0)
    with InProcessServer(answer_unread, protocol) as server:
        half = []
        for _ in range(4):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never the blank line
            half.append(sock)
        assert httpx.get(f"http://127.0.0.1:{server.port}/", timeout=10).text == "ok"
        assert all(closed_by_server(sock) for sock in half)  # the first evicted, the rest at the deadline
        sock = send_head(server.port, "POST", "/", 10**6)
        with sock:
            sock.sendall(b"x" * 1000)
            status, _ = read_answer(sock)
            assert status == 200 and closed_by_server(sock)  # not left open to take the other 999,000 bytes
        with socket.create_connection(("127.0.0.1", server.port)) as idle:
            assert closed_by_server(idle)  # connected, sent nothing


def test_a_body_budget_below_the_largest_body_refuses_to_start():
    from pydantic import ValidationError

    from higgs_worker.core.settings import Settings

    with pytest.raises(ValidationError, match="MAX_BODY_BYTES_IN_FLIGHT is below MAX_BODY_BYTES"):
        Settings(max_body_bytes=2 * MIB, max_body_bytes_in_flight=MIB)
