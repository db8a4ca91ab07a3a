"""The job store on its own (no model): inputs dropped at the end, retention caps, stream trimming and stalls."""

from __future__ import annotations

import logging
import threading

import pytest

from higgs_worker.jobs.state import CANCELLED, COMPLETED, FAILED, TIMED_OUT, NotRetryable
from higgs_worker.jobs.memory import JobStore
from servers import wait_until


def make_store(work, **kw) -> JobStore:
    kw.setdefault("workers", 2)
    kw.setdefault("retention_s", 3600)
    kw.setdefault("timeout_s", 60)
    return JobStore(work, **kw)


def finished(store, job):
    assert job.done.wait(30), job.status
    return job


def test_input_is_dropped_when_a_job_ends_unless_it_may_be_retried():
    release = threading.Event()

    def work(job, emit):
        release.wait(30)
        if job.input["ok"]:
            return {"n": 1}
        raise RuntimeError("boom")

    store = make_store(work, workers=1)
    good = store.submit({"ok": True, "big": "x" * 100_000})
    bad = store.submit({"ok": False, "big": "y" * 100_000})
    queued = store.submit({"ok": True, "big": "z" * 100_000})
    assert good.input is not None
    store.cancel(queued.id)
    assert queued.status == CANCELLED and queued.input is None  # cancelled while queued: dropped at once
    release.set()
    assert finished(store, good).status == COMPLETED and good.input is None
    assert finished(store, bad).status == FAILED and bad.input["big"] == "y" * 100_000  # kept for /retry
    store.shutdown()


def test_rejected_input_is_failed_at_once_and_not_kept():
    store = make_store(lambda job, emit: pytest.fail("a rejected job must not run"))
    job = store.reject("bogus: unknown field")
    assert job.status == FAILED and job.error == "bogus: unknown field" and job.input is None
    assert store.get(job.id) is job and job.done.is_set()
    assert store.counts()["jobs"]["inQueue"] == 0
    huge = store.reject("f" * 50_000 + ": unknown field")
    assert len(huge.error) <= 1001  # an error quoting a huge field name is cut short
    store.shutdown()


def test_finished_jobs_capped_by_count_oldest_first():
    store = make_store(lambda job, emit: {"i": job.input}, retain_max=3)
    jobs = [finished(store, store.submit(i)) for i in range(7)]
    assert [store.get(j.id) is not None for j in jobs] == [False] * 4 + [True] * 3
    assert store.retained()[0] == 3
    store.shutdown()


def test_finished_jobs_capped_by_bytes_oldest_first_newest_kept():
    store = make_store(lambda job, emit: {"audio": "a" * job.input}, retain_bytes=25_000)
    small = [finished(store, store.submit(10_000)) for _ in range(4)]
    kept = [store.get(j.id) is not None for j in small]
    assert kept == [False, False, True, True]
    assert store.retained()[1] <= 25_000
    big = finished(store, store.submit(60_000))  # over the cap alone: still kept, being the newest
    assert store.get(big.id) is big and all(store.get(j.id) is None for j in small)
    count, size = store.retained()
    assert count == 1 and 60_000 <= size < 61_000
    store.shutdown()


def test_failed_jobs_keep_their_input_within_the_byte_cap():
    store = make_store(lambda job, emit: {"error": "transcript: must not be empty"}, retain_bytes=150_000)
    jobs = [finished(store, store.submit({"junk": "j" * 100_000})) for _ in range(5)]
    assert [store.get(j.id) is not None for j in jobs] == [False] * 4 + [True]  # each counts its 100 kB input
    count, size = store.retained()
    assert count == 1 and 100_000 < size < 101_000
    store.shutdown()


def test_submit_and_lookups_never_scan_every_job():
    store = make_store(lambda job, emit: {"ok": True}, retain_max=50)
    for i in range(60):
        finished(store, store.submit(i))

    class NoScan(dict):
        def _refuse(self, *a):
            raise AssertionError("the store scanned every job")

        __iter__ = values = items = keys = _refuse

    store._jobs = NoScan(store._jobs)
    job = finished(store, store.submit("one more"))
    assert store.get(job.id) is job
    assert store.counts()["jobs"]["completed"] == 61
    store.take_stream(job)
    store.shutdown()


def test_stream_pieces_are_given_once_then_dropped():
    go = threading.Event()

    def work(job, emit):
        for i in range(3):
            emit({"chunk_index": i, "audio_base64": "p" * 1000})
        go.wait(30)
        emit({"chunk_index": 3, "audio_base64": "p" * 1000})
        return {"stream_chunks": 4}

    store = make_store(work)
    job = store.submit({})
    wait_until(lambda: len(job.stream) == 3, 30, "three pieces")
    first = store.take_stream(job)
    assert [p["chunk_index"] for p in first] == [0, 1, 2] and job.stream == [] and job.stream_bytes == 0
    go.set()
    finished(store, job)
    assert store.retained()[1] > 1000  # the unread last piece counts against the byte cap
    assert [p["chunk_index"] for p in store.take_stream(job)] == [3]
    assert store.take_stream(job) == [] and store.retained()[1] < 1000
    store.shutdown()


