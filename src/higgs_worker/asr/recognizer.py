"""Speech recognition with word times, batched across callers: one thread owns Whisper.

Callers on any thread call :meth:`Recognizer.transcribe`; their audio is resampled and turned into log-mel
features on their own thread, then queued. The model thread takes the first waiting window, gathers whatever else
arrives within ``batch_window_s`` (up to ``max_batch_size`` windows) and transcribes them all with one encoder
pass and one ``generate`` call, so requests that arrive together are served together.

Word times come from Whisper's cross-attention, the way OpenAI's ``word_timestamps`` does it: after decoding, one
teacher-forced decoder pass over ``start tokens + text + end`` returns the attention of the alignment heads named
in the generation config (``alignment_heads``); the weights are normalised, median-filtered and averaged over
heads, and dynamic time warping finds the monotonic path from tokens to 20 ms encoder frames. A token starts where
the path first reaches it; a word runs from its first token's start to the next token's start (the end token
closes the last word). This is done here rather than through ``generate(return_token_timestamps=True)``: that
path has no alignment for the end token (so the last word would have no end), runs a Python DTW cell by cell, and
switches the whole model to eager attention for good. Models without alignment heads give text without words.

Audio longer than Whisper's 30 s window is cut, at the quietest 20 ms in the last 5 s of each window, into
windows that are transcribed in the same batch and joined with their offsets.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import unicodedata
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from .loader import LoadedASR
from .types import Transcript, Word

if TYPE_CHECKING:
    from .metrics import ASRMetrics

log = logging.getLogger(__name__)

SOURCE_RATE = 24000  # what the TTS engine produces
WINDOW_S = 30.0  # Whisper hears 30 s at a time
SEARCH_CUT_S = 5.0  # a long waveform is cut at the quietest point of the last 5 s of each window
FRAME_S = 0.02  # one encoder position: two 10 ms mel frames
ALIGN_ROWS = 8  # rows per alignment pass (bounds the memory of the attention weights it returns)
#: Languages written without spaces between words: each character (unicode unit) is a word.
NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})


class RecognizerClosed(RuntimeError):
    """The recognizer was closed; it takes no more work."""


def language_code(language: str | None) -> str | None:
    """A Whisper language code (``en``) from a code or an English name (``english``, ``mandarin``); None stays None."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    if language is None:
        return None
    key = language.strip().lower()
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise ValueError(f"unknown language {language!r}: give a Whisper language code such as 'en', 'zh', 'ja'")


@dataclass(eq=False)
class _Window:
    features: torch.Tensor  # (mel bins, 3000) log-mel, float32 on the CPU
    frames: int  # mel frames holding audio (the rest is padding)
    duration: float  # seconds of audio in this window
    language: str | None
    future: Future = field(default_factory=Future)


@dataclass(frozen=True)
class _Heard:
    text: str
    words: tuple[Word, ...]
    language: str


def _median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """Median over a sliding window of ``width`` along the last axis (edges reflected), as Whisper's alignment does."""
    pad = width // 2
    if width <= 1 or x.shape[-1] <= pad:
        return x
    flat = x.reshape(-1, 1, x.shape[-1])  # reflection padding wants (batch, channels, length)
    padded = torch.nn.functional.pad(flat, (pad, pad), mode="reflect")
    return padded.unfold(-1, width, 1).median(dim=-1).values.reshape(x.shape)


