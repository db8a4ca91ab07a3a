"""Hostile inputs the tests build themselves: audio that lies about its size, files that name other files, and an
HTTP origin on loopback that sends its answer a byte at a time."""

from __future__ import annotations

import struct
import threading
from http.server import BaseHTTPRequestHandler


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _coded_number(n: int) -> bytes:
    """FLAC's UTF-8-like frame number."""
    if n < 0x80:
        return bytes([n])
    if n < 0x800:
        return bytes([0xC0 | n >> 6, 0x80 | n & 0x3F])
    return bytes([0xE0 | n >> 12, 0x80 | (n >> 6) & 0x3F, 0x80 | n & 0x3F])


def silent_flac(frames: int, channels: int = 8, rate: int = 8000, block: int = 65535,
                declared_total: int | None = None, declared_channels: int | None = None,
                mono_frames: int = 0) -> bytes:
    """A valid FLAC of silence: ``frames`` frames of ``block`` samples on ``channels`` channels, each channel a
    3-byte constant subframe, so 150 frames (about 5 KB) decode to 9.8 million samples per channel.

    ``declared_total`` is what STREAMINFO claims (default: the truth; 0 means "unknown"), ``declared_channels``
    the channel count it claims (default: the truth). The first ``mono_frames`` frames are mono (a stream that
    changes shape after its first blocks).
    """
    total = frames * block if declared_total is None else declared_total
    claimed = channels if declared_channels is None else declared_channels
    bits = 0
    for value, width in ((block, 16), (block, 16), (0, 24), (0, 24), (rate, 20), (claimed - 1, 3), (15, 5),
                         (total, 36), (0, 128)):
        bits = bits << width | value
    out = bytearray(b"fLaC" + bytes([0x80, 0, 0, 34]) + bits.to_bytes(34, "big"))
    for n in range(frames):
        # sync + fixed block size; block size from the 16 bits after the number, rate from STREAMINFO;
        # independent channels, 16-bit samples
        count = 1 if n < mono_frames else channels
        head = bytes([0xFF, 0xF8, 0x70, (count - 1) << 4 | 0b100 << 1]) + _coded_number(n)
        head += struct.pack(">H", block - 1)
        frame = head + bytes([_crc8(head)]) + b"\x00\x00\x00" * count
        out += frame + struct.pack(">H", _crc16(frame))
    return bytes(out)


def ffconcat(target: str) -> bytes:
    """An FFmpeg concat script naming another file."""
    return f"ffconcat version 1.0\nfile '{target}'\n".encode()


def playlist(target: str) -> bytes:
    """An HLS playlist naming another file."""
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\n{target}\n#EXT-X-ENDLIST\n".encode()


class DripOrigin:
    """Request handler factory for an origin that answers a byte at a time.

    ``/drip-body``: headers at once (declaring ``length`` bytes), then one body byte per ``interval`` seconds.
    ``/drip-head``: the status line and headers themselves one byte per ``interval``.
    Each connection sends at most ``length`` bytes, then closes; ``first_byte`` is set once a body byte is out;
    :meth:`stop` ends every drip at once.
    """

    def __init__(self, interval: float = 0.25, length: int = 80) -> None:
        self.interval = interval
        self.length = length
        self.first_byte = threading.Event()
        self.disconnected = threading.Event()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def handler(self):
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _drip(self, data: bytes, body: bool) -> bool:
                for i in range(len(data)):
                    try:
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                    except OSError:
                        origin.disconnected.set()
                        return False
                    if body:
                        origin.first_byte.set()
                    if origin._stop.wait(origin.interval):
                        return False
                return True

            def do_GET(self):  # noqa: N802
                if self.path == "/drip-body":
                    self.send_response(200)
                    self.send_header("Content-Length", str(origin.length))
                    self.end_headers()
                    self.wfile.flush()
                    self._drip(b"\0" * origin.length, body=True)
                elif self.path == "/drip-head":
                    head = (f"HTTP/1.1 200 OK\r\nContent-Length: {origin.length}\r\n"
                            + "X-Pad: " + "p" * origin.length + "\r\n\r\n").encode()
                    self._drip(head[:origin.length], body=False)
                else:
                    self.send_response(404)
                    self.end_headers()
                self.close_connection = True

        return Handler
