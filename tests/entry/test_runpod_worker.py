"""The real ``runpod`` SDK worker loop, driven by a fake control plane, running ``higgs-worker handler``."""

from __future__ import annotations

import base64
import io
import subprocess

import httpx
import pytest
import soundfile as sf

from fake_runpod import FakeRunPod, unfit_worker_exit_code
from servers import runpod_worker as worker
from servers import free_port, wait_until

GUIDE_EXAMPLE_1 = {"transcript": "Hello, this is a test of the Higgs Audio model.", "ref_audio": "belinda",
                   "scene_prompt": "Audio is recorded from a quiet room.", "temperature": 0.7, "top_p": 0.95}
GUIDE_EXAMPLE_2 = {**GUIDE_EXAMPLE_1, "s3_bucket": "audio-out", "s3_key": "tests/guide-example.wav"}
SMALL = {"max_new_tokens": 40, "seed": 4}


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture()
def model_env(tiny_model_dir, voices_dir, tmp_path):
    # The guide's examples name the "belinda" preset; a fixture voice stands in for it under that name.
    for ext in (".wav", ".txt"):
        (voices_dir / f"belinda{ext}").write_bytes((voices_dir / f"alto{ext}").read_bytes())
    return {"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
            "VOICES_DIR": str(voices_dir), "LOG_DIR": str(tmp_path / "logs"), "VOLUME_ROOT": str(tmp_path / "v")}


def test_queue_worker_runs_the_guide_examples(model_env, s3, tmp_path):
    with FakeRunPod() as plane:
        plane.add_job("job-inline", {**GUIDE_EXAMPLE_1, **SMALL})
        plane.add_job("job-s3", {**GUIDE_EXAMPLE_2, **SMALL})
        plane.add_job("job-bad", {"transcript": "x", "top_p": 2})
        plane.add_job("job-unknown-voice", {"transcript": "x", "ref_audio": "nobody"})
        proc = worker({**model_env, **plane.worker_env(), **s3.env(), "MAX_BATCH_SIZE": "2",
                       "S3_ALLOWED_BUCKETS": "audio-out"}, tmp_path)  # a job may name no bucket unless allowed
        try:
            results = plane.wait_results(["job-inline", "job-s3", "job-bad", "job-unknown-voice"])
        finally:
            stop(proc)
    inline = results["job-inline"]["output"]
    audio = base64.b64decode(inline["audio_base64"])
    wave, rate = sf.read(io.BytesIO(audio))
    assert rate == inline["sample_rate"] == 24000 and len(wave) / rate == pytest.approx(inline["duration_s"], abs=1e-3)
    assert {"model_load", "generate", "encode"} <= set(inline["timings"]) and inline["usage"]["total_tokens"] > 0

    uploaded = results["job-s3"]["output"]
    assert "audio_base64" not in uploaded
    assert uploaded["s3"]["bucket"] == "audio-out" and uploaded["s3"]["key"] == "tests/guide-example.wav"
    stored = s3.client().get_object(Bucket="audio-out", Key="tests/guide-example.wav")["Body"].read()
    assert stored == audio  # same seed and input: the uploaded bytes equal the inline result
    assert httpx.get(uploaded["s3"]["presigned_url"]).content == audio
    assert "upload" in uploaded["timings"]

    assert "top_p" in results["job-bad"]["error"]
    assert "unknown voice 'nobody'" in results["job-unknown-voice"]["error"]


def test_streamed_job_posts_pieces(model_env, tmp_path):
    job = {"transcript": "one two three four five six", "chunk_method": "word", "chunk_max_word_num": 2,
           "stream": True, "format": "pcm", **SMALL}
    with FakeRunPod() as plane:
        plane.add_job("job-stream", job)
        proc = worker({**model_env, **plane.worker_env(), "RUNPOD_STREAM_HANDLER": "true"}, tmp_path)
        try:
            result = plane.wait_results(["job-stream"])["job-stream"]
        finally:
            stop(proc)
        pieces = [p["output"] for p in plane.streams["job-stream"]]
    audio_pieces = [p for p in pieces if "audio_base64" in p]
    assert len(audio_pieces) >= 2
    assert all(len(base64.b64decode(p["audio_base64"])) < 1024 * 1024 for p in audio_pieces)
    meta = pieces[-1]
    pcm = b"".join(base64.b64decode(p["audio_base64"]) for p in audio_pieces)
    assert len(pcm) // 2 / 24000 == pytest.approx(meta["duration_s"], abs=1e-3)
    assert result["output"] == pieces  # return_aggregate_stream: the final output (what /status shows) is every
    assert result["output"][-1] == meta  # yield in order, the whole audio and then the metadata



