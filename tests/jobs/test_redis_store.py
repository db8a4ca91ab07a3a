"""The Redis job store: replicas sharing jobs through a real ``redis-server`` on loopback.

Store-level tests run two stores (two "replicas") in this process on one Redis; end-to-end tests run two
``higgs-worker serve`` processes on the tiny model. Without ``redis-server`` these tests skip locally with the
reason; with ``CI=true`` they fail.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from collections import Counter
from pathlib import Path

import httpx
import pytest

from conftest import unavailable
from higgs_worker.jobs.state import CANCELLED, COMPLETED, FAILED, IN_QUEUE, NotRetryable, StoreUnavailable
from servers import LoopbackHTTPServer, Server, free_port, wait_until

REDIS = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)


class RedisProcess:
    """``redis-server`` on 127.0.0.1 without persistence; can be stopped and started again on the same port."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.tmp)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), 20, "redis-server to answer", self.proc)
        client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _need_redis() -> None:
    if REDIS is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")


@pytest.fixture()
def redis_server(tmp_path):
    _need_redis()
    server = RedisProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def make_store(url: str, work, **kw):
    from higgs_worker.jobs.redis_store import RedisJobStore

    kw.setdefault("workers", 2)
    kw.setdefault("retention_s", 3600)
    kw.setdefault("timeout_s", 60)
    kw.setdefault("lease_s", 2)
    kw.setdefault("poll_s", 0.02)
    return RedisJobStore(url, work, **kw)


def final(store, job_id: str, timeout: float = 30):
    return wait_until(lambda: (j := store.get(job_id)) is not None and j.done.is_set() and j, timeout,
                      f"job {job_id} to end")


# -- store level -------------------------------------------------------------------------------------------------


def test_a_job_queued_on_one_replica_runs_on_whichever_has_room_and_is_read_anywhere(redis_server):
    ran = Counter()

    def work_on(name):
        def work(job, emit):
            ran[name] += 1
            time.sleep(0.2)
            return {"n": job.input["n"], "by": name}
        return work

    a = make_store(redis_server.url, work_on("a"), workers=1)
    b = make_store(redis_server.url, work_on("b"), workers=1)
    try:
        ids = [a.submit({"n": i}).id for i in range(8)]
        assert all(i.startswith("local-") for i in ids)
        outs = [final(b, i) for i in ids]
        assert [o.status for o in outs] == [COMPLETED] * 8 and [o.output["n"] for o in outs] == list(range(8))
        assert ran["a"] >= 2 and ran["b"] >= 2  # both pulled work
        assert b.counts()["jobs"]["completed"] == 8 and a.retained()[0] == 8
    finally:
        a.shutdown()
        b.shutdown()


def test_cancel_stream_retry_and_purge_across_replicas(redis_server):
    release = threading.Event()

    def work(job, emit):
        if job.input.get("fail"):
            raise RuntimeError("first attempt fails") if not job.input.get("ok_on_retry") or job.retries == 0 \
                else None
        if job.input.get("stream"):
            for i in range(3):
                emit({"piece": i})
            return {"pieces": 3}
        while not job.cancel.is_set() and not release.is_set():
            time.sleep(0.02)
        if job.cancel.is_set():
            raise RuntimeError("stopped")
        return {"ok": True}

    runner = make_store(redis_server.url, work, workers=1)
    front = make_store(redis_server.url, lambda job, emit: pytest.fail("front takes nothing"), workers=1)
    front._stop.set()  # a replica with no room: it answers routes only
    front._taker.join(5)
    try:
        long = front.submit({})
        wait_until(lambda: front.get(long.id).status == "IN_PROGRESS", 10, "the long job to start")
        queued = front.submit({})
        assert front.get(queued.id).status == IN_QUEUE
        assert front.purge_queue() == 1 and front.get(queued.id).status == CANCELLED
        front.cancel(long.id)
        assert final(front, long.id).status == CANCELLED
        streamed = front.submit({"stream": True})
        final(front, streamed.id)
        pieces = front.take_stream(front.get(streamed.id))
        assert pieces == [{"piece": 0}, {"piece": 1}, {"piece": 2}] and front.take_stream(streamed) == []
        failing = front.submit({"fail": True, "big": "x" * 1000})
        assert final(front, failing.id).status == FAILED
        front.retry(failing.id)
        assert final(front, failing.id).status == FAILED and front.get(failing.id).retries == 1
        with pytest.raises(NotRetryable, match="COMPLETED"):
            front.retry(streamed.id)
        refused = front.reject("top_p: too big")
        assert front.get(refused.id).error == "top_p: too big"
        with pytest.raises(NotRetryable, match="new job"):
            front.retry(refused.id)
        assert front.retry("local-nobody") is None and front.get("local-nobody") is None
    finally:
        release.set()
        runner.shutdown()
        front.shutdown()


