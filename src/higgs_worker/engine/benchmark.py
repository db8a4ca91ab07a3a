"""Measuring the decode paths: the code ``higgs-worker bench``, ``SELF_BENCH=1`` and ``bench/gpu_bench.py`` share.

:func:`self_bench` is the short self-benchmark any user can run on their own GPU: on the loaded model, audio frames
per second at batch 1, 8 and 32 and the time to first audio of 16 requests submitted at once, on the eager and the
fast decode path side by side, within a time budget (parts that would start past it are skipped and listed), and
the batch-1 bound of the device's memory bandwidth (the bytes of weights a decode step reads over the measured copy
bandwidth; see the README's performance section). :func:`format_table` prints it.

The measurement helpers below (a random model of the real configuration built on the ``meta`` device, jobs that
make exactly ``frames`` frames, submitting and timing them) are what ``bench/gpu_bench.py`` measures with too.
"""

from __future__ import annotations

import logging
import math
import platform
import time

import torch

from .scheduler import Job, Scheduler
from .selfcheck import run_selfcheck
from .static_step import bucket_for

log = logging.getLogger(__name__)

FRAME_RATE = 25
JOB_TIMEOUT_S = 120.0  # the longest run (64 rows x 200 frames, eager) takes seconds on a GPU
#: The GPU targets on an H200 (the issue that set them): frames/s at batch 1 and 32, time to first audio p50.
TARGETS = {"batch1_frames_per_s": 380.0, "batch32_frames_per_s": 6000.0, "ttfa16_p50_s": 0.150}


# -- models and devices -----------------------------------------------------------------------------------------

def build_model(tiny: bool, device: torch.device, dtype: torch.dtype, layers: int | None = None):
    """A random-weight Higgs Audio V2: the real configuration (or a tiny one), built on the ``meta`` device and
    materialised on ``device`` (``to_empty``, then an in-place init), so no 11 GB of weights are made on the CPU."""
    from transformers import HiggsAudioV2Config, HiggsAudioV2ForConditionalGeneration
    from transformers.models.higgs_audio_v2.modeling_higgs_audio_v2 import HiggsAudioV2RotaryEmbedding

    if tiny:
        config = HiggsAudioV2Config(vocab_size=512, hidden_size=64, intermediate_size=128,
                                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, codebook_size=1026,
                                    audio_token_id=500, audio_bos_token_id=501, audio_delay_token_id=502,
                                    pad_token_id=503, bos_token_id=504, eos_token_id=505,
                                    num_hidden_layers=layers or 2)
    else:
        config = HiggsAudioV2Config(codebook_size=1026)  # the real architecture's defaults
        if layers:
            config.num_hidden_layers = layers
    config._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = HiggsAudioV2ForConditionalGeneration(config)
    model = model.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02, generator=generator)
        model.model.embed_audio_tokens.audio_tokens_offsets = (
            torch.arange(config.num_codebooks, device=device) * config.codebook_size)
    model = model.to(dtype)
    # after the cast: the rotary frequencies stay float32, as loading real weights in ``dtype`` leaves them
    model.model.rotary_emb = HiggsAudioV2RotaryEmbedding(config).to(device)
    return model.eval(), config


def decode_step_bytes(model) -> int:
    """Bytes of weights one audio decode step reads: everything but the token embeddings and the text MLPs."""
    total = 0
    for name, param in model.named_parameters():
        if "embed_tokens" in name or (".mlp." in name and "audio_mlp" not in name) or "text_lm_head" in name:
            continue
        if "embed_audio_tokens" in name:
            continue  # a few rows looked up per step
        total += param.numel() * param.element_size()
    return total


def copy_bandwidth(device: torch.device) -> float:
    """Bytes per second of a large device-to-device copy (read + write)."""
    n = (1 << 30) if device.type == "cuda" else (1 << 26)
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    sync(device)
    start = time.perf_counter()
    reps = 10
    for _ in range(reps):
        dst.copy_(src)
    sync(device)
    return 2 * n * reps / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


# -- jobs -------------------------------------------------------------------------------------------------------

