"""Fitness checks: can this worker serve at all? The GPU, the model folders, one short generation, the decode path
in use, and a spoken canary (one fixed sentence, heard by the speech recognizer).

The RunPod worker registers them with the SDK (``runpod.serverless.register_fitness_check``), which runs them
before the first job on the platform and ends a failing worker with a non-zero exit, so RunPod replaces it
instead of sending it jobs that would all fail. ``higgs-worker check`` runs the same checks on any host.

Each check returns what it found (one line, and for some the figures behind it) or raises :class:`FitnessError` with
the reason; both go to the log (``server.log``), since the SDK's own messages go to stdout only.

The canary catches what every other check passes: a model that loads and makes audio of the right shape that says
nothing (a wrong tokenizer, a mis-loaded codec, a broken dtype). It speaks :data:`CANARY_TEXT` in a pinned voice
with a pinned seed, through the service's own speech check (``verify``: heard, scored, generated again with the
next seeds as any request would be), and fails when the best attempt's word error rate is over
``FITNESS_CANARY_MAX_WER``, naming what was heard.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .core.settings import Settings
from .weights.demo import is_tiny_model
from .weights.policy import asr_load_wanted

log = logging.getLogger(__name__)

MARKER = ".higgs-complete.json"  # written by models.fetch_repo once a folder is complete and verified


class FitnessError(RuntimeError):
    """The worker cannot serve; the message says why (and what to do)."""


#: The canary: one short sentence of plain words, a pinned voice (an upstream preset, sha256-pinned; the model's own
#: voice where it is not installed) and a pinned seed (the retries take the next seeds, as ``verify`` does).
CANARY_TEXT = "The morning train leaves the station at seven."
CANARY_VOICE = "en_woman"
CANARY_SEED = 24
CANARY_MAX_FRAMES = 300  # 12 s of audio: a longer attempt counts as a runaway (see speech.quality)

#: What a check returns: one line, or one line and the figures behind it (``higgs-worker check --json`` shows them).
Found = str | tuple[str, dict]


@dataclass
class Outcome:
    name: str
    ok: bool
    detail: str
    seconds: float
    facts: dict | None = None

    def as_dict(self) -> dict:
        out = {"check": self.name, "ok": self.ok, "detail": self.detail, "seconds": round(self.seconds, 3)}
        if self.facts is not None:
            out["facts"] = self.facts
        return out


# -- the GPU ----------------------------------------------------------------------------------------------------

def _nvidia_smi_sees_a_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and "GPU" in result.stdout


def check_gpu(settings: Settings) -> str:
    """With ``DEVICE`` cuda (or auto where a GPU is installed): torch sees the GPU, and at least
    ``FITNESS_MIN_FREE_GPU_GB`` of its memory is free or already held by this worker (its model, once loaded)."""
    if settings.device == "cpu":
        return "skipped: DEVICE=cpu"
    import torch

    if not torch.cuda.is_available():
        if settings.device == "cuda":
            raise FitnessError("DEVICE=cuda but torch sees no CUDA device (driver, container GPU access or "
                               "CUDA_VISIBLE_DEVICES)")
        if _nvidia_smi_sees_a_gpu():
            raise FitnessError("nvidia-smi lists a GPU but torch cannot use it (a driver older than the CUDA "
                               f"{torch.version.cuda} runtime?); set DEVICE=cpu to run on the CPU on purpose")
        return "no GPU: the model runs on the CPU (DEVICE=auto)"
    device = torch.cuda.current_device()
    name = torch.cuda.get_device_name(device)
    free, total = torch.cuda.mem_get_info(device)
    usable = (free + torch.cuda.memory_reserved(device)) / 2**30
    need = settings.fitness_min_free_gpu_gb
    if usable < need:
        raise FitnessError(f"GPU {name}: {usable:.1f} GiB free (or held by this worker) of {total / 2**30:.1f} GiB; "
                           f"needs {need:g} GiB (FITNESS_MIN_FREE_GPU_GB): another process holds the rest, or the "
                           "GPU is too small")
    return f"{name}: {usable:.1f} of {total / 2**30:.1f} GiB free or held by this worker (needs {need:g})"


# -- the model folders ------------------------------------------------------------------------------------------

def _weights_problems(folder: Path) -> list[str]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            shards = sorted(set(json.loads(index.read_text("utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError):
            return [f"{index.name} is unreadable"]
        missing = [s for s in shards if not (folder / s).is_file() or (folder / s).stat().st_size == 0]
        return [f"lacks weight shard(s) {', '.join(missing[:5])}"] if missing else []
    if any(p.stat().st_size > 0 for p in folder.glob("*.safetensors")):
        return []
    return ["has no weights (*.safetensors)"]


def _marker_problems(folder: Path) -> list[str]:
    """When fetched by ``fetch-models``: as many files and bytes as its completion marker recorded."""
    try:
        marker = json.loads((folder / MARKER).read_text("utf-8"))
    except (OSError, ValueError):
        return []
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(MARKER)
             and not p.name.endswith((".part", ".lock"))]
    have_files, have_bytes = len(files), sum(p.stat().st_size for p in files)
    want_files, want_bytes = int(marker.get("files") or 0), int(marker.get("bytes") or 0)
    if have_files < want_files or have_bytes < want_bytes:
        return [f"holds {have_files} files ({have_bytes} bytes) where its completion marker records {want_files} "
                f"({want_bytes} bytes): files were removed or cut short (run `higgs-worker fetch-models --verify`)"]
    return []


def folder_problems(what: str, folder: Path, needs: tuple[str, ...]) -> list[str]:
    """What keeps ``folder`` (``what`` names its setting) from being a complete model folder."""
    if not folder.is_dir():
        return [f"{what} {folder} does not exist (run `higgs-worker fetch-models`)"]
    problems = [f"lacks {name}" for name in needs if not (folder / name).is_file()]
    if not problems and "config.json" in needs:
        try:
            json.loads((folder / "config.json").read_text("utf-8"))
        except (OSError, ValueError):
            problems.append("config.json is unreadable")
    problems += _weights_problems(folder)
    parts = sorted(p.name for p in folder.rglob(".*.part"))
    if parts:
        problems.append(f"holds an interrupted download ({parts[0]}; run `higgs-worker fetch-models`)")
    problems += _marker_problems(folder)
    return [f"{what} {folder} {p}" if not p.startswith(what) else p for p in problems]


def check_model_folders(settings: Settings) -> str:
    """``MODEL_PATH`` and ``TOKENIZER_PATH`` (and ``ASR_PATH`` with ``ASR=on``) hold configs and all their weights."""
    folders = [("MODEL_PATH", Path(settings.model_path), ("config.json", "tokenizer_config.json")),
               ("TOKENIZER_PATH", Path(settings.tokenizer_path), ("config.json",))]
    if settings.asr == "on":
        folders.append(("ASR_PATH", Path(settings.asr_path), ("config.json",)))
    problems = [p for what, folder, needs in folders for p in folder_problems(what, folder, needs)]
    if problems:
        raise FitnessError("; ".join(problems))
    return ", ".join(f"{what} complete" for what, _, _ in folders)


# -- one short generation ---------------------------------------------------------------------------------------

def _engine(service):
    try:
        engine = service.holder.get()
    except Exception as exc:  # noqa: BLE001 - the load failure is the reason
        raise FitnessError(f"the model does not load: {exc.__class__.__name__}: {exc}") from exc
    if engine.fault is not None:
        raise FitnessError(str(engine.fault))
    return engine


def check_generation(service) -> str:
    """The model loads (or is loaded) and makes a short, finite waveform from a short prompt."""
    from .engine import Prompt, Sampling

    engine = _engine(service)
    start = time.perf_counter()
    result = engine.generate(Prompt(text="Fitness check."), Sampling(max_new_tokens=12, stop_at_eos=False), seed=0)
    wave = engine.decode(result.codes)
    seconds = time.perf_counter() - start
    if wave.size == 0 or not math.isfinite(float(abs(wave).max())):
        raise FitnessError(f"a short generation made {'no' if wave.size == 0 else 'non-finite'} audio")
    return f"{result.steps} frames, {wave.size / engine.sample_rate:.2f} s of audio in {seconds:.2f} s"


# -- the decode path --------------------------------------------------------------------------------------------

def check_decode_path(service) -> Found:
    """The decode path the engine serves on and why (``DECODE_PATH``), with the self-check's figures where it ran.
    Never unfit: a fast path that failed its self-check leaves the worker serving on the eager one."""
    engine = _engine(service)
    choice, report = engine.decode_choice, engine.decode_report()
    failure = f"; serving without CUDA graphs: {report['graph_failure']}" if report["graph_failure"] else ""
    return f"{choice.path}: {choice.reason}{failure}", report


# -- the spoken canary ------------------------------------------------------------------------------------------

def canary_wanted(settings: Settings) -> tuple[bool, str]:
    """Whether the spoken canary runs (``FITNESS_CANARY``), and why."""
    if settings.fitness_canary != "auto":
        return settings.fitness_canary == "on", f"FITNESS_CANARY={settings.fitness_canary}"
    if settings.higgs_demo:
        return False, "demo mode, whose tiny random model says nothing (FITNESS_CANARY=auto)"
    if is_tiny_model(settings.model_path):
        return False, "a tiny random model, which says nothing (FITNESS_CANARY=auto)"
    if not asr_load_wanted(settings):
        return False, "no speech recognizer (ASR=off, or no model in ASR_PATH; FITNESS_CANARY=auto)"
    return True, "a speech recognizer is configured (FITNESS_CANARY=auto)"


def check_canary(settings: Settings, service) -> Found:
    """Speak :data:`CANARY_TEXT` and hear it: unfit when even the best of ``VERIFY_MAX_ATTEMPTS`` seeds is heard with
    a word error rate over ``FITNESS_CANARY_MAX_WER``. The result is kept on the engine (``/health`` shows it)."""
    from .core.schema import SpeechRequest

    wanted, why = canary_wanted(settings)
    if not wanted:
        return f"skipped: {why}"
    if not asr_load_wanted(settings):
        raise FitnessError("FITNESS_CANARY=on but there is no speech recognizer to hear it (ASR=off, or no model in "
                           "ASR_PATH): set ASR=on and fetch it, or FITNESS_CANARY=off")
    engine = _engine(service)
    voice = CANARY_VOICE if CANARY_VOICE in service.voices.names() else None
    request = SpeechRequest.parse({
        "transcript": CANARY_TEXT, "ref_audio": voice, "seed": CANARY_SEED, "max_new_tokens": CANARY_MAX_FRAMES,
        "chunk_method": "none", "format": "pcm", "trim_silence": False,
        "verify": {"max_wer": settings.fitness_canary_max_wer, "max_attempts": settings.verify_max_attempts}})
    start = time.perf_counter()
    result = service.synthesize(request)
    seconds = time.perf_counter() - start
    chunk = result.extras["quality"]["chunks"][0]
    canary = {"text": CANARY_TEXT, "voice": voice or "the model's own", "heard": chunk["heard"], "wer": chunk["wer"],
              "max_wer": settings.fitness_canary_max_wer, "passed": chunk["passed"], "attempts": chunk["attempts"],
              "problems": chunk["problems"], "audio_s": round(result.duration_s, 2), "seconds": round(seconds, 2)}
    engine.canary = canary
    heard = f"asked for {CANARY_TEXT!r} in {canary['voice']} voice, heard {chunk['heard']!r}"
    if not chunk["passed"]:
        raise FitnessError(f"the spoken canary failed: {heard}; best of {chunk['attempts']} seed(s): "
                           f"{'; '.join(chunk['problems'])} (FITNESS_CANARY_MAX_WER={settings.fitness_canary_max_wer:g})"
                           ": the model makes audio that does not say its text (a wrong tokenizer, a mis-loaded codec "
                           "or a broken dtype?)")
    return (f"{heard} (word error rate {chunk['wer']:.2f}, {chunk['attempts']} attempt(s), {seconds:.2f} s)", canary)


# -- running them -----------------------------------------------------------------------------------------------

def checks(settings: Settings, service) -> list[tuple[str, Callable[[], Found]]]:
    """The checks in order: each later one assumes the earlier ones passed."""
    return [("gpu", lambda: check_gpu(settings)),
            ("model_folders", lambda: check_model_folders(settings)),
            ("generation", lambda: check_generation(service)),
            ("decode_path", lambda: check_decode_path(service)),
            ("canary", lambda: check_canary(settings, service))]


def run_check(name: str, check: Callable[[], Found]) -> Outcome:
    """Run one check, logging (one line) what it found or, at error level, why it failed."""
    start = time.perf_counter()
    try:
        found = check()
    except Exception as exc:  # noqa: BLE001 - any failure fails the check, with its reason
        reason = str(exc) if isinstance(exc, FitnessError) else f"{exc.__class__.__name__}: {exc}"
        log.error("fitness check %s failed: %s", name, reason)
        return Outcome(name, False, reason, time.perf_counter() - start)
    detail, facts = found if isinstance(found, tuple) else (found, None)
    log.info("fitness check %s passed: %s", name, detail)
    return Outcome(name, True, detail, time.perf_counter() - start, facts)


def run_all(settings: Settings, service) -> list[Outcome]:
    """Every check, even after a failure (``higgs-worker check`` reports them all)."""
    return [run_check(name, check) for name, check in checks(settings, service)]


def register(register_fitness_check: Callable, settings: Settings, service) -> None:
    """Register the checks with the RunPod SDK, which runs them before the first job and exits non-zero on the first
    that raises."""
    for name, check in checks(settings, service):
        def sdk_check(name=name, check=check) -> None:
            outcome = run_check(name, check)
            if not outcome.ok:
                raise FitnessError(outcome.detail)

        sdk_check.__name__ = f"higgs_{name}"  # the SDK logs checks by function name
        register_fitness_check(sdk_check)
