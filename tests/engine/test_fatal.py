"""Unrecoverable GPU errors: detected by their CUDA text, every job fails with a clear reason, the HTTP server turns
``/ping`` to 503 and refuses work, and the RunPod worker answers with ``refresh_worker`` and exits.

The fault comes from the scheduler's test hook (``inject_fault``), which raises at the next decode step exactly
where a real CUDA error would surface. In the subprocess tests a ``sitecustomize`` on ``PYTHONPATH`` arms the hook
for requests with one particular seed, so the server and the worker run unchanged otherwise.
"""

from __future__ import annotations

import os
import textwrap
import threading

import httpx
import pytest
import torch

from fake_runpod import FakeRunPod
from higgs_worker.engine import Prompt, Sampling
from higgs_worker.core.errors import DeviceFault
from higgs_worker.engine.scheduler import is_fatal_device_error
from higgs_worker.core.errors import EngineError
from servers import Server

ILLEGAL_ACCESS = ("CUDA error: an illegal memory access was encountered\n"
                  "CUDA kernel errors might be asynchronously reported at some other API call.")
MAGIC_SEED = 424242
SHORT = Sampling(temperature=0.0, ras_win_len=0, max_new_tokens=40, stop_at_eos=False)


@pytest.mark.parametrize(("exc", "fatal"), [
    (RuntimeError(ILLEGAL_ACCESS), True),
    (torch.AcceleratorError("CUDA error: an illegal memory access was encountered"), True),  # what torch raises
    (torch.AcceleratorError("CUDA error: out of memory"), False),
    (RuntimeError("CUDA error: device-side assert triggered"), True),
    (RuntimeError("CUDA error: unspecified launch failure"), True),
    (RuntimeError("CUDA error: an illegal instruction was encountered"), True),
    (RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx`"), True),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), False),
    (RuntimeError("The size of tensor a (4) must match the size of tensor b (5)"), False),
    (ValueError("CUDA error: an illegal memory access was encountered"), False),  # not a torch error type
    (RuntimeError("illegal memory access"), False),  # not from CUDA
])
def test_fatal_device_errors_are_told_apart(exc, fatal):
    assert is_fatal_device_error(exc) is fatal


def test_a_fatal_error_is_found_under_a_wrapper():
    try:
        try:
            raise RuntimeError(ILLEGAL_ACCESS)
        except RuntimeError as inner:
            raise EngineError("generation failed") from inner
    except EngineError as outer:
        assert is_fatal_device_error(outer)


@pytest.fixture()
def fresh_engine(tiny_model_dir):
    """An engine of its own: a device fault is permanent, so it must not touch the session's shared engine."""
    from higgs_worker.engine import Engine, load_model

    engine = Engine(load_model(tiny_model_dir / "model", tiny_model_dir / "tokenizer", "cpu", "float32"))
    yield engine
    engine.close()


def test_fault_fails_every_job_in_flight_and_every_later_one(fresh_engine):
    engine = fresh_engine
    assert engine.generate(Prompt(text="Before the fault."), SHORT, seed=1).codes.shape[0] > 0
    jobs = [engine.start(Prompt(text=f"Row {i} in the faulty batch."), SHORT, seed=i) for i in range(3)]
    engine.scheduler.inject_fault = RuntimeError(ILLEGAL_ACCESS)
    for job in jobs:
        with pytest.raises(DeviceFault, match=r"illegal memory access was encountered\); this worker cannot"):
            engine.finish(job)
    assert engine.fault is not None and "kernel errors" not in str(engine.fault)  # one line of the device's text
    with pytest.raises(DeviceFault):
        engine.generate(Prompt(text="After the fault."), SHORT, seed=2)  # refused at once


def test_jobs_waiting_when_the_fault_comes_fail_too_and_none_hangs(fresh_engine):
    engine = fresh_engine
    engine.scheduler.inject_fault = RuntimeError(ILLEGAL_ACCESS)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            engine.generate(Prompt(text=f"Caller {i}."), SHORT, seed=i)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]  # more than one batch can hold
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert len(errors) == 12 and all(isinstance(e, DeviceFault) for e in errors)


def test_a_fault_in_the_codec_marks_the_engine_too(fresh_engine, monkeypatch):
    engine = fresh_engine
    codes = engine.generate(Prompt(text="Decode me."), SHORT, seed=3).codes

    def broken_decode(*args, **kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(engine.processor.audio_tokenizer, "decode", broken_decode)
    with pytest.raises(DeviceFault, match="device-side assert"):
        engine.decode(codes)
    assert engine.fault is not None
    with pytest.raises(DeviceFault):
        engine.generate(Prompt(text="After."), SHORT, seed=4)


# -- the real processes -----------------------------------------------------------------------------------------

def fault_hook(folder) -> str:
    """A ``sitecustomize`` that arms the scheduler's fault hook whenever a generation with MAGIC_SEED is submitted."""
    (folder / "sitecustomize.py").write_text(textwrap.dedent(f'''
        from higgs_worker.engine import scheduler as _scheduler

        _submit = _scheduler.Scheduler.submit

        def submit(self, job):
            if job.seed == {MAGIC_SEED}:
                self.inject_fault = RuntimeError({ILLEGAL_ACCESS!r})
            return _submit(self, job)

        _scheduler.Scheduler.submit = submit
    '''))
    return str(folder)


@pytest.fixture()
def model_env(tiny_model_dir, voices_dir, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    return {"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
            "VOICES_DIR": str(voices_dir), "LOG_DIR": str(tmp_path / "logs"), "VOLUME_ROOT": str(tmp_path / "vol"),
            "PYTHONPATH": os.pathsep.join([fault_hook(hook), *filter(None, [os.environ.get("PYTHONPATH")])])}


def test_http_server_turns_unhealthy_and_refuses_work_after_a_fault(model_env, tmp_path):
    server = Server(model_env, tmp_path)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=120) as http:
            fine = http.post("/runsync", json={"input": {"transcript": "Fine.", "max_new_tokens": 20, "seed": 1}})
            assert fine.json()["status"] == "COMPLETED"
            failed = http.post("/runsync", json={"input": {"transcript": "This one meets a broken GPU.",
                                                           "max_new_tokens": 40, "seed": MAGIC_SEED}}).json()
            assert failed["status"] == "FAILED"
            assert "unrecoverable error (CUDA error: an illegal memory access was encountered)" in failed["error"]
            assert "error id" not in failed["error"]  # the reason itself, not a generic one

            ping = http.get("/ping")
            assert ping.status_code == 503 and "must be restarted" in ping.json()["error"]
            assert http.get("/health").json()["model"]["state"] == "failed"

            run = http.post("/run", json={"input": {"transcript": "Anyone there?"}})
            assert run.status_code == 503 and "illegal memory access" in run.json()["error"]["message"]
            speech = http.post("/v1/audio/speech", json={"model": "tts-1", "voice": "default", "input": "Hello.",
                                                         "response_format": "wav"})
            assert speech.status_code == 503
            assert speech.json()["error"]["type"] == "server_error"
            assert "must be restarted" in speech.json()["error"]["message"]
            assert http.post(f"/retry/{failed['id']}").status_code == 503
    finally:
        server.stop()
    assert "unrecoverable device error" in (tmp_path / "logs" / "server.log").read_text()


def test_runpod_worker_answers_refresh_worker_and_exits(model_env, tmp_path):
    from servers import runpod_worker as worker

    with FakeRunPod() as plane:
        plane.add_job("job-fatal", {"transcript": "This one meets a broken GPU.", "max_new_tokens": 40,
                                    "seed": MAGIC_SEED})
        proc = worker({**model_env, **plane.worker_env(), "MAX_BATCH_SIZE": "1"}, tmp_path)
        try:
            result = plane.wait_results(["job-fatal"])["job-fatal"]
            code = proc.wait(timeout=120)  # the SDK takes no further job and the worker exits on its own
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        plane.add_job("job-after", {"transcript": "Too late."})
        assert "job-after" not in plane.taken
    assert result.get("stopPod") is True  # what refresh_worker becomes on the wire: RunPod replaces the worker
    assert "illegal memory access was encountered" in result["error"] and "error id" not in result["error"]
    assert code != 0
    log = (tmp_path / "logs" / "server.log").read_text()
    assert "unrecoverable device error" in log and "refresh_worker" in log

