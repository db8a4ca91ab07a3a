"""Fetching reference audio from a URL without becoming a proxy into private networks (SSRF).

Every hop (the URL and each redirect) is resolved once, every resolved address is checked against private,
loopback, link-local, metadata and other non-public ranges, and the connection goes to the checked address itself
(with the original host name for ``Host`` and TLS), so a second DNS answer cannot swap in another address
(DNS rebinding). Size and total time are capped while the body streams.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

Resolver = Callable[[str, int], list[str]]

#: Ranges that are not "the public internet", beyond what ``ipaddress`` flags itself.
_EXTRA_BLOCKED = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "169.254.0.0/16", "fd00:ec2::/32",
    "64:ff9b::/96", "2002::/16",
)]


class FetchRefused(ValueError):
    """The URL was refused or could not be fetched; the message says why (safe to show)."""


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise FetchRefused(f"host {host!r} does not resolve") from None
    return sorted({info[4][0] for info in infos})


def forbidden(address: str, allow_loopback: bool = False) -> str | None:
    """Why ``address`` may not be contacted, or None when it is a public address."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None if allow_loopback else "loopback"
    if ip.is_link_local or any(ip in net for net in _EXTRA_BLOCKED if ip.version == net.version):
        return "link-local, metadata or reserved"
    if ip.is_private or ip.is_reserved or ip.is_multicast or ip.is_unspecified or not ip.is_global:
        return "private or non-public"
    return None


@dataclass
class GuardedFetcher:
    """Fetch one URL's bytes under the guards; ``resolver`` and ``transport`` are replaceable for tests."""

    max_bytes: int
    timeout_s: float = 10.0
    max_redirects: int = 3
    allow_http: bool = False
    allow_loopback: bool = False
    resolver: Resolver = system_resolver
    transport: httpx.BaseTransport | None = None

    def checked_address(self, host: str, port: int) -> str:
        addresses = self.resolver(host, port)
        if not addresses:
            raise FetchRefused(f"host {host!r} does not resolve")
        for address in addresses:
            reason = forbidden(address, self.allow_loopback)
            if reason:
                raise FetchRefused(f"host {host!r} resolves to a {reason} address; refused")
        return addresses[0]

    def fetch(self, url: str) -> bytes:
        deadline = time.monotonic() + self.timeout_s
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
                address = self.checked_address(parts.hostname, port)
                literal = f"[{address}]" if ":" in address else address
                target = parts._replace(netloc=f"{literal}:{port}").geturl()
                host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FetchRefused(f"fetching took longer than {self.timeout_s:g} s")
                request = client.build_request(
                    "GET", target, headers={"Host": host_header, "Accept": "audio/*"},
                    extensions={"sni_hostname": parts.hostname, "timeout": httpx.Timeout(remaining).as_dict()})
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
                    return self._read(response, deadline)
                finally:
                    response.close()
        raise FetchRefused(f"more than {self.max_redirects} redirects")

    def _read(self, response: httpx.Response, deadline: float) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchRefused(f"the audio is {declared} bytes; the limit is {self.max_bytes} (MAX_REF_AUDIO_BYTES)")
        body = bytearray()
        try:
            for block in response.iter_bytes(64 * 1024):
                body += block
                if len(body) > self.max_bytes:
                    raise FetchRefused(f"the audio is over {self.max_bytes} bytes (MAX_REF_AUDIO_BYTES)")
                if time.monotonic() > deadline:
                    raise FetchRefused(f"fetching took longer than {self.timeout_s:g} s")
        except httpx.HTTPError as exc:
            raise FetchRefused(f"could not fetch the URL ({exc.__class__.__name__})") from None
        return bytes(body)
