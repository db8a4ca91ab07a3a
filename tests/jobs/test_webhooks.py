"""Job webhooks: the guard on the URL, delivery and retries against real listeners on 127.0.0.1, and the server
POSTing a job's final status when it ends, without holding the job's result.

Host names in these tests resolve through a stub resolver to loopback addresses, so no packet leaves 127.0.0.0/8.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from higgs_worker.jobs.webhooks import WebhookGuard, WebhookRefused, WebhookSender
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