LONG_JOB = {"transcript": " ".join(f"word{i}" for i in range(24)), "chunk_method": "word", "chunk_max_word_num": 4,
            **SMALL}


@pytest.mark.parametrize("stream_handler", [False, True])
def test_a_running_job_sends_progress_updates_before_its_result(model_env, tmp_path, stream_handler):
    job = {**LONG_JOB, "stream": stream_handler, "format": "pcm" if stream_handler else "wav"}
    with FakeRunPod() as plane:
        plane.add_job("job-long", job)
        proc = worker({**model_env, **plane.worker_env(), "PROGRESS_INTERVAL_S": "0.2",
                       "RUNPOD_STREAM_HANDLER": "true" if stream_handler else "false"}, tmp_path)
        try:
            result = plane.wait_results(["job-long"])["job-long"]
        finally:
            stop(proc)
        updates, posts = plane.progress.get("job-long", []), [kind for _, kind in plane.posts]
    assert updates, "no progress update came"
    assert posts[-1] == "result" and posts.count("result") == 1  # every update landed before the result
    chunks = 6
    assert {u["chunks_total"] for u in updates} == {chunks} and all(u["chunks_done"] < chunks for u in updates)
    done = [u["chunks_done"] for u in updates]
    audio = [u["audio_seconds"] for u in updates]
    assert done == sorted(done) and audio == sorted(audio)
    output = result["output"][-1] if stream_handler else result["output"]
    assert output["chunks"] == chunks and "error" not in output


def test_fitness_check_fails_a_broken_model_folder_before_any_job(model_env, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_env["MODEL_PATH"], broken / "model")
    shutil.copytree(model_env["TOKENIZER_PATH"], broken / "tokenizer")
    (broken / "model" / "model.safetensors").unlink()
    env = {**model_env, "MODEL_PATH": str(broken / "model"), "TOKENIZER_PATH": str(broken / "tokenizer"),
           "AUTO_FETCH_MODELS": "false"}
    assert unfit_worker_exit_code(env, tmp_path, timeout=180) != 0
    log = (tmp_path / "logs" / "server.log").read_text()
    assert f"fitness check model_folders failed: MODEL_PATH {broken / 'model'} has no weights" in log


def test_fitness_checks_pass_on_a_working_worker(model_env, tmp_path):
    with FakeRunPod() as plane:
        plane.add_job("job-ok", {"transcript": "Fit.", **SMALL})
        proc = worker({**model_env, **plane.worker_env()}, tmp_path)
        try:
            result = plane.wait_results(["job-ok"])["job-ok"]
        finally:
            stop(proc)
    assert result["output"]["audio_base64"]
    log = (tmp_path / "logs" / "server.log").read_text()
    for name in ("gpu", "model_folders", "generation"):
        assert f"fitness check {name} passed" in log


def test_local_api_mode_runsync(model_env, tmp_path):
    port = free_port()
    proc = worker({**model_env, "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true"}, tmp_path,
                  ("--rp_serve_api", "--rp_api_port", str(port), "--rp_api_host", "127.0.0.1"))
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 180, "the SDK's local API")
        good = httpx.post(f"{base}/runsync", json={"input": {**GUIDE_EXAMPLE_1, **SMALL}}, timeout=120).json()
        bad = httpx.post(f"{base}/runsync", json={"input": {"transcript": ""}}, timeout=120).json()
    finally:
        stop(proc)
    assert good["status"] == "COMPLETED" and good["output"]["audio_base64"]
    assert bad["status"] == "FAILED" and "transcript" in bad["error"]
