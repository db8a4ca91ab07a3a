"""Job webhooks: the guard on the URL, delivery and retries against real listeners on 127.0.0.1, and the server
POSTing a job's final status when it ends, without holding the job's result.

Host names in these tests resolve through a stub resolver to loopback addresses, so no packet leaves 127.0.0.0/8.
"""

from __future__ import annotations

import json
import logging
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from higgs_worker.jobs.memory import JobStore
from higgs_worker.jobs.webhooks import FORGOTTEN, WebhookBusy, WebhookGuard, WebhookRefused, WebhookSender
from servers import LoopbackHTTPServer, Server, wait_until


class Listener(LoopbackHTTPServer):
    """Records every POST; answers with the next status of ``statuses`` (then 200); may hold answers until
    ``release`` is set."""

    def __init__(self, statuses: list[int] | None = None, hold: bool = False, location: str | None = None) -> None:
        self.posts: list[dict] = []
        self.statuses = list(statuses or [])
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.changed = threading.Condition()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with listener.changed:
                    listener.posts.append({"path": self.path, "host": self.headers.get("Host"),
                                           "type": self.headers.get("Content-Type"), "body": json.loads(body)})
                    status = listener.statuses.pop(0) if listener.statuses else 200
                    listener.changed.notify_all()
                listener.release.wait(60)
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        super().__init__(Handler)

    def wait_posts(self, n: int, timeout: float = 60.0) -> list[dict]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.posts) >= n, timeout), f"{len(self.posts)} of {n} posts"
            return list(self.posts)


def stub_resolver(table: dict[str, list[str]]):
    def resolve(host: str, port: int) -> list[str]:
        return table.get(host, [host])

    return resolve


# -- the guard --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "why"), [
    ("http://hooks.example/x", "must be an https (WEBHOOK_ALLOW_HTTP allows http) URL"),
    ("ftp://hooks.example/x", "must be an https"),
    ("https://user:pw@hooks.example/x", "needs a host and no credentials"),
    ("https:///x", "needs a host"),
    ("https://hooks.example:99999/x", "is not a valid URL"),
    ("https://hooks.example/" + "a" * 3000, "is over 2048 characters"),
    ("", "must be a URL"),
])
def test_guard_refuses_bad_urls_by_their_form(url, why):
    with pytest.raises(WebhookRefused, match=why.replace("(", r"\(").replace(")", r"\)")):
        WebhookGuard(resolver=stub_resolver({"hooks.example": ["93.184.216.34"]})).check(url)


@pytest.mark.parametrize(("addresses", "allow_private", "refused"), [
    (["93.184.216.34"], False, None),
    (["127.0.0.1"], False, "loopback address; refused (WEBHOOK_ALLOW_PRIVATE allows it"),
    (["10.1.2.3"], False, "private or non-public address; refused (WEBHOOK_ALLOW_PRIVATE"),
    (["93.184.216.34", "192.168.1.9"], False, "private or non-public"),  # every answer must pass
    (["::ffff:10.0.0.1"], False, "private or non-public"),  # a mapped address is judged as its IPv4
    (["127.0.0.1"], True, None),
    (["10.1.2.3"], True, None),
    (["169.254.169.254"], True, "link-local, metadata or reserved address; refused"),  # never, even in development
    (["fd00:ec2::254"], True, "link-local, metadata or reserved"),
    (["0.0.0.0"], True, "link-local, metadata or reserved"),
])
def test_guard_judges_every_resolved_address(addresses, allow_private, refused):
    guard = WebhookGuard(allow_private=allow_private, resolver=stub_resolver({"hooks.example": addresses}))
    if refused is None:
        guard.check("https://hooks.example/done")
    else:
        with pytest.raises(WebhookRefused) as info:
            guard.check("https://hooks.example/done")
        assert refused in str(info.value)
        if "link-local" in refused:
            assert "WEBHOOK_ALLOW_PRIVATE" not in str(info.value)


# -- delivery ---------------------------------------------------------------------------------------------------

def sender(resolver=None, **kw) -> WebhookSender:
    guard = WebhookGuard(allow_http=True, allow_private=True, resolver=resolver or stub_resolver({}))
    kw.setdefault("retry_delay_s", 0.2)
    kw.setdefault("timeout_s", 5.0)
    return WebhookSender(guard, **kw)


def test_delivery_goes_to_the_checked_address_with_the_host_name_kept():
    with Listener() as hook:
        s = sender(stub_resolver({"hooks.example": ["127.0.0.1"]}))
        s.send(f"http://hooks.example:{hook.port}/done?token=abc", {"id": "job-1", "status": "COMPLETED"})
        post = hook.wait_posts(1)[0]
        s.close()
    assert post["path"] == "/done?token=abc" and post["host"] == f"hooks.example:{hook.port}"
    assert post["type"] == "application/json" and post["body"] == {"id": "job-1", "status": "COMPLETED"}
    wait_until(lambda: s.delivered == 1, 10, "the delivery to be counted")


