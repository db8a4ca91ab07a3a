"""GPU check and benchmark: full-size random-weight Higgs Audio V2 on one GPU, plain ``generate`` and both
scheduler paths.

    python bench/gpu_bench.py [--json FILE] [--check] [--frames 200] [--batches 1,8,32,64] [--paths plain,eager,fast]
    python bench/gpu_bench.py --tiny --device cpu     # the same code on a tiny config (what CI runs)

The model has the real configuration (Llama-3.2-3B backbone with the dual audio FFN, 8 codebooks of 1026) and
random weights, built on the ``meta`` device and materialised on the GPU (``to_empty`` + in-place init), so no
11 GB of random weights are made on the CPU. bf16 on a GPU, float32 on the CPU. In one run:

* the memory-bandwidth bound of batch 1: the bytes of weights an audio decode step reads (attention, audio MLP,
  audio head, norms) over the device's measured copy bandwidth;
* ``--check``, correctness of the fast decode path: the worker's own decode self-check (``DECODE_PATH=auto``:
  both paths' logits on the same forced codes, :mod:`higgs_worker.engine.selfcheck`), then greedy codes
  (temperature 0, no repetition window) of the
  fast path against the eager path's for a few prompts alone and for eight prompts in one batch, and a seeded
  sampled request alone against the same request among seven others on the fast path. Each comparison reports
  whether the codes are equal, the share of equal frames and the first step that differs. Inequality is recorded,
  not fatal: in bf16 a batched matrix product may round a near-tie differently from a single-row one;
* time to first audio frame with 16 requests submitted at once (prompts of 64 tokens), p50 and p95, for each
  scheduler path;
* for each batch size, audio frames per second and the real-time factor of each path (``plain``:
  ``model.generate``; ``eager``: the scheduler's default step; ``fast``: its fixed-shape step, replayed from CUDA
  graphs on a GPU), end-of-stream ignored so every row makes ``--frames`` frames, each after a warm-up run of its
  own (the fast path's warm-up makes the whole length, so every graph the timed run needs is captured before it),
  and each path's batch-1 share of the bound.

The measurement helpers are :mod:`higgs_worker.engine.benchmark`'s, shared with ``higgs-worker bench``.

The JSON file is rewritten after each part, so a run cut short keeps what it measured (``complete`` is false
then); ``--budget-s`` skips the parts that would start after that many seconds. The codec is not part of this
measurement (it is small next to the LLM). Exit status 1 when a part raised (its error is in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from higgs_worker.engine.benchmark import (  # noqa: E402 - the measurement code shared with `higgs-worker bench`
    FRAME_RATE,
    build_model,
    codes,
    compare,
    copy_bandwidth,
    decode_step_bytes,
    device_name,
    first_audio,
    make_job,
    prompt_ids,
    prompt_inputs,
    run_jobs,
    sync,
    throughput,
)
from higgs_worker.engine.scheduler import Job, Scheduler  # noqa: E402
from higgs_worker.engine.selfcheck import run_selfcheck  # noqa: E402

PATHS = ("plain", "eager", "fast")
CHECKS = ("greedy_alone_equal", "greedy_batch_equal", "greedy_fast_alone_vs_batch_equal",
          "sampled_alone_vs_batch_equal", "sampled_fast_vs_eager_equal")


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


def correctness(schedulers: dict[str, Scheduler], config, frames: int, out: dict, alone: int = 3,
                batch: int = 8) -> dict:
    """Greedy fast-path codes against the eager path's (alone and in a batch), and seeded sampling alone vs batched.

    Fills ``out`` as it goes, so a part that raises leaves the comparisons made before it."""
    prompts = [prompt_inputs(config, 40 + 5 * i, seed=100 + i) for i in range(batch)]  # lengths 40..75
    eager, fast = schedulers["eager"], schedulers["fast"]
    differences: list[dict] = []
    counts = {"greedy": [0, 0], "sampled": [0, 0]}  # equal frames, frames

    def check(kind: str, what: str, prompt: int, a: Job, b: Job, prefix: bool = False) -> bool:
        ca, cb = codes(a), codes(b)
        if prefix:  # a request stopped earlier in the batch: its frames are the first of the longer run's
            ca = ca[: cb.shape[0]]
        result = compare(ca, cb)
        counts[kind][0] += result["equal_frames"]
        counts[kind][1] += result["frames"]
        if not result["equal"]:
            differences.append({"comparison": what, "prompt": prompt, "first_step": result["first_step"],
                                "equal_frame_fraction": round(result["equal_frames"] / max(1, result["frames"]), 4)})
        return result["equal"]

    out.update({"frames": frames, "prompts_alone": alone, "batch": batch,
                "prompt_tokens": [p["input_ids"].shape[1] for p in prompts], "differences": differences})
    greedy_alone = {}
    for i in range(alone):
        e = run_jobs(eager, [make_job(prompts[i], frames, seed=i, mode="greedy")])[0]
        f = run_jobs(fast, [make_job(prompts[i], frames, seed=i, mode="greedy")])[0]
        greedy_alone[i] = f
        out.setdefault("greedy_alone_equal", True)
        out["greedy_alone_equal"] &= check("greedy", "greedy fast vs eager, alone", i, f, e)
    # staggered lengths: rows leave one after another, so the others move into their slots mid-run
    def stagger(i: int) -> int:
        return max(4, frames - 3 * i)

    e8 = run_jobs(eager, [make_job(p, stagger(i), seed=i, mode="greedy") for i, p in enumerate(prompts)])
    f8 = run_jobs(fast, [make_job(p, stagger(i), seed=i, mode="greedy") for i, p in enumerate(prompts)])
    out["greedy_batch_equal"] = all([check("greedy", f"greedy fast vs eager, batch of {batch}", i, f, e)
                                     for i, (f, e) in enumerate(zip(f8, e8, strict=True))])
    out["greedy_fast_alone_vs_batch_equal"] = all([check("greedy", f"greedy fast alone vs batch of {batch}", i,
                                                         greedy_alone[i], f8[i], prefix=True)
                                                   for i in range(alone)])
    out["greedy_equal_frame_fraction"] = round(counts["greedy"][0] / max(1, counts["greedy"][1]), 4)

    target = batch // 2  # the sampled request sits among the others, not first
    sampled_alone = run_jobs(fast, [make_job(prompts[0], frames, seed=11, mode="sampled")])[0]
    others = [make_job(p, stagger(i), seed=200 + i, mode="sampled") for i, p in enumerate(prompts[1:], start=1)]
    batched = run_jobs(fast, others[:target] + [make_job(prompts[0], frames, seed=11, mode="sampled")]
                       + others[target:])[target]
    sampled_eager = run_jobs(eager, [make_job(prompts[0], frames, seed=11, mode="sampled")])[0]
    out["sampled_alone_vs_batch_equal"] = check("sampled", f"sampled fast alone vs batch of {batch}", 0,
                                                sampled_alone, batched)
    out["sampled_fast_vs_eager_equal"] = check("sampled", "sampled fast vs eager, alone", 0, sampled_alone,
                                               sampled_eager)
    out["sampled_equal_frame_fraction"] = round(counts["sampled"][0] / max(1, counts["sampled"][1]), 4)
    out["passed"] = all(out[k] for k in CHECKS)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--frames", type=int, default=200, help="frames per request of the throughput runs")
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--paths", default=",".join(PATHS), help="of plain, eager, fast")
    parser.add_argument("--check", action="store_true", help="the fast path's correctness check")
    parser.add_argument("--check-frames", type=int, default=64)
    parser.add_argument("--ttfa-streams", type=int, default=16, help="requests submitted at once (0: skip)")
    parser.add_argument("--ttfa-prompt", type=int, default=64, help="prompt tokens of those requests")
    parser.add_argument("--ttfa-frames", type=int, default=32, help="frames of those requests")
    parser.add_argument("--budget-s", type=float, default=0.0, help="skip the parts that would start later (0: none)")
    parser.add_argument("--tiny", action="store_true", help="tiny config (runs anywhere, for checking the script)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    batches = [int(b) for b in args.batches.split(",")]
    paths = [p for p in args.paths.split(",") if p]
    if unknown := sorted(set(paths) - set(PATHS)):
        parser.error(f"unknown paths {unknown}; choose from {', '.join(PATHS)}")
    if args.check and not {"eager", "fast"} <= set(paths):
        parser.error("--check compares the eager and fast paths: keep both in --paths")
    began = time.perf_counter()

    import transformers

    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "device": device_name(device),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "command": shlex.join([Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None else argv)),
        "config": "tiny" if args.tiny else "full (hidden 3072, 28 layers, 8 codebooks x 1026)",
        "dtype": str(dtype).removeprefix("torch."),
        "frames_per_request": args.frames,
        "batches": batches,
        "paths": paths,
        "complete": False,
        "errors": [],
        "skipped": [],
        "sections_s": {},
    }

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - began:7.1f}s] {message}", flush=True)

    def over_budget(what: str) -> bool:
        if args.budget_s and time.perf_counter() - began > args.budget_s:
            results["skipped"].append(what)
            say(f"skipped {what}: past the budget of {args.budget_s:.0f} s")
            return True
        return False

    def failed(what: str, exc: BaseException) -> None:
        results["errors"].append({"part": what, "error": f"{exc.__class__.__name__}: {exc}"[:2000]})
        say(f"FAILED {what}: {exc.__class__.__name__}: {exc}")

    say(f"building the {results['config']} model on {results['device']} ({results['dtype']})")
    t0 = time.perf_counter()
    model, config = build_model(args.tiny, device, dtype)
    sync(device)
    results["build_s"] = round(time.perf_counter() - t0, 2)
    results["parameters"] = sum(p.numel() for p in model.parameters())

    step_bytes = decode_step_bytes(model)
    bandwidth = copy_bandwidth(device)
    bound = bandwidth / step_bytes
    results["decode_step_weight_bytes"] = step_bytes
    results["copy_bandwidth_gb_s"] = round(bandwidth / 1e9, 1)
    results["batch1_bound_frames_per_s"] = round(bound, 1)
    say(f"batch-1 bound {bound:.1f} frames/s ({bandwidth / 1e9:.1f} GB/s over {step_bytes / 1e9:.2f} GB per step)")
    save()

    capacity = max(64, args.ttfa_prompt, 80) + max(args.frames, args.check_frames, args.ttfa_frames) + 8
    most = max(batches + [8 if args.check else 1, args.ttfa_streams])
    schedulers = {path: Scheduler(model, max_batch=most, capacity=capacity, fast=path == "fast")
                  for path in paths if path != "plain"}
    try:
        if args.check and not over_budget("check"):
            t0 = time.perf_counter()
            say(f"check: fast path against eager, {args.check_frames} frames")
            try:
                results["check"] = {}
                # the worker's own self-check (DECODE_PATH=auto): logits of both paths, teacher-forced
                results["check"]["selfcheck"] = run_selfcheck(model).as_dict()
                say(f"check: decode self-check {run_selfcheck_summary(results['check']['selfcheck'])}")
                correctness(schedulers, config, args.check_frames, results["check"])
                c = results["check"]
                say(f"check: greedy alone {c['greedy_alone_equal']}, batch of 8 {c['greedy_batch_equal']} "
                    f"(equal frames {c['greedy_equal_frame_fraction']}), sampled alone vs batch "
                    f"{c['sampled_alone_vs_batch_equal']}")
            except Exception as exc:  # noqa: BLE001 - record it, measure the rest
                failed("check", exc)
            results["sections_s"]["check"] = round(time.perf_counter() - t0, 2)
            save()

        if args.check and not over_budget("check float32"):
            # bf16 rounds differently per kernel and batch shape, so a greedy run may part ways at a near-tie
            # without any bug; in float32 (4 full-width layers) equality is a clean signal. A small cache makes it
            # grow mid-run (graphs captured again), and on the CPU the fixed shapes a GPU captures run eagerly.
            t0 = time.perf_counter()
            say("check float32: fast path against eager, a cache that grows, rows leaving mid-run")
            check_schedulers: dict[str, Scheduler] = {}
            try:
                model32, _ = build_model(args.tiny, device, torch.float32, layers=None if args.tiny else 4)
                check_schedulers = {path: Scheduler(model32, max_batch=8, capacity=48, fast=path == "fast")
                                    for path in ("eager", "fast")}
                check_schedulers["fast"].static.fixed_shapes = True
                results["check_float32"] = {"selfcheck": run_selfcheck(model32).as_dict()}
                say(f"check float32: decode self-check {run_selfcheck_summary(results['check_float32']['selfcheck'])}")
                correctness(check_schedulers, config, args.check_frames, results["check_float32"])
                c = results["check_float32"]
                results["check_float32"]["fast_captures"] = check_schedulers["fast"].static.captures
                say(f"check float32: passed {c['passed']} (greedy equal frames {c['greedy_equal_frame_fraction']}, "
                    f"sampled {c['sampled_equal_frame_fraction']})")
            except Exception as exc:  # noqa: BLE001 - record it, measure the rest
                failed("check float32", exc)
            finally:
                for scheduler in check_schedulers.values():
                    scheduler.close()
                model32 = None
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            results["sections_s"]["check_float32"] = round(time.perf_counter() - t0, 2)
            save()

        if args.ttfa_streams > 0:
            results["ttfa"] = {"streams": args.ttfa_streams, "prompt_tokens": args.ttfa_prompt,
                               "frames": args.ttfa_frames}
            t0 = time.perf_counter()
            for path, scheduler in schedulers.items():
                if over_budget(f"ttfa {path}"):
                    continue
                try:
                    results["ttfa"][path] = first_audio(scheduler, config, args.ttfa_streams, args.ttfa_prompt,
                                                        args.ttfa_frames)
                    say(f"ttfa {path}: {results['ttfa'][path]}")
                except Exception as exc:  # noqa: BLE001
                    failed(f"ttfa {path}", exc)
                save()
            results["sections_s"]["ttfa"] = round(time.perf_counter() - t0, 2)

        results["runs"] = []
        audio_s = args.frames / FRAME_RATE
        t0 = time.perf_counter()
        for batch in batches:
            run: dict = {"batch": batch}
            results["runs"].append(run)
            for path in paths:
                if over_budget(f"{path} batch {batch}"):
                    continue
                try:
                    if path == "plain":
                        plain(model, config, batch, 8, device)  # warm-up
                        seconds = plain(model, config, batch, args.frames, device)
                        run[f"{path}_frames_per_s"] = round(batch * args.frames / seconds, 1)
                        run[f"{path}_rtf"] = round(seconds / audio_s, 4)
                    else:
                        measured = throughput(schedulers[path], config, batch, args.frames, device)
                        for key in ("frames_per_s", "rtf", "decode_frames_per_s"):
                            run[f"{path}_{key}"] = measured[key]
                        if "captures_during_timing" in measured:
                            run["fast_captures_during_timing"] = measured["captures_during_timing"]
                    say(f"batch {batch:>3} {path:>5}: {run[f'{path}_frames_per_s']} frames/s, "
                        f"RTF {run[f'{path}_rtf']}")
                except Exception as exc:  # noqa: BLE001
                    failed(f"{path} batch {batch}", exc)
                save()
        results["sections_s"]["throughput"] = round(time.perf_counter() - t0, 2)
    finally:
        for scheduler in schedulers.values():
            scheduler.close()

    by_batch = {r["batch"]: r for r in results["runs"]}
    results["batch1_fraction_of_bound"] = {
        path: round(by_batch[1][f"{path}_frames_per_s"] / bound, 3)
        for path in paths if f"{path}_frames_per_s" in by_batch.get(1, {})}
    top = max(batches)
    if 1 in by_batch and top > 1:
        results[f"batch{top}_over_batch1"] = {
            path: round(by_batch[top][f"{path}_frames_per_s"] / by_batch[1][f"{path}_frames_per_s"], 2)
            for path in paths if f"{path}_frames_per_s" in by_batch[top] and f"{path}_frames_per_s" in by_batch[1]}
    if "fast" in schedulers:
        results["fast_captures"] = schedulers["fast"].static.captures
    results["total_s"] = round(time.perf_counter() - began, 1)
    results["complete"] = True
    save()
    print_table(results)
    print(json.dumps(results, indent=2))
    return results


def run_selfcheck_summary(check: dict) -> str:
    return (f"{'passed' if check['passed'] else 'FAILED'}: largest relative logit difference {check['max_rel']} "
            f"(tolerance {check['tolerance']}), largest logit difference {check['max_abs']}, {check['seconds']} s")


def print_table(results: dict) -> None:
    paths = results["paths"]
    print(f"\n{results['date']}  {results['device']}  {results['machine']}  torch {results['torch']}  "
          f"transformers {results['transformers']}  {results['config']}  {results['dtype']}")
    print(f"{'batch':>5}" + "".join(f"  {p + ' fr/s':>11}  {p + ' RTF':>10}" for p in paths))
    for r in results["runs"]:
        cells = [(str(r.get(f"{p}_frames_per_s", "-")), str(r.get(f"{p}_rtf", "-"))) for p in paths]
        print(f"{r['batch']:>5}" + "".join(f"  {a:>11}  {b:>10}" for a, b in cells))
    print(f"batch-1 bound {results['batch1_bound_frames_per_s']} frames/s ({results['copy_bandwidth_gb_s']} GB/s "
          f"over {results['decode_step_weight_bytes'] / 1e9:.2f} GB per step); batch-1 share of it: "
          + ", ".join(f"{p} {v}" for p, v in results["batch1_fraction_of_bound"].items()))
    ttfa = results.get("ttfa", {})
    for path in ("eager", "fast"):
        if path in ttfa:
            print(f"first frame, {ttfa['streams']} streams at once, {path}: p50 {ttfa[path]['p50_s']} s, "
                  f"p95 {ttfa[path]['p95_s']} s")
    check = results.get("check")
    if check:
        print(f"check ({check['frames']} frames, 0-based steps): "
              + ", ".join(f"{key} {check.get(key, '-')}" for key in CHECKS)
              + f"; equal frames: greedy {check.get('greedy_equal_frame_fraction', '-')}, "
              f"sampled {check.get('sampled_equal_frame_fraction', '-')}; passed {check.get('passed', '-')}")
        if "selfcheck" in check:
            print(f"decode self-check ({results['dtype']}): {run_selfcheck_summary(check['selfcheck'])}")
        for d in check["differences"]:
            print(f"  differs: {d['comparison']}, prompt {d['prompt']}, from step {d['first_step']} "
                  f"(equal frames {d['equal_frame_fraction']})")
    for e in results["errors"]:
        print(f"ERROR in {e['part']}: {e['error']}")
    if results["skipped"]:
        print(f"skipped (time budget): {', '.join(results['skipped'])}")


if __name__ == "__main__":
    sys.exit(1 if main()["errors"] else 0)
