"""Job webhooks as RunPod sends them: the job's final ``/status`` JSON POSTed to the URL its ``/run`` named.

A receiver must answer 200; anything else (or no answer) is tried again ``WEBHOOK_RETRIES`` times,
``WEBHOOK_RETRY_DELAY_S`` apart. Deliveries run on their own threads from a queue, so a slow or dead receiver never
holds a job slot, a request thread or the event loop. A waiting delivery holds the job's id and state, never a copy
of its output: the output is read from the job store when the POST is made (so waiting deliveries cost no more than
``JOB_RETAIN_BYTES`` allows the store; a result forgotten meanwhile is reported as such), and at most
``WEBHOOK_MAX_PENDING`` deliveries wait.

A webhook URL is a way to make this worker send requests, so it passes the guard reference URLs pass
(:mod:`higgs_worker.core.safe_fetch`): https only unless ``WEBHOOK_ALLOW_HTTP``; no credentials in the URL; every address
the host resolves to must be public (``WEBHOOK_ALLOW_PRIVATE`` lets loopback and private ranges through for local
development; link-local and metadata addresses stay refused). The URL is checked when the job is submitted, so a
refused one is an error to the caller, and checked again at each delivery, which connects to the address it
checked (the host name still goes in ``Host`` and TLS), so a changed DNS answer cannot redirect the POST. Redirects
are not followed: a 3xx answer counts as a failed attempt.

Resolving a webhook's host can be slow (a dead name server), so it never runs on the threads that serve requests:
the check at submission runs on threads of its own, at most ``WEBHOOK_MAX_CHECKS`` at once (past that a submission
is answered 503), and the caller waits at most ``WEBHOOK_TIMEOUT_S`` for it; deliveries resolve on their own
delivery threads.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx

from ..core.safe_fetch import FetchRefused, Resolver, Watchdog, forbidden, plain_address, system_resolver
from .state import COMPLETED, Job

log = logging.getLogger(__name__)


class _QuietDeliveries(logging.Filter):
    """httpx logs each request's full URL; a webhook's path or query may carry the receiver's token, so requests
    made on the delivery threads are left to this module's own log lines, which name the host only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName or "").startswith(_THREAD_PREFIX)


_THREAD_PREFIX = "webhook-delivery-"
logging.getLogger("httpx").addFilter(_QuietDeliveries())

#: Longest webhook URL accepted.
MAX_URL_CHARS = 2048
#: Deliveries waiting (first attempts and retries) beyond which new ones are dropped, with a warning
#: (``WEBHOOK_MAX_PENDING``'s default).
MAX_PENDING = 1000
#: Webhook URLs checked (resolved) at once at submission (``WEBHOOK_MAX_CHECKS``'s default).
MAX_CHECKS = 16
#: Sent in place of a completed job's output when the store forgot it before its webhook was delivered.
FORGOTTEN = ("the job's output was forgotten before this webhook was sent (JOB_RETAIN_MAX, JOB_RETAIN_BYTES or "
             "JOB_RETENTION_S) and can no longer be read")


class WebhookRefused(ValueError):
    """The webhook URL is not allowed; the message says why and is safe to show."""


class WebhookBusy(RuntimeError):
    """``WEBHOOK_MAX_CHECKS`` webhook URLs are being checked already; the caller may try again shortly."""


@dataclass(frozen=True)
class WebhookGuard:
    """The reference-URL guard's rules applied to webhook URLs."""

    allow_http: bool = False
    allow_private: bool = False
    resolver: Resolver = system_resolver

    def parse(self, url: str) -> SplitResult:
        """The URL's parts, when its form is acceptable (no DNS): scheme, host, no credentials, length."""
        if not isinstance(url, str) or not url.strip():
            raise WebhookRefused("must be a URL")
        if len(url) > MAX_URL_CHARS:
            raise WebhookRefused(f"is over {MAX_URL_CHARS} characters")
        try:
            parts = urlsplit(url.strip())
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        except ValueError:
            raise WebhookRefused("is not a valid URL") from None
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http") or (scheme == "http" and not self.allow_http):
            allowed = "https or http" if self.allow_http else "https (WEBHOOK_ALLOW_HTTP allows http)"
            raise WebhookRefused(f"must be an {allowed} URL")
        if not parts.hostname or parts.username or parts.password:
            raise WebhookRefused("needs a host and no credentials")
        return parts

    def address(self, host: str, port: int) -> str:
        """The address to contact for ``host``, once every address it resolves to passed the checks."""
        try:
            addresses = self.resolver(host, port)
        except FetchRefused as exc:
            raise WebhookRefused(str(exc)) from None
        if not addresses:
            raise WebhookRefused(f"host {host!r} does not resolve")
        for address in addresses:
            reason = forbidden(address, allow_loopback=self.allow_private)
            if reason == "private or non-public" and self.allow_private:
                continue
            if reason:
                hint = "" if reason.startswith("link-local") else " (WEBHOOK_ALLOW_PRIVATE allows it for development)"
                raise WebhookRefused(f"host {host!r} resolves to a {reason} address; refused{hint}")
        return str(plain_address(addresses[0]))

    def check(self, url: str) -> None:
        """Refuse ``url`` (:class:`WebhookRefused`) unless a delivery to it would be allowed now. Resolves DNS."""
        parts = self.parse(url)
        self.address(parts.hostname, parts.port or (443 if parts.scheme.lower() == "https" else 80))


