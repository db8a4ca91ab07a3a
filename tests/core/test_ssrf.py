"""URL references under the SSRF guards. No packet leaves 127.0.0.0/8: names resolve through a stub resolver,
and the connect step fails the test if it is ever reached for anything but the local test server (the stub
names all resolve to 127.0.0.1)."""

from __future__ import annotations

import io
import threading
import time
from http.server import BaseHTTPRequestHandler

import httpx
import numpy as np
import pytest
import soundfile as sf

from higgs_worker.core.safe_fetch import FetchRefused, GuardedFetcher, forbidden
from higgs_worker.core.errors import RequestError
from higgs_worker.core.schema import SpeechRequest
from higgs_worker.voices.library import VoiceLibrary
from hostile_media import DripOrigin
from servers import LoopbackHTTPServer

STUB_DNS = {
    "private.test": ["10.0.0.5"], "metadata.test": ["169.254.169.254"], "loop.test": ["127.0.0.1"],
    "v6loop.test": ["::1"], "mapped.test": ["::ffff:10.0.0.1"], "cgnat.test": ["100.64.1.1"],
    "ula.test": ["fd00:ec2::254"], "mixed.test": ["93.184.216.34", "10.0.0.1"], "zero.test": ["0.0.0.0"],
    "voice.test": ["127.0.0.1"], "mapped-public.test": ["::ffff:93.184.216.34"],
    "mapped-loop.test": ["::ffff:127.0.0.1"], "mapped-metadata.test": ["::ffff:169.254.169.254"],
}


def stub_resolver(host: str, port: int) -> list[str]:
    if host not in STUB_DNS:
        raise FetchRefused(f"host {host!r} does not resolve")
    return STUB_DNS[host]


class LoopbackOnly(httpx.HTTPTransport):
    """The connect step: only the local test server may ever be reached."""

    def __init__(self) -> None:
        super().__init__()
        self.hosts: list[str] = []

    def handle_request(self, request):
        host = request.url.host
        if host != "127.0.0.1":
            raise AssertionError(f"connect reached for a forbidden address {host}")
        self.hosts.append(request.headers["host"])
        return super().handle_request(request)


def wav_bytes() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, (0.2 * np.sin(np.arange(16000) / 10)).astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


@pytest.fixture(scope="module")
def origin():
    audio = wav_bytes()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            if self.path == "/voice.wav":
                self.send_response(200)
                self.send_header("Content-Length", str(len(audio)))
                self.end_headers()
                self.wfile.write(audio)
            elif self.path == "/to-metadata":
                self.send_response(302)
                self.send_header("Location", "http://metadata.test/latest/meta-data/")
                self.end_headers()
            elif self.path == "/to-voice":
                self.send_response(301)
                self.send_header("Location", "/voice.wav")
                self.end_headers()
            elif self.path == "/endless":
                self.send_response(200)
                self.end_headers()  # no length: the cap must apply while streaming
                try:
                    for _ in range(400):
                        self.wfile.write(b"\0" * 65536)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            elif self.path in ("/exact", "/exact-unsized"):
                self.send_response(200)
                if self.path == "/exact":
                    self.send_header("Content-Length", str(len(audio)))
                else:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(audio)
                self.close_connection = True
            elif self.path == "/short":
                self.send_response(200)
                self.send_header("Content-Length", str(len(audio)))
                self.end_headers()
                self.wfile.write(audio[:100])  # then the connection closes: fewer bytes than announced
                self.close_connection = True
            elif self.path == "/stall":
                self.send_response(200)
                self.send_header("Content-Length", "5000000")
                self.end_headers()
                time.sleep(5)
            else:
                self.send_response(404)
                self.end_headers()

    with LoopbackHTTPServer(Handler) as server:
        yield server.port


def fetcher(**kw) -> tuple[GuardedFetcher, LoopbackOnly]:
    transport = LoopbackOnly()
    options = {"max_bytes": 2_000_000, "timeout_s": 2.0, "resolver": stub_resolver, "transport": transport}
    options.update(kw)
    return GuardedFetcher(**options), transport


