"""The engine: reference encoding, generation of audio codes for a prompt, and decoding to a waveform.

It knows prompts, codes and waveforms; nothing of HTTP, RunPod or storage.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from .codes import generated_codes
from .loader import LoadedModel
from .prompt import Prompt, model_inputs


@dataclass(frozen=True)
class Sampling:
    """How to pick each frame. ``temperature == 0`` is greedy decoding."""

    temperature: float = 0.3
    top_p: float = 0.95
    top_k: int = 50
    ras_win_len: int = 7
    ras_win_max_num_repeat: int = 2
    max_new_tokens: int = 2048


@dataclass
class Generation:
    """Codes generated for one prompt, and what it cost."""

    codes: torch.Tensor  # (frames, codebooks), plain (delay reverted)
    prompt_tokens: int
    steps: int
    seconds: float


class Cancelled(Exception):
    """The caller gave up on the request."""


class _CancelCriteria:
    """Stops ``generate`` at the next step once the caller has cancelled."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.cancel.is_set(), dtype=torch.bool, device=input_ids.device)


class Engine:
    """One loaded model. Generation is serialised: one prompt on the model at a time."""

    def __init__(self, loaded: LoadedModel, reference_cache_size: int = 64) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.processor = loaded.processor
        self._lock = threading.Lock()
        self._references: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._reference_cache_size = reference_cache_size
        self.reference_encodes = 0

    @property
    def sample_rate(self) -> int:
        return self.loaded.sample_rate

    @property
    def frame_rate(self) -> int:
        return self.loaded.frame_rate

    @property
    def num_codebooks(self) -> int:
        return int(self.model.config.num_codebooks)

    def encode_reference(self, wave: np.ndarray) -> torch.Tensor:
        """24 kHz mono reference audio to plain codes ``(frames, codebooks)``, cached by content hash."""
        key = hashlib.sha256(np.ascontiguousarray(wave, dtype=np.float32).tobytes()).hexdigest()
        with self._lock:
            cached = self._references.get(key)
            if cached is not None:
                self._references.move_to_end(key)
                return cached
            features = self.processor.feature_extractor(wave, sampling_rate=self.sample_rate, return_tensors="pt")
            values = features["input_values"].to(self.loaded.device)
            with torch.inference_mode():
                codes = self.processor.audio_tokenizer.encode(values).audio_codes[0].transpose(0, 1).cpu()
            self.reference_encodes += 1
            self._references[key] = codes
            while len(self._references) > self._reference_cache_size:
                self._references.popitem(last=False)
            return codes

    def generation_config(self, sampling: Sampling):
        from transformers import GenerationConfig

        cfg = self.model.config
        greedy = sampling.temperature <= 0
        ras = sampling.ras_win_len > 0
        return GenerationConfig(
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None if greedy or sampling.top_k == 0 else sampling.top_k,
            max_new_tokens=sampling.max_new_tokens,
            ras_win_len=sampling.ras_win_len if ras else None,
            ras_win_max_num_repeat=sampling.ras_win_max_num_repeat if ras else None,
            bos_token_id=cfg.bos_token_id,
            eos_token_id=cfg.eos_token_id,
            pad_token_id=cfg.pad_token_id,
            return_dict_in_generate=True,
        )

    def generate(self, prompt: Prompt, sampling: Sampling, seed: int,
                 cancel: threading.Event | None = None) -> Generation:
        """Generate the audio codes that answer ``prompt``; seeded, so the same call gives the same codes."""
        inputs = model_inputs(self.processor, prompt)
        prompt_audio = inputs["audio_input_ids"].shape[1] if "audio_input_ids" in inputs else 0
        config = self.generation_config(sampling)
        device = self.loaded.device
        with self._lock:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            start = time.perf_counter()
            torch.manual_seed(seed)
            from transformers import StoppingCriteriaList

            stops = StoppingCriteriaList([_CancelCriteria(cancel)] if cancel is not None else [])
            with torch.inference_mode():
                out = self.model.generate(**{k: v.to(device) for k, v in inputs.items()},
                                          generation_config=config, stopping_criteria=stops)
            seconds = time.perf_counter() - start
            if cancel is not None and cancel.is_set():
                raise Cancelled()
        generated = out.audio_sequences[0, prompt_audio:].cpu()
        return Generation(codes=generated_codes(generated, self.processor.audio_stream_bos_id,
                                                self.processor.audio_stream_eos_id),
                          prompt_tokens=int(inputs["input_ids"].shape[1]),
                          steps=int(generated.shape[0]), seconds=seconds)

    def decode(self, codes: torch.Tensor) -> np.ndarray:
        """Plain codes ``(frames, codebooks)`` to a float32 24 kHz waveform."""
        if codes.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        codec = self.processor.audio_tokenizer
        with self._lock, torch.inference_mode():
            audio = codec.decode(codes.transpose(0, 1)[None].to(self.loaded.device)).audio_values
        return audio.reshape(-1).float().cpu().numpy()
