"""Speaker verification beside the recognizer: x-vector embeddings of voices, and how alike two voices are.

The folder (``VOICE_CHECK_PATH``) is a copy of a hub repo such as ``microsoft/wavlm-base-plus-sv`` (a transformers
x-vector model, ``WavLMForXVector``, with its 16 kHz ``Wav2Vec2FeatureExtractor``) fetched by the model store, or
the tiny random one ``make-tiny-model`` writes. It is loaded offline (``local_files_only``), as Whisper is, after
the same folder checks (:class:`~.loader.ModelFolder`).

:class:`SpeakerVerifier` is thread-safe: callers on any thread share one model under a lock, and each call embeds
all the waves it is given in one padded batch (a request's references together, then one chunk attempt at a time).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
import torch

from ..core.errors import ModelLoadError
from ..weights.folders import read_source
from .loader import LoadedModel, ModelFolder

log = logging.getLogger(__name__)

#: Shortest audio embedded, in seconds at the model's rate: shorter audio is padded with silence (the convolutional
#: front end and the x-vector's TDNN need a few frames).
MIN_SECONDS = 0.5


class SpeakerLoadError(ModelLoadError):
    """The speaker-verification folder (``VOICE_CHECK_PATH``) is missing, incomplete or not an x-vector model."""


@dataclass
class LoadedSpeaker(LoadedModel):
    model: object  # an *ForXVector model (WavLMForXVector for microsoft/wavlm-base-plus-sv)
    feature_extractor: object  # Wav2Vec2FeatureExtractor

    @property
    def sample_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)


_FOLDER = ModelFolder(setting="VOICE_CHECK_PATH", switch="VOICE_CHECK", error=SpeakerLoadError,
                      needs={"preprocessor_config.json": ("preprocessor_config.json",)})


def load_speaker(path: str | Path, device: str = "auto") -> LoadedSpeaker:
    """Load the x-vector model and its feature extractor from ``path``, offline, in float32 (it is small)."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

    start = time.perf_counter()
    path, config, dev = _FOLDER.open(path, device)
    architectures = config.get("architectures") or []
    if not any(str(a).endswith("ForXVector") for a in architectures):
        raise SpeakerLoadError(f"VOICE_CHECK_PATH {path} holds {architectures or 'no architecture'}, not an x-vector "
                               "model (VOICE_CHECK_REPO must name one such as microsoft/wavlm-base-plus-sv)")
    try:
        features = AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
        model = AutoModelForAudioXVector.from_pretrained(path, local_files_only=True).to(dev).eval()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise SpeakerLoadError(f"could not load the speaker model from VOICE_CHECK_PATH {path}: {exc}") from exc
    loaded = LoadedSpeaker(model=model, feature_extractor=features, device=dev, path=path,
                           load_s=time.perf_counter() - start, source=read_source(path))
    log.info("speaker model loaded from %s (%s) on %s in %.2f s", path,
             "{repo_id}@{commit}".format_map({"repo_id": "?", "commit": "?", **loaded.source}), dev, loaded.load_s)
    return loaded


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings, in [-1, 1] (0 when either is all zeros)."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else 0.0


class SpeakerVerifier:
    """Thread-safe x-vector embeddings: ``embed([wave, ...], sample_rate)`` gives one unit vector per wave."""

    def __init__(self, loaded: LoadedSpeaker) -> None:
        self.loaded = loaded
        self._lock = threading.Lock()
        self.calls = 0  # model calls made (one per embed)

    @property
    def sample_rate(self) -> int:
        return self.loaded.sample_rate

    def embed(self, waves: list[np.ndarray], sample_rate: int) -> np.ndarray:
        """Embeddings of ``waves`` (mono float, ``sample_rate`` Hz), L2-normalised, shape (len(waves), dim)."""
        rate = self.sample_rate
        shortest = int(MIN_SECONDS * rate)
        batch = []
        for wave in waves:
            samples = np.asarray(wave, dtype=np.float32).reshape(-1)
            if sample_rate != rate and len(samples):
                samples = soxr.resample(samples, sample_rate, rate).astype(np.float32)
            if len(samples) < shortest:
                samples = np.pad(samples, (0, shortest - len(samples)))
            batch.append(samples)
        inputs = self.loaded.feature_extractor(batch, sampling_rate=rate, return_tensors="pt", padding=True,
                                               return_attention_mask=True)
        model = self.loaded.model
        with self._lock, torch.inference_mode(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*key_padding_mask and attn_mask.*")
            out = model(**{k: v.to(self.loaded.device) for k, v in inputs.items()}).embeddings
            self.calls += 1
        vectors = out.float().cpu().numpy()
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)
