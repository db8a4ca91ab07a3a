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


@dataclass
class RowSampler:
    """The sampling settings and state of one request."""

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


def choose_frames(rows: list[RowSampler], logits: torch.Tensor, last_delay: list[bool]) -> torch.Tensor:
    """The next frame of every row at once: ``logits`` ``(rows, codebooks * vocab)`` -> ``(rows, codebooks)``.

    Vectorised over rows (one set of tensor ops per step, whatever the batch), but every row uses only its own
    settings, counters and generator, so a row's frame does not depend on the others.
    """
    first = rows[0]
    n, k, v = len(rows), first.num_codebooks, first.codebook_size
    raw = logits.view(n, k, v)
    scores = raw.clone()
    vocab = torch.arange(v)
    # the delay pattern (forced stream BOS at the start, forced EOS after the first EOS)
    bos = torch.stack([r.delay.bos for r in rows])
    forced = bos >= 0
    scores.masked_fill_(forced[..., None] & (vocab != first.stream_bos), NEG_INF)
    bos = bos - forced.long()
    eos = torch.stack([r.delay.eos for r in rows]) - torch.tensor(last_delay, dtype=torch.long)[:, None]
    scores.masked_fill_((eos <= 0)[..., None] & (vocab != first.stream_eos), NEG_INF)
    for i, r in enumerate(rows):
        r.delay.bos, r.delay.eos = bos[i], eos[i]

    frames = torch.argmax(scores, dim=-1)  # greedy rows keep this
    sampled = [i for i, r in enumerate(rows) if r.temperature > 0]
    if sampled:
        index = torch.tensor(sampled)
        sub = scores[index] / torch.tensor([rows[i].temperature for i in sampled])[:, None, None]
        top_ks = [rows[i].top_k if 0 < rows[i].top_k < v else v for i in sampled]
        if min(top_ks) < v:
            kth = torch.topk(sub, max(top_ks), dim=-1).values  # (m, k, max_k), descending
            threshold = kth.gather(-1, (torch.tensor(top_ks) - 1)[:, None, None].expand(-1, k, 1))
            sub = sub.masked_fill(sub < threshold, NEG_INF)
        top_ps = torch.tensor([rows[i].top_p for i in sampled])
        if bool((top_ps < 1.0).any()):
            sorted_logits, sorted_idx = torch.sort(sub, descending=False, dim=-1)
            cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
            remove_sorted = cumulative <= (1 - top_ps)[:, None, None]
            remove_sorted[..., -1:] = False
            remove_sorted &= (top_ps < 1.0)[:, None, None]
            sub = sub.masked_fill(remove_sorted.scatter(-1, sorted_idx, remove_sorted), NEG_INF)
        noise = torch.stack([torch.rand((k, v), generator=rows[i].generator) for i in sampled])
        gumbel = -torch.log(-torch.log(noise.clamp_(1e-20, 1.0)))
        frames[index] = torch.argmax(sub + gumbel, dim=-1)

    for i, r in enumerate(rows):  # repetition-aware sampling, on the row's own recent frames
        frame = frames[i]
        if r.ras_win_len > 0 and r.history:
            window = torch.stack(r.history[-r.ras_win_len:])
            repeats = ((window == frame) & (window != r.stream_bos) & (window != r.stream_eos)).sum(0)
            redo = repeats >= r.ras_max_repeat
            if bool(redo.any()):
                probs = raw[i][redo].softmax(dim=-1)
                frame[redo] = torch.multinomial(probs, 1, generator=r.generator).view(-1)
        r.history.append(frame.clone())
        if len(r.history) > max(r.ras_win_len, 1):
            del r.history[0]
    return frames
