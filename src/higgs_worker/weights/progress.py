"""Download progress: what a fetch has done, shown while it runs and read by ``/health``.

One :class:`DownloadProgress` per repo fetch counts files and bytes (the current file's and the whole repo's) and
measures the rate over the last few seconds. On a terminal (stderr is a TTY) it draws two bars, the repo's total
and the current file, with bytes, rate and time left (``huggingface_hub``'s tqdm, so
``HF_HUB_DISABLE_PROGRESS_BARS`` turns them off); otherwise it logs one line every :data:`LOG_EVERY_S` seconds
and one per finished file. The fetch in progress in this process is readable with :func:`current` (a server that
fetches on its first start shows it on ``/health`` while the model is not ready, and :func:`describe` words it for
the routes that refuse work until the model is ready).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

#: Seconds between progress lines in a log (no terminal).
LOG_EVERY_S = 5.0
#: The rate is measured over this many most recent seconds.
RATE_WINDOW_S = 10.0

_lock = threading.Lock()
_current: dict[str, Any] | None = None  # what current() answers: a progress, or a wait for another process


def size_text(n: float) -> str:
    """Bytes in decimal units, as download sizes are usually given: ``1.2 GB``."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover - the loop always returns


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "time left unknown"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s left"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s left"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min left"


class DownloadProgress:
    """Counters of one repo's fetch; safe to read from other threads while the fetch updates them."""

    def __init__(self, repo: str, files: int, total_bytes: int, done_bytes: int = 0, files_done: int = 0, *,
                 terminal: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.repo = repo
        self.files = files
        self.total_bytes = total_bytes
        self.done_bytes = done_bytes
        self.files_done = files_done
        self.file: str | None = None
        self.file_size = 0
        self.file_done = 0
        self._clock = clock
        self._started = clock()
        self._start_bytes = done_bytes
        self._samples: deque[tuple[float, int]] = deque([(self._started, done_bytes)])
        self._last_log = self._started
        self._lock = threading.Lock()
        self._terminal = sys.stderr.isatty() if terminal is None else terminal
        self._bars: list[Any] = []
        if self._terminal:
            from huggingface_hub.utils import tqdm

            self._tqdm = tqdm
            self._bars.append(tqdm(total=total_bytes, initial=done_bytes, unit="B", unit_scale=True,
                                   desc=f"{repo} ({files_done}/{files} files)", position=0))

    # -- updates (the fetching thread) ------------------------------------------------------------------------

    def start_file(self, name: str, size: int, have: int = 0) -> None:
        """A file starts (or resumes with ``have`` bytes already on disk)."""
        with self._lock:
            self.file, self.file_size, self.file_done = name, size, have
            self.done_bytes += have
            # bytes already on disk are done, but not downloaded now: the rate and the total fetched leave them out
            self._samples = deque((t, b + have) for t, b in self._samples)
            self._start_bytes += have
        if self._terminal:
            self._close_file_bar()
            self._bars.append(self._tqdm(total=size, initial=have, unit="B", unit_scale=True, desc=name,
                                         position=1, leave=False))
            self._bars[0].update(have)

    def advance(self, n: int) -> None:
        """``n`` more bytes of the current file arrived."""
        with self._lock:
            self.file_done += n
            self.done_bytes += n
            self._sample()
            due = not self._terminal and self._clock() - self._last_log >= LOG_EVERY_S
        if self._terminal:
            for bar in self._bars:
                bar.update(n)
        elif due:
            self._log()

    def restart_file(self) -> None:
        """The server ignored the resume range: the bytes counted for the current file come again."""
        with self._lock:
            self.done_bytes -= self.file_done
            self._start_bytes -= self.file_done
            self._samples = deque([(self._clock(), self.done_bytes)])
            self.file_done = 0

    def end_file(self) -> None:
        with self._lock:
            self.files_done += 1
            name = self.file
        if self._terminal:
            self._close_file_bar()
            self._bars[0].set_description(f"{self.repo} ({self.files_done}/{self.files} files)")
        else:
            log.info("fetched %s (%s); %s", name, size_text(self.file_size), self._summary())
            self._last_log = self._clock()

    def close(self) -> None:
        self._close_file_bar()
        for bar in self._bars:
            bar.close()
        self._bars.clear()
        elapsed = self._clock() - self._started
        fetched = self.done_bytes - self._start_bytes
        log.info("fetched %s: %d files, %s in %.1f s (%s/s)", self.repo, self.files, size_text(fetched), elapsed,
                 size_text(fetched / elapsed if elapsed > 0 else 0))

    # -- reading (any thread) ---------------------------------------------------------------------------------

    def rate(self) -> float | None:
        """Bytes per second over the last :data:`RATE_WINDOW_S` seconds (None before a second has passed)."""
        with self._lock:
            (t0, b0), (t1, b1) = self._samples[0], (self._clock(), self.done_bytes)
        return (b1 - b0) / (t1 - t0) if t1 - t0 >= 1.0 else None

    def snapshot(self) -> dict[str, Any]:
        """What ``/health`` shows: the repo, the current file, files and bytes done of all, rate and time left."""
        rate = self.rate()
        with self._lock:
            left = max(0, self.total_bytes - self.done_bytes)
            return {"repo": self.repo, "file": self.file, "file_bytes_done": self.file_done,
                    "file_bytes": self.file_size, "files_done": self.files_done, "files": self.files,
                    "bytes_done": min(self.done_bytes, self.total_bytes), "bytes": self.total_bytes,
                    "rate_bytes_s": None if rate is None else round(rate),
                    "eta_s": None if not rate else round(left / rate, 1)}

    # -- internals --------------------------------------------------------------------------------------------

    def _sample(self) -> None:
        now = self._clock()
        if now - self._samples[-1][0] >= 0.5:
            self._samples.append((now, self.done_bytes))
            while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
                self._samples.popleft()

    def _summary(self) -> str:
        return describe(self.snapshot())

    def _log(self) -> None:
        self._last_log = self._clock()
        with self._lock:
            name, done, size = self.file, self.file_done, self.file_size
        log.info("fetching %s: %s of %s; %s", name, size_text(done), size_text(size), self._summary())

    def _close_file_bar(self) -> None:
        if len(self._bars) > 1:
            self._bars.pop().close()


@contextmanager
def shown(progress: DownloadProgress) -> Iterator[DownloadProgress]:
    """Make ``progress`` what :func:`current` answers while the block runs."""
    global _current
    with _lock:
        _current = {"progress": progress}
    try:
        yield progress
    finally:
        with _lock:
            _current = None
        progress.close()


@contextmanager
def waiting(repo: str) -> Iterator[None]:
    """While the block runs, :func:`current` says this process waits for another one fetching ``repo``."""
    global _current
    with _lock:
        _current = {"waiting": {"repo": repo, "waiting": "another process is fetching it (a file lock on the "
                                                          "volume); this one uses its files when it is done"}}
    try:
        yield
    finally:
        with _lock:
            if _current is not None and "waiting" in _current:
                _current = None


def describe(state: dict[str, Any]) -> str:
    """What :func:`current` answered, in one line: ``org/repo: 3 of 12 files, 2.1 GB of 11.5 GB (18%), 45.2 MB/s,
    3 min 28 s left``, or, for a wait on another process, the repo and why."""
    if "waiting" in state:
        return f"{state['repo']}: {state['waiting']}"
    percent = 100 * state["bytes_done"] / state["bytes"] if state["bytes"] else 100.0
    rate = "rate unknown" if state["rate_bytes_s"] is None else f"{size_text(state['rate_bytes_s'])}/s"
    return (f"{state['repo']}: {state['files_done']} of {state['files']} files, {size_text(state['bytes_done'])} of "
            f"{size_text(state['bytes'])} ({percent:.0f}%), {rate}, {duration_text(state['eta_s'])}")


def current() -> dict[str, Any] | None:
    """The fetch this process is running now (:meth:`DownloadProgress.snapshot`) or waiting for; None when none."""
    with _lock:
        held = _current
    if held is None:
        return None
    if "waiting" in held:
        return dict(held["waiting"])
    return held["progress"].snapshot()