def test_a_failed_answer_is_retried_then_given_up_after_the_retries():
    results = []
    with Listener(statuses=[500, 503, 502, 500]) as hook:
        s = sender(retries=2, on_result=lambda job, ok: results.append((job, ok)))
        s.send(f"{hook.url}/done", {"id": "job-2", "status": "FAILED", "error": "x"})
        wait_until(lambda: results, 30, "the sender to give up")
        posts = hook.wait_posts(3)
        s.close()
    assert len(posts) == 3 and results == [("job-2", False)] and s.given_up == 1  # one try and two retries
    assert all(p["body"]["id"] == "job-2" for p in posts)


def test_a_redirect_is_not_followed():
    with Listener() as target, Listener(statuses=[302, 302, 302], location=f"{target.url}/elsewhere") as hook:
        results = []
        s = sender(retries=2, on_result=lambda job, ok: results.append(ok))
        s.send(f"{hook.url}/done", {"id": "job-3", "status": "COMPLETED"})
        wait_until(lambda: results, 30, "the sender to give up")
        s.close()
        assert results == [False] and target.posts == []


def test_an_address_that_changes_after_the_check_is_refused_at_delivery():
    answers = iter([["93.184.216.34"], ["10.0.0.7"], ["10.0.0.7"]])
    guard = WebhookGuard(allow_http=True, resolver=lambda host, port: next(answers))
    results = []
    s = WebhookSender(guard, retries=1, retry_delay_s=0.1, on_result=lambda job, ok: results.append(ok))
    s.check("http://rebind.example/done")  # public when the job was submitted
    s.send("http://rebind.example/done", {"id": "job-4", "status": "COMPLETED"})  # private when it ends
    wait_until(lambda: results, 10, "the sender to give up")
    s.close()
    assert results == [False] and s.delivered == 0


def test_a_receiver_that_never_answers_costs_one_timeout_per_attempt():
    with Listener(hold=True) as hook:
        results = []
        s = sender(retries=0, timeout_s=0.5, on_result=lambda job, ok: results.append(ok))
        s.send(f"{hook.url}/slow", {"id": "job-5", "status": "COMPLETED"})
        wait_until(lambda: results, 10, "the attempt to time out")
        hook.release.set()
        s.close()
    assert results == [False]


def test_drain_waits_for_deliveries_due_but_not_for_distant_retries():
    with Listener(hold=True) as hook:
        s = sender(retries=1, retry_delay_s=60)
        s.send(f"{hook.url}/a", {"id": "job-6", "status": "COMPLETED"})
        hook.wait_posts(1)
        assert s.drain(0.2) is False  # the attempt is still in flight
        hook.release.set()
        assert s.drain(10) is True and s.delivered == 1
    with Listener(statuses=[500]) as hook:
        s = sender(retries=1, retry_delay_s=60)
        s.send(f"{hook.url}/b", {"id": "job-7", "status": "FAILED"})
        hook.wait_posts(1)
        assert s.drain(1) is False and s.pending() == 1  # its retry is a minute away: not waited for
        s.close()


# -- bounds -----------------------------------------------------------------------------------------------------

MB = 1_000_000


def test_waiting_deliveries_hold_no_copy_of_the_results():
    """The probe: 300 jobs whose receiver never answered cost +516 MB against +304 MB without webhooks: each waiting
    delivery held its job's output, outside JOB_RETAIN_BYTES. Here 40 results of 1 MB each end while the receiver
    holds the first delivery: what stays is the store's 4 MB cap and the one delivery in flight, not 40 MB."""
    with Listener(hold=True) as hook:
        s = sender(retries=0, timeout_s=120, workers=1)
        store = JobStore(lambda job, emit: {"audio": job.input * MB}, workers=1, retention_s=3600, timeout_s=60,
                         retain_bytes=4 * MB)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(40):
                store.submit(chr(ord("A") + i), on_end=s.end_listener(f"{hook.url}/never", store.get))
            wait_until(lambda: store.counts()["jobs"]["completed"] == 40, 60, "40 jobs")
            hook.wait_posts(1)  # the first delivery is in flight (and its body parsed here), the rest wait
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert s.pending() == 39 and store.retained()[1] <= 4 * MB
        assert held < 14 * MB, f"{held / MB:.1f} MB held"
        hook.release.set()
        store.shutdown()
        s.close()


