"""Fetching reference audio from a URL without becoming a proxy into private networks (SSRF).

Every hop (the URL and each redirect) is resolved once, every resolved address is checked against private,
loopback, link-local, metadata and other non-public ranges, and the connection goes to the checked address itself
(with the original host name for ``Host`` and TLS), so a second DNS answer cannot swap in another address
(DNS rebinding). Size is capped while the body streams; the total time (``REF_AUDIO_URL_TIMEOUT_S``) and the
caller's cancel hold on every read, however slowly the server sends; and only so many fetches run at once.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

from .settings import get_settings

Resolver = Callable[[str, int], list[str]]

#: Ranges that are not "the public internet", beyond what ``ipaddress`` flags itself.
_EXTRA_BLOCKED = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "169.254.0.0/16", "fd00:ec2::/32",
    "64:ff9b::/96", "2002::/16",
    "fec0::/10",  # site-local: deprecated, yet still routed inside some networks, and global to ``ipaddress``
)]


class FetchRefused(ValueError):
    """The URL was refused or could not be fetched; the message says why (safe to show)."""


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise FetchRefused(f"host {host!r} does not resolve") from None
    return sorted({info[4][0] for info in infos})


def plain_address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address without its zone; an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) as the IPv4 it carries."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def forbidden(address: str, allow_loopback: bool = False) -> str | None:
    """Why ``address`` may not be contacted, or None when it is a public address.

    A mapped address is judged as the IPv4 it carries: ``ipaddress`` calls all of ``::ffff:0:0/96`` private (a
    public site refused) and none of it loopback (a loopback setting ignored)."""
    ip = plain_address(address)
    if ip.is_loopback:
        return None if allow_loopback else "loopback"
    if ip.is_link_local or any(ip in net for net in _EXTRA_BLOCKED if ip.version == net.version):
        return "link-local, metadata or reserved"
    if ip.is_private or ip.is_reserved or ip.is_multicast or ip.is_unspecified or not ip.is_global:
        return "private or non-public"
    return None


class FetchCancelled(FetchRefused):
    """The caller cancelled the fetch (its job was cancelled or its client went away)."""


class Watchdog:
    """Holds one fetch to its deadline and its cancel, whatever the server does.

    A per-read timeout cannot do that: a server that sends a byte a second never lets a read time out. So every
    socket the fetch opens is recorded (httpcore's ``trace`` extension reports each new connection), and when the
    deadline passes or the cancel is set, a thread shuts those sockets down, which ends any read or write in
    progress at once.
    """

    _POLL_S = 0.05

    def __init__(self, deadline: float, cancel: threading.Event | None) -> None:
        self.deadline = deadline
        self.cancel = cancel
        self.fired: str | None = None  # "deadline" or "cancel", once the watchdog acted
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ref-url-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def trace(self, event: str, info: dict) -> None:
        """httpcore ``trace`` callback: remember each connection's socket (and cut it at once if already late)."""
        if event.endswith("connect_tcp.complete"):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with self._lock:
                    self._sockets.append(sock)
                    if self.fired:
                        _shut(sock)

    def reason(self) -> str | None:
        """Why the fetch must stop now, or None."""
        if self.fired:
            return self.fired
        if self.cancel is not None and self.cancel.is_set():
            return "cancel"
        if time.monotonic() >= self.deadline:
            return "deadline"
        return None

    def _watch(self) -> None:
        while not self._done.wait(self._POLL_S):
            why = self.reason()
            if why:
                with self._lock:
                    self.fired = why
                    for sock in self._sockets:
                        _shut(sock)
                return


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


@dataclass
class GuardedFetcher:
    """Fetch one URL's bytes under the guards; ``resolver`` and ``transport`` are replaceable for tests.

    ``max_concurrent`` fetches run at once (``MAX_CONCURRENT_FETCHES`` when None); the others wait, within their
    own deadline.
    """

    max_bytes: int
    timeout_s: float = 10.0
    max_redirects: int = 3
    allow_http: bool = False
    allow_loopback: bool = False
    resolver: Resolver = system_resolver
    transport: httpx.BaseTransport | None = None
    max_concurrent: int | None = None
    _slots: threading.BoundedSemaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_concurrent is None:
            self.max_concurrent = get_settings().max_concurrent_fetches
        self._slots = threading.BoundedSemaphore(self.max_concurrent)

    def checked_address(self, host: str, port: int) -> str:
        addresses = self.resolver(host, port)
        if not addresses:
            raise FetchRefused(f"host {host!r} does not resolve")
        for address in addresses:
            reason = forbidden(address, self.allow_loopback)
            if reason:
                raise FetchRefused(f"host {host!r} resolves to a {reason} address; refused")
        return str(plain_address(addresses[0]))  # a mapped address is contacted as the IPv4 that was judged

    def _resolve_in_time(self, host: str, port: int, watchdog: Watchdog) -> str:
        """:meth:`checked_address` on a helper thread: a slow name server must not outlast the deadline either."""
        outcome: list = []

        def run() -> None:
            try:
                outcome.append((True, self.checked_address(host, port)))
            except BaseException as exc:  # noqa: BLE001 - handed to the fetching thread
                outcome.append((False, exc))

        helper = threading.Thread(target=run, name="ref-url-resolve", daemon=True)
        helper.start()
        while helper.is_alive():
            helper.join(Watchdog._POLL_S)
            if helper.is_alive() and watchdog.reason():
                raise FetchRefused("stopped")  # reported as late or cancelled by fetch()
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    def fetch(self, url: str, cancel: threading.Event | None = None) -> bytes:
        """The body at ``url``; :class:`FetchRefused` when refused, late or failed, :class:`FetchCancelled` when
        ``cancel`` was set. ``REF_AUDIO_URL_TIMEOUT_S`` bounds everything, waiting for a free slot included."""
        deadline = time.monotonic() + self.timeout_s
        with Watchdog(deadline, cancel) as watchdog:
            self._take_slot(watchdog)
            try:
                return self._fetch(url, deadline, watchdog)
            except (FetchRefused, httpx.HTTPError, OSError) as exc:
                why = watchdog.reason()
                if why == "cancel":
                    raise FetchCancelled("the fetch was cancelled") from None
                if why == "deadline":
                    raise FetchRefused(self._late()) from None
                if isinstance(exc, FetchRefused):
                    raise
                raise FetchRefused(f"could not fetch the URL ({exc.__class__.__name__})") from None
            finally:
                self._slots.release()

    def _late(self) -> str:
        return f"fetching took longer than {self.timeout_s:g} s (REF_AUDIO_URL_TIMEOUT_S)"

    def _take_slot(self, watchdog: Watchdog) -> None:
        while not self._slots.acquire(timeout=Watchdog._POLL_S):
            why = watchdog.reason()
            if why == "cancel":
                raise FetchCancelled("the fetch was cancelled")
            if why == "deadline":
                raise FetchRefused(f"{self.max_concurrent} reference URLs were already being fetched for "
                                   f"{self.timeout_s:g} s (MAX_CONCURRENT_FETCHES, REF_AUDIO_URL_TIMEOUT_S)")

    def _fetch(self, url: str, deadline: float, watchdog: Watchdog) -> bytes:
        with httpx.Client(transport=self.transport, follow_redirects=False, trust_env=False) as client:
            for _hop in range(self.max_redirects + 1):
                parts = urlsplit(url)
                scheme = parts.scheme.lower()
                if scheme not in ("https", "http") or (scheme == "http" and not self.allow_http):
                    allowed = "https or http" if self.allow_http else "https"
                    raise FetchRefused(f"only {allowed} URLs are accepted")
                if not parts.hostname or parts.username or parts.password:
                    raise FetchRefused("the URL needs a host and no credentials")
                port = parts.port or (443 if scheme == "https" else 80)
                address = self._resolve_in_time(parts.hostname, port, watchdog)
                literal = f"[{address}]" if ":" in address else address
                target = parts._replace(netloc=f"{literal}:{port}").geturl()
                host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FetchRefused(self._late())
                # identity: a compressed body would be inflated past MAX_REF_AUDIO_BYTES before it is counted
                request = client.build_request(
                    "GET", target, headers={"Host": host_header, "Accept": "audio/*", "Accept-Encoding": "identity"},
                    extensions={"sni_hostname": parts.hostname, "timeout": httpx.Timeout(remaining).as_dict(),
                                "trace": watchdog.trace})
                try:
                    response = client.send(request, stream=True)
                except httpx.HTTPError as exc:
                    raise FetchRefused(f"could not fetch the URL ({exc.__class__.__name__})") from None
                try:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise FetchRefused("redirect without a location")
                        url = urljoin(url, location)
                        continue
                    if response.status_code != 200:
                        raise FetchRefused(f"the URL answered HTTP {response.status_code}")
                    return self._read(response, watchdog)
                finally:
                    response.close()
        raise FetchRefused(f"more than {self.max_redirects} redirects")

    def _read(self, response: httpx.Response, watchdog: Watchdog) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchRefused(f"the audio is {declared} bytes; the limit is {self.max_bytes} (MAX_REF_AUDIO_BYTES)")
        body = bytearray()
        try:
            for block in response.iter_raw():  # as the bytes arrive: no block waits to fill up
                if watchdog.reason():
                    raise FetchRefused("stopped")  # reported as late or cancelled by fetch()
                body += block
                if len(body) > self.max_bytes:
                    raise FetchRefused(f"the audio is over {self.max_bytes} bytes (MAX_REF_AUDIO_BYTES)")
        except httpx.HTTPError as exc:
            raise FetchRefused(f"could not fetch the URL ({exc.__class__.__name__})") from None
        if watchdog.reason():
            raise FetchRefused("stopped")
        return bytes(body)