def test_retention_caps_and_ttl_are_redis_expiry(redis_server):
    import redis

    # One worker: the jobs end in the order they were sent, several within one millisecond of each other.
    store = make_store(redis_server.url, lambda job, emit: {"out": "y" * 500}, retain_max=3, retention_s=5,
                       workers=1)
    client = redis.Redis.from_url(redis_server.url)
    try:
        ids = [store.submit({"i": i}).id for i in range(5)]
        for i in ids:
            wait_until(lambda i=i: store.get(i) is None or store.get(i).done.is_set(), 20, "end")
        assert store.retained()[0] == 3
        assert [store.get(i) is not None for i in ids] == [False, False, True, True, True]  # oldest ends go first
        ranked = client.zrange("higgs:finished", 0, -1, withscores=True)
        assert [m.decode() for m, _ in ranked] == ids[2:]  # in the order they ended, even within a millisecond
        assert all(a[1] < b[1] for a, b in zip(ranked, ranked[1:]))
        assert 0 < client.pttl(f"higgs:job:{ids[-1]}") <= 5000  # retention is the key's expiry
        wait_until(lambda: store.get(ids[-1]) is None, 20, "retention to forget the job")
        short = store.submit({"i": 9}, ttl_s=3)
        assert 0 < client.pttl(f"higgs:job:{short.id}") <= 3000
    finally:
        store.shutdown()
        client.close()


def test_a_lapsed_lease_runs_the_job_again_and_then_fails_it_with_a_webhook_once(redis_server):
    told = []
    stale_told = []
    hang = threading.Event()

    def stuck(job, emit):  # a replica that stops heartbeating: its watcher is stopped below
        hang.wait(30)
        return {"late": True}

    def hears(into):
        return lambda url, view, read: into.append((url, view, read()))

    dead = make_store(redis_server.url, stuck, workers=1, max_attempts=2, notify=hears(stale_told))
    dead._stop_watch.set()  # no more lease renewals: as if the process were frozen or killed
    dead._watcher.join(5)
    job = dead.submit({"n": 1}, webhook="https://example.invalid/hook")
    wait_until(lambda: dead.get(job.id).status == "IN_PROGRESS", 10, "the job to start")
    dead._stop.set()  # and it takes nothing more
    alive = make_store(redis_server.url, lambda job, emit: {"n": job.input["n"]}, workers=1, notify=hears(told))
    try:
        assert final(alive, job.id, 20).status == COMPLETED  # re-run by the live replica
        wait_until(lambda: len(told) == 1, 10, "the webhook")
        hang.set()  # the stale replica's work ends now and it tries to write its end ...
        dead._pool.shutdown(wait=True)  # ... which is refused; its run (and any webhook it would send) is over
        assert alive.get(job.id).output == {"n": 1}  # the stale replica's late end was refused
        assert stale_told == []  # and a replica whose final write was refused never announces the job
        _, view, current = told[0]
        assert view["status"] == COMPLETED and "output" not in view  # the delivery holds no copy of the output
        assert current["output"] == {"n": 1}  # it reads it from Redis when it is sent
        # past the attempt count: FAILED with the reason, told once
        hang.clear()
        dead2 = make_store(redis_server.url, stuck, workers=1, max_attempts=1)
        dead2._stop_watch.set()
        dead2._watcher.join(5)
        alive._stop.set()
        alive._taker.join(5)
        other = dead2.submit({"n": 2}, webhook="https://example.invalid/hook")
        wait_until(lambda: dead2.get(other.id).status == "IN_PROGRESS", 10, "the job to start")
        dead2._stop.set()
        alive._stop.clear()
        alive.max_attempts = 1  # the reaping replica's count decides
        alive._taker = threading.Thread(target=alive._take_loop, daemon=True)
        alive._taker.start()
        ended = final(alive, other.id, 20)
        assert ended.status == FAILED and "JOB_MAX_ATTEMPTS" in ended.error
        wait_until(lambda: len(told) == 2, 10, "the second webhook")
        time.sleep(1)
        assert len(told) == 2
        hang.set()
        dead2.shutdown()
    finally:
        hang.set()
        dead.shutdown()
        alive.shutdown()