def test_a_delivery_reads_the_stored_result_and_says_when_it_was_forgotten():
    with Listener() as hook:
        s = sender()
        s.send(f"{hook.url}/a", {"id": "job-8", "status": "COMPLETED"},
               read=lambda: {"id": "job-8", "status": "COMPLETED", "output": {"n": 1}})
        s.send(f"{hook.url}/b", {"id": "job-9", "status": "COMPLETED"}, read=lambda: None)
        s.send(f"{hook.url}/c", {"id": "job-10", "status": "FAILED", "error": "boom"},
               read=lambda: {"id": "job-10", "status": "IN_QUEUE"})  # retried since: the state it ended in is sent
        posts = {p["path"]: p["body"] for p in hook.wait_posts(3)}
        s.close()
    assert posts["/a"] == {"id": "job-8", "status": "COMPLETED", "output": {"n": 1}}
    assert posts["/b"] == {"id": "job-9", "status": "COMPLETED", "error": FORGOTTEN}
    assert posts["/c"] == {"id": "job-10", "status": "FAILED", "error": "boom"}


def test_at_most_max_pending_deliveries_wait(caplog):
    s = sender(workers=0, max_pending=3)  # no delivery thread: every delivery waits
    with caplog.at_level(logging.WARNING, logger="higgs_worker.jobs.webhooks"):
        for i in range(6):
            s.send("http://hooks.example/x", {"id": f"job-{i}", "status": "FAILED"})
    assert s.pending() == 3
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 3 and all("(WEBHOOK_MAX_PENDING)" in m for m in dropped) and "job-5" in dropped[-1]
    s.close()
    from higgs_worker.core.settings import Settings

    configured = WebhookSender.from_settings(Settings.model_construct(webhook_max_pending=7, webhook_max_checks=3))
    assert (configured.max_pending, configured.max_checks) == (7, 3)
    configured.close()


def test_url_checks_run_on_their_own_threads_at_most_max_checks_at_once():
    gate = threading.Event()
    threads = []

    def slow(host, port):
        threads.append(threading.current_thread().name)
        gate.wait(60)
        return ["127.0.0.1"]

    s = sender(resolver=slow, max_checks=2)
    pending = [s.check_soon(f"http://slow{i}.example/x") for i in range(2)]
    with pytest.raises(WebhookBusy, match=r"2 webhook URLs are being checked already \(WEBHOOK_MAX_CHECKS\)"):
        s.check_soon("http://slow2.example/x")
    gate.set()
    assert [f.result(10) for f in pending] == [None, None] and threads == ["webhook-check"] * 2
    wait_until(lambda: _admitted(s), 10, "a slot to free")  # the slots come back once the checks end
    refused = s.check_soon("https://user:pw@hooks.example/x")
    with pytest.raises(WebhookRefused):
        refused.result(10)
    s.close()


def _admitted(s: WebhookSender) -> bool:
    try:
        s.check_soon("http://again.example/x").result(10)
    except WebhookBusy:
        return False
    return True


def test_the_job_routes_queue_a_webhook_without_the_output(service):
    """Through /runsync of the app (memory store): the delivery the route queues holds the final state without the
    output, and reads the output from the store."""
    from fastapi.testclient import TestClient

    from higgs_worker.http import create_app

    queued = []

    class Recording(WebhookSender):
        def send(self, url, body, read=None):
            queued.append((url, body, read))

    app = create_app(service.settings, service)
    with TestClient(app) as client:
        app.state.webhooks = Recording(WebhookGuard(allow_http=True, allow_private=True,
                                                    resolver=stub_resolver({"hooks.example": ["127.0.0.1"]})),
                                       workers=0)
        job = client.post("/runsync", json={"input": JOB, "webhook": "http://hooks.example/done"}).json()
    assert job["status"] == "COMPLETED" and job["output"]["audio_base64"]
    [(url, body, read)] = queued
    assert url == "http://hooks.example/done" and body == {k: v for k, v in job.items() if k != "output"}
    assert read() == job