def prompt_ids(config, length: int, device, seed: int = 1) -> torch.Tensor:
    ids = torch.randint(0, min(config.vocab_size, 120000), (1, length), generator=torch.Generator().manual_seed(seed))
    ids[0, -1] = config.audio_bos_token_id
    return ids.to(device)


def prompt_inputs(config, length: int, seed: int = 1) -> dict[str, torch.Tensor]:
    ids = prompt_ids(config, length, "cpu", seed)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def make_job(inputs: dict[str, torch.Tensor], frames: int, seed: int, mode: str = "bench") -> Job:
    """``bench``: the throughput runs' sampling; ``greedy``: temperature 0, no window; ``sampled``: the check's."""
    settings = {"bench": dict(temperature=1.0, top_k=50, top_p=0.95, ras_win_len=0),
                "greedy": dict(temperature=0.0, top_k=50, top_p=0.95, ras_win_len=0),
                "sampled": dict(temperature=0.9, top_k=40, top_p=0.9, ras_win_len=7)}[mode]
    return Job(inputs=inputs, ras_max_repeat=2, max_new_tokens=frames, seed=seed, stop_at_eos=False, **settings)


def run_jobs(scheduler: Scheduler, jobs: list[Job]) -> list[Job]:
    """Submit every job at once and wait for all; raises the first job's error."""
    for job in jobs:
        scheduler.submit(job)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    for job in jobs:
        if not job.done.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"a job did not finish within {JOB_TIMEOUT_S:.0f} s")
        if job.error is not None:
            raise job.error
    return jobs


def codes(job: Job) -> torch.Tensor:
    return torch.stack(job.frames) if job.frames else torch.empty((0, 8), dtype=torch.long)


def compare(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Equal, the first differing step (None when equal), and the share of equal frames of two code sequences."""
    steps = max(a.shape[0], b.shape[0])
    common = min(a.shape[0], b.shape[0])
    same = (a[:common] == b[:common]).all(dim=-1).tolist() + [False] * (steps - common)
    first = next((i for i, s in enumerate(same) if not s), None)
    return {"equal": first is None, "first_step": first, "equal_frames": sum(same), "frames": steps}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# -- measurements -----------------------------------------------------------------------------------------------

def ours(scheduler: Scheduler, config, batch: int, frames: int, device, prompt_tokens: int = 64) -> tuple[float, float]:
    """Seconds for ``batch`` requests of ``frames`` frames submitted at once, and the decode-only frames/s: the
    frames after each row's first over the time from the last row's first frame to the last row's end (the
    prompts are prefilled one by one before decoding starts, which ``generate`` does in one batched forward)."""
    inputs = prompt_inputs(config, prompt_tokens)
    sync(device)
    start = time.perf_counter()
    jobs = run_jobs(scheduler, [make_job(inputs, frames, seed=i) for i in range(batch)])
    sync(device)
    seconds = time.perf_counter() - start
    decoding = max(j.finished_s for j in jobs) - max(j.first_frame_s or 0.0 for j in jobs)
    return seconds, batch * (frames - 1) / decoding if decoding > 0 else 0.0


def first_audio(scheduler: Scheduler, config, streams: int, prompt_tokens: int, frames: int) -> dict:
    """Time from submission to each request's first frame, ``streams`` requests submitted at once."""
    def jobs(n_frames: int) -> list[Job]:
        return [make_job(prompt_inputs(config, prompt_tokens, seed=300 + i), n_frames, seed=i) for i in range(streams)]

    run_jobs(scheduler, jobs(min(frames, 4)))  # warm-up (and, on the fast path, the graphs of these shapes)
    times = [job.first_frame_s or 0.0 for job in run_jobs(scheduler, jobs(frames))]
    return {"p50_s": round(percentile(times, 0.5), 4), "p95_s": round(percentile(times, 0.95), 4),
            "max_s": round(max(times), 4), "mean_s": round(sum(times) / len(times), 4)}