@pytest.mark.parametrize("host", ["private.test", "metadata.test", "loop.test", "v6loop.test", "mapped.test",
                                  "cgnat.test", "ula.test", "mixed.test", "zero.test"])
def test_forbidden_addresses_are_refused_before_connecting(host):
    guard, transport = fetcher()
    with pytest.raises(FetchRefused, match="refused"):
        guard.fetch(f"https://{host}/voice.wav")
    assert transport.hosts == []


@pytest.mark.parametrize("url", ["http://voice.test/voice.wav", "file:///etc/passwd", "ftp://voice.test/x",
                                 "https://user:pw@voice.test/x", "https:///nohost"])
def test_schemes_and_credentials(url):
    guard, transport = fetcher(allow_loopback=True)
    with pytest.raises(FetchRefused):
        guard.fetch(url)
    assert transport.hosts == []


def test_allowed_target_is_fetched_at_the_checked_address(origin):
    guard, transport = fetcher(allow_http=True, allow_loopback=True)
    data = guard.fetch(f"http://voice.test:{origin}/voice.wav")
    assert data == wav_bytes() and transport.hosts == [f"voice.test:{origin}"]
    assert guard.fetch(f"http://voice.test:{origin}/to-voice") == data  # a redirect to an allowed place


def test_redirect_to_a_forbidden_host_is_refused(origin):
    guard, transport = fetcher(allow_http=True, allow_loopback=True)
    with pytest.raises(FetchRefused, match="link-local"):
        guard.fetch(f"http://voice.test:{origin}/to-metadata")
    assert transport.hosts == [f"voice.test:{origin}"]  # only the first hop was contacted