def test_unread_stream_pauses_the_job_then_stops_it():
    emitted = []

    def work(job, emit):
        for i in range(1000):
            emit(i)
            emitted.append(i)
        return {"stream_chunks": 1000}

    store = make_store(work, stream_buffer=4, stall_s=0.5)
    job = finished(store, store.submit({}))
    assert job.status == FAILED and "STREAM_STALL_TIMEOUT_S" in job.error
    assert len(emitted) == 4 and len(job.stream) == 4  # the buffer bound held while nobody read
    store.shutdown()


def test_a_reader_keeps_a_stream_job_going_past_the_buffer():
    def work(job, emit):
        for i in range(40):
            emit(i)
        return {"stream_chunks": 40}

    store = make_store(work, stream_buffer=2, stall_s=10)
    job = store.submit({})
    got: list[int] = []

    def read():
        got.extend(store.take_stream(job))
        return job.done.is_set()

    wait_until(read, 30, "the streamed job")
    got.extend(store.take_stream(job))
    assert job.status == COMPLETED and got == list(range(40))
    store.shutdown()


def test_cancel_reaches_a_job_paused_on_a_full_stream():
    def work(job, emit):
        for i in range(100):
            emit(i)
        return {}

    store = make_store(work, stream_buffer=1, stall_s=60)
    job = store.submit({})
    wait_until(lambda: len(job.stream) == 1, 30, "the buffer to fill")
    store.cancel(job.id)
    assert job.done.wait(5) and job.status == CANCELLED
    store.shutdown()


def test_unexpected_errors_reach_callers_as_an_id_and_the_log_as_detail(caplog):
    def work(job, emit):
        raise OSError("/secret/models/weights.bin: input/output error")

    store = make_store(work)
    with caplog.at_level(logging.ERROR, logger="higgs_worker.jobs"):
        job = finished(store, store.submit({}))
    assert job.status == FAILED and "/secret" not in job.error and "error id" in job.error
    ref = job.error.split("error id ")[1].split(";")[0]
    assert any(ref in r.getMessage() and r.exc_info for r in caplog.records)
    store.shutdown()


def test_a_job_policy_timeout_replaces_the_store_default():
    def work(job, emit):
        job.cancel.wait(30)
        raise RuntimeError("stopped")

    store = make_store(work, timeout_s=60)
    job = finished(store, store.submit({}, timeout_s=0.3))
    assert job.status == TIMED_OUT and "0.3 s limit (policy.executionTimeout)" in job.error
    assert job.input == {}  # kept: a timed-out job may be retried
    store.shutdown()


def test_ttl_forgets_a_finished_job_before_the_retention_time():
    store = make_store(lambda job, emit: {"ok": True}, retention_s=3600)
    short = finished(store, store.submit({}, ttl_s=3))
    plain = finished(store, store.submit({}))
    assert store.get(short.id) is short  # three seconds from its submission: kept this long on a busy machine too
    wait_until(lambda: store.get(short.id) is None, 10, "the ttl to pass")
    assert store.get(plain.id) is plain and store.retained()[0] == 1
    store.shutdown()


def test_ttl_of_a_queued_job_means_it_never_runs_and_of_a_running_job_stops_it():
    ran = []
    release = threading.Event()

    def work(job, emit):
        ran.append(job.id)
        release.wait(30) if job.input == "blocker" else job.cancel.wait(30)
        return {"ok": True}

    store = make_store(work, workers=1)
    running = store.submit("running", ttl_s=5)  # ends after the queued one's, however slow the start
    wait_until(lambda: running.status == "IN_PROGRESS", 10, "the first job to start")
    queued = store.submit("queued", ttl_s=0.3)
    wait_until(lambda: store.get(queued.id) is None and store.get(running.id) is None, 10, "both ttls")
    assert queued.status == CANCELLED and queued.id not in ran
    assert running.done.wait(10)  # stopped at its cancel event, then not kept
    assert store.get(running.id) is None and store.retained() == (0, 0)
    store.shutdown()


def test_retry_runs_a_failed_job_again_with_the_same_id_and_input():
    attempts = []

    def work(job, emit):
        attempts.append(job.input)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        return {"n": job.input["n"]}

    store = make_store(work)
    job = finished(store, store.submit({"n": 7}))
    assert job.status == FAILED and store.retained()[1] > 0
    again = store.retry(job.id)
    assert again is job and job.id == again.id
    assert finished(store, job).status == COMPLETED and job.output == {"n": 7} and job.error is None
    assert attempts == [{"n": 7}, {"n": 7}] and job.input is None and job.retries == 1
    assert store.counts()["jobs"]["retried"] == 1
    with pytest.raises(NotRetryable, match="COMPLETED"):
        store.retry(job.id)
    rejected = store.reject("top_p: too big")
    with pytest.raises(NotRetryable, match="new job"):
        store.retry(rejected.id)
    assert store.retry("local-nobody") is None
    store.shutdown()


