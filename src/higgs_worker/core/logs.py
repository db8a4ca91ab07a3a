"""Logging: stdout (what the RunPod dashboard shows) plus a rotating file, with secrets redacted everywhere."""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
import threading
import time
from pathlib import Path

from .settings import Settings

#: Separators between a header or field name and its value: ``: ``, ``=``, ``': '`` (a printed dict), ``%3A``.
_SEP = r"""["']?\s*(?:[:=]|%3A|%3D)\s*["']?\s*"""
#: The space inside ``Bearer <token>``, written plainly or URL-encoded.
_SPACE = r"(?:\s+|%20|\+)"
_PATTERNS = [
    # Authorization: Bearer x / 'Authorization': 'Bearer x' / authorization=Bearer%20x / Proxy-Authorization
    re.compile(rf"(?i)((?:proxy-)?authorization{_SEP}(?:bearer|basic|token|aws4-hmac-sha256){_SPACE})"
               r"""[^\s'"&,;]+"""),
    re.compile(rf"(?i)((?:aws_secret_access_key|aws_access_key_id|aws_session_token|api_keys?|x-api-key|"
               rf"x-amz-signature|x-amz-credential|x-amz-security-token|signature|token|password|secret){_SEP})"
               r"""[^\s&'",;}]+"""),
    re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"),
]


class RedactingFilter(logging.Filter):
    """Replaces known secret values and secret-looking fields with ``***`` in every record."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() and m.group(1) and not
                                          m.group(1).startswith(("AKIA", "ASIA")) else "") + "***", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class RepeatFilter(logging.Filter):
    """Lets at most ``limit`` records of one message (logger, level and unformatted message) through per
    ``window_s``; the first one let through after some were dropped says how many.

    A flood of one error (a client sending garbage a thousand times a second, descriptors running out) then costs a
    few lines a minute instead of rotating every earlier line out of the log. One instance may serve several
    handlers: a record is judged once, and every handler gets the same verdict.
    """

    MAX_KEYS = 2048  # distinct messages tracked; past it, the oldest windows are forgotten

    def __init__(self, limit: int, window_s: float = 60.0, clock=time.monotonic) -> None:
        super().__init__()
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._seen: dict[tuple, list] = {}  # key -> [window start, passed, dropped]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = record.__dict__.get("_repeat_verdict")
        if verdict is None:
            verdict = record.__dict__["_repeat_verdict"] = self._judge(record)
        return verdict

    def _judge(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        with self._lock:
            entry = self._seen.get(key)
            if entry is None or now - entry[0] >= self.window_s:
                dropped = entry[2] if entry is not None else 0
                if entry is None and len(self._seen) >= self.MAX_KEYS:
                    for old in list(self._seen)[: self.MAX_KEYS // 2]:
                        del self._seen[old]
                self._seen[key] = entry = [now, 0, 0]
                if dropped:
                    record.msg = f"{record.getMessage()} [{dropped} more like this were dropped in the last " \
                                 f"{self.window_s:g} s (LOG_REPEAT_LIMIT)]"
                    record.args = None
            if entry[1] >= self.limit:
                entry[2] += 1
                return False
            entry[1] += 1
            return True


def secrets_of(settings: Settings) -> list[str]:
    values = list(settings.api_key_list)
    for secret in (settings.aws_access_key_id, settings.aws_secret_access_key):
        if secret is not None:
            values.append(secret.get_secret_value())
    return values


def setup_logging(settings: Settings, filename: str, level: str = "INFO") -> Path | None:
    """Log to stdout and to ``LOG_DIR/filename`` (rotated at 10 MB, 5 kept). Returns the file, if writable."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact = RedactingFilter(secrets_of(settings))
    repeats = RepeatFilter(settings.log_repeat_limit)
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    path: Path | None = settings.log_dir / filename
    try:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(path, maxBytes=10 * 1024 * 1024, backupCount=5,
                                                             encoding="utf-8"))
    except OSError as exc:
        print(f"logging: cannot write {path} ({exc.strerror}); logging to stdout only", file=sys.stderr)
        path = None
    for handler in handlers:
        handler.setFormatter(fmt)
        handler.addFilter(repeats)  # first: a dropped record costs no redaction
        handler.addFilter(redact)
        root.addHandler(handler)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    return path