def test_size_and_time_caps(origin):
    guard, _ = fetcher(allow_http=True, allow_loopback=True, max_bytes=1_000_000)
    with pytest.raises(FetchRefused, match="MAX_REF_AUDIO_BYTES"):
        guard.fetch(f"http://voice.test:{origin}/endless")
    with pytest.raises(FetchRefused, match="MAX_REF_AUDIO_BYTES"):
        guard.fetch(f"http://voice.test:{origin}/stall")  # declared too large: refused before reading
    slow, _ = fetcher(allow_http=True, allow_loopback=True, max_bytes=10_000_000, timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(FetchRefused):
        slow.fetch(f"http://voice.test:{origin}/stall")
    assert time.monotonic() - started < 4


def test_public_addresses_pass_the_check():
    assert forbidden("93.184.216.34") is None and forbidden("2606:2800:220:1::1") is None
    assert forbidden("127.0.0.1") == "loopback" and forbidden("127.0.0.1", allow_loopback=True) is None


LOOPBACK, RESERVED, PRIVATE = "loopback", "link-local, metadata or reserved", "private or non-public"

#: address -> (why refused, why refused when loopback is allowed); None: may be contacted.
VERDICTS = {
    "8.8.8.8": (None, None), "93.184.216.34": (None, None), "2606:2800:220:1::1": (None, None),
    "127.0.0.1": (LOOPBACK, None), "127.1.2.3": (LOOPBACK, None), "::1": (LOOPBACK, None),
    "169.254.169.254": (RESERVED, RESERVED), "100.64.1.1": (RESERVED, RESERVED), "0.0.0.0": (RESERVED, RESERVED),
    "198.18.0.1": (RESERVED, RESERVED), "192.0.0.8": (RESERVED, RESERVED), "fe80::1%eth0": (RESERVED, RESERVED),
    "fd00:ec2::254": (RESERVED, RESERVED), "64:ff9b::808:808": (RESERVED, RESERVED),
    "2002:808:808::1": (RESERVED, RESERVED),
    "10.0.0.1": (PRIVATE, PRIVATE), "172.16.5.4": (PRIVATE, PRIVATE), "192.168.1.1": (PRIVATE, PRIVATE),
    "224.0.0.1": (PRIVATE, PRIVATE), "255.255.255.255": (PRIVATE, PRIVATE), "240.0.0.1": (PRIVATE, PRIVATE),
    "192.0.2.1": (PRIVATE, PRIVATE), "::": (PRIVATE, PRIVATE), "ff02::1": (PRIVATE, PRIVATE),
    "fc00::1": (PRIVATE, PRIVATE), "2001:db8::1": (PRIVATE, PRIVATE), "::127.0.0.1": (PRIVATE, PRIVATE),
    "fec0::1": (RESERVED, RESERVED), "feff::1": (RESERVED, RESERVED),  # site-local, which ipaddress calls global
}


@pytest.mark.parametrize("address", sorted(VERDICTS))
def test_each_kind_of_address_gets_its_verdict(address):
    assert (forbidden(address), forbidden(address, allow_loopback=True)) == VERDICTS[address]


@pytest.mark.parametrize("v4", [a for a in sorted(VERDICTS) if "." in a and ":" not in a])
def test_a_mapped_address_is_judged_as_the_ipv4_it_carries(v4):
    import ipaddress

    hex_form = str(ipaddress.IPv6Address(f"::ffff:{v4}"))  # ::ffff:808:808 is 8.8.8.8 too
    for mapped in (f"::ffff:{v4}", f"::FFFF:{v4}", hex_form, f"0:0:0:0:0:ffff:{v4}"):
        assert (forbidden(mapped), forbidden(mapped, allow_loopback=True)) == VERDICTS[v4], mapped


def test_a_mapped_public_address_is_not_refused_and_is_contacted_as_ipv4():
    guard, _ = fetcher()
    assert guard.checked_address("mapped-public.test", 443) == "93.184.216.34"
    with pytest.raises(FetchRefused, match="link-local, metadata"):
        guard.checked_address("mapped-metadata.test", 443)


def test_a_mapped_loopback_follows_the_loopback_setting(origin):
    guard, transport = fetcher(allow_http=True)
    with pytest.raises(FetchRefused, match="loopback address; refused"):
        guard.fetch(f"http://mapped-loop.test:{origin}/voice.wav")
    assert transport.hosts == []
    guard, transport = fetcher(allow_http=True, allow_loopback=True)
    assert guard.fetch(f"http://mapped-loop.test:{origin}/voice.wav") == wav_bytes()
    assert transport.hosts == [f"mapped-loop.test:{origin}"]  # connected to 127.0.0.1 (LoopbackOnly checks)


def test_voice_library_urls_disabled_or_validated(origin, tmp_path, env):
    request = SpeechRequest.parse({"transcript": "hi", "ref_audio": f"http://voice.test:{origin}/voice.wav",
                                   "ref_text": "words"})
    with pytest.raises(RequestError, match="ALLOW_REF_AUDIO_URLS"):
        VoiceLibrary(tmp_path, 10_000_000, 60).resolve(request)
    guard, _ = fetcher(allow_http=True, allow_loopback=True)
    refs = VoiceLibrary(tmp_path, 10_000_000, 60, guard).resolve(request)
    assert refs[0].transcript == "words" and abs(refs[0].duration_s - 1.0) < 0.01
    with pytest.raises(RequestError) as err:
        SpeechRequest.parse({"transcript": "hi", "ref_audio": "https://voice.test/x.wav"})
    assert err.value.field == "ref_text" and "URL" in err.value.message


# -- the deadline holds on every read, the fetch honours a cancel, and only so many fetches run at once ------

@pytest.fixture()
def drip():
    origin = DripOrigin(interval=0.25, length=80)  # 20 s of trickle, one byte at a time
    with LoopbackHTTPServer(origin.handler()) as server:
        origin.port = server.port
        yield origin
        origin.stop()


@pytest.mark.parametrize("path", ["/drip-body", "/drip-head"])
def test_a_server_sending_a_byte_at_a_time_is_cut_off_at_the_deadline(drip, path):
    guard, _ = fetcher(allow_http=True, allow_loopback=True, timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(FetchRefused, match=r"longer than 1 s \(REF_AUDIO_URL_TIMEOUT_S\)"):
        guard.fetch(f"http://voice.test:{drip.port}{path}")
    assert time.monotonic() - started < 10  # the deadline itself plus slack on a busy machine, not the 20 s drip


def test_a_cancel_stops_the_fetch(drip):
    from higgs_worker.core.safe_fetch import FetchCancelled

    guard, _ = fetcher(allow_http=True, allow_loopback=True, timeout_s=60.0)
    cancel = threading.Event()
    threading.Thread(target=lambda: drip.first_byte.wait() and cancel.set(), daemon=True).start()
    with pytest.raises(FetchCancelled, match="^the fetch was cancelled$"):  # else 20 s of trickle, a 60 s deadline
        guard.fetch(f"http://voice.test:{drip.port}/drip-body", cancel=cancel)
    assert drip.disconnected.wait(30)  # the origin saw the connection go


def test_a_cancelled_url_reference_cancels_the_job(drip, tmp_path):
    from higgs_worker.engine import Cancelled

    guard, _ = fetcher(allow_http=True, allow_loopback=True, timeout_s=60.0)
    cancel = threading.Event()
    threading.Thread(target=lambda: drip.first_byte.wait() and cancel.set(), daemon=True).start()
    request = SpeechRequest.parse({"transcript": "hi", "ref_audio": f"http://voice.test:{drip.port}/drip-body",
                                   "ref_text": "words"})
    with pytest.raises(Cancelled):
        VoiceLibrary(tmp_path, 10_000_000, 60, guard).resolve(request, cancel)


def test_a_slow_name_server_does_not_outlast_the_deadline():
    release = threading.Event()

    def stuck_resolver(host, port):
        release.wait()
        return ["127.0.0.1"]

    guard = GuardedFetcher(max_bytes=1000, timeout_s=0.5, allow_http=True, allow_loopback=True,
                           resolver=stuck_resolver, transport=LoopbackOnly())
    try:
        with pytest.raises(FetchRefused, match="longer than 0.5 s"):
            guard.fetch("http://voice.test:9/x.wav")
    finally:
        release.set()


class CountingOrigin:
    """Answers each request after a short trickle, recording how many requests it served at once and the
    ``Accept-Encoding`` asked for."""

    def __init__(self) -> None:
        self.active = self.most = 0
        self.encodings: list[str] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()

    def handler(self):
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                with origin.lock:
                    origin.active += 1
                    origin.most = max(origin.most, origin.active)
                    origin.encodings.append(self.headers.get("Accept-Encoding", ""))
                try:
                    origin.gate.wait(0.3)  # hold the request open a while so overlapping fetches would show
                    self.send_response(200)
                    self.send_header("Content-Length", "4")
                    self.end_headers()
                    self.wfile.write(b"RIFF")
                finally:
                    with origin.lock:
                        origin.active -= 1

        return Handler


def test_concurrent_fetches_are_capped():
    from concurrent.futures import ThreadPoolExecutor

    origin = CountingOrigin()
    with LoopbackHTTPServer(origin.handler()) as server:
        guard = GuardedFetcher(max_bytes=1000, timeout_s=30.0, allow_http=True, allow_loopback=True,
                               resolver=stub_resolver, max_concurrent=2)
        start = threading.Barrier(6)

        def one(_):
            start.wait()
            return guard.fetch(f"http://voice.test:{server.port}/x")

        with ThreadPoolExecutor(6) as pool:
            bodies = list(pool.map(one, range(6)))
    assert bodies == [b"RIFF"] * 6
    assert origin.most <= 2 and len(origin.encodings) == 6
    assert set(origin.encodings) == {"identity"}  # no compressed body to inflate past the byte cap


def test_fetch_slots_come_from_the_setting(monkeypatch):
    from higgs_worker.core import settings as settings_module

    monkeypatch.setenv("MAX_CONCURRENT_FETCHES", "3")
    settings_module.reset_settings()
    try:
        assert GuardedFetcher(max_bytes=10).max_concurrent == 3
    finally:
        settings_module.reset_settings()


# -- the resolver, the size boundaries, and the pieces the end-to-end tests cannot pin -------------------------

def test_the_system_resolver_asks_for_stream_sockets_and_returns_distinct_sorted_addresses(monkeypatch):
    import socket

    from higgs_worker.core import safe_fetch

    calls = []

    def fake_getaddrinfo(host, port, *args, **kwargs):
        calls.append((host, port, args, kwargs))
        if host == "nowhere.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2606:2800:220:1::1", port, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]

    monkeypatch.setattr(safe_fetch.socket, "getaddrinfo", fake_getaddrinfo)
    assert safe_fetch.system_resolver("example.test", 8443) == ["2606:2800:220:1::1", "93.184.216.34"]
    assert calls == [("example.test", 8443, (), {"type": socket.SOCK_STREAM})]
    with pytest.raises(FetchRefused, match="^host 'nowhere.test' does not resolve$"):
        safe_fetch.system_resolver("nowhere.test", 443)


def test_the_resolver_gets_the_port_of_the_url_on_a_helper_thread():
    seen = []

    def recording(host, port):
        thread = threading.current_thread()
        seen.append((host, port, thread.name, thread.daemon))
        return ["93.184.216.34"]

    guard = GuardedFetcher(max_bytes=10, allow_http=True, resolver=recording, transport=LoopbackOnly(),
                           max_concurrent=1)
    for url in ("https://a.test/x", "http://a.test/x", "https://a.test:8443/x"):
        with pytest.raises(AssertionError, match="connect reached"):  # resolved and checked; the stub stops here
            guard.fetch(url)
    # the helper is a daemon: a name server that never answers cannot keep the process alive
    assert seen == [("a.test", 443, "ref-url-resolve", True), ("a.test", 80, "ref-url-resolve", True),
                    ("a.test", 8443, "ref-url-resolve", True)]


def test_a_name_without_addresses_does_not_resolve():
    guard = GuardedFetcher(max_bytes=10, resolver=lambda host, port: [], max_concurrent=1)
    with pytest.raises(FetchRefused, match="^host 'empty.test' does not resolve$"):
        guard.checked_address("empty.test", 443)


def test_the_checked_address_is_returned_without_a_zone():
    guard = GuardedFetcher(max_bytes=10, resolver=lambda host, port: ["2606:2800:220:1::1%eth0"], max_concurrent=1)
    assert guard.checked_address("zoned.test", 443) == "2606:2800:220:1::1"


def test_a_body_of_exactly_the_limit_is_accepted_with_or_without_a_length(origin):
    size = len(wav_bytes())
    for path in ("/exact", "/exact-unsized"):
        guard, _ = fetcher(allow_http=True, allow_loopback=True, max_bytes=size)
        assert guard.fetch(f"http://voice.test:{origin}{path}") == wav_bytes(), path
        guard, _ = fetcher(allow_http=True, allow_loopback=True, max_bytes=size - 1)
        with pytest.raises(FetchRefused, match="MAX_REF_AUDIO_BYTES"):
            guard.fetch(f"http://voice.test:{origin}{path}")


def test_a_body_cut_short_says_so(origin):
    guard, _ = fetcher(allow_http=True, allow_loopback=True)
    with pytest.raises(FetchRefused, match=r"^could not fetch the URL \(RemoteProtocolError\)$"):
        guard.fetch(f"http://voice.test:{origin}/short")


def test_a_connection_made_after_the_watchdog_fired_is_shut_at_once():
    from higgs_worker.core.safe_fetch import Watchdog

    class Sock:
        shut = 0

        def shutdown(self, how):
            Sock.shut += 1

    class Stream:
        def get_extra_info(self, name):
            return Sock() if name == "socket" else None

    watchdog = Watchdog(time.monotonic() + 60, None)
    watchdog.trace("connection.connect_tcp.complete", {"return_value": Stream()})
    assert Sock.shut == 0  # in time: recorded, left alone
    watchdog.fired = "deadline"
    watchdog.trace("connection.connect_tcp.complete", {"return_value": Stream()})
    assert Sock.shut == 1
    watchdog.trace("connection.start_tls.complete", {"return_value": Stream()})  # other events: ignored
    assert Sock.shut == 1 and len(watchdog._sockets) == 2


# -- the request the guard sends, and every refusal in the words a caller sees ----------------------------------
# httpx.MockTransport answers in-process: nothing is sent anywhere, so the stub names may resolve to public addresses.

PUBLIC = {"pub.test": ["93.184.216.34"], "pub6.test": ["2606:2800:220:1::1"]}


def answer(status: int, body: bytes = b"", headers: dict | None = None) -> httpx.Response:
    """A response whose body streams, as a network one does (the guard reads it with ``iter_raw``)."""
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))


