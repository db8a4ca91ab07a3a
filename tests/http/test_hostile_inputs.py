"""Hostile references against the real server in a subprocess (tiny model, loopback only): audio that lies about
its size must not raise the server's peak memory, files that name other files are refused, parallel uploads of one
name store exactly one voice, and a URL that trickles its answer is cut off at the deadline."""

from __future__ import annotations

import base64
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from fixture_voices import encoded, write_voices
from hostile_media import DripOrigin, ffconcat, playlist, silent_flac
from servers import LoopbackHTTPServer, Server

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory is read from /proc")

MB = 1024 * 1024
URL_TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    voices = write_voices(root / "voices", ["tenor"])
    # What a concat script or a playlist would read from the server's working directory.
    (root / "secret.wav").write_bytes(encoded("wav", 1.0))
    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "VOICES_DIR": str(voices), "LOG_DIR": str(root / "logs"), "VOLUME_ROOT": str(root / "vol"),
                  "ALLOW_REF_AUDIO_URLS": "true", "REF_AUDIO_URL_ALLOW_HTTP": "true",
                  "REF_AUDIO_URL_ALLOW_LOOPBACK": "true", "REF_AUDIO_URL_TIMEOUT_S": str(URL_TIMEOUT_S)}, root)
    srv.voices = voices
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes: the kernel tracks it, nothing is sampled."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def runsync_with_reference(http, data: bytes) -> dict:
    # a data URI: short base64 could otherwise read as a voice name
    uri = "data:application/octet-stream;base64," + base64.b64encode(data).decode()
    job = {"input": {"transcript": "Hello.", "ref_audio": uri, "ref_text": "Words.",
                     "max_new_tokens": 20, "seed": 1}}
    return http.post("/runsync", json=job).json()


def upload(http, name: str, data: bytes, transcript: str = "Words.") -> httpx.Response:
    return http.post("/v1/audio/voices", files={"audio": ("voice.bin", data, "application/octet-stream")},
                     data={"name": name, "transcript": transcript})


def test_hostile_references_do_not_raise_peak_memory(server, http):
    # Warm every path the hostile requests take (job thread, upload thread, the decoder itself) with refusals of
    # ordinary clips, so the comparison measures the hostile clips alone.
    short = encoded("flac", 0.1, 44100, 2)
    assert "at least 0.2 s" in runsync_with_reference(http, short)["error"]
    assert upload(http, "warm", short).status_code == 400
    for _ in range(3):  # the same shape as the attack below, with harmless clips: each path's threads warmed
        assert "at least 0.2 s" in runsync_with_reference(http, short)["error"]
        assert upload(http, "warm", short).status_code == 400
    with ThreadPoolExecutor(6) as pool:  # and the server threads that parallel uploads wake (their stacks, arenas)
        assert set(pool.map(lambda i: upload(http, f"warm{i}", short).status_code, range(6))) == {400}
        assert set(pool.map(lambda i: upload(http, f"warm{i}", short).status_code, range(6))) == {400}
    before = peak_rss(server.proc.pid)

    unknown_length = silent_flac(150, declared_total=0)  # 5 KB of 8-channel silence; 315 MB decoded at full rate
    honest = silent_flac(150)
    lying = silent_flac(150, declared_total=8000)
    jobs, uploads = [], []
    for data in (honest, unknown_length, lying):
        assert len(data) < 6000
        jobs.append(runsync_with_reference(http, data))
        uploads.append(upload(http, "hostile", data))
    with ThreadPoolExecutor(6) as pool:  # parallel uploads cannot multiply the peak
        uploads += list(pool.map(lambda i: upload(http, f"hostile{i}", unknown_length), range(6)))
    rise = peak_rss(server.proc.pid) - before

    # One unbounded decode of that clip alone is 315 MB; bounded decoding, six at once, stays far below this.
    assert rise <= 128 * MB, f"peak memory rose by {rise / MB:.0f} MB"
    for job in jobs:
        assert job["status"] == "FAILED" and "MAX_REF_AUDIO_SECONDS" in job["error"], job
    for refused in uploads:
        assert refused.status_code == 400 and "MAX_REF_AUDIO_SECONDS" in refused.json()["error"]["message"]
    assert "hostile" not in {v["name"] for v in http.get("/v1/audio/voices").json()["data"]}


@pytest.mark.parametrize("payload", [ffconcat("secret.wav"), playlist("secret.wav")],
                         ids=["ffconcat", "playlist"])
def test_files_naming_other_files_are_refused(server, http, payload):
    refused = upload(http, "sneaky", payload)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["param"] == "audio" and "accepted audio container" in error["message"]
    assert "sneaky" not in {v["name"] for v in http.get("/v1/audio/voices").json()["data"]}
    job = runsync_with_reference(http, payload)
    assert job["status"] == "FAILED" and "accepted audio container" in job["error"], job


def test_parallel_uploads_of_one_name_give_one_201_and_the_rest_409(server, http):
    raw = encoded("flac", 1.0, 44100, 2)
    start = threading.Barrier(8)

    def one(i):
        start.wait()
        return upload(http, "contested", raw, f"Take {i}.")

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(one, range(8)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 7, [r.text for r in responses]
    winner = next(r.json() for r in responses if r.status_code == 201)
    listed = {v["name"]: v for v in http.get("/v1/audio/voices").json()["data"]}
    assert listed["contested"]["transcript"] == winner["transcript"]  # nobody overwrote the winner
    left = sorted(p.name for p in (server.voices / "uploads").iterdir() if p.name != ".lock")
    assert left == ["contested.txt", "contested.wav"]  # no temporary files left behind
    assert http.delete("/v1/audio/voices/contested").status_code == 200


def test_a_voice_name_with_a_trailing_newline_is_refused(server, http):
    refused = upload(http, "newline\n", encoded("flac", 1.0))
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "name"
    assert http.delete("/v1/audio/voices/tenor%0A").status_code == 404


def test_a_trickling_url_reference_is_cut_off_at_the_deadline(server, http):
    origin = DripOrigin(interval=0.25, length=120)  # 30 s of one byte at a time, unless cut off
    with LoopbackHTTPServer(origin.handler()) as drip:
        try:
            for path in ("/drip-body", "/drip-head"):
                started = time.monotonic()
                job = http.post("/runsync", json={"input": {"transcript": "Hi.", "ref_audio": f"{drip.url}{path}",
                                                            "ref_text": "Words."}}).json()
                elapsed = time.monotonic() - started
                assert job["status"] == "FAILED", job
                assert f"longer than {URL_TIMEOUT_S:g} s" in job["error"], job
                assert elapsed < URL_TIMEOUT_S + 12, elapsed  # the deadline plus the job's overhead, not the 30 s drip
        finally:
            origin.stop()
