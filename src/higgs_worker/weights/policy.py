"""What ``ASR=auto|on|off`` means: whether speech recognition is fetched and whether it is loaded.

* ``off``: no speech recognition; nothing is fetched or loaded.
* ``on``: ``fetch-models`` fetches ``ASR_REPO`` into ``ASR_PATH`` and the service loads it (on the CPU when
  there is no GPU: slow for large models, fine for small ones).
* ``auto`` (default): fetched when a GPU is present (a GPU worker has room and time for Whisper; a laptop should
  not download 1.6 GB unasked), and loaded whenever ``ASR_PATH`` holds a model: on GPU workers after the fetch,
  in demo mode (``make-tiny-model`` writes a tiny Whisper to ``DEMO_DIR/asr``), or after a manual
  ``ASR=on higgs-worker fetch-models`` on any machine.

Demo mode never fetches: its tiny model comes with its own tiny Whisper.

``VOICE_CHECK=auto|on|off`` means the same for the speaker-verification model of the voice check
(``VOICE_CHECK_REPO`` into ``VOICE_CHECK_PATH``; ``make-tiny-model`` writes a tiny one to ``DEMO_DIR/sv``).
"""

from __future__ import annotations

from pathlib import Path

from ..core.settings import Settings


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


def voice_check_folder_ready(settings: Settings) -> bool:
    return (Path(settings.voice_check_path) / "config.json").is_file()


def voice_check_fetch_wanted(settings: Settings, gpu: bool | None = None) -> bool:
    """Whether the model store should fetch ``VOICE_CHECK_REPO`` (as :func:`asr_fetch_wanted` for ``ASR``)."""
    if settings.voice_check == "off" or settings.higgs_demo:
        return False
    if settings.voice_check == "on":
        return True
    return gpu_present() if gpu is None else gpu


def voice_check_load_wanted(settings: Settings, gpu: bool | None = None) -> bool:
    """Whether the service has a speaker-verification model, so ``verify`` checks voices by default."""
    if settings.voice_check == "off":
        return False
    if settings.voice_check == "on" or voice_check_folder_ready(settings):
        return True
    return settings.auto_fetch_models and voice_check_fetch_wanted(settings, gpu)