def mock_fetcher(handler, **kw) -> GuardedFetcher:
    options = {"max_bytes": 1000, "timeout_s": 5.0, "allow_http": True, "max_concurrent": 2,
               "resolver": lambda host, port: PUBLIC.get(host) or stub_resolver(host, port),
               "transport": httpx.MockTransport(handler)}
    options.update(kw)
    return GuardedFetcher(**options)


def test_the_request_goes_to_the_checked_address_with_the_hosts_name():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(200, b"RIFF")

    guard = mock_fetcher(handler, timeout_s=3.0)
    assert guard.fetch("https://pub.test/a.wav?x=1") == b"RIFF"
    assert guard.fetch("http://pub6.test:8080/b.wav") == b"RIFF"
    first, second = seen
    assert first.method == "GET" and str(first.url) == "https://93.184.216.34/a.wav?x=1"
    assert first.headers["host"] == "pub.test" and first.headers["accept"] == "audio/*"
    assert first.headers["accept-encoding"] == "identity"
    assert first.extensions["sni_hostname"] == "pub.test"  # TLS is checked against the name, not the address
    timeouts = first.extensions["timeout"]
    assert set(timeouts) == {"connect", "read", "write", "pool"}
    assert all(0 < value <= 3.0 for value in timeouts.values())  # what is left of REF_AUDIO_URL_TIMEOUT_S
    assert str(second.url) == "http://[2606:2800:220:1::1]:8080/b.wav" and second.headers["host"] == "pub6.test:8080"


