"""Streaming context for the real codec: the decoder's receptive field, the smallest exact context, and its cost.

    python -m bench.codec_field [--json FILE] [--rf-frames 80] [--stream-frames 64] [--init-seeds 0,1]
                                [--candidates 12:8,8:8,9:10,10:9,11:11,12:10,12:12,16:16,24:16,27:27,32:32]
                                [--gen-fps 25] [--threads 1]

Streamed audio (:class:`higgs_worker.engine.streaming.StreamDecoder`) is decoded in windows with ``left`` frames
of context before the frames a window emits and ``right`` frames after them. It equals one decode of all the codes
only when that context covers the codec decoder's reach. This builds ``HiggsAudioV2TokenizerModel`` at the size of
``bosonai/higgs-audio-v2-tokenizer`` (DAC decoder 1024 channels, upsampling 8·5·4·2·3 = 960 samples a frame,
25 frames/s, 24 kHz; random weights, CPU, float32) and measures:

* ``structural``: the reach from the decoder's layer shapes alone (kernel, stride, padding and dilation of every
  convolution): which output samples one code frame can touch at all, in frames before and after it (also for the
  project's tiny test codec, ``tiny_codec_structural``);
* ``receptive_field``: the same, measured: one frame's 8 codes replaced, the codes decoded again, and the extent of
  the samples that moved by more than 1e-3 / 1e-4 / 1e-5 of the signal's RMS, or at all; per side, in frames,
  over several positions, code seeds and weight seeds;
* ``context_sweep``: one window of 12 new frames (the project's ``GROUP``) against the whole decode, as a function
  of its left context (right context ample) and of its right context (left ample); the smallest of each within
  1e-4 of the peak and 1e-4 absolute; ``other_weights_window_error``: the same window's error at 8, 9 and 10
  frames with transformers' own init and on the project's tiny test codec (how much fainter weights hide);
* ``streams``: the project's own ``StreamDecoder`` (and the engine's decode call, short windows padded to 8 frames)
  at several (left, right) pairs, pushed as ``stream_job`` groups frames (``project``: 4 frames until the first
  audio, then 12), and for today's pair and the recommended ones also in fixed steps of 4, 12 and 1 frames; the
  whole stream against one decode;
* ``cost``: the CPU time of one steady-state window (left + 12 + right frames) and of the first window, and the
  time to first audio that the right context adds (frames waited for at ``--gen-fps``, plus the first decode).

Weights: transformers leaves the codebooks at zero (every code the same vector, so the codes would not matter) and
the decoder convolutions at std 0.02 (output is mostly bias: quiet and barely code-dependent). ``scaled`` (the
default) draws the codebooks N(0, 1) and every decoder convolution at std 1/sqrt(fan-in) (the residual branches'
last 1x1 convolution at half that), biases zero, Snake alpha 1, then scales the last convolution so a random code
sequence decodes at RMS 0.1 (a speech-like level; peak about 0.4). ``hf`` keeps transformers' init with random
codebooks, for comparison. Random weights say nothing of how fast a trained decoder's influence fades, only where it
must end: the structural reach is the bound for exact equality; thresholded extents are what random weights give.

Prints a table and a JSON document (also written to ``--json``, by default ``bench/results-codec-field.json``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.cpu import machine

ROOT = Path(__file__).resolve().parents[1]
HOP = 960  # samples per code frame of the real codec: 24 kHz / 25 frames/s
FRAME_RATE = 25
NUM_CODEBOOKS = 8  # codebooks the LLM emits (2 kbps); the checkpoint holds more quantizers, decode uses these
MIN_DECODE_FRAMES = 8  # as ``engine.engine.MIN_DECODE_FRAMES``: shorter windows are padded with their last frame
TARGET_RMS = 0.1
RES_BRANCH_GAIN = 0.5
THRESHOLDS = (("1e-3", 1e-3), ("1e-4", 1e-4), ("1e-5", 1e-5), ("exact", 0.0))
TOLERANCE = 1e-4  # the streaming tests' bound, here both relative to the peak and absolute


_STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:6.1f} s] {message}", file=sys.stderr, flush=True)


def streaming_module():
    """``higgs_worker.engine.streaming`` (numpy and torch only); by file when the package around it cannot import."""
    try:
        from higgs_worker.engine import streaming
        return streaming
    except Exception:  # noqa: BLE001 - the rest of the package may be mid-reorganisation
        path = ROOT / "src" / "higgs_worker" / "engine" / "streaming.py"
        spec = importlib.util.spec_from_file_location("_higgs_streaming", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


# -- the codec ----------------------------------------------------------------------------------------------------

def codec_config():
    """The configuration ``bosonai/higgs-audio-v2-tokenizer`` converts to (transformers' conversion script)."""
    from transformers import DacConfig, HiggsAudioV2TokenizerConfig

    acoustic = DacConfig(encoder_hidden_size=64, downsampling_ratios=[8, 5, 4, 2, 3], decoder_hidden_size=1024,
                         upsampling_ratios=[8, 5, 4, 2, 3], hidden_size=256)
    return HiggsAudioV2TokenizerConfig(acoustic_model_config=acoustic.to_dict())


def build_codec():
    from transformers import HiggsAudioV2TokenizerModel

    config = codec_config()
    assert config.hop_length == HOP and config.frame_rate == FRAME_RATE and config.sample_rate == 24000
    return HiggsAudioV2TokenizerModel(config).eval()


def random_codes(frames: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 1024, (frames, NUM_CODEBOOKS), generator=torch.Generator().manual_seed(seed))


def make_decode(codec):
    """Plain codes ``(frames, 8)`` to a float32 waveform, exactly as ``Engine.decode`` calls the codec."""
    def decode(codes: torch.Tensor) -> np.ndarray:
        frames = int(codes.shape[0])
        if frames == 0:
            return np.zeros(0, dtype=np.float32)
        if frames < MIN_DECODE_FRAMES:
            codes = torch.cat([codes, codes[-1:].expand(MIN_DECODE_FRAMES - frames, -1)])
        with torch.inference_mode():
            audio = codec.decode(codes.transpose(0, 1)[None]).audio_values
        return audio.reshape(-1)[: frames * HOP].float().numpy()
    return decode


DECODE_PATH = ("acoustic_decoder.", "fc2.", "quantizer.")


def pristine(codec) -> dict[str, torch.Tensor]:
    """A copy of the decode path's weights as transformers initialised them (for the ``hf`` init, again later)."""
    return {k: v.detach().clone() for k, v in codec.state_dict().items() if k.startswith(DECODE_PATH)}


@torch.no_grad()
def init_codec(codec, scheme: str, seed: int, fresh: dict[str, torch.Tensor]) -> None:
    """Weights that make the decoder's output depend on its codes (see the module docstring)."""
    codec.load_state_dict(fresh, strict=False)  # from transformers' init, whatever ran before
    gen = torch.Generator().manual_seed(seed)
    quantizers = codec.quantizer.quantizers
    for q in quantizers:  # transformers leaves every codebook at zero
        q.codebook.embed.normal_(0.0, 1.0, generator=gen)
        q.codebook.embed_avg.copy_(q.codebook.embed)
        q.codebook.cluster_size.fill_(1.0)
    if scheme == "hf":
        return
    for q in quantizers:  # the 8 codebooks' vectors sum to unit variance
        q.project_out.weight.normal_(0.0, 1.0 / math.sqrt(q.project_out.in_features * NUM_CODEBOOKS), generator=gen)
        q.project_out.bias.zero_()
    codec.fc2.weight.normal_(0.0, 1.0 / math.sqrt(codec.fc2.in_features), generator=gen)
    codec.fc2.bias.zero_()
    for name, module in codec.acoustic_decoder.named_modules():
        if isinstance(module, nn.ConvTranspose1d):  # each output sample sees kernel/stride input samples
            fan_in = module.in_channels * module.kernel_size[0] / module.stride[0]
            module.weight.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=gen)
        elif isinstance(module, nn.Conv1d):
            std = 1.0 / math.sqrt(module.in_channels * module.kernel_size[0])
            if ".res_unit" in f".{name}" and name.endswith("conv2"):
                std *= RES_BRANCH_GAIN  # 15 residual units: full-gain branches would grow the signal 2^7.5 times
            module.weight.normal_(0.0, std, generator=gen)
        else:
            continue
        if module.bias is not None:
            module.bias.zero_()
    for module in codec.acoustic_decoder.modules():
        if module.__class__.__name__ == "Snake1d":
            module.alpha.fill_(1.0)
    wave = make_decode(codec)(random_codes(48, 10_000 + seed))
    codec.acoustic_decoder.conv2.weight.mul_(TARGET_RMS / float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def describe_output(codec, decode) -> dict:
    """Level of the output and of the decoder's inner activations, and how much the output depends on the codes."""
    levels: dict[str, float] = {}
    hooks = []
    dec = codec.acoustic_decoder
    named = [("conv1", dec.conv1)] + [(f"block{i}", b) for i, b in enumerate(dec.block)] + [("conv2", dec.conv2)]
    for label, module in named:
        hooks.append(module.register_forward_hook(
            lambda _m, _i, out, label=label: levels.__setitem__(label, round(float(out.float().pow(2).mean().sqrt()), 4))))
    a = decode(random_codes(48, 1))
    for hook in hooks:
        hook.remove()
    b = decode(random_codes(48, 2))
    return {"output_rms": round(rms(a), 5), "output_peak": round(float(np.abs(a).max()), 5),
            "code_dependence": round(rms(a - b) / rms(a), 3), "activation_rms": levels}


# -- the receptive field ------------------------------------------------------------------------------------------

def structural_field(codec, hop: int = HOP) -> dict:
    """Output samples one code frame can reach, from the convolutions' shapes (residual branches cover the skips)."""
    frame = 1000
    lo, hi = frame, frame  # interval of indices at the current layer's rate that the frame influences
    for module in codec.acoustic_decoder.modules():
        if isinstance(module, nn.ConvTranspose1d):
            s, k, p = module.stride[0], module.kernel_size[0], module.padding[0]
            lo, hi = lo * s - p, hi * s - p + k - 1
        elif isinstance(module, nn.Conv1d):
            k, d, p = module.kernel_size[0], module.dilation[0], module.padding[0]
            assert module.stride[0] == 1
            lo, hi = lo + p - d * (k - 1), hi + p
    before, after = frame - lo // hop, hi // hop - frame
    return {"changes_frames_before": before, "changes_frames_after": after,
            "changes_samples_before": frame * hop - lo, "changes_samples_after": hi - ((frame + 1) * hop - 1),
            "needs_left": after, "needs_right": before}


def tiny_module():
    """The project's tiny-model writer (``weights.tiny`` after the package's reorganisation, ``engine.tiny`` before)."""
    for name in ("higgs_worker.weights.tiny", "higgs_worker.engine.tiny"):
        try:
            return importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - only a comparison; the package may be mid-reorganisation
            continue
    return None


def tiny_codec():
    """The tiny test codec with the weights ``make_tiny_model`` gives it (seed 0), or None."""
    from transformers import HiggsAudioV2TokenizerModel

    tiny = tiny_module()
    if tiny is None:
        return None
    codec = HiggsAudioV2TokenizerModel(tiny._codec_config()).eval()
    tiny._give_codec_range(codec, torch.Generator().manual_seed(0))
    return codec


def tiny_structural(codec) -> dict | None:
    """The same reach for the project's tiny test codec, on which the streaming tests prove the windows."""
    if codec is None:
        return None
    out = structural_field(codec, codec.config.hop_length)
    out["upsampling_ratios"] = list(codec.config.acoustic_model_config.upsampling_ratios)
    return out


def measured_field(decode, frames: int, code_seed: int, positions: list[int]) -> list[dict]:
    codes = random_codes(frames, code_seed)
    base = decode(codes)
    level = rms(base)
    out = []
    for pos in positions:
        changed = codes.clone()
        gen = torch.Generator().manual_seed(code_seed * 1000 + pos)
        changed[pos] = (codes[pos] + torch.randint(1, 1024, (NUM_CODEBOOKS,), generator=gen)) % 1024  # all 8 differ
        diff = np.abs(decode(changed).astype(np.float64) - base)
        row = {"position": pos, "max_change_rel": round(float(diff.max()) / level, 4)}
        for label, t in THRESHOLDS:
            idx = np.flatnonzero(diff > t * level)
            if idx.size == 0:
                row[label] = None
                continue
            first, last = int(idx[0]), int(idx[-1])
            row[label] = {"before": pos - first // HOP, "after": last // HOP - pos,
                          "samples_before": pos * HOP - first, "samples_after": last - ((pos + 1) * HOP - 1)}
        out.append(row)
    return out


# -- the context a window needs -----------------------------------------------------------------------------------

def context_sweep(decode, frames: int, code_seed: int, position: int, ample: int, group: int,
                  values: list[int] | None = None) -> dict:
    """Max error of one window's ``group`` new frames against the whole decode, per left and per right context."""
    codes = random_codes(frames, code_seed)
    full = decode(codes)
    peak = float(np.abs(full).max())
    target = full[position * HOP:(position + group) * HOP]
    values = list(range(ample + 1)) if values is None else values
    assert position - max(values) >= 0 and position + group + max(values) <= frames, "--stream-frames too short"

    def error(left: int, right: int) -> float:
        wave = decode(codes[position - left:position + group + right])
        return float(np.abs(wave[left * HOP:(left + group) * HOP] - target).max())

    left = {v: error(v, ample) for v in values}
    right = {v: error(ample, v) for v in values}
    return {"code_seed": code_seed, "position": position, "peak": round(peak, 5), "ample": ample,
            "left_abs": {str(k): float(f"{v:.3g}") for k, v in left.items()},
            "right_abs": {str(k): float(f"{v:.3g}") for k, v in right.items()},
            "smallest": {side: smallest(errors, peak) for side, errors in (("left", left), ("right", right))}}


def smallest(errors: dict[int, float], peak: float) -> dict:
    """Smallest context from which on every larger one stays within each bound."""
    def first_ok(ok) -> int | None:
        keys = sorted(errors)
        for i, k in enumerate(keys):
            if all(ok(errors[j]) for j in keys[i:]):
                return k
        return None
    return {"rel_1e-4": first_ok(lambda e: e <= TOLERANCE * peak), "abs_1e-4": first_ok(lambda e: e <= TOLERANCE)}


def worst(values) -> int | None:
    """The largest of per-run smallest contexts; None when a run found none within its bound."""
    values = list(values)
    return None if None in values else max(values)


# -- the project's stream decoder ---------------------------------------------------------------------------------

def run_stream(streaming, decode, codes: torch.Tensor, left: int, right: int, schedule: str) -> dict:
    """Push ``codes`` through ``StreamDecoder`` on a schedule; pieces, windows and first-audio frame count."""
    calls = {"windows": 0, "frames": 0}

    def counted(window: torch.Tensor) -> np.ndarray:
        calls["windows"] += 1
        calls["frames"] += int(window.shape[0])
        return decode(window)

    decoder = streaming.StreamDecoder(counted, HOP, NUM_CODEBOOKS, left=left, right=right)
    pieces: list[np.ndarray] = []
    first_audio = None

    def push(chunk: torch.Tensor) -> None:
        nonlocal first_audio
        piece = decoder.push(chunk)
        if piece.size and first_audio is None:
            first_audio = decoder.frames
        pieces.append(piece)

    total = int(codes.shape[0])
    if schedule == "project":  # stream_job's grouping: FIRST_GROUP frames until the first audio, then GROUP
        waiting = 0
        for t in range(total):
            waiting += 1
            group = streaming.FIRST_GROUP if decoder.emitted_frames == 0 else streaming.GROUP
            if waiting >= group:
                push(codes[t + 1 - waiting:t + 1])
                waiting = 0
        if waiting:
            push(codes[total - waiting:])
    else:
        step = int(schedule)
        for start in range(0, total, step):
            push(codes[start:start + step])
    pieces.append(decoder.flush())
    return {"wave": np.concatenate(pieces), "windows": calls["windows"], "decoded_frames": calls["frames"],
            "first_audio_frames": first_audio}


def first_audio_frames(streaming, right: int) -> int:
    """Plain frames ``stream_job`` holds before its first audio: pushes every FIRST_GROUP until one emits."""
    group = streaming.FIRST_GROUP
    return max(group, math.ceil((right + 1) / group) * group)


def timed(decode, codes: torch.Tensor, reps: int) -> tuple[float, float]:
    decode(codes)  # the first call of a length picks its kernels
    walls, cpus = [], []
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        decode(codes)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


# -- the run ------------------------------------------------------------------------------------------------------

def parse_pairs(text: str) -> list[tuple[int, int]]:
    return [tuple(int(x) for x in pair.split(":")) for pair in text.split(",") if pair]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("results-codec-field.json"))
    parser.add_argument("--rf-frames", type=int, default=80, help="frames of the receptive-field decodes")
    parser.add_argument("--rf-positions", default="20,40,59")
    parser.add_argument("--code-seeds", default="1,2")
    parser.add_argument("--init-seeds", default="0,1", help="weight seeds of the `scaled` init (first one for all)")
    parser.add_argument("--stream-frames", type=int, default=64, help="frames of the sweep and stream decodes")
    parser.add_argument("--candidates", default="12:8,8:8,9:10,10:9,11:11,12:10,12:12,16:16,24:16,27:27,32:32")
    parser.add_argument("--extra-schedules", default="4,12,1",
                        help="fixed push steps also tried for today's, the minimal and the recommended pair")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 is steady on a shared 2-core machine (2 threads there ran 10x slower)")
    parser.add_argument("--gen-fps", type=float, default=25.0, help="frames/s the model makes them (25 = real time)")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    streaming = streaming_module()
    group = streaming.GROUP
    current = (streaming.LEFT_CONTEXT_FRAMES, streaming.RIGHT_CONTEXT_FRAMES)
    positions = [int(p) for p in args.rf_positions.split(",") if p]
    code_seeds = [int(s) for s in args.code_seeds.split(",") if s]
    init_seeds = [int(s) for s in args.init_seeds.split(",") if s]

    t0 = time.perf_counter()
    codec = build_codec()
    build_s = time.perf_counter() - t0
    log(f"codec built in {build_s:.1f} s")
    fresh = pristine(codec)
    decode = make_decode(codec)
    config = codec.config
    results: dict = {
        "date": time.strftime("%Y-%m-%d"), "machine": machine(),
        "codec": {"class": type(codec).__name__, "parameters": sum(p.numel() for p in codec.parameters()),
                  "decoder_parameters": sum(p.numel() for p in codec.acoustic_decoder.parameters())
                  + sum(p.numel() for p in codec.fc2.parameters())
                  + sum(p.numel() for q in codec.quantizer.quantizers[:NUM_CODEBOOKS] for p in q.project_out.parameters()),
                  "sample_rate": config.sample_rate, "frame_rate": config.frame_rate, "hop": config.hop_length,
                  "quantizers": config.num_quantizers, "codebooks_decoded": NUM_CODEBOOKS,
                  "decoder_hidden_size": config.acoustic_model_config.decoder_hidden_size,
                  "upsampling_ratios": list(config.acoustic_model_config.upsampling_ratios),
                  "dtype": "float32", "device": "cpu", "build_s": round(build_s, 1)},
        "current": {"left": current[0], "right": current[1], "first_group": streaming.FIRST_GROUP, "group": group},
        "structural": structural_field(codec),
    }
    tiny = tiny_codec()
    results["tiny_codec_structural"] = tiny_structural(tiny)
    struct = results["structural"]

    # receptive field: `hf` init once, `scaled` per weight seed (the first seed's weights stay for the rest)
    field_runs = []
    for scheme, seed in [("hf", init_seeds[0])] + [("scaled", s) for s in reversed(init_seeds)]:
        init_codec(codec, scheme, seed, fresh)
        log(f"receptive field, init {scheme} seed {seed}")
        level = describe_output(codec, decode)
        for code_seed in code_seeds:
            rows = measured_field(decode, args.rf_frames, code_seed, positions)
            field_runs.append({"init": scheme, "init_seed": seed, "code_seed": code_seed, "output": level,
                               "trials": rows})
    results["codec"]["init"] = "scaled"
    results["codec"]["output"] = describe_output(codec, decode)
    results["codec"]["hf_init_output"] = next(r["output"] for r in field_runs if r["init"] == "hf")
    summary: dict = {}
    for scheme in ("scaled", "hf"):
        per: dict = {}
        for label, _ in THRESHOLDS:
            hits = [t[label] for r in field_runs if r["init"] == scheme for t in r["trials"] if t[label]]
            per[label] = {"before_max": max(h["before"] for h in hits), "after_max": max(h["after"] for h in hits),
                          "before_min": min(h["before"] for h in hits), "after_min": min(h["after"] for h in hits),
                          "samples_before_max": max(h["samples_before"] for h in hits),
                          "samples_after_max": max(h["samples_after"] for h in hits),
                          "trials": len(hits)} if hits else None
        summary[scheme] = per
    results["receptive_field"] = {"frames": args.rf_frames, "positions": positions, "summary": summary,
                                  "runs": field_runs}

    # the context a window needs, per side
    ample = min(32, max(struct["needs_left"], struct["needs_right"]) + 3)
    # how much the weights hide: the same window error at 8-10 frames with transformers' init and on the tiny codec
    position = (args.stream_frames - group) // 2
    faint = {}
    init_codec(codec, "hf", init_seeds[0], fresh)
    for label, model in (("full_size_hf_init", codec), ("tiny_test_codec", tiny)):
        if model is not None:
            log(f"window error with other weights: {label}")
            row = context_sweep(make_decode(model), args.stream_frames, code_seeds[0], position, ample, group,
                                values=[8, 9, 10])
            faint[label] = {k: row[k] for k in ("peak", "left_abs", "right_abs")}
    results["other_weights_window_error"] = faint
    sweeps = []
    for seed in reversed(init_seeds):  # the first weight seed last, so its weights stay for the streams
        init_codec(codec, "scaled", seed, fresh)
        for code_seed in code_seeds[:1]:
            log(f"context sweep, init seed {seed}, code seed {code_seed}")
            row = context_sweep(decode, args.stream_frames, code_seed, position, ample, group)
            row["init_seed"] = seed
            sweeps.append(row)
    need = {side: {bound: worst(s["smallest"][side][bound] for s in sweeps)
                   for bound in ("rel_1e-4", "abs_1e-4")} for side in ("left", "right")}
    minimal = tuple(worst((need[side]["rel_1e-4"], need[side]["abs_1e-4"])) for side in ("left", "right"))
    if None in minimal:  # no swept context was within the bound: fall back to the structural reach
        minimal = (struct["needs_left"], struct["needs_right"])
    recommended = (max(minimal[0], struct["needs_left"]), max(minimal[1], struct["needs_right"]))
    # past the structural reach only float rounding is left (windows of other lengths sum in another order)
    floor = max(v for run in sweeps for side in ("left", "right") for k, v in run[f"{side}_abs"].items()
                if int(k) >= struct[f"needs_{side}"])
    results["context_sweep"] = {"group": group, "smallest": need, "float_floor_abs": floor, "runs": sweeps}
    results["minimal_within_1e-4"] = {"left": minimal[0], "right": minimal[1]}
    results["recommended"] = {"left": recommended[0], "right": recommended[1],
                              "why": "the larger of the measured 1e-4 context and the structural reach (exact "
                                     "whatever the weights)"}

    # the project's StreamDecoder, whole streams against one decode
    codes = random_codes(args.stream_frames, 7)
    full = decode(codes)
    peak = float(np.abs(full).max())
    pairs = parse_pairs(args.candidates)
    for pair in (current, recommended, minimal):
        if pair not in pairs:
            pairs.append(pair)
    streams = []
    for left, right in pairs:
        schedules = ["project"] + ([s for s in args.extra_schedules.split(",") if s]
                                   if (left, right) in (current, minimal, recommended) else [])
        for schedule in schedules:
            log(f"stream {left}:{right} schedule {schedule}")
            run = run_stream(streaming, decode, codes, left, right, schedule)
            assert run["wave"].shape == full.shape
            err = float(np.abs(run["wave"] - full).max())
            streams.append({"left": left, "right": right, "schedule": schedule, "max_abs": float(f"{err:.3g}"),
                            "max_rel_peak": float(f"{err / peak:.3g}"), "windows": run["windows"],
                            "decoded_frames": run["decoded_frames"], "first_audio_frames": run["first_audio_frames"],
                            "within_1e-4": err <= TOLERANCE and err <= TOLERANCE * peak})
    results["streams"] = {"frames": args.stream_frames, "peak": round(peak, 5), "runs": streams}

    # cost: one steady window, the first window, and the time to first audio
    cost = []
    base_first = None
    log("cost")
    for left, right in pairs:
        window = left + group + right
        wall, cpu = timed(decode, codes[:window], args.reps)
        n1 = first_audio_frames(streaming, right)
        first_wall, first_cpu = timed(decode, codes[:n1], args.reps)
        # frame t is complete after step t + 8 (delay pattern); the decode counted in CPU time, which a busy
        # machine does not inflate (with one thread it is the decode's own wall time)
        wait = (n1 + NUM_CODEBOOKS) / args.gen_fps
        row = {"left": left, "right": right, "window_frames": window, "window_wall_ms": round(wall * 1000, 1),
               "window_cpu_ms": round(cpu * 1000, 1), "decode_rtf": round(cpu / (group / FRAME_RATE), 3),
               "frames_decoded_per_frame": round(window / group, 2), "first_audio_frames": n1,
               "first_piece_frames": n1 - right,
               "first_decode_ms": round(first_wall * 1000, 1),
               "first_decode_cpu_ms": round(first_cpu * 1000, 1), "first_wait_s": round(wait, 3),
               "ttfa_s": round(wait + first_cpu, 3)}
        if (left, right) == current:
            base_first = row
        cost.append(row)
    for row in cost:
        row["extra_wait_frames"] = row["first_audio_frames"] - base_first["first_audio_frames"]
        row["extra_ttfa_s"] = round(row["ttfa_s"] - base_first["ttfa_s"], 3)
    results["cost"] = {"gen_fps": args.gen_fps, "group": group, "runs": cost}
    results["wall_s"] = round(time.perf_counter() - started, 1)

    print_table(results)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