def test_a_takeover_never_splices_a_read_stream_it_fails_the_job_and_reruns_an_unread_one(redis_server):
    """The probe: a reader got chunks 0-21, then chunk 0 again with a second WAV header, and the job ended COMPLETED.
    A stream that has handed out pieces is never started over: the job ends FAILED with the reason. A stream
    nobody has read yet is run again from the start, the stale replica's unread pieces dropped."""
    hang = threading.Event()

    def first_run(job, emit):  # three pieces, then the replica freezes
        for i in range(3):
            emit({"chunk_index": i, "by": "stale"})
        hang.wait(30)
        return {"stream_chunks": 3}

    def second_run(job, emit):
        for i in range(5):
            emit({"chunk_index": i, "by": "alive"})
        return {"stream_chunks": 5}

    dead = make_store(redis_server.url, first_run, workers=2)
    dead._stop_watch.set()  # its leases lapse
    dead._watcher.join(5)
    read = dead.submit({"stream": True})
    unread = dead.submit({"stream": True})
    wait_until(lambda: all(dead.get(j.id).status == "IN_PROGRESS" for j in (read, unread)), 10, "both to start")
    dead._stop.set()
    got: list[dict] = []
    wait_until(lambda: got.extend(dead.take_stream(dead.get(read.id))) or len(got) == 3, 10, "three pieces")
    alive = make_store(redis_server.url, second_run, workers=1)
    try:
        ended = final(alive, read.id, 20)
        got.extend(alive.take_stream(ended))
        assert ended.status == FAILED and ended.error.startswith("stream: the worker running this job stopped "
                                                                 "answering (its lease lapsed) after /stream had "
                                                                 "handed out 3 pieces")
        assert [(p["chunk_index"], p["by"]) for p in got] == [(0, "stale"), (1, "stale"), (2, "stale")]  # no splice
        rerun = final(alive, unread.id, 20)
        assert rerun.status == COMPLETED and rerun.output == {"stream_chunks": 5}
        assert [(p["chunk_index"], p["by"]) for p in alive.take_stream(rerun)] == [(i, "alive") for i in range(5)]
        alive.retry(read.id)  # asked for: a new run from the start, which a reader knows to expect
        again = final(alive, read.id, 20)
        assert again.status == COMPLETED and [p["chunk_index"] for p in alive.take_stream(again)] == list(range(5))
    finally:
        hang.set()
        dead.shutdown()
        alive.shutdown()


def test_refused_jobs_never_take_a_finished_jobs_retention_slot(redis_server):
    """The probe: 1000 invalid /run calls pushed a finished result out (its owner got 404)."""
    import redis

    store = make_store(redis_server.url, lambda job, emit: {"n": job.input["n"]}, retain_max=5)
    client = redis.Redis.from_url(redis_server.url)
    try:
        victim = final(store, store.submit({"n": 1}).id)
        refused = [store.reject(f"transcript: must not be empty ({i})").id for i in range(40)]
        assert store.get(victim.id).output == {"n": 1} and store.retained()[0] == 1
        assert store.get(refused[-1]).error == "transcript: must not be empty (39)"  # the newest refusals are kept,
        assert client.zcard("higgs:refused") == 5 and store.get(refused[0]) is None  # up to JOB_RETAIN_MAX apart
        assert store.counts()["jobs"]["failed"] == 40
    finally:
        store.shutdown()
        client.close()


def test_a_jobs_ttl_frees_its_retention_slot_when_it_ends(redis_server):
    """A finished job whose ttl passed stops counting against JOB_RETAIN_BYTES then, not JOB_RETENTION_S later:
    it can no longer push out an older job that is still kept."""
    store = make_store(redis_server.url, lambda job, emit: {"audio": "a" * 1000}, retain_bytes=2500, workers=1)
    try:
        kept = final(store, store.submit({}).id)
        short = final(store, store.submit({}, ttl_s=3).id)
        assert store.retained()[0] == 2  # three seconds from its submission: still kept on a busy machine too
        wait_until(lambda: store.retained() == (1, kept.size), 20, "the ttl to free the slot")
        assert store.get(short.id) is None
        newest = final(store, store.submit({}).id)
        assert store.get(kept.id) is not None and store.get(newest.id) is not None  # 2 × 1 kB fit in 2.5 kB
    finally:
        store.shutdown()