def test_a_short_deadline_is_still_enough_for_a_quick_answer():
    guard = mock_fetcher(lambda request: answer(200, b"ok"), timeout_s=0.5)
    assert guard.fetch("https://pub.test/x") == b"ok"


def redirects(n: int):
    """A handler whose /hop/k redirects to /hop/k-1, and /hop/0 answers."""

    def handler(request: httpx.Request) -> httpx.Response:
        k = int(request.url.path.rsplit("/", 1)[1])
        if k == 0:
            return answer(200, b"end")
        return answer(302, headers={"Location": f"/hop/{k - 1}"})

    return handler


def test_redirects_up_to_the_limit_are_followed():
    guard = mock_fetcher(redirects(3), max_redirects=3)
    assert guard.fetch("https://pub.test/hop/3") == b"end"
    with pytest.raises(FetchRefused, match="^more than 3 redirects$"):
        guard.fetch("https://pub.test/hop/4")
    assert mock_fetcher(redirects(0), max_redirects=0).fetch("https://pub.test/hop/0") == b"end"


@pytest.mark.parametrize(("answer", "reason"), [
    (answer(302), "redirect without a location"),
    (answer(404), "the URL answered HTTP 404"),
    (answer(503, b"busy"), "the URL answered HTTP 503"),
])
def test_refusals_from_the_answer(answer, reason):
    with pytest.raises(FetchRefused) as err:
        mock_fetcher(lambda request: answer).fetch("https://pub.test/x")
    assert str(err.value) == reason


