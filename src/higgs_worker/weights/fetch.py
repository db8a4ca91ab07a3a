"""Fetching the Hugging Face repos onto the volume: once, under a lock, resumable, verified, then offline.

The repos: the LLM (``MODEL_REPO``), the audio tokenizer (``TOKENIZER_REPO``) and, when speech recognition is
enabled (``ASR``, see :mod:`higgs_worker.weights.policy`), the Whisper model (``ASR_REPO`` into ``ASR_PATH``).

``MODEL_PATH`` and ``TOKENIZER_PATH`` each get the repo's files and, when they are complete and verified, a
completion marker (``.higgs-complete.json``) recording the repo, the requested revision and the resolved commit.
A worker that finds the marker starts without touching the network. Ten workers starting together take turns on
a file lock: the first downloads, the others find the marker. A crash half-way leaves partial files that
the next run resumes with HTTP ranges; files are checked against the hub's sizes and, for large (LFS) files,
sha256 before the marker is written, and a file that fails is fetched again. Repo metadata, URLs and auth headers
come from ``huggingface_hub`` (which honours ``HF_ENDPOINT`` and ``HF_TOKEN``). Progress (per file and in all,
with rate and time left) is drawn on a terminal or logged every few seconds, and readable by ``/health``
(:mod:`.progress`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from ..core.settings import Settings
from .folders import MARKER
from .policy import asr_fetch_wanted, voice_check_fetch_wanted
from .progress import DownloadProgress, shown, waiting

log = logging.getLogger(__name__)



class FetchError(RuntimeError):
    """A repo could not be fetched or verified."""


@dataclass(frozen=True)
class RepoSpec:
    repo_id: str
    revision: str
    local_dir: Path


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None  # the hub gives sha256 for LFS (large) files


def asr_spec(settings: Settings) -> RepoSpec:
    """The speech recognition repo, as the settings name it (whether or not ASR is enabled)."""
    return RepoSpec(settings.asr_repo, settings.asr_revision, Path(settings.asr_path))


def voice_check_spec(settings: Settings) -> RepoSpec:
    """The speaker-verification repo of the voice check, as the settings name it (whether or not it is enabled)."""
    return RepoSpec(settings.voice_check_repo, settings.voice_check_revision, Path(settings.voice_check_path))


def specs(settings: Settings) -> list[RepoSpec]:
    """The repos this worker needs: the LLM, the audio tokenizer and, when wanted, Whisper and the speaker model."""
    wanted = [RepoSpec(settings.model_repo, settings.model_revision, Path(settings.model_path)),
              RepoSpec(settings.tokenizer_repo, settings.tokenizer_revision, Path(settings.tokenizer_path))]
    if asr_fetch_wanted(settings):
        wanted.append(asr_spec(settings))
    if voice_check_fetch_wanted(settings):
        wanted.append(voice_check_spec(settings))
    return wanted


def read_marker(local_dir: Path) -> dict | None:
    try:
        return json.loads((local_dir / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_complete(spec: RepoSpec) -> bool:
    marker = read_marker(spec.local_dir)
    return bool(marker) and marker.get("repo_id") == spec.repo_id and marker.get("revision") == spec.revision


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remote_files(api, spec: RepoSpec, commit: str) -> list[RemoteFile]:
    from huggingface_hub.hf_api import RepoFile

    files = []
    for entry in api.list_repo_tree(spec.repo_id, revision=commit, recursive=True):
        if isinstance(entry, RepoFile):
            files.append(RemoteFile(entry.path, entry.lfs.size if entry.lfs else entry.size,
                                    entry.lfs.sha256 if entry.lfs else None))
    return files


def _bad_files(local_dir: Path, files: list[RemoteFile]) -> list[str]:
    """Files missing, of the wrong size, or (when the hub knows it) of the wrong sha256."""
    bad = []
    for f in files:
        path = local_dir / f.path
        if not path.is_file() or path.stat().st_size != f.size:
            bad.append(f.path)
        elif f.sha256 is not None and sha256_of(path) != f.sha256:
            log.warning("%s: sha256 mismatch, fetching it again", path)
            bad.append(f.path)
    return bad


def download_file(url: str, dest: Path, size: int, headers: dict[str, str],
                  progress: DownloadProgress | None = None) -> int:
    """Download ``url`` to ``dest``, resuming a ``.part`` file a crash left behind; returns bytes fetched now.

    The partial file lives beside the target as ``.<name>.part`` and is only renamed into place once it has the
    expected size, so a half-written file is never mistaken for a complete one. ``progress`` hears of every block.
    """
    from huggingface_hub.utils import get_session

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.part")
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    fetched = 0
    if progress is not None:
        progress.start_file(dest.name, size, min(have, size))
    if have < size:
        request_headers = dict(headers)
        if have:
            request_headers["Range"] = f"bytes={have}-"
        with get_session().stream("GET", url, headers=request_headers, follow_redirects=True,
                                  timeout=60) as response:
            if response.status_code == 416:
                raise FetchError(f"{dest.name}: the server refused the resume range")
            response.raise_for_status()
            if have and response.status_code != 206:  # the server ignored the range: start over
                have = 0
                if progress is not None:
                    progress.restart_file()
            with open(part, "ab" if have else "wb") as out:
                for block in response.iter_bytes():  # as it arrives, so progress moves with it
                    out.write(block)
                    fetched += len(block)
                    if progress is not None:
                        progress.advance(len(block))
    if progress is not None:
        progress.end_file()
    if part.stat().st_size != size:
        raise FetchError(f"{dest.name}: got {part.stat().st_size} bytes, expected {size}")
    part.replace(dest)
    return fetched


def fetch_repo(spec: RepoSpec, endpoint: str | None = None, token: str | None = None,
               force_verify: bool = False) -> dict:
    """Make ``spec.local_dir`` a verified copy of the repo; returns the marker. Safe to call from many processes."""
    spec.local_dir.parent.mkdir(parents=True, exist_ok=True)  # the lock's; the folder itself once the hub answers
    if is_complete(spec) and not force_verify:
        return read_marker(spec.local_dir) or {}
    lock = FileLock(str(spec.local_dir.parent / f".{spec.local_dir.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:  # another process fetches this repo: wait for it, saying so
        log.info("%s: another process is fetching it into %s; waiting for it", spec.repo_id, spec.local_dir)
        with waiting(spec.repo_id):
            lock.acquire()
    try:
        return _fetch_locked(spec, endpoint, token, force_verify)
    except FetchError:
        raise
    except Exception as exc:  # the network, the hub or the disk: one line that says which
        raise FetchError(f"{spec.repo_id}: {_reason(exc, endpoint)}") from exc
    finally:
        lock.release()


def _reason(exc: Exception, endpoint: str | None) -> str:
    """One line for a failed fetch; a connection problem names the hub it tried."""
    kind = exc.__class__.__name__
    text = " ".join(str(exc).split()) or kind
    if isinstance(exc, OSError) and exc.filename:  # the disk: a folder not writable, no space left
        return f"{kind}: {text}"
    if isinstance(exc, OSError) or any(word in kind for word in ("Connect", "Timeout", "Network", "Offline")):
        from huggingface_hub import constants

        return (f"cannot reach the hub at {endpoint or constants.ENDPOINT} ({kind}: {text}); check the network "
                "(and HF_ENDPOINT)")
    return f"{kind}: {text}"


def _fetch_locked(spec: RepoSpec, endpoint: str | None, token: str | None, force_verify: bool) -> dict:
    from huggingface_hub import HfApi, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    if is_complete(spec) and not force_verify:  # another worker finished while we waited
        return read_marker(spec.local_dir) or {}
    start = time.perf_counter()
    api = HfApi(endpoint=endpoint, token=token)
    commit = api.repo_info(spec.repo_id, revision=spec.revision).sha
    files = _remote_files(api, spec, commit)
    spec.local_dir.mkdir(exist_ok=True)
    headers = build_hf_headers(token=token, library_name="higgs-audio-worker")
    log.info("fetching %s@%s (%s, %d files) into %s", spec.repo_id, spec.revision, commit, len(files),
             spec.local_dir)
    (spec.local_dir / MARKER).unlink(missing_ok=True)
    bad = _bad_files(spec.local_dir, files)
    repaired = [p for p in bad if (spec.local_dir / p).exists()]  # present but wrong: corrupted or stale
    fetched_bytes = 0
    for _attempt in range(2):
        if not bad:
            break
        wanted = [f for f in files if f.path in bad]
        progress = DownloadProgress(spec.repo_id, len(files), sum(f.size for f in files),
                                    done_bytes=sum(f.size for f in files if f.path not in bad),
                                    files_done=len(files) - len(wanted))
        with shown(progress):
            for f in wanted:
                (spec.local_dir / f.path).unlink(missing_ok=True)
                url = hf_hub_url(spec.repo_id, f.path, revision=commit, endpoint=endpoint)
                fetched_bytes += download_file(url, spec.local_dir / f.path, f.size, headers, progress)
        bad = _bad_files(spec.local_dir, files)
    if bad:
        raise FetchError(f"{spec.repo_id}: {', '.join(bad)} failed verification twice")
    marker = {"repo_id": spec.repo_id, "revision": spec.revision, "commit": commit, "files": len(files),
              "bytes": sum(f.size for f in files), "downloaded_bytes": fetched_bytes, "repaired": repaired,
              "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "seconds": round(time.perf_counter() - start, 2)}
    tmp = spec.local_dir / (MARKER + ".tmp")
    tmp.write_text(json.dumps(marker, indent=2) + "\n")
    tmp.replace(spec.local_dir / MARKER)
    return marker


def fetch_models(settings: Settings, force_verify: bool = False) -> list[dict]:
    """Every repo :func:`specs` names (the LLM, the audio tokenizer and, when enabled, Whisper)."""
    return [fetch_repo(spec, force_verify=force_verify) for spec in specs(settings)]


def models_ready(settings: Settings) -> bool:
    return all(is_complete(spec) for spec in specs(settings))