def throughput(scheduler: Scheduler, config, batch: int, frames: int, device, prompt_tokens: int = 64) -> dict:
    """Frames/s of ``batch`` requests of ``frames`` frames, after a warm-up run (on the fast path the warm-up goes
    the whole length: the attention span grows with it, and each shape's graph is captured the first time)."""
    static = scheduler.static
    ours(scheduler, config, batch, frames if static is not None else min(frames, 8), device, prompt_tokens)
    before = static.captures if static is not None else 0
    seconds, decode_rate = ours(scheduler, config, batch, frames, device, prompt_tokens)
    out = {"frames_per_s": round(batch * frames / seconds, 1), "decode_frames_per_s": round(decode_rate, 1),
           "rtf": round(seconds / (frames / FRAME_RATE), 4)}
    if static is not None:
        out["captures_during_timing"] = static.captures - before
    return out


def self_bench(model, *, budget_s: float = 60.0, batches: tuple[int, ...] = (1, 8, 32), streams: int = 16,
               frames: int = 128, prompt_tokens: int = 64, ttfa_frames: int = 16, self_check: bool = True,
               label: str = "") -> dict:
    """The self-benchmark of ``model``: see the module docstring. Parts run in the order batch 1, the self-check,
    batch 8, time to first audio, batch 32 (each on both paths); a part that would start after ``budget_s`` seconds
    is skipped (listed in ``skipped``), and a part that fails is listed in ``errors``."""
    began = time.perf_counter()
    config = model.config
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "device": device_name(device),
        "dtype": str(dtype).removeprefix("torch."), "torch": torch.__version__, "model": label,
        "parameters": sum(p.numel() for p in model.parameters()), "budget_s": budget_s,
        "frames_per_request": frames, "prompt_tokens": prompt_tokens, "batches": list(batches),
        "runs": [], "ttfa": None, "self_check": None, "skipped": [], "errors": [], "targets_h200": TARGETS,
    }
    step_bytes = decode_step_bytes(model)
    bandwidth = copy_bandwidth(device)
    results.update(decode_step_weight_bytes=step_bytes, copy_bandwidth_gb_s=round(bandwidth / 1e9, 1),
                   batch1_bound_frames_per_s=round(bandwidth / step_bytes, 1))

    def allowed(part: str) -> bool:
        if time.perf_counter() - began > budget_s:
            results["skipped"].append(part)
            return False
        return True

    def failed(part: str, exc: BaseException) -> None:
        log.warning("bench: %s failed: %s: %s", part, exc.__class__.__name__, exc)
        results["errors"].append({"part": part, "error": f"{exc.__class__.__name__}: {exc}"[:1000]})

    most = max(list(batches) + [streams])
    capacity = max(prompt_tokens + frames, prompt_tokens + ttfa_frames) + 16
    schedulers = {path: Scheduler(model, max_batch=most, capacity=capacity, fast=path == "fast")
                  for path in ("eager", "fast")}
    rows = {batch: {"batch": batch} for batch in batches}
    plan: list[tuple[str, int | None]] = [(f"batch {b}", b) for b in batches]
    if streams > 0:
        plan.insert(min(2, len(plan)), (f"ttfa {streams}", None))
    if self_check:
        plan.insert(min(1, len(plan)), ("self-check", None))
    try:
        for part, batch in plan:
            if part == "self-check":
                if allowed(part):
                    try:
                        results["self_check"] = run_selfcheck(model).as_dict()
                    except Exception as exc:  # noqa: BLE001 - record it, measure the rest
                        failed(part, exc)
                continue
            for path, scheduler in schedulers.items():
                if not allowed(f"{part} {path}"):
                    continue
                try:
                    if batch is None:
                        ttfa = results["ttfa"] = results["ttfa"] or {"streams": streams, "prompt_tokens": prompt_tokens}
                        ttfa[path] = first_audio(scheduler, config, streams, prompt_tokens, ttfa_frames)
                    else:
                        for key, value in throughput(scheduler, config, batch, frames, device,
                                                     prompt_tokens).items():
                            rows[batch][f"{path}_{key}"] = value
                except Exception as exc:  # noqa: BLE001 - record it, measure the rest
                    failed(f"{part} {path}", exc)
    finally:
        for scheduler in schedulers.values():
            scheduler.close()
    results["runs"] = [r for r in rows.values() if len(r) > 1]
    for run in results["runs"]:
        if run.get("eager_frames_per_s") and run.get("fast_frames_per_s"):
            run["fast_over_eager"] = round(run["fast_frames_per_s"] / run["eager_frames_per_s"], 2)
    first = rows.get(1, {})
    results["batch1_fraction_of_bound"] = {path: round(first[f"{path}_frames_per_s"] / (bandwidth / step_bytes), 3)
                                           for path in ("eager", "fast") if f"{path}_frames_per_s" in first}
    results["fast_buckets"] = sorted({bucket_for(b) for b in batches})
    results["seconds"] = round(time.perf_counter() - began, 1)
    return results