def test_jobs_belong_to_their_tenant(redis_server):
    front = make_store(redis_server.url, lambda job, emit: pytest.fail("front takes nothing"), workers=1,
                       retain_max=1)
    front._stop.set()  # no replica runs anything: jobs stay queued
    front._taker.join(5)
    try:
        mine = front.submit({"n": 1}, tenant="tenant-a")
        theirs = front.submit({"n": 2}, tenant="tenant-b")
        refused = front.reject("transcript: must not be empty", tenant="tenant-a")
        for job_id in (mine.id, refused.id):
            assert front.get(job_id, "tenant-b") is None and front.get(job_id, "tenant-a").id == job_id
            assert front.cancel(job_id, "tenant-b") is None and front.retry(job_id, "tenant-b") is None
        assert front.get(mine.id).status == IN_QUEUE  # untouched by the other tenant's cancel
        assert front.purge_queue("tenant-b") == 1 and front.get(theirs.id).status == CANCELLED
        assert front.get(mine.id).status == IN_QUEUE  # not theirs to purge
        assert front.purge_queue("tenant-a") == 1 and front.get(mine.id).status == CANCELLED
        assert front.get(theirs.id) is None  # a cancelled job (0 bytes) evicted past JOB_RETAIN_MAX without error
    finally:
        front.shutdown()


def test_unreachable_redis_is_store_unavailable_and_the_store_recovers(redis_server):
    store = make_store(redis_server.url, lambda job, emit: {"ok": 1})
    try:
        assert final(store, store.submit({}).id).status == COMPLETED
        redis_server.stop()
        with pytest.raises(StoreUnavailable, match="cannot be reached"):
            store.submit({})
        with pytest.raises(StoreUnavailable):
            store.counts()
        redis_server.start()
        job = wait_until(lambda: _try(store.submit, {}), 20, "the store to take jobs again")
        assert final(store, job.id).status == COMPLETED
    finally:
        store.shutdown()


def _try(fn, *args):
    try:
        return fn(*args)
    except StoreUnavailable:
        return None


# -- two real replicas on the tiny model -------------------------------------------------------------------------

JOB = {"transcript": "Hello there.", "seed": 3, "max_new_tokens": 30}
LONG = {"transcript": " ".join(f"w{i}" for i in range(60)), "chunk_method": "word", "chunk_max_word_num": 1,
        "max_new_tokens": 400, "temperature": 1.0, "seed": 1, "stream": True, "format": "pcm"}

MEDIUM = {"transcript": " ".join(f"w{i}" for i in range(8)), "chunk_method": "word", "chunk_max_word_num": 1,
          "max_new_tokens": 60, "seed": 1}


@pytest.fixture()
def replicas(redis_server, tiny_model_dir, tmp_path):
    from fixture_voices import write_voices

    env = {"VOICES_DIR": str(write_voices(tmp_path / "voices", ["tenor"])),"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
           "JOB_STORE": redis_server.url, "JOB_LEASE_S": "2", "MAX_BATCH_SIZE": "2", "LOG_DIR": str(tmp_path / "logs"),
           "VOLUME_ROOT": str(tmp_path / "vol"), "WARMUP": "false", "WEBHOOK_ALLOW_HTTP": "true",
           "WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_RETRY_DELAY_S": "0"}
    servers = [Server(env, tmp_path) for _ in range(2)]
    try:
        for s in servers:
            s.wait_ready()
        yield servers
    finally:
        for s in servers:
            s.stop()