@dataclass
class _Delivery:
    url: str
    body: dict[str, Any]  # the job's final state without its output
    job_id: str
    read: Callable[[], dict[str, Any] | None] | None = None  # the job's /status view from the store, when kept
    attempts: int = 0


def _view(job: Job | None) -> dict[str, Any] | None:
    return None if job is None else job.view()


class WebhookSender:
    """Delivers webhook bodies on ``workers`` daemon threads; retries wait in a queue, not on a thread."""

    def __init__(self, guard: WebhookGuard, retries: int = 2, retry_delay_s: float = 10.0, timeout_s: float = 10.0,
                 workers: int = 4, transport: httpx.BaseTransport | None = None,
                 on_result: Callable[[str, bool], None] | None = None, max_pending: int = MAX_PENDING,
                 max_checks: int = MAX_CHECKS) -> None:
        self.guard = guard
        self.max_pending = max_pending
        self.max_checks = max_checks
        self._check_slots = threading.BoundedSemaphore(max_checks)
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self.timeout_s = timeout_s
        self.transport = transport
        self.on_result = on_result  # (job id, delivered) once a delivery succeeds or is given up
        self.delivered = 0
        self.given_up = 0
        self._due: list[tuple[float, int, _Delivery]] = []  # (when, order, delivery), soonest first
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._in_flight = 0
        self._threads = [threading.Thread(target=self._loop, name=f"{_THREAD_PREFIX}{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    @classmethod
    def from_settings(cls, settings, **kw) -> WebhookSender:
        """The process's sender; at exit it gives deliveries due by then one ``WEBHOOK_TIMEOUT_S`` to finish, so
        jobs that end during a graceful shutdown are still reported."""
        guard = WebhookGuard(allow_http=settings.webhook_allow_http, allow_private=settings.webhook_allow_private)
        sender = cls(guard, retries=settings.webhook_retries, retry_delay_s=settings.webhook_retry_delay_s,
                     timeout_s=settings.webhook_timeout_s, max_pending=settings.webhook_max_pending,
                     max_checks=settings.webhook_max_checks, **kw)
        atexit.register(sender.drain, settings.webhook_timeout_s + 1)
        return sender

    def check(self, url: str) -> None:
        """Refuse a URL when the job is submitted (:class:`WebhookRefused`); resolves DNS, so call it off the loop."""
        self.guard.check(url)

    def check_soon(self, url: str) -> Future[None]:
        """Check ``url`` (as :meth:`check`) on a thread of the sender's own, never the caller's pool; the future
        holds the outcome. :class:`WebhookBusy` at once when ``max_checks`` checks are running already."""
        if not self._check_slots.acquire(blocking=False):
            raise WebhookBusy(f"{self.max_checks} webhook URLs are being checked already (WEBHOOK_MAX_CHECKS); "
                              "try again shortly")
        future: Future[None] = Future()

        def run() -> None:
            try:
                self.guard.check(url)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)
            else:
                future.set_result(None)
            finally:
                self._check_slots.release()

        try:
            # A thread per check, bounded by the slots: a name server that never answers keeps its thread (a
            # daemon, so it never holds the process at exit) and its slot, nothing else.
            threading.Thread(target=run, name="webhook-check", daemon=True).start()
        except BaseException:
            self._check_slots.release()
            raise
        return future

    def end_listener(self, url: str, lookup: Callable[[str], Job | None]) -> Callable[[Job], None]:
        """A job's end listener (a store's ``on_end``) that queues its webhook: the delivery holds the job's id and
        final state, and reads its output through ``lookup`` (the store's ``get``) when it is sent."""
        def told(job: Job) -> None:
            job_id = job.id  # the delivery must not hold the job, which holds the output
            self.send(url, job.view(output=False), read=lambda: _view(lookup(job_id)))

        return told

    def send(self, url: str, body: dict[str, Any], read: Callable[[], dict[str, Any] | None] | None = None) -> None:
        """Queue ``body`` for ``url``; returns at once. With ``read``, ``body`` is the job's final state without
        its output, and ``read()`` gives its current ``/status`` view (None once forgotten) when the POST is made."""
        delivery = _Delivery(url, body, str(body.get("id", "")), read)
        with self._cond:
            if self._closed:
                return
            if len(self._due) >= self.max_pending:
                log.warning("webhook for job %s dropped: %d deliveries are already waiting (WEBHOOK_MAX_PENDING)",
                            delivery.job_id, len(self._due))
                return
            heapq.heappush(self._due, (time.monotonic(), next(self._order), delivery))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._due)

    def drain(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the deliveries due by then (retries later than that are not waited for);
        True when none is left waiting or in flight."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                now = time.monotonic()
                waiting = self._in_flight or (self._due and self._due[0][0] <= deadline)
                if not waiting:
                    return not self._due
                if now >= deadline:
                    return False
                self._cond.wait(min(0.05, deadline - now))

    def close(self) -> None:
        """Stop delivering (waiting retries are dropped); attempts in flight end within ``WEBHOOK_TIMEOUT_S``."""
        with self._cond:
            self._closed = True
            self._due.clear()
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    if self._due and self._due[0][0] <= now:
                        delivery = heapq.heappop(self._due)[2]
                        self._in_flight += 1
                        break
                    self._cond.wait(None if not self._due else self._due[0][0] - now)
                else:
                    return
            try:
                self._attempt(delivery)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()

    def _payload(self, delivery: _Delivery) -> dict[str, Any]:
        """What to POST: the stored ``/status`` view while it still shows the state the job ended in; else the
        state kept with the delivery (a completed job's forgotten output said so)."""
        current = None if delivery.read is None else delivery.read()
        if current is not None and current.get("status") == delivery.body.get("status"):
            return current
        if delivery.read is not None and delivery.body.get("status") == COMPLETED:
            return {**delivery.body, "error": FORGOTTEN}
        return delivery.body

    def _attempt(self, delivery: _Delivery) -> None:
        delivery.attempts += 1
        try:
            status = self._post(delivery.url, self._payload(delivery))
            why = None if status == 200 else f"answered HTTP {status}"
        except WebhookRefused as exc:
            why = f"refused: {exc}"
        except Exception as exc:  # noqa: BLE001 - any failure is one failed attempt
            why = f"failed ({exc.__class__.__name__})"
        host = urlsplit(delivery.url).hostname  # never the path or query: they may carry a token
        if why is None:
            self.delivered += 1
            log.info("webhook for job %s delivered to %s (attempt %d)", delivery.job_id, host, delivery.attempts)
            self._told(delivery, True)
            return
        if delivery.attempts > self.retries:
            self.given_up += 1
            log.warning("webhook for job %s to %s %s; gave up after %d attempts (WEBHOOK_RETRIES)", delivery.job_id,
                        host, why, delivery.attempts)
            self._told(delivery, False)
            return
        log.warning("webhook for job %s to %s %s; retrying in %g s", delivery.job_id, host, why, self.retry_delay_s)
        with self._cond:
            if not self._closed:
                heapq.heappush(self._due, (time.monotonic() + self.retry_delay_s, next(self._order), delivery))
                self._cond.notify()

    def _told(self, delivery: _Delivery, delivered: bool) -> None:
        if self.on_result is not None:
            try:
                self.on_result(delivery.job_id, delivered)
            except Exception:  # noqa: BLE001
                log.exception("webhook result listener failed")

    def _post(self, url: str, body: dict[str, Any]) -> int:
        """One POST to the checked address of ``url``'s host, within ``timeout_s`` in all; returns the status."""
        parts = self.guard.parse(url)
        scheme = parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
        address = self.guard.address(parts.hostname, port)
        literal = f"[{address}]" if ":" in address else address
        target = parts._replace(netloc=f"{literal}:{port}").geturl()
        host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        with Watchdog(time.monotonic() + self.timeout_s, None) as watchdog, \
                httpx.Client(transport=self.transport, follow_redirects=False, trust_env=False) as client:
            request = client.build_request(
                "POST", target, json=body, headers={"Host": host_header, "User-Agent": "higgs-audio-worker webhook"},
                extensions={"sni_hostname": parts.hostname, "timeout": httpx.Timeout(self.timeout_s).as_dict(),
                            "trace": watchdog.trace})
            response = client.send(request, stream=True)  # the status is all that counts: the body is not read
            response.close()
            return response.status_code