@pytest.mark.parametrize(("url", "allow_http", "reason"), [
    ("http://pub.test/x", False, "only https URLs are accepted"),
    ("ftp://pub.test/x", False, "only https URLs are accepted"),
    ("ftp://pub.test/x", True, "only https or http URLs are accepted"),
    ("file:///etc/passwd", True, "only https or http URLs are accepted"),
    ("https://user@pub.test/x", False, "the URL needs a host and no credentials"),
    ("https://:secret@pub.test/x", False, "the URL needs a host and no credentials"),
    ("https://user:secret@pub.test/x", False, "the URL needs a host and no credentials"),
    ("https:///no-host", False, "the URL needs a host and no credentials"),
])
def test_refusals_of_the_url_name_the_rule(url, allow_http, reason):
    def handler(request):
        raise AssertionError("nothing may be sent")

    with pytest.raises(FetchRefused) as err:
        mock_fetcher(handler, allow_http=allow_http).fetch(url)
    assert str(err.value) == reason


def test_transport_failures_name_only_their_kind():
    def broken(request):
        raise OSError("no route to 10.1.2.3")  # what the message must not repeat

    with pytest.raises(FetchRefused) as err:
        mock_fetcher(broken).fetch("https://pub.test/x")
    assert str(err.value) == "could not fetch the URL (OSError)"

    def refused(request):
        raise httpx.ConnectError("connection refused by 10.1.2.3", request=request)

    with pytest.raises(FetchRefused) as err:
        mock_fetcher(refused).fetch("https://pub.test/x")
    assert str(err.value) == "could not fetch the URL (ConnectError)"


