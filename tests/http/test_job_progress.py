"""A running job's ``/status`` says how far it has come (chunks done of the plan, audio seconds), on the real server.

A ``stream: true`` job with a one-piece stream buffer waits for each ``/stream`` call, so the test walks it through
its chunks and reads ``/status`` at every step: no timing decides what it sees.
"""

from __future__ import annotations

import httpx
import pytest
from fixture_voices import write_voices
from servers import Server, wait_until

KEY = "progress-key-51c2"
AUTH = {"Authorization": f"Bearer {KEY}"}
WORDS = " ".join(f"word{i}" for i in range(24))


@pytest.fixture(scope="module")
def http(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "VOICES_DIR": str(write_voices(root / "voices", ["alto"])), "API_KEYS": KEY,
                  "LOG_DIR": str(root / "logs"), "VOLUME_ROOT": str(root / "vol"), "STREAM_BUFFER_PIECES": "1",
                  "STREAM_CHUNK_BYTES": "8192", "PROGRESS_INTERVAL_S": "0.2"}, root)
    try:
        srv.wait_ready(headers=AUTH)
        with httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as client:
            yield client
    finally:
        srv.stop()


def test_a_running_jobs_status_shows_progress_that_increases(http):
    job = {"transcript": WORDS, "chunk_method": "word", "chunk_max_word_num": 4, "stream": True, "format": "pcm",
           "seed": 5, "max_new_tokens": 40}
    job_id = http.post("/run", json={"input": job}).json()["id"]
    seen: list[dict] = []

    def step():
        status = http.get(f"/status/{job_id}").json()
        if status["status"] == "IN_PROGRESS" and status.get("output") and status["output"] not in seen[-1:]:
            seen.append(status["output"])
        http.get(f"/stream/{job_id}")  # takes the waiting piece: the job goes on to the next
        return status["status"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT") and status

    final = wait_until(step, what="the job to end")
    assert final["status"] == "COMPLETED" and final["output"]["chunks"] == 6  # the result replaces the progress
    assert len(seen) >= 2, seen
    assert all(p["stage"] == "generating" and p["chunks_total"] == 6 for p in seen)
    audio = [p["audio_seconds"] for p in seen]
    assert audio == sorted(audio) and audio[-1] > audio[0]
    assert [p["chunks_done"] for p in seen] == sorted(p["chunks_done"] for p in seen)
    assert all(p["elapsed_s"] > 0 and p["chunk"] >= 1 for p in seen)
