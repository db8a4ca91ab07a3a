"""Loading Whisper (model, tokenizer, feature extractor) from a local folder, offline; and what every model loader of
this package shares: the checks of its folder before a load (:class:`ModelFolder`) and the record of what was loaded
(:class:`LoadedModel`), which :mod:`.speaker` uses too.

The folder is a copy of a hub repo such as ``openai/whisper-large-v3-turbo`` (fetched by the model store into
``ASR_PATH``) or the tiny random one ``make-tiny-model`` writes. Nothing here reaches a hub.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.errors import ModelLoadError
from ..weights.folders import read_source, resolve_device

log = logging.getLogger(__name__)

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class ASRLoadError(ModelLoadError):
    """The speech recognition folder (``ASR_PATH``) is missing, incomplete or not a Whisper model."""


@dataclass(frozen=True)
class ModelFolder:
    """What a model's local folder must hold, and how its errors name it: ``setting`` is the folder's setting
    (``ASR_PATH``), ``switch`` the setting that turns the model on (``ASR``), ``needs`` maps what is needed beside
    ``config.json`` to the file names that provide it (any one will do), ``error`` is the loader's error type."""

    setting: str
    switch: str
    needs: Mapping[str, tuple[str, ...]]
    error: type[ModelLoadError]

    def open(self, path: str | Path, device: str) -> tuple[Path, dict[str, Any], torch.device]:
        """Check the folder before a load (it exists, holds files, has every file needed and a readable
        ``config.json``) and resolve ``device``: the folder, its config (for the caller's check of the model kind)
        and the device. Each failure is ``error`` naming the setting and what to do."""
        path = Path(path)
        hint = f"run `higgs-worker fetch-models` with {self.switch}=on, or set {self.switch}=off"
        if not path.is_dir():
            raise self.error(f"{self.setting} folder {path} does not exist ({hint})")
        if not any(path.iterdir()):
            raise self.error(f"{self.setting} folder {path} is empty ({hint})")
        needs = {"config.json": ("config.json",), **self.needs}
        missing = [what for what, names in needs.items() if not any((path / n).is_file() for n in names)]
        if missing:
            raise self.error(f"{self.setting} folder {path} lacks {', '.join(missing)} (an interrupted fetch? run "
                             "`higgs-worker fetch-models --verify`)")
        try:
            config = json.loads((path / "config.json").read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise self.error(f"{self.setting} {path}: config.json is unreadable ({exc.__class__.__name__})") from exc
        try:
            return path, config, resolve_device(device)
        except ModelLoadError as exc:
            raise self.error(f"{self.switch}: {exc}") from exc


@dataclass(kw_only=True)
class LoadedModel:
    """What is recorded of every model loaded from a folder, beside the model itself."""

    device: torch.device
    path: Path
    load_s: float = 0.0
    source: dict[str, str] = field(default_factory=dict)  # repo_id, revision, commit (from the completion marker)


@dataclass
class LoadedASR(LoadedModel):
    model: object  # WhisperForConditionalGeneration
    processor: object  # WhisperProcessor
    dtype: torch.dtype

    @property
    def sample_rate(self) -> int:
        """The rate the feature extractor expects (16 kHz for every Whisper)."""
        return int(self.processor.feature_extractor.sampling_rate)

    @property
    def word_timestamps(self) -> bool:
        """Whether the generation config names the cross-attention heads that align tokens with time."""
        return bool(getattr(self.model.generation_config, "alignment_heads", None))


def resolve_asr_dtype(setting: str, device: torch.device) -> torch.dtype:
    """``auto``: half precision (float16, as Whisper was trained) on a GPU, float32 on the CPU."""
    if setting == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return _DTYPES[setting]


_FOLDER = ModelFolder(setting="ASR_PATH", switch="ASR", error=ASRLoadError, needs={
    "a feature extractor config": ("preprocessor_config.json", "processor_config.json"),
    "a tokenizer": ("tokenizer.json", "vocab.json"),
    "generation_config.json": ("generation_config.json",)})


def load_asr(path: str | Path, device: str = "auto", dtype: str = "auto") -> LoadedASR:
    """Load Whisper and its processor from ``path`` with ``local_files_only``; on the GPU in half precision."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    start = time.perf_counter()
    path, config, dev = _FOLDER.open(path, device)
    if config.get("model_type") != "whisper":
        raise ASRLoadError(f"ASR_PATH {path} holds a {config.get('model_type')!r} model, not a Whisper model "
                           "(ASR_REPO must name a Whisper repo such as openai/whisper-large-v3-turbo)")
    dt = resolve_asr_dtype(dtype, dev)
    try:
        processor = WhisperProcessor.from_pretrained(path, local_files_only=True)
        model = WhisperForConditionalGeneration.from_pretrained(path, local_files_only=True, dtype=dt)
        model = model.to(dev).eval()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ASRLoadError(f"could not load the ASR model from ASR_PATH {path}: {exc}") from exc
    generation = model.generation_config
    if not getattr(generation, "lang_to_id", None) or getattr(generation, "no_timestamps_token_id", None) is None:
        raise ASRLoadError(f"ASR_PATH {path}: generation_config.json lacks Whisper's lang_to_id / "
                           "no_timestamps_token_id (a multilingual Whisper repo has them)")
    loaded = LoadedASR(model=model, processor=processor, device=dev, dtype=dt, path=path,
                       load_s=time.perf_counter() - start, source=read_source(path))
    if not loaded.word_timestamps:
        log.warning("ASR model at %s has no alignment_heads in its generation config: transcripts will carry no "
                    "word times (no word timestamps or captions)", path)
    log.info("ASR model loaded from %s (%s) on %s (%s) in %.2f s", path,
             "{repo_id}@{commit}".format_map({"repo_id": "?", "commit": "?", **loaded.source}), dev, dt,
             loaded.load_s)
    return loaded
