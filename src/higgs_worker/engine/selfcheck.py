"""The decode-path self-check: the fast (fixed-shape, graph-captured) step against the eager step on the loaded model.

``DECODE_PATH=auto`` serves on the fast path only where this check has passed on the model and device at hand,
once, after loading and before the first job; otherwise on the eager path, saying why (:func:`choose_decode_path`).

**What it runs.** A few prompts are prefilled once (the same keys and values for both paths, as in serving, where
prefill is shared). Then each path decodes the same forced code frames, teacher-forced: step t's input is frame t of
a fixed, seeded sequence, never what either path chose, so a near-tie that one path breaks the other way cannot make
their inputs part, and every step compares the two paths' logits on identical inputs. The eager side is the
scheduler's own eager step (:func:`.scheduler.eager_logits`: each batch's own shapes, exactly the keys it needs); the
fast side is :meth:`.static_step.StaticStep.logits` (:func:`.static_step.decode_logits` padded to a batch bucket and a
power-of-two span, with a mask, replayed from a CUDA graph on a GPU and run on those fixed shapes elsewhere). It runs
at batch 1 and at a larger batch that does not fill its bucket (6 rows in the bucket of 8, by default: padding
rows, a mask over staggered prompt lengths, every row at its own position), for ``frames`` steps each.

**What it compares.** For each row and step: ``rel``, the root-mean-square of the difference of the two paths'
logits over the root-mean-square of the eager logits centred per codebook (the spread that sampling sees; a shift
common to a codebook's logits changes nothing), and the largest absolute difference of one logit (reported: the
figure to look at when the check fails). The check passes when the largest ``rel`` of all rows and steps is within
the tolerance of the model's dtype. The share of (row, step, codebook) whose best token agrees is reported too.

**The tolerance.** The two paths compute the same function with different shapes, so correct paths differ only by
the order of floating-point operations: a matrix product or an attention kernel chosen for 8 padded rows and a span
of 256 sums in another order, or in another kernel, than one for 6 rows and a span of 91. Products and sums are
accumulated in float32, so what reaches the next operation differs by at most the rounding of its output to the
dtype: half a unit in the last place, a relative ``u`` = 2^-8 for bfloat16, 2^-11 for float16 (and for float32
products where TF32 is allowed), 2^-24 for float32. A decoder layer rounds its results about five times
(attention, its output projection, the MLP, the two residual additions), each rounding independent between the
paths and entering the residual stream, whose scale each layer's normalisation passes on. Independent errors of at
most ``u`` add in quadrature, so after ``L`` layers the hidden state, and the audio head's logits, which are linear
in it, differ by at most about ``u * sqrt(5 L)`` relative (``u / sqrt(3)`` per rounding on average: 0.58 of that):

    tolerance = u * sqrt(5 L)      bfloat16, 28 layers (Higgs Audio V2): 0.046; float16: 0.0058;
                                   float32: 3.3e-6, raised to a floor of 1e-5

(the floor: a float32 product of 3072 terms summed in another order differs by up to ``sqrt(3072) * 2^-24 =
3.3e-6`` relative on its own). Measured on the CPU with random weights (``tests/engine/test_selfcheck.py`` and the
run behind this text): correct paths differ by ``rel`` 3e-7 in float32 and 0.003 (2 layers) to 0.010 (28 layers) in
bfloat16, well within; a fast step whose mask hides the row's newest key gives 0.033 at 2 layers in bfloat16
(caught by 0.012), one layer's output projection doubled on one path 0.10 (caught), and every injected
difference is caught in float32. What a bfloat16 check cannot see is a difference below bfloat16's own rounding of
28 layers: a random model's layers change its residual stream so little that at 28 layers a rotary position off
by one moves its logits by 0.010 and a zeroed output projection by 0.05, about the tolerance (both caught in
float32). A trained model's attention carries far more, so a wrong position, mask, span or cache row, or a graph
replaying stale memory, moves its logits by a large share of their spread. The
figures of every run are kept (:attr:`DecodeChoice.check`) and shown on ``/health`` and by ``higgs-worker check``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from .prefill import PiecewisePrefill
from .sampling import SlotState
from .scheduler import SlotCache, eager_logits
from .static_step import StaticStep, bucket_for

log = logging.getLogger(__name__)

#: Texts of the prompts the engine checks with (staggered lengths); any prompts will do.
CHECK_TEXTS = ("Hello.", "The weather is clear today.", "Please read the numbers one, two and three slowly.",
               "A short sentence.", "This one is a little longer than the others, with a comma and a pause.",
               "Good night, and see you tomorrow morning at nine.", "Yes.", "Quiet rooms make clean recordings.")
FRAMES = 32
BATCHES = (1, 6)
ROUNDINGS_PER_LAYER = 5
_UNIT_ROUNDOFF = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11, torch.float32: 2.0 ** -24}


def unit_roundoff(dtype: torch.dtype, device: torch.device | None = None) -> float:
    """Half a unit in the last place, relative: the largest relative rounding error of one result in ``dtype``
    (float32 products on a GPU that allows TF32 round to TF32's 10-bit mantissa, as float16 does)."""
    if dtype == torch.float32 and device is not None and device.type == "cuda" and _tf32_matmuls():
        return 2.0 ** -11
    return _UNIT_ROUNDOFF.get(dtype, 2.0 ** -8)


def _tf32_matmuls() -> bool:
    """Whether float32 matrix products on CUDA may round to TF32. torch >= 2.9 says so in ``fp32_precision``; its
    legacy flags raise once the new setting has been used, so they are read only where the new one is absent."""
    precision = getattr(torch.backends.cuda.matmul, "fp32_precision", None)
    if precision is not None and precision != "none":
        return precision == "tf32"
    try:
        return torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    except RuntimeError:  # both APIs used: assume the coarser rounding (a wider tolerance, never a false alarm)
        return True


def tolerance_for(dtype: torch.dtype, layers: int, device: torch.device | None = None) -> float:
    """The largest ``rel`` (see the module docstring) two correct paths may differ by: ``u sqrt(5 L)``, at least
    1e-5."""
    return max(unit_roundoff(dtype, device) * math.sqrt(ROUNDINGS_PER_LAYER * layers), 1e-5)


@dataclass
class BatchFigures:
    """The comparison at one batch size."""

    rows: int
    bucket: int
    frames: int
    max_rel: float  # largest relative difference of one row's logits at one step
    mean_rel: float
    max_abs: float  # largest absolute difference of one logit
    worst_row: int
    worst_step: int
    top1_agreement: float  # share of (row, step, codebook) whose best token is the same on both paths


@dataclass
class SelfCheck:
    """What the self-check found."""

    passed: bool
    dtype: str
    device: str
    graphs: bool
    tolerance: float
    frames: int
    seconds: float
    batches: list[BatchFigures] = field(default_factory=list)

    @property
    def max_rel(self) -> float:
        return max((b.max_rel for b in self.batches), default=0.0)

    @property
    def max_abs(self) -> float:
        return max((b.max_abs for b in self.batches), default=0.0)

    def as_dict(self) -> dict:
        """The figures, for JSON (4 significant digits; a figure that is not finite, from a NaN or an overflow on
        one path, is null)."""
        out = asdict(self)
        out.update(max_rel=self.max_rel, max_abs=self.max_abs)
        for key in ("tolerance", "seconds", "max_rel", "max_abs"):
            out[key] = _figure(out[key])
        for batch in out["batches"]:
            for key in ("max_rel", "mean_rel", "max_abs", "top1_agreement"):
                batch[key] = _figure(batch[key])
        return out

    def summary(self) -> str:
        """One line: the verdict and the figures."""
        per_batch = "; ".join(f"{b.rows} row{'s' if b.rows > 1 else ''} (bucket {b.bucket}): largest relative "
                              f"difference {b.max_rel:.3g} (row {b.worst_row}, step {b.worst_step}), largest logit "
                              f"difference {b.max_abs:.3g}, best tokens agree {b.top1_agreement:.1%}"
                              for b in self.batches)
        verdict = "within" if self.passed else "OVER"
        return (f"{'passed' if self.passed else 'FAILED'}: {self.dtype} on {self.device}"
                f"{' (CUDA graphs)' if self.graphs else ''}, {self.frames} teacher-forced frames, {per_batch}; "
                f"{verdict} the tolerance {self.tolerance:.3g}; {self.seconds:.2f} s")


def _figure(value: float) -> float | None:
    return float(f"{value:.4g}") if math.isfinite(value) else None


def random_prompts(config, count: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``count`` prompts of random text tokens, 24 to 24 + 9 (count - 1) long, ending at the audio start."""
    generator = torch.Generator().manual_seed(seed)
    prompts = []
    for i in range(count):
        ids = torch.randint(0, min(config.vocab_size, 120000), (1, 24 + 9 * i), generator=generator)
        ids[0, -1] = config.audio_bos_token_id
        prompts.append({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    return prompts


def forced_frames(config, rows: int, frames: int, seed: int = 0) -> torch.Tensor:
    """The codes both paths are fed, ``(rows, frames, K)``: seeded, any code of each codebook but the stream
    markers."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.codebook_size - 2, (rows, frames, config.num_codebooks), generator=generator)


def _capacity(needed: int) -> int:
    capacity = 128
    while capacity < needed:
        capacity *= 2
    return capacity


@torch.inference_mode()
def _compare_batch(model, fast_model, prefills: list, forced: torch.Tensor, graphs: bool) -> BatchFigures:
    cfg = model.config
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    rows, frames = forced.shape[0], forced.shape[1]
    bucket = bucket_for(rows)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    lengths = [fill.tokens for fill in prefills[:rows]]
    capacity = _capacity(max(lengths) + frames + 1)

    def side(slots: int):
        cache = SlotCache(cfg.num_hidden_layers, slots, cfg.num_key_value_heads, head_dim, capacity, dtype, device)
        for i, fill in enumerate(prefills[:rows]):
            cache.load(i, fill.cache)
        positions = torch.zeros(slots, dtype=torch.long, device=device)
        positions[:rows] = torch.tensor(lengths, device=device)
        frames_in = torch.full((slots, cfg.num_codebooks), cfg.audio_stream_bos_id, dtype=torch.long, device=device)
        return cache, positions, frames_in

    eager_cache, eager_positions, eager_in = side(rows)
    fast_cache, fast_positions, fast_in = side(bucket)
    static = StaticStep(fast_model, fast_cache, SlotState(bucket, cfg.num_codebooks, cfg.codebook_size, device),
                        fast_in, fast_positions, graphs=graphs)
    forced = forced.to(device)
    k, v = cfg.num_codebooks, cfg.codebook_size
    rel, gap, agree = [], [], []
    for t in range(frames):
        eager_in[:rows] = forced[:, t]
        fast_in[:rows] = forced[:, t]
        want = eager_logits(model, eager_cache, eager_in, eager_positions, lengths).view(rows, k, v)
        got = static.logits(rows, lengths).view(rows, k, v)
        # on the device, with no sync: the next replay overwrites ``got`` only after these have read it
        diff = (got - want).flatten(1)
        spread = (want - want.mean(dim=-1, keepdim=True)).flatten(1).pow(2).mean(dim=1).sqrt()
        rel.append(diff.pow(2).mean(dim=1).sqrt() / spread.clamp_min(1e-30))
        gap.append(diff.abs().amax(dim=1))
        agree.append((got.argmax(dim=-1) == want.argmax(dim=-1)).float().mean(dim=1))
        eager_positions[:rows] += 1
        fast_positions[:rows] += 1
        lengths = [n + 1 for n in lengths]
    rel_t, gap_t, agree_t = (torch.stack(x).cpu() for x in (rel, gap, agree))  # (frames, rows); the one sync
    rel_t = torch.nan_to_num(rel_t, nan=math.inf)  # a NaN on one path is a failure, not a pass
    worst = int(rel_t.argmax())
    return BatchFigures(rows=rows, bucket=bucket, frames=frames, max_rel=float(rel_t.max()),
                        mean_rel=float(rel_t.mean()), max_abs=float(torch.nan_to_num(gap_t, nan=math.inf).max()),
                        worst_row=worst % rows, worst_step=worst // rows, top1_agreement=float(agree_t.mean()))


def run_selfcheck(model, prompts: list[dict[str, torch.Tensor]] | None = None, *, fast_model=None,
                  frames: int = FRAMES, batches: tuple[int, ...] = BATCHES, graphs: bool | None = None,
                  tolerance: float | None = None, seed: int = 0) -> SelfCheck:
    """Compare the fast step (of ``fast_model``, by default ``model`` itself) with the eager step of ``model``.

    ``prompts``: model inputs (batch 1 each; cycled when fewer than the largest batch), random ones by default.
    ``graphs``: replay the fast step from CUDA graphs (default: on a GPU). A test passes a perturbed copy of the
    model as ``fast_model`` to see a difference caught."""
    start = time.perf_counter()
    cfg = model.config
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    graphs = device.type == "cuda" if graphs is None else graphs
    tolerance = tolerance_for(dtype, cfg.num_hidden_layers, device) if tolerance is None else tolerance
    most = max(batches)
    prompts = prompts or random_prompts(cfg, most, seed)
    prefills = []
    with torch.inference_mode():
        for i in range(most):
            fill = PiecewisePrefill(model, {k: t.to(device) for k, t in prompts[i % len(prompts)].items()})
            fill.advance(fill.remaining_layers)
            prefills.append(fill)
    figures = [_compare_batch(model, fast_model or model, prefills, forced_frames(cfg, rows, frames, seed + rows),
                              graphs) for rows in batches]
    seconds = time.perf_counter() - start
    passed = all(b.max_rel <= tolerance for b in figures)
    return SelfCheck(passed=passed, dtype=str(dtype).removeprefix("torch."), device=device.type, graphs=graphs,
                     tolerance=tolerance, frames=frames, seconds=seconds, batches=figures)


@dataclass
class DecodeChoice:
    """The decode path an engine serves on, and why."""

    path: str  # "eager" or "fast"
    setting: str  # DECODE_PATH: "auto", "eager" or "fast"
    reason: str
    check: SelfCheck | None = None

    def as_dict(self) -> dict:
        return {"path": self.path, "setting": self.setting, "reason": self.reason,
                "self_check": None if self.check is None else self.check.as_dict()}


def choose_decode_path(setting: str, model, prompts: Callable[[], list[dict[str, torch.Tensor]]] | None = None,
                       max_batch: int = 8, gpu: bool | None = None, **check_options) -> DecodeChoice:
    """The path to serve on for ``DECODE_PATH=setting``: ``eager`` and ``fast`` as chosen; ``auto`` eager off a
    GPU, and on a GPU fast when the self-check passes on ``model`` (else eager, with the largest difference).

    ``prompts`` makes the check's prompts (only called when it runs; random ones by default). ``gpu``: whether
    the model is on a GPU (by default, where its weights are; the tests run the GPU's decision on the CPU)."""
    fell_back = False  # auto on a GPU, serving eager: worth a warning
    if setting in ("eager", "fast"):
        choice = DecodeChoice(setting, setting, f"DECODE_PATH={setting}, chosen explicitly")
    elif setting != "auto":
        raise ValueError(f"DECODE_PATH must be auto, eager or fast, not {setting!r}")
    elif not (next(model.parameters()).device.type == "cuda" if gpu is None else gpu):
        choice = DecodeChoice("eager", "auto", "DECODE_PATH=auto off a GPU: the fast path gains only where its step "
                                               "is replayed from a CUDA graph")
    else:
        batches = tuple(sorted({1, min(max(BATCHES), max_batch)}))
        try:
            check = run_selfcheck(model, prompts() if prompts is not None else None, batches=batches,
                                  **check_options)
        except Exception as exc:  # noqa: BLE001 - a check that cannot run is a check that did not pass
            log.exception("decode self-check could not run")
            fell_back = True
            choice = DecodeChoice("eager", "auto", f"DECODE_PATH=auto: the self-check could not run "
                                                   f"({exc.__class__.__name__}: {str(exc)[:300]}); serving eager")
        else:
            log.info("decode self-check %s", check.summary())
            if check.passed:
                reason = (f"DECODE_PATH=auto: the self-check passed (largest relative difference {check.max_rel:.3g} "
                          f"within {check.tolerance:.3g}, {check.seconds:.2f} s)")
            else:
                reason = (f"DECODE_PATH=auto: the self-check found the fast path's logits differ from the eager "
                          f"path's by up to {check.max_rel:.3g} relative (largest logit difference "
                          f"{check.max_abs:.3g}), over the tolerance {check.tolerance:.3g}; serving eager")
            choice = DecodeChoice("fast" if check.passed else "eager", "auto", reason, check)
            fell_back = not check.passed
    (log.warning if fell_back else log.info)("decode path %s: %s", choice.path, choice.reason)
    return choice
