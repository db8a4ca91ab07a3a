"""The engine: reference encoding, generation of audio codes for a prompt (on the batching scheduler), decoding.

It knows prompts, codes and waveforms; nothing of HTTP, RunPod or storage.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..core.errors import Cancelled, DeviceFault, EngineError
from .codec_batch import CodecBatcher
from .codec_encode import encode_like_upstream
from .codes import generated_codes
from .loader import LoadedModel
from .prompt import Prompt, model_inputs
from .scheduler import FrameCallback, Job, Scheduler, is_fatal_device_error
from .selfcheck import CHECK_TEXTS, choose_decode_path
from .streaming import StreamDecoder

#: Shortest code sequence the codec decodes directly (its first convolution has a kernel of 7 frames).
MIN_DECODE_FRAMES = 8


@dataclass(frozen=True)
class Sampling:
    """How to pick each frame. ``temperature == 0`` is greedy decoding."""

    temperature: float = 0.3
    top_p: float = 0.95
    top_k: int = 50
    ras_win_len: int = 7
    ras_win_max_num_repeat: int = 2
    max_new_tokens: int = 2048
    stop_at_eos: bool = True  # False only for benchmarks that need exactly max_new_tokens frames


@dataclass
class Generation:
    """Codes generated for one prompt, and what it cost."""

    codes: torch.Tensor  # (frames, codebooks), plain (delay reverted)
    prompt_tokens: int
    steps: int
    seconds: float
    first_frame_s: float | None = None
    truncated: bool = False  # stopped at max_new_tokens before the model ended the audio


#: Frames decoded in one codec call (60 s); longer audio is decoded in windows of this many (:meth:`Engine.decode`).
DECODE_WINDOW_FRAMES = 1500


class Engine:
    """One loaded model: a scheduler that batches generations, and the codec for references and audio."""

    def __init__(self, loaded: LoadedModel, reference_cache_size: int = 64, max_batch_size: int = 8,
                 cache_capacity: int = 2048, compile_decode: bool = False, decode_path: str = "auto",
                 warmup: bool = False, codec_batching: bool | None = None) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.processor = loaded.processor
        #: The decode path in use, why, and the self-check's figures (``DECODE_PATH=auto`` on a GPU checks the fast
        #: path against the eager one on this model before the scheduler exists, so before the first job).
        self.decode_choice = choose_decode_path(decode_path, self.model, max_batch=max_batch_size, prompts=lambda: [
            model_inputs(self.processor, Prompt(text=text)) for text in CHECK_TEXTS])
        fast = self.decode_choice.path == "fast"
        self.scheduler = Scheduler(self.model, max_batch=max_batch_size, capacity=cache_capacity,
                                   compile_decode=compile_decode and not fast, fast=fast)
        self.canary: dict | None = None  # the fitness check's spoken canary, once it has run in this process
        self._codec_lock = threading.Lock()
        self._references: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._reference_cache_size = reference_cache_size
        self.reference_encodes = 0
        if codec_batching is None:  # worth it where a codec call is launch-bound: on a GPU
            codec_batching = loaded.device.type == "cuda"
        self.codec_batcher = CodecBatcher(self.decode_batch) if codec_batching else None
        if warmup:
            self.warm_up()

    def decode_report(self) -> dict:
        """The decode path in use, why, and the self-check's figures, with what serving has found since: a graph
        capture that failed (``graph_failure``) leaves the fast path running without graphs."""
        return {**self.decode_choice.as_dict(), "graph_failure": self.scheduler.graph_failure}

    def warm_up(self) -> float:
        """One short generation and decode, so the first request pays no kernel selection or compilation."""
        start = time.perf_counter()
        result = self.generate(Prompt(text="Warm up."), Sampling(max_new_tokens=16, stop_at_eos=False), seed=0)
        self.decode(result.codes)
        return time.perf_counter() - start

    @property
    def sample_rate(self) -> int:
        return self.loaded.sample_rate

    @property
    def frame_rate(self) -> int:
        return self.loaded.frame_rate

    @property
    def num_codebooks(self) -> int:
        return int(self.model.config.num_codebooks)

    @property
    def context_limit(self) -> int:
        """Positions the model was built for: prompt plus generated frames must fit."""
        return int(self.model.config.max_position_embeddings)

    def prompt_tokens(self, prompt: Prompt) -> int:
        """Positions ``prompt`` takes (text tokens plus each audio's delay-patterned frames), without running it."""
        return int(model_inputs(self.processor, prompt)["input_ids"].shape[1])

    def close(self) -> None:
        self.scheduler.close()
        if self.codec_batcher is not None:
            self.codec_batcher.close()

    @property
    def fault(self) -> DeviceFault | None:
        """Set once the GPU failed unrecoverably (in a decode step or the codec): the process must be replaced."""
        return self.scheduler.fault

    def _codec_failed(self, exc: BaseException) -> None:
        if is_fatal_device_error(exc):
            raise DeviceFault(str(self.scheduler.declare_fault(exc))) from exc

    def encode_reference(self, wave: np.ndarray) -> torch.Tensor:
        """24 kHz mono reference audio to plain codes ``(frames, codebooks)``, cached by content hash."""
        key = hashlib.sha256(np.ascontiguousarray(wave, dtype=np.float32).tobytes()).hexdigest()
        with self._codec_lock:
            cached = self._references.get(key)
            if cached is not None:
                self._references.move_to_end(key)
                return cached
            # unpadded, as upstream and the processor's own audio path encode references: padding to the hop
            # length would add frames of silence the reference never had
            features = self.processor.feature_extractor(wave, sampling_rate=self.sample_rate, padding=False,
                                                        return_tensors="pt")
            try:
                values = features["input_values"].to(self.loaded.device)
                with torch.inference_mode():
                    codes = encode_like_upstream(self.processor.audio_tokenizer, values)[0].transpose(0, 1).cpu()
            except RuntimeError as exc:
                self._codec_failed(exc)
                raise
            self.reference_encodes += 1
            self._references[key] = codes
            while len(self._references) > self._reference_cache_size:
                self._references.popitem(last=False)
            return codes

    def start(self, prompt: Prompt, sampling: Sampling, seed: int, cancel: threading.Event | None = None,
              on_frame: FrameCallback | None = None) -> Job:
        """Queue a generation; ``on_frame`` gets each delay-patterned frame as the model makes it."""
        inputs = model_inputs(self.processor, prompt)
        greedy = sampling.temperature <= 0
        job = Job(inputs=inputs, temperature=0.0 if greedy else sampling.temperature, top_k=sampling.top_k,
                  top_p=sampling.top_p, ras_win_len=sampling.ras_win_len,
                  ras_max_repeat=sampling.ras_win_max_num_repeat, max_new_tokens=sampling.max_new_tokens,
                  seed=seed, cancel=cancel, on_frame=on_frame, stop_at_eos=sampling.stop_at_eos)
        return self.scheduler.submit(job)

    def frames_made(self, job: Job) -> int:
        """Plain frames ``job`` has made so far: its steps less the delay pattern's lead."""
        return max(0, len(job.frames) - self.num_codebooks - 1)

    def finish(self, job: Job, on_wait: Callable[[int], None] | None = None, every_s: float = 1.0) -> Generation:
        """Wait for ``job``; its plain codes, or :class:`Cancelled` / the error it failed with. ``on_wait`` is
        told the frames made so far every ``every_s`` while it runs."""
        while on_wait is not None and not job.done.wait(every_s):
            on_wait(self.frames_made(job))
        job.done.wait()
        if job.cancelled:
            raise Cancelled()
        if isinstance(job.error, DeviceFault):
            raise DeviceFault(str(job.error)) from job.error
        if job.error is not None:
            raise EngineError(f"generation failed: {job.error}") from job.error
        delayed = torch.stack(job.frames) if job.frames else torch.zeros((0, self.num_codebooks), dtype=torch.long)
        return Generation(codes=generated_codes(delayed, self.processor.audio_stream_bos_id,
                                                self.processor.audio_stream_eos_id),
                          prompt_tokens=int(job.inputs["input_ids"].shape[1]), steps=len(job.frames),
                          seconds=job.finished_s, first_frame_s=job.first_frame_s,
                          truncated=job.stop_at_eos and not job.ended_at_eos)

    def generate(self, prompt: Prompt, sampling: Sampling, seed: int, cancel: threading.Event | None = None,
                 on_wait: Callable[[int], None] | None = None, every_s: float = 1.0) -> Generation:
        """Generate the audio codes that answer ``prompt``; seeded, so the same call gives the same codes.
        ``on_wait`` and ``every_s`` as for :meth:`finish`."""
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        return self.finish(self.start(prompt, sampling, seed, cancel), on_wait, every_s)

    def stream_decode(self, codes: torch.Tensor) -> np.ndarray:
        """:meth:`decode` for a streaming window: batched with the windows of other streams where enabled."""
        if self.codec_batcher is not None:
            return self.codec_batcher.decode(codes)
        return self.decode(codes)

    def decode_batch(self, codes: torch.Tensor) -> list[np.ndarray]:
        """Plain codes of one length ``(B, frames, codebooks)`` to B float32 24 kHz waveforms, in one codec call."""
        frames = codes.shape[1]
        if frames == 0:
            return [np.zeros(0, dtype=np.float32) for _ in codes]
        if frames < MIN_DECODE_FRAMES:  # the codec's first convolution needs a few frames: pad, then trim
            codes = torch.cat([codes, codes[:, -1:].expand(-1, MIN_DECODE_FRAMES - frames, -1)], dim=1)
        codec = self.processor.audio_tokenizer
        with self._codec_lock, torch.inference_mode():
            try:
                audio = codec.decode(codes.transpose(1, 2).to(self.loaded.device)).audio_values
            except RuntimeError as exc:
                self._codec_failed(exc)
                raise
        hop = self.sample_rate // self.frame_rate
        return list(audio.reshape(codes.shape[0], -1)[:, : frames * hop].float().cpu().numpy())

    def decode(self, codes: torch.Tensor) -> np.ndarray:
        """Plain codes ``(frames, codebooks)`` to a float32 24 kHz waveform.

        Up to :data:`DECODE_WINDOW_FRAMES` in one codec call; longer audio in windows of that many frames with the
        codec's whole reach of context each side (:mod:`.streaming`), which equals one call within float rounding
        and holds the codec's intermediate buffers for one window, not the whole utterance (about 2.6 MiB per second
        of audio in one call: 27 GiB at the longest request)."""
        frames = codes.shape[0]
        if frames <= DECODE_WINDOW_FRAMES:
            return self.decode_batch(codes[None])[0]
        decoder = StreamDecoder(lambda window: self.decode_batch(window[None])[0], self.sample_rate // self.frame_rate,
                                self.num_codebooks)
        pieces = [decoder.push(codes[i:i + DECODE_WINDOW_FRAMES]) for i in range(0, frames, DECODE_WINDOW_FRAMES)]
        return np.concatenate([*pieces, decoder.flush()])