def test_two_replicas_share_jobs_spread_them_survive_a_kill_and_a_redis_restart(replicas, redis_server):
    a, b = replicas
    with httpx.Client(timeout=60) as http:
        # submitted to one, read, streamed and cancelled on the other
        job_id = http.post(f"{a.url}/run", json={"input": LONG}).json()["id"]
        def started():
            state = http.get(f"{b.url}/status/{job_id}").json()
            assert state["status"] in ("IN_QUEUE", "IN_PROGRESS"), state
            return state["status"] == "IN_PROGRESS"

        wait_until(started, 60, "the job to start")
        got = wait_until(lambda: http.get(f"{b.url}/stream/{job_id}").json()["stream"], 60, "stream pieces")
        assert got[0]["output"]
        assert http.post(f"{b.url}/cancel/{job_id}").json()["status"] == CANCELLED
        assert http.get(f"{a.url}/status/{job_id}").json()["status"] == CANCELLED
        sync = http.post(f"{b.url}/runsync", json={"input": JOB}).json()
        assert sync["status"] == COMPLETED and sync["output"]["audio_base64"]

        # 20 jobs over two replicas: both run some (each takes only while it has batch room)
        ids = [http.post(f"{(a, b)[i % 2].url}/run", json={"input": {**JOB, "seed": i}}).json()["id"]
               for i in range(20)]
        ends = [wait_until(lambda i=i: (s := http.get(f"{a.url}/status/{i}").json())["status"] in
                           (COMPLETED, FAILED) and s, 240, "20 jobs") for i in ids]
        assert [e["status"] for e in ends] == [COMPLETED] * 20
        by = Counter(e["workerId"] for e in ends)
        assert len(by) == 2 and min(by.values()) >= 4, by  # spread by capacity (2 slots each)
        health = http.get(f"{b.url}/health").json()
        assert health["jobs"]["completed"] >= 21 and health["jobs"]["inQueue"] == 0

        # one replica killed mid-job: every job still ends, and its webhook is told once
        heard: list[dict] = []

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                heard.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        hook = LoopbackHTTPServer(Hook).__enter__()
        ids = [http.post(f"{a.url}/run", json={"input": {**MEDIUM, "seed": i},
                                               "webhook": f"{hook.url}/done"}).json()["id"] for i in range(4)]

        def running_on():
            for i in ids:
                state = http.get(f"{a.url}/status/{i}").json()
                if state["status"] == "IN_PROGRESS":
                    return state["workerId"]
            return None

        worker = wait_until(running_on, 60, "a job to start")
        victim, survivor = (a, b) if f":{a.proc.pid}:" in worker else (b, a)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        ends = [wait_until(lambda i=i: (s := http.get(f"{survivor.url}/status/{i}").json())["status"] in
                           (COMPLETED, FAILED, CANCELLED) and s, 300, "jobs after the kill") for i in ids]
        assert all(e["status"] == COMPLETED for e in ends), [e.get("error") for e in ends]
        wait_until(lambda: len(heard) >= 4, 30, "the webhooks")
        time.sleep(2)
        hook.__exit__(None, None, None)
        assert sorted(h["id"] for h in heard) == sorted(ids) and {h["status"] for h in heard} == {COMPLETED}
        assert all(h["output"]["audio_base64"] for h in heard)  # read from Redis when sent, not held meanwhile

        # Redis stopped mid-run: job routes 503 with the reason, speech goes on; after a restart, jobs work again
        redis_server.stop()
        down = http.post(f"{survivor.url}/run", json={"input": JOB})
        assert down.status_code == 503 and "JOB_STORE" in down.json()["error"]["message"]
        assert http.get(f"{survivor.url}/health").status_code == 503
        speech = http.post(f"{survivor.url}/v1/audio/speech", json={"model": "tts-1", "input": "Still here.", "voice": "tenor",
                                                                    "response_format": "wav"})
        assert speech.status_code == 200 and speech.content[:4] == b"RIFF"
        redis_server.start()
        job_id = wait_until(lambda: (r := http.post(f"{survivor.url}/run", json={"input": JOB})).status_code == 200
                            and r.json()["id"], 30, "jobs again")
        assert wait_until(lambda: http.get(f"{survivor.url}/status/{job_id}").json()["status"] == COMPLETED, 120,
                          "a job after the restart")


def test_bench_replicas_reports_throughput_and_no_lost_jobs(tmp_path, tiny_model_dir):
    _need_redis()
    from bench.load import main

    out = tmp_path / "bench.json"
    assert main(["--replicas", "2", "--redis", "--clients", "2", "--duration", "4", "--json", str(out),
                 "--model", str(tiny_model_dir)]) == 0
    result = json.loads(out.read_text())
    assert result["lost_jobs"] == 0 and result["jobs_per_s_one"] > 0 and result["jobs_per_s_2"] > 0
    assert len(result["jobs_by_replica"]) == 2


def test_a_running_jobs_progress_is_read_on_any_replica_and_gone_once_it_ends(redis_server):
    reported, release = threading.Event(), threading.Event()
    stores = []

    def work(job, emit):
        stores[0].report(job, {"chunks_done": 2, "chunks_total": 5})
        reported.set()
        release.wait(30)
        return {"ok": True}

    runner = make_store(redis_server.url, work, workers=1)
    stores.append(runner)
    front = make_store(redis_server.url, lambda job, emit: pytest.fail("front takes nothing"), workers=1)
    front._stop.set()  # a replica with no room: it answers routes only
    front._taker.join(5)
    try:
        job_id = front.submit({}).id
        assert reported.wait(30)
        view = front.get(job_id).view()
        assert view["status"] == "IN_PROGRESS" and view["output"] == {"chunks_done": 2, "chunks_total": 5}
        front.report(front.get(job_id), {"chunks_done": 4})  # a replica that does not hold the job: ignored
        assert front.get(job_id).view()["output"]["chunks_done"] == 2
        release.set()
        done = final(front, job_id)
        assert done.status == COMPLETED and done.view()["output"] == {"ok": True} and done.progress is None
    finally:
        release.set()
        runner.shutdown()
        front.shutdown()
