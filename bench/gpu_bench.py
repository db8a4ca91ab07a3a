"""GPU benchmark: full-size random-weight Higgs Audio V2 (bf16) on one GPU, plain ``generate`` vs the scheduler.

    python bench/gpu_bench.py [--json FILE] [--frames 200] [--batches 1,8,32]
    python bench/gpu_bench.py --tiny --device cpu     # the same code on a tiny config (what CI runs)

The model has the real configuration (Llama-3.2-3B backbone with the dual audio FFN, 8 codebooks of 1026) and
random weights, built on the ``meta`` device and materialised on the GPU (``to_empty`` + in-place init), so no
11 GB of random weights are made on the CPU. For each batch size it reports audio frames per second and the
real-time factor for the plain path (``model.generate``, end-of-stream ignored so every row makes ``--frames``
frames) and for the engine's scheduler, and for batch 1 the memory-bandwidth bound: the bytes of weights an
audio decode step reads (attention, audio MLP, audio head, norms) over the device's measured copy bandwidth.
The codec is not part of this measurement (it is small next to the LLM). Finishes in a few minutes on an H100.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from higgs_worker.engine.scheduler import Job, Scheduler  # noqa: E402

FRAME_RATE = 25


def build_model(tiny: bool, device: torch.device, dtype: torch.dtype):
    from transformers import HiggsAudioV2Config, HiggsAudioV2ForConditionalGeneration
    from transformers.models.higgs_audio_v2.modeling_higgs_audio_v2 import HiggsAudioV2RotaryEmbedding

    if tiny:
        config = HiggsAudioV2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, codebook_size=1026,
                                    audio_token_id=500, audio_bos_token_id=501, audio_delay_token_id=502,
                                    pad_token_id=503, bos_token_id=504, eos_token_id=505)
    else:
        config = HiggsAudioV2Config(codebook_size=1026)  # the real architecture's defaults
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
        model.model.rotary_emb = HiggsAudioV2RotaryEmbedding(config).to(device)
        model.model.embed_audio_tokens.audio_tokens_offsets = (
            torch.arange(config.num_codebooks, device=device) * config.codebook_size)
    return model.to(dtype).eval(), config


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


def prompt_ids(config, length: int, device) -> torch.Tensor:
    ids = torch.randint(0, min(config.vocab_size, 120000), (1, length), generator=torch.Generator().manual_seed(1))
    ids[0, -1] = config.audio_bos_token_id
    return ids.to(device)


def plain(model, config, batch: int, frames: int, device) -> float:
    ids = prompt_ids(config, 64, device).expand(batch, -1).contiguous()
    mask = torch.ones_like(ids)
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=50, top_p=0.95,
                       max_new_tokens=frames, eos_token_id=None, return_dict_in_generate=True)
    sync(device)
    return time.perf_counter() - start


def ours(scheduler: Scheduler, config, batch: int, frames: int, device) -> float:
    ids = prompt_ids(config, 64, "cpu")
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    sync(device)
    start = time.perf_counter()
    jobs = [scheduler.submit(Job(inputs=inputs, temperature=1.0, top_k=50, top_p=0.95, ras_win_len=0,
                                 ras_max_repeat=2, max_new_tokens=frames, seed=i, stop_at_eos=False))
            for i in range(batch)]
    for job in jobs:
        job.done.wait()
        if job.error is not None:
            raise job.error
    sync(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--tiny", action="store_true", help="tiny config (runs anywhere, for checking the script)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    batches = [int(b) for b in args.batches.split(",")]

    t0 = time.perf_counter()
    model, config = build_model(args.tiny, device, dtype)
    build_s = time.perf_counter() - t0
    scheduler = Scheduler(model, max_batch=max(batches), capacity=64 + args.frames + 8)
    plain(model, config, 1, 8, device)  # warm-up (kernels, allocator)
    ours(scheduler, config, 1, 8, device)

    results: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   + (torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
                   + f", torch {torch.__version__}",
        "config": "tiny" if args.tiny else "full (hidden 3072, 28 layers, 8 codebooks x 1026)",
        "dtype": str(dtype).removeprefix("torch."),
        "parameters": sum(p.numel() for p in model.parameters()),
        "build_s": round(build_s, 2),
        "frames_per_request": args.frames,
        "runs": [],
    }
    for batch in batches:
        plain_s = plain(model, config, batch, args.frames, device)
        ours_s = ours(scheduler, config, batch, args.frames, device)
        audio_s = args.frames / FRAME_RATE
        results["runs"].append({
            "batch": batch,
            "plain_frames_per_s": round(batch * args.frames / plain_s, 1),
            "ours_frames_per_s": round(batch * args.frames / ours_s, 1),
            "plain_rtf": round(plain_s / audio_s, 4),
            "ours_rtf": round(ours_s / audio_s, 4),
        })
    step_bytes = decode_step_bytes(model)
    bandwidth = copy_bandwidth(device)
    bound = bandwidth / step_bytes
    results["decode_step_weight_bytes"] = step_bytes
    results["copy_bandwidth_gb_s"] = round(bandwidth / 1e9, 1)
    results["batch1_bound_frames_per_s"] = round(bound, 1)
    by_batch = {r["batch"]: r for r in results["runs"]}
    if 1 in by_batch:
        results["batch1_fraction_of_bound"] = round(by_batch[1]["ours_frames_per_s"] / bound, 3)
        if max(batches) > 1:
            results[f"batch{max(batches)}_over_batch1"] = round(
                by_batch[max(batches)]["ours_frames_per_s"] / by_batch[1]["ours_frames_per_s"], 2)
    scheduler.close()

    print(f"{results['date']}  {results['machine']}  {results['config']}  {results['dtype']}")
    print(f"{'batch':>5}  {'plain fr/s':>11}  {'ours fr/s':>10}  {'plain RTF':>10}  {'ours RTF':>9}")
    for r in results["runs"]:
        print(f"{r['batch']:>5}  {r['plain_frames_per_s']:>11}  {r['ours_frames_per_s']:>10}  "
              f"{r['plain_rtf']:>10}  {r['ours_rtf']:>9}")
    print(f"batch-1 bound {results['batch1_bound_frames_per_s']} frames/s "
          f"({results['copy_bandwidth_gb_s']} GB/s over {step_bytes / 1e9:.2f} GB per step)")
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
