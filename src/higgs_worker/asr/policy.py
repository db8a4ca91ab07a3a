"""What ``ASR=auto|on|off`` means, and the recognizer as the settings describe it.

* ``off``: no speech recognition; nothing is fetched or loaded.
* ``on``: ``fetch-models`` fetches ``ASR_REPO`` into ``ASR_PATH`` and the service loads it (on the CPU when
  there is no GPU: slow for large models, fine for small ones).
* ``auto`` (default): fetched when a GPU is present (a GPU worker has room and time for Whisper; a laptop should
  not download 1.6 GB unasked), and loaded whenever ``ASR_PATH`` holds a model: on GPU workers after the fetch,
  in demo mode (``make-tiny-model`` writes a tiny Whisper to ``DEMO_DIR/asr``), or after a manual
  ``ASR=on higgs-worker fetch-models`` on any machine.

Demo mode never fetches: its tiny model comes with its own tiny Whisper.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..settings import Settings

if TYPE_CHECKING:
    from .metrics import ASRMetrics
    from .recognizer import Recognizer


def gpu_present() -> bool:
    """A CUDA device is visible to torch (the same test the loaders use for ``DEVICE=auto``)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def asr_folder_ready(settings: Settings) -> bool:
    return (Path(settings.asr_path) / "config.json").is_file()


def asr_fetch_wanted(settings: Settings, gpu: bool | None = None) -> bool:
    """Whether the model store should fetch ``ASR_REPO`` (``fetch-models``, bootstrap, first start)."""
    if settings.asr == "off" or settings.higgs_demo:
        return False
    if settings.asr == "on":
        return True
    return gpu_present() if gpu is None else gpu


def asr_load_wanted(settings: Settings, gpu: bool | None = None) -> bool:
    """Whether the service should have a recognizer at all (see the module docstring)."""
    if settings.asr == "off":
        return False
    if settings.asr == "on" or asr_folder_ready(settings):
        return True
    return settings.auto_fetch_models and asr_fetch_wanted(settings, gpu)


def build_recognizer(settings: Settings, metrics: ASRMetrics | None = None) -> Recognizer:
    """Fetch ``ASR_REPO`` first when ``ASR_PATH`` is empty and fetching is allowed, then load and start it.

    Raises :class:`~.loader.ASRLoadError` (a ``ModelLoadError``) naming ``ASR_PATH`` or ``ASR_REPO``.
    """
    from ..models import asr_spec, fetch_repo, is_complete
    from .loader import ASRLoadError, load_asr
    from .recognizer import Recognizer

    spec = asr_spec(settings)
    if (not settings.higgs_demo and settings.auto_fetch_models and not asr_folder_ready(settings)
            and not is_complete(spec)):
        try:
            fetch_repo(spec)
        except Exception as exc:  # noqa: BLE001 - reported as a load failure, with the reason
            raise ASRLoadError(f"ASR_PATH folder {spec.local_dir} is empty and fetching {spec.repo_id}@"
                               f"{spec.revision} failed: {exc.__class__.__name__}: {exc}") from exc
    loaded = load_asr(settings.asr_path, settings.device)
    return Recognizer(loaded, batch_window_s=settings.asr_batch_window_ms / 1000.0,
                      max_batch_size=settings.asr_max_batch_size, metrics=metrics)