def format_table(results: dict) -> str:
    """The self-benchmark as a few lines of text: a Markdown table of the runs, then first audio, the bound and the
    self-check."""
    lines = [f"higgs-worker bench: {results['model'] or 'model'} on {results['device']} ({results['dtype']}, torch "
             f"{results['torch']}), {results['date']}; {results['frames_per_request']} frames per request, prompts "
             f"of {results['prompt_tokens']} tokens; {results['seconds']} s of a {results['budget_s']:g} s budget",
             "",
             "| batch | eager frames/s | fast frames/s | fast / eager | eager decode-only | fast decode-only |",
             "| --- | --- | --- | --- | --- | --- |"]
    for run in results["runs"]:
        cells = [run.get(k, "-") for k in ("eager_frames_per_s", "fast_frames_per_s", "fast_over_eager",
                                           "eager_decode_frames_per_s", "fast_decode_frames_per_s")]
        lines.append(f"| {run['batch']} | " + " | ".join(str(c) for c in cells) + " |")
    lines.append("")
    ttfa = results.get("ttfa") or {}
    for path in ("eager", "fast"):
        if path in ttfa:
            lines.append(f"time to first audio, {ttfa['streams']} streams at once, {path}: p50 "
                         f"{ttfa[path]['p50_s'] * 1000:.0f} ms, p95 {ttfa[path]['p95_s'] * 1000:.0f} ms")
    shares = ", ".join(f"{p} {v:.0%}" for p, v in results.get("batch1_fraction_of_bound", {}).items())
    lines.append(f"batch-1 bound: {results['batch1_bound_frames_per_s']} frames/s ({results['copy_bandwidth_gb_s']} "
                 f"GB/s copy bandwidth over {results['decode_step_weight_bytes'] / 1e9:.3g} GB of weights per step)"
                 + (f"; batch 1 reaches {shares} of it" if shares else ""))
    check = results.get("self_check")
    if check:
        lines.append(f"decode self-check: {'passed' if check['passed'] else 'FAILED'}, largest relative logit "
                     f"difference {check['max_rel']:.3g} (tolerance {check['tolerance']:.3g}), {check['seconds']:.2f} s")
    targets = results["targets_h200"]
    lines.append(f"H200 targets: batch 1 >= {targets['batch1_frames_per_s']:.0f} frames/s, batch 32 >= "
                 f"{targets['batch32_frames_per_s']:.0f} frames/s, first audio p50 <= "
                 f"{targets['ttfa16_p50_s'] * 1000:.0f} ms at 16 streams")
    for error in results["errors"]:
        lines.append(f"ERROR in {error['part']}: {error['error']}")
    if results["skipped"]:
        lines.append(f"skipped (past the {results['budget_s']:g} s budget): {', '.join(results['skipped'])}")
    return "\n".join(lines)


def log_self_bench(engine, budget_s: float = 60.0) -> dict:
    """``SELF_BENCH=1``: the self-benchmark of a loaded engine's model, its table logged (a failure is logged, never
    raised: the worker serves either way)."""
    try:
        results = self_bench(engine.model, budget_s=budget_s, label=engine.loaded.source.get("repo_id", "") or
                             "loaded model")
    except Exception:  # noqa: BLE001 - the benchmark is informative; serving does not depend on it
        log.exception("self-benchmark (SELF_BENCH=1) failed")
        return {}
    log.info("self-benchmark (SELF_BENCH=1):\n%s", format_table(results))
    return results
