"""The speech recognizer as the settings describe it: fetched into ``ASR_PATH`` when allowed, then loaded."""

from __future__ import annotations

from ..asr.loader import ASRLoadError, load_asr
from ..asr.metrics import ASRMetrics
from ..asr.recognizer import Recognizer
from ..core.settings import Settings
from ..weights.fetch import asr_spec, fetch_repo, is_complete
from ..weights.policy import asr_folder_ready


def build_recognizer(settings: Settings, metrics: ASRMetrics | None = None) -> Recognizer:
    """Fetch ``ASR_REPO`` first when ``ASR_PATH`` is empty and fetching is allowed, then load and start it.

    Raises :class:`~higgs_worker.asr.loader.ASRLoadError` (a ``ModelLoadError``) naming ``ASR_PATH`` or ``ASR_REPO``.
    """
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