def test_slow_webhook_dns_never_holds_a_speech_request(service):
    """The probe: 150 /run calls whose webhook host took 8 s to fail made a 0.1 s speech request take 14.9 s (the
    checks held the threads that serve requests). Here webhook hosts resolve only when the test lets them; a speech
    request must be answered while they hang."""
    from fastapi.testclient import TestClient

    from higgs_worker.http import create_app

    gate = threading.Event()
    resolving = []

    def slow(host, port):
        resolving.append(host)
        gate.wait(120)
        return ["127.0.0.1"]

    settings = service.settings
    settings.max_concurrent_jobs = 1  # the request pool: 9 threads
    app = create_app(settings, service)
    unblock = threading.Timer(60, gate.set)  # only for the broken case, so that it fails rather than hangs
    unblock.daemon = True
    with TestClient(app) as client:
        app.state.webhooks = sender(resolver=slow, timeout_s=120, max_checks=4, retries=0)
        job = {"input": {"transcript": ""}, "webhook": "http://slow.example/hook"}
        with ThreadPoolExecutor(30) as pool:
            runs = [pool.submit(client.post, "/run", json=job) for _ in range(30)]
            wait_until(lambda: len(resolving) >= 4, 30, "four webhook hosts to be resolving")
            unblock.start()
            speech = client.post("/v1/audio/speech", json={"model": "tts-1", "input": "Quick.", "voice": "tenor",
                                                           "response_format": "wav", "max_new_tokens": 20})
            answered_while_hanging = not gate.is_set()
            wait_until(lambda: sum(r.done() for r in runs) >= 26, 30, "the submissions past the bound")
            checking = len(resolving)  # hosts being resolved at once (deliveries resolve again later)
            gate.set()
            answers = [r.result(60) for r in runs]
        app.state.webhooks.close()
    unblock.cancel()
    assert speech.status_code == 200 and speech.content[:4] == b"RIFF"
    assert answered_while_hanging, "the speech request waited for the webhook hosts to resolve"
    busy = [a for a in answers if a.status_code == 503]
    assert checking == 4 and len(busy) == 26  # at most WEBHOOK_MAX_CHECKS resolve at once; the rest: 503
    assert all("WEBHOOK_MAX_CHECKS" in a.json()["error"]["message"] and a.headers["retry-after"] for a in busy)
    assert all(a.json()["status"] == "FAILED" for a in answers if a.status_code == 200)  # checked, then refused


# -- the server -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("webhooks")
    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "LOG_DIR": str(root / "logs"), "VOLUME_ROOT": str(root / "vol"), "WEBHOOK_ALLOW_HTTP": "true",
                  "WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_RETRY_DELAY_S": "0.3"}, root)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


JOB = {"transcript": "Tell the webhook.", "max_new_tokens": 20, "seed": 5, "format": "pcm"}


def test_webhook_receives_the_completed_status_and_never_holds_the_result(server):
    with Listener(hold=True) as hook:  # the receiver keeps every delivery waiting
        job = httpx.post(f"{server.url}/run", json={"input": JOB, "webhook": f"{hook.url}/done"}).json()
        body = hook.wait_posts(1)[0]["body"]
        status = httpx.get(f"{server.url}/status/{job['id']}").json()  # answered while the webhook hangs
        hook.release.set()
    assert status["status"] == "COMPLETED" and body == status
    assert body["id"] == job["id"] and body["output"]["audio_base64"] and "executionTime" in body


def test_webhook_answered_500_once_is_retried(server):
    with Listener(statuses=[500]) as hook:
        job = httpx.post(f"{server.url}/run", json={"input": JOB, "webhook": f"{hook.url}/flaky"}).json()
        posts = hook.wait_posts(2)
    assert [p["body"]["status"] for p in posts] == ["COMPLETED", "COMPLETED"]
    assert posts[1]["body"]["id"] == job["id"]
    wait_until(lambda: "webhook for job " + job["id"] + " delivered" in server.output(), 30, "the delivery log")
    assert "retrying in 0.3 s" in server.output() and "/flaky" not in server.output()  # the path stays private


def test_webhook_hears_a_job_refused_for_its_input(server):
    with Listener() as hook:
        job = httpx.post(f"{server.url}/run", json={"input": {"transcript": ""}, "webhook": f"{hook.url}/x"}).json()
        body = hook.wait_posts(1)[0]["body"]
    assert job["status"] == "FAILED" and body == {"id": job["id"], "status": "FAILED", "error": job["error"]}


@pytest.mark.parametrize(("webhook", "why"), [
    ("http://169.254.169.254/latest/meta-data", "link-local, metadata or reserved address; refused"),
    ("ftp://127.0.0.1/x", "must be an https or http URL"),
    ("http://user:secret@127.0.0.1/x", "needs a host and no credentials"),
])
def test_a_forbidden_webhook_is_refused_when_the_job_is_submitted(server, webhook, why):
    before = httpx.get(f"{server.url}/health").json()["jobs"]
    answer = httpx.post(f"{server.url}/run", json={"input": JOB, "webhook": webhook})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "webhook" and error["message"].startswith("webhook: ") and why in error["message"]
    assert "secret" not in error["message"]
    assert httpx.get(f"{server.url}/health").json()["jobs"] == before  # nothing was queued