def dtw_path(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotonic least-cost path through ``cost`` (tokens x frames) from the first cell to the last.

    Steps go one frame on, one token on, or both. Each token row is solved for all frames at once: within a row
    ``c[j] = m[j] + min(a[j], c[j-1])`` unrolls to ``P[j] + cummin(a[k] - P[k-1])`` with ``P`` the running sum of
    the row, so the cost is one vector pass per token instead of a Python step per cell.
    Returns the token index and frame index of every cell on the path, in order.
    """
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        row = cost[i - 1].astype(np.float64)
        prev = acc[i - 1]
        a = np.minimum(prev[:-1], prev[1:])  # a[j-1] = min(acc[i-1, j-1], acc[i-1, j]) for j = 1..m
        running = np.cumsum(row)
        before = np.concatenate(([0.0], running[:-1]))
        acc[i, 1:] = running + np.minimum.accumulate(a - before)
    tokens, frames = [], []
    i, j = n, m
    while i > 0 and j > 0:
        tokens.append(i - 1)
        frames.append(j - 1)
        diagonal, up, left = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
        if diagonal <= up and diagonal <= left:
            i, j = i - 1, j - 1
        elif up <= left:
            i -= 1
        else:
            j -= 1
    return np.array(tokens[::-1], dtype=np.int64), np.array(frames[::-1], dtype=np.int64)


def token_start_times(weights: torch.Tensor, filter_width: int) -> np.ndarray:
    """Start time in seconds of each token from alignment-head attention ``(heads, tokens, frames)``."""
    weights = weights.float()
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-9)  # softmax over the frames kept
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = (weights - mean) / std.clamp_min(1e-9)
    weights = _median_filter(weights, filter_width)
    matrix = weights.mean(dim=0).cpu().numpy()
    tokens, frames = dtw_path(-matrix)
    starts = np.zeros(matrix.shape[0])
    first = np.ones(len(tokens), dtype=bool)
    first[1:] = tokens[1:] != tokens[:-1]
    starts[tokens[first]] = frames[first] * FRAME_S
    return starts


def _cut_points(wave: np.ndarray, rate: int) -> list[int]:
    """Where to cut a waveform longer than one window: the quietest 20 ms near the end of each window."""
    window, search, frame = int(WINDOW_S * rate), int(SEARCH_CUT_S * rate), int(FRAME_S * rate)
    cuts, start = [0], 0
    while len(wave) - start > window:
        lo = start + window - search
        region = wave[lo:start + window]
        usable = len(region) // frame * frame
        energy = np.square(region[:usable].astype(np.float64)).reshape(-1, frame).sum(axis=1)
        start = lo + int(np.argmin(energy)) * frame + frame // 2
        cuts.append(start)
    return cuts


class Recognizer:
    """Thread-safe Whisper transcription with word times; concurrent callers share batches.

    ``batch_window_s``: how long the model thread waits after the first window of a batch for more to join.
    ``tokens_per_second``: decoding stops after this many tokens per second of audio (plus 16), which bounds the
    cost of a hallucinating decode; speech needs about 4 (English) to 10 (Chinese).
    """

    def __init__(self, loaded: LoadedASR, *, batch_window_s: float = 0.005, max_batch_size: int = 16,
                 tokens_per_second: float = 15.0, metrics: ASRMetrics | None = None) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.loaded = loaded
        self.model = loaded.model
        self.processor = loaded.processor
        self.batch_window_s = max(0.0, batch_window_s)
        self.max_batch_size = max_batch_size
        self.tokens_per_second = tokens_per_second
        self.metrics = metrics
        self.batches = 0  # generate calls made (one per batch)
        self.windows = 0  # windows transcribed
        tokenizer = self.processor.tokenizer
        generation = self.model.generation_config
        self._eos = int(tokenizer.eos_token_id)
        self._sot = int(generation.decoder_start_token_id)
        self._transcribe = int(generation.task_to_id["transcribe"])
        self._no_timestamps = int(generation.no_timestamps_token_id)
        self._lang_ids = dict(generation.lang_to_id)
        self._code_of = {token_id: token.strip("<|>") for token, token_id in self._lang_ids.items()}
        self._max_target = int(self.model.config.max_target_positions)
        self._queue: queue.Queue[_Window | None] = queue.Queue()
        self._closed = threading.Event()
        self._close_lock = threading.Lock()  # a window is queued before the close sentinel or refused
        self._thread = threading.Thread(target=self._serve, name="asr-recognizer", daemon=True)
        self._thread.start()

    # -- callers' side -----------------------------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.loaded.sample_rate

    @property
    def word_timestamps(self) -> bool:
        return self.loaded.word_timestamps

    def transcribe(self, wave: np.ndarray, language: str | None = None, *, sample_rate: int = SOURCE_RATE,
                   timeout: float | None = None) -> Transcript:
        """What is said in ``wave`` (mono float, ``sample_rate`` Hz, 24 kHz by default), with word times.

        ``language``: a Whisper code or name; ``None`` detects it. Word times are seconds from the start of
        ``wave``, never decreasing and within its duration. Blocks until the batch holding it is done; raises
        ``TimeoutError`` after ``timeout`` seconds, :class:`RecognizerClosed` after :meth:`close`.
        """
        code = language_code(language)
        if code is not None and f"<|{code}|>" not in self._lang_ids:
            raise ValueError(f"the ASR model does not know language {code!r}")
        samples = np.asarray(wave, dtype=np.float32).reshape(-1)
        duration = len(samples) / sample_rate
        if len(samples) == 0:
            return Transcript("", (), code, 0.0, self.word_timestamps)
        windows = self._windows(samples, sample_rate, code)
        for window in windows:
            self._submit(window)
        deadline = None if timeout is None else time.monotonic() + timeout
        heard: list[_Heard] = []
        for window in windows:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            heard.append(window.future.result(timeout=remaining))
        return self._join(heard, windows, duration)

    def warm_up(self) -> float:
        """Transcribe one second of quiet once (first-call costs are paid before requests); returns seconds."""
        start = time.perf_counter()
        self.transcribe(np.zeros(SOURCE_RATE, dtype=np.float32), "en")
        return time.perf_counter() - start

    def close(self) -> None:
        """Stop the model thread after the work already queued; later calls raise :class:`RecognizerClosed`."""
        with self._close_lock:
            if not self._closed.is_set():
                self._closed.set()
                self._queue.put(None)
        self._thread.join(timeout=60)

    def __enter__(self) -> Recognizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _submit(self, window: _Window) -> None:
        with self._close_lock:
            if self._closed.is_set():
                raise RecognizerClosed("the recognizer is closed")
            self._queue.put(window)

    def _windows(self, samples: np.ndarray, sample_rate: int, code: str | None) -> list[_Window]:
        rate = self.sample_rate
        if sample_rate != rate:
            import torchaudio.functional as AF

            samples = AF.resample(torch.from_numpy(samples), sample_rate, rate).numpy()
        cuts = _cut_points(samples, rate)
        pieces = [samples[a:b] for a, b in zip(cuts, [*cuts[1:], len(samples)])]
        features = self.processor.feature_extractor(pieces, sampling_rate=rate, return_attention_mask=True,
                                                    return_tensors="pt")
        frames = features["attention_mask"].sum(dim=-1).tolist()
        return [_Window(features["input_features"][k], int(frames[k]), len(piece) / rate, code)
                for k, piece in enumerate(pieces)]

    def _join(self, heard: list[_Heard], windows: list[_Window], duration: float) -> Transcript:
        language = heard[0].language
        glue = "" if language in NO_SPACE_LANGUAGES else " "
        text = glue.join(h.text for h in heard if h.text)
        words: list[Word] = []
        offset = 0.0
        for h, window in zip(heard, windows):
            words.extend(w.shifted(offset) for w in h.words)
            offset += window.duration
        clamped, last = [], 0.0
        for w in words:  # windows are cut at sample boundaries: keep times ordered and inside the audio
            start = min(max(w.start, last), duration)
            end = min(max(w.end, start), duration)
            clamped.append(Word(w.word, start, end))
            last = end
        return Transcript(text, tuple(clamped), language, duration, self.word_timestamps)

    # -- the model thread --------------------------------------------------------------------------------------

    def _serve(self) -> None:
        closing = False
        while not closing:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + self.batch_window_s
            while len(batch) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    more = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                batch.append(more)
            self._run(batch)
        while True:  # anything queued behind the close is refused, not left waiting
            try:
                left = self._queue.get_nowait()
            except queue.Empty:
                break
            if left is not None:
                left.future.set_exception(RecognizerClosed("the recognizer is closed"))

    def _run(self, batch: list[_Window]) -> None:
        start = time.perf_counter()
        try:
            heard = self._decode(batch)
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch learns why
            log.exception("ASR batch of %d failed", len(batch))
            for window in batch:
                window.future.set_exception(exc)
            return
        seconds = time.perf_counter() - start
        self.batches += 1
        self.windows += len(batch)
        if self.metrics is not None:
            self.metrics.observe_batch(len(batch), seconds, sum(w.duration for w in batch))
        for window, result in zip(batch, heard):
            window.future.set_result(result)

    @torch.inference_mode()
    def _decode(self, batch: list[_Window]) -> list[_Heard]:
        from transformers.modeling_outputs import BaseModelOutput

        model, device, dtype = self.model, self.loaded.device, self.loaded.dtype
        features = torch.stack([w.features for w in batch]).to(device=device, dtype=dtype)
        encoded = model.get_encoder()(features)
        languages = [w.language for w in batch]
        unknown = [k for k, code in enumerate(languages) if code is None]
        if unknown:
            subset = BaseModelOutput(last_hidden_state=encoded.last_hidden_state[unknown])
            for k, token_id in zip(unknown, model.detect_language(encoder_outputs=subset).tolist()):
                languages[k] = self._code_of[int(token_id)]
        prefix = [[self._sot, self._lang_ids[f"<|{code}|>"], self._transcribe, self._no_timestamps]
                  for code in languages]
        budget = self._max_target - len(prefix[0]) - 1
        limits = [min(budget, int(math.ceil(w.duration * self.tokens_per_second)) + 16) for w in batch]
        # Whisper's generate counts max_length from after its start tokens (it adds them itself), so this is the
        # number of new tokens; max_new_tokens would do the same but makes transformers warn on every call.
        generated = model.generate(encoder_outputs=encoded, language=languages, task="transcribe",
                                   max_length=max(limits), return_timestamps=False)
        sequences = generated["sequences"] if isinstance(generated, dict) else generated
        texts: list[list[int]] = []
        for row, limit in zip(sequences.tolist(), limits):
            tokens = []
            for token in row[:limit]:  # each row keeps its own budget: a batch hears what each would alone
                if token == self._eos:
                    break
                if token < self._eos:  # text, not a special or timestamp token
                    tokens.append(token)
            texts.append(tokens)
        starts = self._align(encoded, prefix, texts, batch) if self.word_timestamps else [None] * len(batch)
        tokenizer = self.processor.tokenizer
        return [_Heard(tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                       self._words(tokens, times, code, window.duration) if times is not None else (), code)
                for tokens, times, code, window in zip(texts, starts, languages, batch)]

    def _align(self, encoded, prefix: list[list[int]], texts: list[list[int]],
               batch: list[_Window]) -> list[np.ndarray | None]:
        """Start time of each text token and of the end token, per row (see the module docstring)."""
        from transformers.modeling_outputs import BaseModelOutput

        model = self.model
        heads = [(int(layer), int(head)) for layer, head in model.generation_config.alignment_heads]
        width = int(getattr(model.config, "median_filter_width", 7))
        starts: list[np.ndarray | None] = [None] * len(batch)
        previous = model.config._attn_implementation
        model.set_attn_implementation("eager")  # only eager attention returns its weights; this thread owns the model
        try:
            # a few rows at a time: every layer's attention over 1500 frames is returned, not just the heads used
            for lo in range(0, len(batch), ALIGN_ROWS):
                hi = min(lo + ALIGN_ROWS, len(batch))
                rows = [p + t + [self._eos] for p, t in zip(prefix[lo:hi], texts[lo:hi])]
                length = max(len(r) for r in rows)
                ids = torch.tensor([r + [self._eos] * (length - len(r)) for r in rows], device=self.loaded.device)
                part = BaseModelOutput(last_hidden_state=encoded.last_hidden_state[lo:hi])
                out = model(encoder_outputs=part, decoder_input_ids=ids, output_attentions=True, use_cache=False)
                weights = torch.stack([out.cross_attentions[layer][:, head] for layer, head in heads], dim=1)
                del out
                for k in range(lo, hi):
                    p, t = prefix[k], texts[k]
                    if t:
                        # the query at position len(p)-1+i predicts text token i; i = len(t) is the end token
                        frames = max(1, batch[k].frames // 2)
                        starts[k] = token_start_times(weights[k - lo, :, len(p) - 1:len(p) + len(t), :frames], width)
        finally:
            model.set_attn_implementation(previous)
        return starts

    def _words(self, tokens: list[int], starts: np.ndarray, code: str, duration: float) -> tuple[Word, ...]:
        """Tokens grouped into words, each timed from its first token's start to the next token's start."""
        tokenizer = self.processor.tokenizer
        units: list[tuple[str, int, int]] = []  # text, first token, last token (inclusive)
        pending: list[int] = []
        for index, token in enumerate(tokens):
            pending.append(token)
            text = tokenizer.decode(pending)
            if "\ufffd" not in text or len(pending) >= 4:  # a whole character (multi-byte ones span tokens)
                units.append((text, index - len(pending) + 1, index))
                pending = []
        if pending:
            units.append((tokenizer.decode(pending), len(tokens) - len(pending), len(tokens) - 1))
        groups: list[list[tuple[str, int, int]]] = []
        spaces: list[tuple[str, int, int]] = []  # whitespace tokens waiting for the word they open
        for unit in units:
            text = unit[0]
            if not text.strip():
                spaces.append(unit)
                continue
            punctuation = all(unicodedata.category(c)[0] == "P" for c in text.strip())
            # a space opens a word; so does every character of a language written without spaces, except that
            # punctuation right after a word stays with it
            if not groups or spaces or text[:1].isspace() or (code in NO_SPACE_LANGUAGES and not punctuation):
                groups.append([*spaces, unit])
            else:
                groups[-1].extend([*spaces, unit])
            spaces = []
        words = []
        for group in groups:
            text = "".join(u[0] for u in group).strip()
            if not text:
                continue
            start = float(starts[group[0][1]])
            end = float(starts[group[-1][2] + 1])
            start = min(max(start, 0.0), duration)
            words.append(Word(text, start, min(max(end, start), duration)))
        return tuple(words)
