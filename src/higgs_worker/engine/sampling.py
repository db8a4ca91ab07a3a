"""Per-row frame selection: the delay pattern, temperature / top-k / top-p, seeded draws, repetition-aware sampling.

Everything here acts on one row (one request) with its own state and its own ``torch.Generator``, so a request's
frames do not depend on which other requests share its batch. With greedy decoding the choices equal those of
``HiggsAudioV2ForConditionalGeneration.generate`` (same processors, same order).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

NEG_INF = float("-inf")


@dataclass
class DelayState:
    """The delay-pattern counters of one row (``HiggsAudioV2DelayPatternLogitsProcessor``, per row)."""

    bos: torch.Tensor  # codebook k is forced to the stream BOS while bos[k] >= 0
    eos: torch.Tensor  # ... and to the stream EOS once eos[k] <= 0

    @classmethod
    def from_prompt(cls, prompt_ids: list[int], num_codebooks: int, audio_bos_id: int, delay_id: int) -> DelayState:
        pattern = torch.arange(1, num_codebooks + 1)
        tail = prompt_ids[-num_codebooks:]
        bos = torch.zeros(num_codebooks, dtype=torch.long)
        if audio_bos_id in tail:
            bos = pattern - (num_codebooks - tail.index(audio_bos_id))
        eos = pattern.clone()
        if delay_id in tail:
            eos = pattern - (num_codebooks - tail.index(delay_id))
        return cls(bos=bos, eos=eos)

    def apply(self, scores: torch.Tensor, last_text_is_delay: bool, stream_bos: int, stream_eos: int) -> None:
        """Mask ``scores`` ``(codebooks, vocab)`` in place and advance the counters by one step."""
        forced_bos = self.bos >= 0
        if forced_bos.any():
            keep = scores[forced_bos, stream_bos].clone()
            scores[forced_bos] = NEG_INF
            scores[forced_bos, stream_bos] = keep
        self.bos[forced_bos] -= 1
        if last_text_is_delay:
            self.eos -= 1
        forced_eos = self.eos <= 0
        if forced_eos.any():
            keep = scores[forced_eos, stream_eos].clone()
            scores[forced_eos] = NEG_INF
            scores[forced_eos, stream_eos] = keep


def warp(scores: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, then top-k, then top-p, per codebook row, as transformers' warpers do."""
    scores = scores / temperature
    if top_k and top_k < scores.shape[-1]:
        threshold = torch.topk(scores, top_k, dim=-1).values[..., -1, None]
        scores = scores.masked_fill(scores < threshold, NEG_INF)
    if top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(scores, descending=False, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - top_p)
        remove_sorted[..., -1:] = False
        remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
        scores = scores.masked_fill(remove, NEG_INF)
    return scores


def draw(scores: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One sample per row of ``scores`` from softmax(scores), using only ``generator`` (Gumbel-max)."""
    uniform = torch.rand(scores.shape, generator=generator, dtype=torch.float32, device=scores.device)
    gumbel = -torch.log(-torch.log(uniform.clamp_(1e-20, 1.0)))
    return torch.argmax(scores + gumbel, dim=-1)


@dataclass
class RowSampler:
    """Chooses one frame per step for one request."""

    num_codebooks: int
    codebook_size: int
    temperature: float
    top_k: int
    top_p: float
    ras_win_len: int
    ras_max_repeat: int
    generator: torch.Generator
    delay: DelayState
    stream_bos: int
    stream_eos: int
    history: list[torch.Tensor] = field(default_factory=list)  # recent frames (prompt audio, then generated)

    def choose(self, logits: torch.Tensor, last_text_is_delay: bool) -> torch.Tensor:
        """``logits`` ``(codebooks * vocab,)`` float32 -> the next frame ``(codebooks,)``."""
        raw = logits.view(self.num_codebooks, self.codebook_size)
        scores = raw.clone()
        self.delay.apply(scores, last_text_is_delay, self.stream_bos, self.stream_eos)
        if self.temperature > 0:
            frame = draw(warp(scores, self.temperature, self.top_k, self.top_p), self.generator)
        else:
            frame = torch.argmax(scores, dim=-1)
        if self.ras_win_len > 0 and self.history:
            window = torch.stack(self.history[-self.ras_win_len:])  # (w, codebooks)
            repeats = ((window == frame) & (window != self.stream_bos) & (window != self.stream_eos)).sum(0)
            redo = repeats >= self.ras_max_repeat
            if redo.any():
                probs = raw[redo].softmax(dim=-1)
                frame[redo] = torch.multinomial(probs, 1, generator=self.generator).view(-1)
        self.history.append(frame)
        if len(self.history) > max(self.ras_win_len, 1):
            del self.history[0]
        return frame
