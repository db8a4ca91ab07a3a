"""Frame selection for every row at once, on the model's device: the delay pattern, temperature / top-k / top-p,
counter-based random draws, repetition-aware sampling.

The settings and state of every slot of the batch live in tensors (:class:`SlotState`), so one step's choice is
a fixed set of tensor operations whatever the batch holds: no per-row Python, no copy of the logits to the host,
and nothing whose shape depends on the values (which is what lets the fast path capture the step as a CUDA graph).

Randomness is counter-based: the uniform number behind a draw is a hash of (the request's seed, its step, the
codebook, the token), never the state of a shared generator. A request's frames therefore do not depend on its
neighbours, on the batch size or on the order of draws, and the same seed gives the same codes on the same device.

The order of the sampling operations is upstream's (transformers' warpers): temperature, then top-k, then top-p,
then a draw from the softmax of what is left (inverse CDF: one counter-based uniform number per codebook). With temperature 0 the choice
is the argmax, equal to ``HiggsAudioV2ForConditionalGeneration.generate`` (same processors, same order).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NEG_INF = float("-inf")
#: Longest repetition-aware window a request may ask for (the request schema's limit).
RAS_MAX_WINDOW = 64
#: Candidate counts for top-k / top-p: a step sorts only the best ``c`` tokens of each codebook, where ``c`` is
#: the smallest of these that holds every row's top-k (the whole vocabulary when a row has top-p without top-k).
CANDIDATE_BUCKETS = (64, 128, 256, 512)

_M32 = 0xFFFFFFFF
_MIX = 0x45D9F3B  # < 2**31: a 32-bit value times it fits in a signed 64-bit integer
_SALT_DRAW = 0x3C6EF372
_SALT_RAS = 0x1B873593


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


@dataclass(frozen=True)
class RowSettings:
    """How one request samples (host side; copied into its slot)."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    ras_win_len: int = 0
    ras_max_repeat: int = 2
    seed: int = 0


@dataclass
class Slots:
    """A batch's sampling tensors: the first ``n`` slots of a :class:`SlotState`, or a step's new values."""

    temperature: torch.Tensor  # (n,) float32; 0 is greedy
    top_k: torch.Tensor  # (n,) int64, in 1..V (V: off)
    top_p: torch.Tensor  # (n,) float32, in (0, 1]
    seed: torch.Tensor  # (n, 2) int64: the seed's low and high 32 bits
    ras_win: torch.Tensor  # (n,) int64, 0 is off
    ras_max: torch.Tensor  # (n,) int64
    step: torch.Tensor  # (n,) int64: frames chosen so far
    bos: torch.Tensor  # (n, K) int64 delay-pattern counters
    eos: torch.Tensor  # (n, K) int64
    last_delay: torch.Tensor  # (n,) bool: a stream EOS was chosen (the text side emitted its delay token)
    history: torch.Tensor  # (n, W, K) int64: the last W frames, newest last
    seen: torch.Tensor  # (n,) int64: how many of those W are real frames


_STATE = ("step", "bos", "eos", "last_delay", "history", "seen")