def test_end_listener_hears_each_final_state_once_after_the_result_is_readable():
    heard = []
    store = make_store(lambda job, emit: {"n": 1} if job.input else {"error": "bad"})

    def on_end(job):
        assert job.done.is_set() and store.get(job.id) is job  # readable before anyone is told
        heard.append(job.view())

    ok = finished(store, store.submit(True, on_end=on_end))
    failed = finished(store, store.submit(False, on_end=on_end))
    refused = store.reject("x: unknown field", on_end=on_end)
    wait_until(lambda: len(heard) == 3, 10, "three ends")
    assert [h["status"] for h in heard] == [COMPLETED, FAILED, FAILED]
    assert heard[0]["output"] == {"n": 1} and heard[0]["id"] == ok.id
    assert heard[1]["error"] == "bad" and heard[1]["id"] == failed.id and heard[2]["id"] == refused.id
    store.retry(failed.id)
    wait_until(lambda: len(heard) == 4, 10, "the retried job's end")
    store.shutdown()


def test_a_failing_end_listener_does_not_keep_the_job_from_ending():
    store = make_store(lambda job, emit: {"n": 1})

    def broken(job):
        raise RuntimeError("listener bug")

    job = finished(store, store.submit({}, on_end=broken))
    assert job.status == COMPLETED
    store.shutdown()


def test_refused_jobs_never_take_a_finished_jobs_retention_slot():
    """The probe: 1000 invalid /run calls pushed a finished result out (its owner got 404)."""
    store = make_store(lambda job, emit: {"n": job.input}, retain_max=5, retain_bytes=10_000)
    victim = finished(store, store.submit(1))
    refused = [store.reject(f"transcript: must not be empty ({i}) " + "x" * 900) for i in range(40)]
    assert store.get(victim.id) is victim and victim.output == {"n": 1}
    assert store.retained()[0] == 1  # refusals are not counted among the finished jobs, by count or by bytes
    assert store.get(refused[-1].id) is refused[-1] and store.get(refused[0].id) is None  # the newest 5 stay
    assert sum(store.get(j.id) is not None for j in refused) == 5
    assert store.counts()["jobs"]["failed"] == 40
    store.shutdown()


def test_a_refused_jobs_ttl_and_retention_forget_it():
    store = make_store(lambda job, emit: {}, retention_s=3600)
    short = store.reject("x: unknown field", ttl_s=0.2)
    wait_until(lambda: store.get(short.id) is None, 10, "the ttl to pass")
    assert short.id not in store._refused  # nothing is held for it any more
    store.retention_s = 0.2
    old = store.reject("y: unknown field")
    wait_until(lambda: store.get(old.id) is None, 10, "the retention to pass")
    store.shutdown()


def test_jobs_belong_to_their_tenant():
    release = threading.Event()
    store = make_store(lambda job, emit: release.wait(30) and {"ok": True}, workers=1)
    running = store.submit("blocker", tenant="tenant-a")
    wait_until(lambda: running.status == "IN_PROGRESS", 10, "the first job to start")
    mine = store.submit("mine", tenant="tenant-a")
    theirs = store.submit("theirs", tenant="tenant-b")
    refused = store.reject("transcript: must not be empty", tenant="tenant-a")
    for job in (running, mine, refused):
        assert store.get(job.id, "tenant-b") is None and store.get(job.id, "tenant-a") is job
        assert store.cancel(job.id, "tenant-b") is None and store.retry(job.id, "tenant-b") is None
        assert store.get(job.id) is job  # no tenant: keys are one tenant, every job is seen
    assert mine.status == "IN_QUEUE" and not running.cancel.is_set()  # the other tenant's cancels did nothing
    assert store.purge_queue("tenant-b") == 1 and theirs.status == CANCELLED and mine.status == "IN_QUEUE"
    assert store.purge_queue("tenant-a") == 1 and mine.status == CANCELLED
    release.set()
    store.shutdown()


def test_a_running_job_shows_its_progress_as_output_until_it_ends():
    reported, release = threading.Event(), threading.Event()
    stores: list[JobStore] = []

    def work(job, emit):
        stores[0].report(job, {"chunks_done": 1, "chunks_total": 3})
        reported.set()
        release.wait(30)
        return {"audio": "done"}

    store = make_store(work, workers=1)
    stores.append(store)
    job = store.submit({})
    assert reported.wait(30)
    view = job.view()
    assert view["status"] == "IN_PROGRESS" and view["output"] == {"chunks_done": 1, "chunks_total": 3}
    release.set()
    finished(store, job)
    store.report(job, {"chunks_done": 9})  # too late: ignored
    assert job.view()["output"] == {"audio": "done"} and job.status == COMPLETED
    store.shutdown()
