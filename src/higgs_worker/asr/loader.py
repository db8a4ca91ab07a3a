"""Loading Whisper (model, tokenizer, feature extractor) from a local folder, offline.

The folder is a copy of a hub repo such as ``openai/whisper-large-v3-turbo`` (fetched by the model store into
``ASR_PATH``) or the tiny random one ``make-tiny-model`` writes. Nothing here reaches a hub.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.errors import ModelLoadError
from ..weights.folders import read_source, resolve_device

log = logging.getLogger(__name__)

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class ASRLoadError(ModelLoadError):
    """The speech recognition folder (``ASR_PATH``) is missing, incomplete or not a Whisper model."""


@dataclass
class LoadedASR:
    model: object  # WhisperForConditionalGeneration
    processor: object  # WhisperProcessor
    device: torch.device
    dtype: torch.dtype
    path: Path
    load_s: float = 0.0
    source: dict[str, str] = field(default_factory=dict)  # repo_id, revision, commit (from the completion marker)

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


def _check_folder(path: Path) -> None:
    if not path.is_dir():
        raise ASRLoadError(f"ASR_PATH folder {path} does not exist (run `higgs-worker fetch-models` with ASR=on, "
                           "or set ASR=off)")
    if not any(path.iterdir()):
        raise ASRLoadError(f"ASR_PATH folder {path} is empty (run `higgs-worker fetch-models` with ASR=on, or set "
                           "ASR=off)")
    needs = {"config.json": ("config.json",),
             "a feature extractor config": ("preprocessor_config.json", "processor_config.json"),
             "a tokenizer": ("tokenizer.json", "vocab.json"),
             "generation_config.json": ("generation_config.json",)}
    missing = [what for what, names in needs.items() if not any((path / n).exists() for n in names)]
    if missing:
        raise ASRLoadError(f"ASR_PATH folder {path} lacks {', '.join(missing)} (an interrupted fetch? run "
                           "`higgs-worker fetch-models --verify`)")
    try:
        model_type = json.loads((path / "config.json").read_text("utf-8")).get("model_type")
    except (OSError, ValueError) as exc:
        raise ASRLoadError(f"ASR_PATH {path}: config.json is unreadable ({exc.__class__.__name__})") from exc
    if model_type != "whisper":
        raise ASRLoadError(f"ASR_PATH {path} holds a {model_type!r} model, not a Whisper model (ASR_REPO must name "
                           "a Whisper repo such as openai/whisper-large-v3-turbo)")


def load_asr(path: str | Path, device: str = "auto", dtype: str = "auto") -> LoadedASR:
    """Load Whisper and its processor from ``path`` with ``local_files_only``; on the GPU in half precision."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    start = time.perf_counter()
    path = Path(path)
    _check_folder(path)
    try:
        dev = resolve_device(device)
    except ModelLoadError as exc:
        raise ASRLoadError(f"ASR: {exc}") from exc
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