class SlotState:
    """Sampling settings and state of every slot, on one device. Slot ``i`` belongs to the batch's row ``i``."""

    def __init__(self, slots: int, num_codebooks: int, codebook_size: int, device: torch.device | str = "cpu",
                 window: int = RAS_MAX_WINDOW) -> None:
        k, self.vocab, self.window = num_codebooks, codebook_size, window
        z = dict(device=device)
        self.all = Slots(temperature=torch.zeros(slots, **z), top_k=torch.full((slots,), codebook_size, **z),
                         top_p=torch.ones(slots, **z), seed=torch.zeros((slots, 2), dtype=torch.long, **z),
                         ras_win=torch.zeros(slots, dtype=torch.long, **z),
                         ras_max=torch.ones(slots, dtype=torch.long, **z), step=torch.zeros(slots, dtype=torch.long, **z),
                         bos=torch.full((slots, k), -1, **z), eos=torch.full((slots, k), 1 << 30, **z),
                         last_delay=torch.zeros(slots, dtype=torch.bool, **z),
                         history=torch.full((slots, window, k), -1, **z),
                         seen=torch.zeros(slots, dtype=torch.long, **z))
        self.settings: list[RowSettings | None] = [None] * slots  # host copies, to pick a step's candidate count
        self._candidates: dict[int, int | None] = {}  # candidates(n), kept until a slot's settings change

    def assign(self, slot: int, settings: RowSettings, delay: DelayState,
               history: torch.Tensor | None = None) -> None:
        """Give ``slot`` to a new request; ``history`` holds its prompt's last audio frames ``(h, K)``, if any."""
        s, v = self.all, self.vocab
        s.temperature[slot] = max(float(settings.temperature), 0.0)
        s.top_k[slot] = settings.top_k if 0 < settings.top_k < v else v
        s.top_p[slot] = float(settings.top_p)
        s.seed[slot, 0] = settings.seed & _M32
        s.seed[slot, 1] = (settings.seed >> 32) & _M32
        s.ras_win[slot] = min(max(settings.ras_win_len, 0), self.window)
        s.ras_max[slot] = settings.ras_max_repeat
        s.step[slot] = 0
        s.bos[slot] = delay.bos
        s.eos[slot] = delay.eos
        s.last_delay[slot] = False
        s.history[slot] = -1
        count = 0
        if history is not None and history.shape[0] and settings.ras_win_len > 0:
            recent = history[-self.window:]
            count = recent.shape[0]
            s.history[slot, self.window - count:] = recent.to(s.history.device, torch.long)
        s.seen[slot] = count
        self.settings[slot] = settings
        self._candidates.clear()

    def move(self, src: int, dst: int) -> None:
        """Slot ``src``'s request now lives in slot ``dst`` (the batch closes a hole)."""
        for name in Slots.__dataclass_fields__:
            t = getattr(self.all, name)
            t[dst] = t[src]
        self.settings[dst] = self.settings[src]
        self.settings[src] = None
        self._candidates.clear()

    def view(self, start: int, stop: int) -> Slots:
        """Slots ``start:stop`` (views: writes go to the state)."""
        return Slots(**{name: getattr(self.all, name)[start:stop] for name in Slots.__dataclass_fields__})

    def commit(self, start: int, stop: int, new: Slots) -> None:
        """Store a step's new state (its first ``stop - start`` rows) for slots ``start:stop``."""
        for name in _STATE:
            getattr(self.all, name)[start:stop].copy_(getattr(new, name)[: stop - start])

    def candidates(self, n: int) -> int | None:
        """How many best tokens per codebook this step must rank for its first ``n`` rows (``None``: none).

        Asked every decode step; worked out again only after a slot's settings changed."""
        if n not in self._candidates:
            self._candidates[n] = self.candidates_of(self.settings[:n])
        return self._candidates[n]

    def candidates_of(self, rows: list[RowSettings | None]) -> int | None:
        """How many best tokens per codebook a step must rank for these rows (``None``: no row ranks)."""
        ranks, need = False, 0
        for settings in rows:
            if settings is None or settings.temperature <= 0:
                continue
            top_k = settings.top_k if 0 < settings.top_k < self.vocab else self.vocab
            ranks = ranks or top_k < self.vocab or settings.top_p < 1.0
            need = max(need, top_k)  # a sampling row without top-k needs every token among the candidates
        if not ranks:
            return None
        return next((c for c in CANDIDATE_BUCKETS if need <= c < self.vocab), self.vocab)


# -- counter-based uniform numbers ------------------------------------------------------------------------------
def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with full avalanche, on int64 tensors holding values in [0, 2**32)."""
    x = ((x >> 16) ^ x) * _MIX & _M32
    x = ((x >> 16) ^ x) * _MIX & _M32
    return (x >> 16) ^ x


def counter_uniform(seed: torch.Tensor, step: torch.Tensor, cells: torch.Tensor, salt: int) -> torch.Tensor:
    """Uniform numbers in (0, 1), one per cell: a hash of (seed, step, cell, salt), independent of anything else.

    ``seed`` ``(n, 2)`` (low and high 32 bits), ``step`` ``(n,)``, ``cells`` int64 ids of two dimensions (the
    same for every row, e.g. ``(K, 1)``: one number per codebook) or three (``(n, ., .)``, per row); the result
    is ``(n, ., .)``. 23 random bits each, centred in their interval.
    """
    row = _mix32(seed[:, 0] ^ _mix32(seed[:, 1] ^ salt))
    row = _mix32(row ^ (step & _M32))
    return _unit(_mix32(row[:, None, None] ^ _mix32(cells)))


def _unit(bits: torch.Tensor) -> torch.Tensor:
    """32 random bits to a float32 in (0, 1): the top 23 bits, centred in their interval (exact in float32, so
    never 0 and never 1)."""
    return ((bits >> 9).to(torch.float32) + 0.5) * (1.0 / (1 << 23))


def _draw(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draws: ``probs`` ``(n, k, c)`` (unnormalised, zeros allowed), ``u`` ``(n, k, 1)`` in (0, 1) ->
    the index ``(n, k)`` whose cumulative share first passes ``u``. A token of zero probability is never drawn."""
    cdf = probs.cumsum(dim=-1)
    index = torch.searchsorted(cdf, u * cdf[..., -1:], right=True)
    return index.clamp_(max=probs.shape[-1] - 1).squeeze(-1)