def print_table(r: dict) -> None:
    c, s = r["codec"], r["structural"]
    print(f"{r['date']}  {r['machine']}")
    print(f"codec: {c['class']} {c['parameters'] / 1e6:.1f}M parameters (decode path {c['decoder_parameters'] / 1e6:.1f}M), "
          f"{c['sample_rate']} Hz, {c['frame_rate']} frames/s, hop {c['hop']}, upsampling {c['upsampling_ratios']}, "
          f"{c['codebooks_decoded']} codebooks; init scaled: rms {c['output']['output_rms']}, peak "
          f"{c['output']['output_peak']}, code dependence {c['output']['code_dependence']} (hf init: rms "
          f"{c['hf_init_output']['output_rms']}, code dependence {c['hf_init_output']['code_dependence']})")
    print(f"structural reach of one frame: {s['changes_frames_before']} frames before "
          f"({s['changes_samples_before']} samples), {s['changes_frames_after']} after ({s['changes_samples_after']} "
          f"samples) -> exact needs left >= {s['needs_left']}, right >= {s['needs_right']}")
    if r["tiny_codec_structural"]:
        t = r["tiny_codec_structural"]
        print(f"tiny test codec (upsampling {t['upsampling_ratios']}): {t['changes_frames_before']} before "
              f"({t['changes_samples_before']} samples), {t['changes_frames_after']} after "
              f"({t['changes_samples_after']} samples)")
    print("\nreceptive field, measured (frames changed before / after the perturbed frame, min-max over trials)")
    print(f"{'init':<7} {'threshold':<10} {'before':>8} {'after':>8} {'samples before':>14} {'samples after':>13} "
          f"{'trials':>6}")
    for scheme, per in r["receptive_field"]["summary"].items():
        for label, v in per.items():
            if v:
                print(f"{scheme:<7} {label:<10} {v['before_min']:>3}-{v['before_max']:<4} {v['after_min']:>3}-"
                      f"{v['after_max']:<4} {v['samples_before_max']:>14} {v['samples_after_max']:>13} "
                      f"{v['trials']:>6}")
    sw = r["context_sweep"]
    print(f"\nwindow of {sw['group']} new frames vs whole decode: max abs error by context (worst of "
          f"{len(sw['runs'])} runs; the other side ample)")
    keys = list(sw["runs"][0]["left_abs"])
    print(f"{'ctx':>4} {'left':>10} {'right':>10}")
    for k in keys:
        print(f"{k:>4} {max(x['left_abs'][k] for x in sw['runs']):>10.3g} "
              f"{max(x['right_abs'][k] for x in sw['runs']):>10.3g}")
    print(f"smallest within 1e-4 (worst run): {sw['smallest']}; past the structural reach (float rounding): "
          f"{sw['float_floor_abs']:.3g}")
    for label, row in r["other_weights_window_error"].items():
        print(f"  same window, {label} (peak {row['peak']}): left ctx 8/9/10 -> "
              f"{'/'.join(f'{v:.3g}' for v in row['left_abs'].values())}, right ctx 8/9/10 -> "
              f"{'/'.join(f'{v:.3g}' for v in row['right_abs'].values())}")
    print(f"minimal within 1e-4: left {r['minimal_within_1e-4']['left']}, right {r['minimal_within_1e-4']['right']}; "
          f"recommended: left {r['recommended']['left']}, right {r['recommended']['right']}")
    st = r["streams"]
    print(f"\nStreamDecoder vs one decode ({st['frames']} frames, peak {st['peak']})")
    print(f"{'left':>4} {'right':>5} {'schedule':>8} {'max abs':>10} {'max/peak':>10} {'windows':>7} {'frames':>6} "
          f"{'first':>5} ok")
    for x in st["runs"]:
        print(f"{x['left']:>4} {x['right']:>5} {x['schedule']:>8} {x['max_abs']:>10.3g} {x['max_rel_peak']:>10.3g} "
              f"{x['windows']:>7} {x['decoded_frames']:>6} {x['first_audio_frames']:>5} {x['within_1e-4']}")
    co = r["cost"]
    print(f"\ncost (CPU, median of warm decodes; generation at {co['gen_fps']} frames/s)")
    print(f"{'left':>4} {'right':>5} {'window':>6} {'wall ms':>8} {'cpu ms':>8} {'cpu rtf':>7} {'x frames':>8} "
          f"{'1st fr':>6} {'1st piece':>9} {'1st cpu ms':>10} {'ttfa s':>7} {'extra fr':>8} {'extra s':>7}")
    for x in co["runs"]:
        print(f"{x['left']:>4} {x['right']:>5} {x['window_frames']:>6} {x['window_wall_ms']:>8} {x['window_cpu_ms']:>8} "
              f"{x['decode_rtf']:>7} {x['frames_decoded_per_frame']:>8} {x['first_audio_frames']:>6} "
              f"{x['first_piece_frames']:>9} {x['first_decode_cpu_ms']:>10} {x['ttfa_s']:>7} "
              f"{x['extra_wait_frames']:>8} {x['extra_ttfa_s']:>7}")
    print(f"wall {r['wall_s']} s")


if __name__ == "__main__":
    main()