def test_proxy_settings_in_the_environment_are_ignored(origin, monkeypatch):
    # a proxy would receive the request instead of the checked address (and could reach anything from there)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    # the default transport (httpx reads proxy settings only without an explicit one); every address here is
    # on loopback: the stub name, the origin and the would-be proxy
    guard = GuardedFetcher(max_bytes=2_000_000, timeout_s=5.0, allow_http=True, allow_loopback=True,
                           resolver=stub_resolver, max_concurrent=1)
    assert guard.fetch(f"http://voice.test:{origin}/voice.wav") == wav_bytes()


def test_a_fetch_waits_for_a_free_slot_within_its_deadline_and_its_cancel():
    from higgs_worker.core.safe_fetch import FetchCancelled

    guard = mock_fetcher(lambda request: answer(200, b"ok"), max_concurrent=1, timeout_s=0.3)
    assert guard._slots.acquire(timeout=1)  # another fetch holds the only slot
    try:
        started = time.monotonic()
        with pytest.raises(FetchRefused) as err:
            guard.fetch("https://pub.test/x")
        assert str(err.value) == ("1 reference URLs were already being fetched for 0.3 s "
                                  "(MAX_CONCURRENT_FETCHES, REF_AUDIO_URL_TIMEOUT_S)")
        assert time.monotonic() - started < 10  # waited the 0.3 s deadline, not for the held slot
        cancel = threading.Event()
        threading.Timer(0.1, cancel.set).start()
        slow = mock_fetcher(lambda request: answer(200), max_concurrent=1, timeout_s=30)
        assert slow._slots.acquire(timeout=1)
        with pytest.raises(FetchCancelled, match="^the fetch was cancelled$"):
            slow.fetch("https://pub.test/x", cancel=cancel)
    finally:
        guard._slots.release()
    assert guard.fetch("https://pub.test/x") == b"ok"  # the slot is free again: it proceeds


def test_the_watchdog_is_a_daemon_thread_that_records_why_it_fired():
    from higgs_worker.core.safe_fetch import Watchdog

    watchers = []

    def look(host, port):
        watchers.extend((t.name, t.daemon) for t in threading.enumerate() if t.name == "ref-url-watchdog")
        return ["93.184.216.34"]

    mock_fetcher(lambda request: answer(200), resolver=look).fetch("https://pub.test/x")
    assert watchers == [("ref-url-watchdog", True)]

    with Watchdog(time.monotonic() - 1, None) as late:
        deadline = time.monotonic() + 5
        while late.fired is None and time.monotonic() < deadline:
            time.sleep(0.01)
    assert late.fired == "deadline"
    cancel = threading.Event()
    cancel.set()
    with Watchdog(time.monotonic() + 60, cancel) as cancelled:
        deadline = time.monotonic() + 5
        while cancelled.fired is None and time.monotonic() < deadline:
            time.sleep(0.01)
    assert cancelled.fired == "cancel"