# -- the step ---------------------------------------------------------------------------------------------------
def choose_frames(logits: torch.Tensor, s: Slots, stream_bos: int, stream_eos: int, candidates: int | None,
                  branch_free: bool = True) -> tuple[torch.Tensor, Slots]:
    """The next frame of every row, ``logits`` ``(n, K * V)`` -> frames ``(n, K)``, and the rows' new state.

    Pure: ``s`` is read, never written (the caller commits the returned state), so a captured graph can be warmed
    up and replayed. ``candidates``: how many best tokens per codebook top-k and top-p rank (at least every
    sampling row's top-k; the vocabulary for top-p without top-k); ``None`` when no row uses either.
    ``branch_free=False`` lets the host skip the repetition redraw when no row needs it (worth it on the CPU,
    where reading a value costs nothing; on a GPU it would cost a sync, and a captured graph cannot branch).
    """
    n, k = s.bos.shape
    v = logits.shape[-1] // k
    raw = logits.reshape(n, k, v).float()
    vocab = torch.arange(v, device=logits.device)
    # the delay pattern: the stream BOS is forced at the start, the stream EOS after the first EOS
    forced = s.bos >= 0
    bos = s.bos - forced.long()
    eos = s.eos - s.last_delay.long()[:, None]
    scores = raw.masked_fill(forced[..., None] & (vocab != stream_bos), NEG_INF)
    scores = scores.masked_fill((eos <= 0)[..., None] & (vocab != stream_eos), NEG_INF)
    greedy = torch.argmax(scores, dim=-1)
    codebooks = torch.arange(k, device=logits.device)[:, None]  # (k, 1): one uniform number per codebook

    sampled = s.temperature > 0
    frames = greedy
    if branch_free or bool(sampled.any()):
        scaled = scores / torch.where(sampled, s.temperature, 1.0)[:, None, None]
        u = counter_uniform(s.seed, s.step, codebooks, _SALT_DRAW)
        if candidates is None:  # no row ranks: a draw from the softmax of the whole vocabulary
            drawn = _draw(scaled.softmax(dim=-1), u)
        else:
            values, tokens = torch.topk(scaled, candidates, dim=-1)  # (n, k, c), best first
            # top-k: keep what scores at least the k-th best (ties with it too, as transformers does)
            kth = values.gather(-1, (s.top_k.clamp(max=candidates) - 1)[:, None, None].expand(n, k, 1))
            keep = values >= kth
            # top-p on what top-k left, exactly as transformers: cumulative shares from the least likely up, and a
            # token goes when its cumulative share is at most 1 - top_p; the best token always stays
            shares = values.masked_fill(~keep, NEG_INF).softmax(dim=-1)
            rising = shares.flip(-1).cumsum(dim=-1).flip(-1)
            drop = (rising <= (1 - s.top_p)[:, None, None]) & (s.top_p < 1.0)[:, None, None]
            drop[..., 0] = False
            drawn = tokens.gather(-1, _draw(shares.masked_fill(drop, 0.0), u)[..., None]).squeeze(-1)
        frames = torch.where(sampled[:, None], drawn, greedy)

    # repetition-aware sampling: a codebook whose token already fills ras_max of the row's last ras_win frames
    # (stream BOS and EOS never count) is drawn again from the softmax of the raw logits
    w = s.history.shape[1]
    window = torch.minimum(s.ras_win, s.seen)
    in_window = torch.arange(w, device=logits.device)[None, :] >= (w - window)[:, None]  # (n, w)
    hist = s.history
    same = (hist == frames[:, None, :]) & (hist != stream_bos) & (hist != stream_eos) & in_window[..., None]
    redo = (s.ras_win > 0)[:, None] & (same.sum(dim=1) >= s.ras_max[:, None])
    if branch_free:
        redrawn = _draw(raw.softmax(dim=-1), counter_uniform(s.seed, s.step, codebooks, _SALT_RAS))
        frames = torch.where(redo, redrawn, frames)
    elif bool(redo.any()):  # the host may look: redraw only the rows that need it
        again = redo.any(dim=-1).nonzero().squeeze(-1)
        redrawn = _draw(raw[again].softmax(dim=-1), counter_uniform(s.seed[again], s.step[again], codebooks, _SALT_RAS))
        frames = frames.clone()
        frames[again] = torch.where(redo[again], redrawn, frames[again])

    new = Slots(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, seed=s.seed, ras_win=s.ras_win,
                ras_max=s.ras_max, step=s.step + 1, bos=bos, eos=eos,
                last_delay=s.last_delay | (frames == stream_eos).any(dim=-1),
                history=torch.cat([hist[:, 1:], frames[:, None, :]], dim=1),
                seen=torch.clamp(s.seen + 1, max=w))
    return frames, new
