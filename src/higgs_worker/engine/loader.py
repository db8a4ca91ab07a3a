"""Loading Higgs Audio V2 from local folders: the LLM, the text tokenizer and the audio codec.

Never reaches a hub: ``AutoProcessor.from_pretrained`` would fetch the codec from the hub id written in
``processor_config.json``, so the processor is assembled here from its local parts instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class ModelLoadError(RuntimeError):
    """The model folders are missing, incomplete or unreadable."""


@dataclass
class LoadedModel:
    model: object  # HiggsAudioV2ForConditionalGeneration
    processor: object  # HiggsAudioV2Processor
    device: torch.device
    dtype: torch.dtype
    load_s: float = 0.0

    @property
    def codec(self):
        return self.processor.audio_tokenizer

    @property
    def sample_rate(self) -> int:
        return int(self.codec.config.sample_rate)

    @property
    def frame_rate(self) -> int:
        return int(self.codec.config.frame_rate)


def resolve_device(setting: str) -> torch.device:
    """``auto`` means CUDA when a GPU is visible, else the CPU."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("DEVICE=cuda but no CUDA device is available")
    return torch.device(setting)


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    """``auto`` means bfloat16 on a GPU and float32 on the CPU."""
    if setting == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[setting]


def _require(folder: Path, files: tuple[str, ...], what: str) -> None:
    if not folder.is_dir():
        raise ModelLoadError(f"{what} folder {folder} does not exist (run `higgs-worker fetch-models`)")
    missing = [f for f in files if not (folder / f).exists()]
    if missing:
        raise ModelLoadError(f"{what} folder {folder} lacks {', '.join(missing)}")


def load_model(model_path: Path, tokenizer_path: Path, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load model, text tokenizer, feature extractor and codec from local folders, offline."""
    import time

    from transformers import (
        AutoTokenizer,
        DacFeatureExtractor,
        HiggsAudioV2ForConditionalGeneration,
        HiggsAudioV2Processor,
        HiggsAudioV2TokenizerModel,
    )

    start = time.perf_counter()
    model_path, tokenizer_path = Path(model_path), Path(tokenizer_path)
    _require(model_path, ("config.json", "tokenizer_config.json"), "MODEL_PATH")
    _require(tokenizer_path, ("config.json",), "TOKENIZER_PATH")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    try:
        text_tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        if (model_path / "preprocessor_config.json").exists():
            features = DacFeatureExtractor.from_pretrained(model_path, local_files_only=True)
        else:
            features = DacFeatureExtractor(feature_size=1, sampling_rate=24000, hop_length=960)
        codec = HiggsAudioV2TokenizerModel.from_pretrained(tokenizer_path, local_files_only=True)
        codec = codec.to(dev).eval()  # the codec stays float32: it is small and bf16 costs fidelity
        processor = HiggsAudioV2Processor(features, text_tokenizer, codec)
        model = HiggsAudioV2ForConditionalGeneration.from_pretrained(
            model_path, local_files_only=True, dtype=dt
        ).to(dev).eval()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"could not load the model: {exc}") from exc
    loaded = LoadedModel(model=model, processor=processor, device=dev, dtype=dt,
                         load_s=time.perf_counter() - start)
    log.info("model loaded from %s on %s (%s) in %.2f s", model_path, dev, dt, loaded.load_s)
    return loaded
