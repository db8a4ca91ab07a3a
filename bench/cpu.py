"""CPU benchmark: the engine against plain ``model.generate`` + ``processor.batch_decode``, side by side in one run.

    python -m bench.cpu [--json FILE] [--frames 200] [--requests 8] [--http-requests 30]

On the same random model (about 50M parameters: hidden 512, 8 layers; written once with ``make-tiny-model
--bench-size``) and the same requests of exactly ``--frames`` frames (end-of-stream ignored so every run does
the same work), it measures:

* ``batch8_speedup``: frames/s of N concurrent requests through the scheduler over the same N one after another;
* ``single_overhead_ratio``: the engine's time for one request (generate + decode) over the plain path's;
* ``ttfa_ratio``: time to first streamed audio over the time of the whole request (streaming path);
* ``server_overhead_ms_p50`` / ``_p95``: HTTP wall time per request minus the engine time the server reports,
  through the real server on loopback (tiny model, short requests, so the overhead is what is measured);
* ``steps``: the decode step itself, eager path against the fast path (fixed shapes), at 1, 8 and 32 rows, on a
  model of the real depth (28 layers) and tiny width, where a step's time is almost all framework overhead:
  frames/s, the step's time, the model forward's share, and ``host_ms``, the work per step outside the forward
  (the frame choice, which a GPU runs on the device, and the host's bookkeeping of every row, which it does not);
  ``--steps-only`` runs this part alone;
* ``verify_overhead_ratio``: a request with ``verify`` (one attempt: the cost of hearing and scoring each chunk)
  over the same request without it, on the tiny TTS model and the tiny Whisper; ``verify_retry_ratio`` the same
  with the default attempts, which the random weights always spend.

Prints a table and a JSON document (also written to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import statistics
import tempfile
import time
from pathlib import Path

import torch

from higgs_worker.engine import Engine, Prompt, Sampling, load_model
from higgs_worker.engine.prompt import model_inputs
from higgs_worker.engine.streaming import StreamDecoder, stream_job
from higgs_worker.weights.tiny import BENCH_SIZE, make_tiny_model

TEXTS = [f"Benchmark request number {i}, a sentence of ordinary length to speak." for i in range(64)]


def bench_model(cache: Path) -> Path:
    if not (cache / "TINY_MODEL.json").exists():
        make_tiny_model(cache, seed=0, size=BENCH_SIZE)
    return cache


def plain_path(engine: Engine, prompt: Prompt, frames: int, seed: int) -> float:
    """``model.generate`` + ``processor.batch_decode``, as a script would call them."""
    inputs = model_inputs(engine.processor, prompt)
    torch.manual_seed(seed)
    start = time.perf_counter()
    with torch.inference_mode():
        out = engine.model.generate(**inputs, do_sample=True, temperature=1.0, top_k=50, top_p=0.95,
                                    max_new_tokens=frames, eos_token_id=None, return_dict_in_generate=True)
        engine.processor.batch_decode(out.audio_sequences)
    return time.perf_counter() - start


def engine_path(engine: Engine, prompt: Prompt, sampling: Sampling, seed: int) -> float:
    start = time.perf_counter()
    result = engine.generate(prompt, sampling, seed)
    engine.decode(result.codes)
    return time.perf_counter() - start


def streaming_path(engine: Engine, prompt: Prompt, sampling: Sampling, seed: int) -> tuple[float, float]:
    """(time to first audio, total) through the streaming path the service uses."""
    frames: queue.Queue = queue.Queue()
    decoder = StreamDecoder(engine.decode, engine.sample_rate // engine.frame_rate, engine.num_codebooks)
    start = time.perf_counter()
    job = engine.start(prompt, sampling, seed, on_frame=frames.put)
    first = None
    for _piece in stream_job(job, frames, decoder, engine.num_codebooks):
        if first is None:
            first = time.perf_counter() - start
    decoder.flush()
    engine.finish(job)
    return first or 0.0, time.perf_counter() - start


def decode_steps(batches: list[int], frames: int) -> dict:
    """Per-step cost of the eager and fast decode paths, side by side, on a 28-layer tiny-width random model."""
    import importlib

    from higgs_worker.engine import scheduler as scheduler_module
    from higgs_worker.engine import static_step
    from higgs_worker.engine.scheduler import Job, Scheduler

    gpu_bench = importlib.import_module("bench.gpu_bench")
    model, config = gpu_bench.build_model(True, torch.device("cpu"), torch.float32, layers=28)
    ids = gpu_bench.prompt_ids(config, 64, "cpu")
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    forward_s = [0.0]
    choose_s = [0.0]

    def timed(fn, into=forward_s):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                into[0] += time.perf_counter() - start
        return run

    real_logits, real_choose = static_step.decode_logits, scheduler_module.choose_frames
    static_step.decode_logits = timed(real_logits)  # what the fast step calls for its forward
    static_step.choose_frames = scheduler_module.choose_frames = timed(real_choose, choose_s)  # the frame choice
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny widths gain nothing from a second thread, and lose much when cores are busy
    out: dict = {"model": "28 layers, hidden 64, 8 codebooks x 1026 (random)", "frames": frames, "threads": 1,
                 "runs": []}
    try:
        for batch in batches:
            row: dict = {"batch": batch}
            for path in ("eager", "fast"):
                scheduler = Scheduler(model, max_batch=batch, capacity=64 + frames + 8, fast=path == "fast")
                scheduler._forward = timed(scheduler._forward)  # the eager step's forward
                stamps: list[tuple[float, int, float]] = []
                scheduler.on_step = lambda n, stamps=stamps: stamps.append((time.perf_counter(), n, forward_s[0],
                                                                            choose_s[0]))
                for attempt in range(2):  # the first run warms up
                    stamps.clear()
                    jobs = [scheduler.submit(Job(inputs=inputs, temperature=0.3, top_k=50, top_p=0.95, ras_win_len=7,
                                                 ras_max_repeat=2, max_new_tokens=frames if attempt else 8, seed=i,
                                                 stop_at_eos=False)) for i in range(batch)]
                    for job in jobs:
                        job.done.wait()
                        if job.error is not None:
                            raise job.error
                scheduler.close()
                # steps where every row was decoding: the time between consecutive step ends, and its forward share
                full = [(b[0] - a[0], b[2] - a[2], b[3] - a[3]) for a, b in zip(stamps, stamps[1:])
                        if a[1] == b[1] == batch]
                step_ms = statistics.median(d for d, _, _ in full) * 1000
                forward_ms = statistics.median(f for _, f, _ in full) * 1000
                choose_ms = statistics.median(c for _, _, c in full) * 1000
                row[f"{path}_frames_per_s"] = round(batch * 1000 / step_ms, 1)
                row[f"{path}_step_ms"] = round(step_ms, 3)
                row[f"{path}_forward_ms"] = round(forward_ms, 3)
                row[f"{path}_host_ms"] = round(step_ms - forward_ms, 3)
                row[f"{path}_choose_ms"] = round(choose_ms, 3)  # of which the frame choice (on a GPU: device work)
                row[f"{path}_bookkeeping_ms"] = round(step_ms - forward_ms - choose_ms, 3)
            row["fast_over_eager"] = round(row["fast_frames_per_s"] / row["eager_frames_per_s"], 3)
            out["runs"].append(row)
    finally:
        static_step.decode_logits = real_logits
        static_step.choose_frames = scheduler_module.choose_frames = real_choose
        torch.set_num_threads(threads)
    return out


def print_steps(steps: dict) -> None:
    print(f"decode steps, {steps['model']}, {steps['frames']} frames per row")
    print(f"{'rows':>4}  {'path':<5}  {'frames/s':>9}  {'step ms':>8}  {'forward ms':>10}  {'host ms':>8}  "
          f"{'choice ms':>9}  {'bookkeeping ms':>14}")
    for r in steps["runs"]:
        for path in ("eager", "fast"):
            print(f"{r['batch']:>4}  {path:<5}  {r[f'{path}_frames_per_s']:>9}  {r[f'{path}_step_ms']:>8}  "
                  f"{r[f'{path}_forward_ms']:>10}  {r[f'{path}_host_ms']:>8}  {r[f'{path}_choose_ms']:>9}  "
                  f"{r[f'{path}_bookkeeping_ms']:>14}")


def server_overhead(requests: int) -> dict[str, float]:
    """Real server subprocess on loopback with the tiny model; overhead = wall - reported engine time."""
    import httpx

    from bench.server import tiny_server

    body = {"model": "tts-1", "input": "Overhead.", "voice": "default", "response_format": "wav",
            "max_new_tokens": 20, "seed": 1}
    overheads = []
    with tiny_server(None) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for i in range(requests + 3):
            start = time.perf_counter()
            resp = client.post("/v1/audio/speech", json=body)
            wall = time.perf_counter() - start
            resp.raise_for_status()
            if i >= 3:  # the first requests warm up caches
                overheads.append((wall - float(resp.headers["x-engine-time"])) * 1000)
    overheads.sort()
    return {"server_overhead_ms_p50": round(statistics.median(overheads), 2),
            "server_overhead_ms_p95": round(overheads[min(len(overheads) - 1, int(0.95 * len(overheads)))], 2)}


def verify_overhead(requests: int) -> dict[str, float]:
    """Whole requests with and without ``verify``, alternating, on the tiny models (TTS and Whisper)."""
    from higgs_worker.engine import EngineHolder
    from higgs_worker.core.schema import SpeechRequest
    from higgs_worker.speech.service import SpeechService
    from higgs_worker.core.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        tiny = make_tiny_model(Path(tmp) / "tiny", seed=0)
        engine = Engine(load_model(tiny / "model", tiny / "tokenizer", "cpu", "float32"))
        settings = Settings(volume_root=Path(tmp) / "vol", asr="on", asr_path=tiny / "asr", model_path=tiny / "model",
                            tokenizer_path=tiny / "tokenizer")
        service = SpeechService(settings, holder=EngineHolder(lambda: engine))
        body = {"transcript": "Two short sentences to check. Each one is its own chunk.", "chunk_method": "sentence",
                "chunk_max_word_num": 6, "max_new_tokens": 60, "seed": 1, "temperature": 1.0}
        service.synthesize(SpeechRequest.parse({**body, "verify": {"max_attempts": 1}}))  # load and warm Whisper
        times: dict[str, list[float]] = {"plain": [], "verify": [], "retry": []}
        for _ in range(requests):
            for kind, extra in (("plain", {}), ("verify", {"verify": {"max_attempts": 1}}), ("retry", {"verify": True})):
                start = time.perf_counter()
                service.synthesize(SpeechRequest.parse({**body, **extra}))
                times[kind].append(time.perf_counter() - start)
        service.recognizer.close()
        engine.close()
    plain = statistics.median(times["plain"])
    return {"verify_plain_s": round(plain, 3), "verify_overhead_ratio": round(statistics.median(times["verify"]) / plain, 2),
            "verify_retry_ratio": round(statistics.median(times["retry"]) / plain, 2)}


def text_and_loudness(repeats: int = 5) -> dict:
    """What issue 28's text and loudness steps cost: spoken forms and a 40-entry lexicon over a 1,000-word text
    full of numbers, dates and units; loudness normalisation of 60 s of 24 kHz audio (whole) and a stream's gain."""
    import numpy as np

    from higgs_worker.audio import loudness
    from higgs_worker.core import spoken
    from higgs_worker.speech.lexicon import Lexicon

    sentence = "On 2024-03-23 at 3:30 pm Dr. Nguyen paid $23.50 for 5 km of SQL, up 12.5% since 1999. "
    text = sentence * 60  # about 1,000 words
    lexicon = Lexicon(None)
    entries = {f"word{i}": f"respelled{i}" for i in range(38)} | {"Nguyen": "Win", "SQL": "sequel"}

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times) * 1000

    wave = (np.random.default_rng(0).standard_normal(60 * 24000) * 0.05).astype(np.float32)
    return {"spoken_forms_ms_per_1000_words": round(best(lambda: spoken.spoken(text)), 1),
            "lexicon_ms_per_1000_words": round(best(lambda: lexicon.sent_text(text, entries, False)), 1),
            "loudness_ms_per_60s_audio": round(best(lambda: loudness.normalize(wave, 24000, -16.0, -1.0)), 1),
            "stream_gain_ms": round(best(lambda: loudness.StreamLeveller(24000, -16.0, -1.0, wave[:240000]).feed(
                wave[:24000], last=True)), 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--http-requests", type=int, default=30)
    parser.add_argument("--verify-requests", type=int, default=3)
    parser.add_argument("--step-batches", default="1,8,32")
    parser.add_argument("--step-frames", type=int, default=60)
    parser.add_argument("--steps-only", action="store_true", help="only the eager / fast decode-step comparison")
    parser.add_argument("--text-only", action="store_true", help="only the spoken-form, lexicon and loudness costs")
    parser.add_argument("--model-cache", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "higgs-worker"
                        / "bench-model")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.step_batches.split(",") if b]
    if args.text_only:
        results = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), **text_and_loudness()}
        print(json.dumps(results, indent=2))
        return results
    if args.steps_only:
        steps = decode_steps(batches, args.step_frames)
        results = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "steps": steps}
        print_steps(steps)
        print(json.dumps(results, indent=2))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        return results

    folder = bench_model(args.model_cache)
    loaded = load_model(folder / "model", folder / "tokenizer", "cpu", "float32")
    params = sum(p.numel() for p in loaded.model.parameters())
    engine = Engine(loaded, max_batch_size=max(8, args.requests))
    sampling = Sampling(temperature=1.0, top_k=50, top_p=0.95, ras_win_len=0, max_new_tokens=args.frames,
                        stop_at_eos=False)
    prompts = [Prompt(text=t) for t in TEXTS[: args.requests]]

    engine_path(engine, prompts[0], Sampling(max_new_tokens=24, stop_at_eos=False), 0)  # warm-up
    plain_path(engine, prompts[0], 24, 0)

    # single request, side by side, alternating to share the machine's state fairly
    plain_times, engine_times = [], []
    for i in range(3):
        plain_times.append(plain_path(engine, prompts[0], args.frames, i))
        engine_times.append(engine_path(engine, prompts[0], sampling, i))
    plain_s, engine_s = statistics.median(plain_times), statistics.median(engine_times)

    # throughput: N one after another vs N at once, through the scheduler
    start = time.perf_counter()
    for i, prompt in enumerate(prompts):
        engine.generate(prompt, sampling, seed=i)
    serial_s = time.perf_counter() - start
    start = time.perf_counter()
    jobs = [engine.start(p, sampling, seed=i) for i, p in enumerate(prompts)]
    for job in jobs:
        engine.finish(job)
    batch_s = time.perf_counter() - start
    total_frames = args.frames * len(prompts)

    # streaming: time to first audio vs the whole request
    ttfa, whole = streaming_path(engine, prompts[1], sampling, 5)
    engine.close()

    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "model_parameters": params,
        "frames_per_request": args.frames,
        "requests": len(prompts),
        "plain_single_s": round(plain_s, 3),
        "engine_single_s": round(engine_s, 3),
        "single_overhead_ratio": round(engine_s / plain_s, 3),
        "serial_frames_per_s": round(total_frames / serial_s, 1),
        "batch_frames_per_s": round(total_frames / batch_s, 1),
        "batch8_speedup": round(serial_s / batch_s, 2),
        "ttfa_s": round(ttfa, 3),
        "stream_total_s": round(whole, 3),
        "ttfa_ratio": round(ttfa / whole, 3),
    }
    if args.http_requests > 0:
        results.update(server_overhead(args.http_requests))
    if args.verify_requests > 0:
        results.update(verify_overhead(args.verify_requests))
    results.update(text_and_loudness())
    if batches:
        results["steps"] = decode_steps(batches, args.step_frames)
    print_table(results)
    if "steps" in results:
        print_steps(results["steps"])
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


TARGETS = {"batch8_speedup": ">= 3.5", "single_overhead_ratio": "<= 1.05", "ttfa_ratio": "<= 0.15",
           "server_overhead_ms_p50": "<= 10"}


def print_table(results: dict) -> None:
    rows = [(k, str(v), TARGETS.get(k, "")) for k, v in results.items() if k not in ("date", "machine", "steps")]
    width = max(len(r[0]) for r in rows)
    print(f"{results['date']}  {results['machine']}")
    print(f"{'metric'.ljust(width)}  {'value':>12}  target")
    for name, value, target in rows:
        print(f"{name.ljust(width)}  {value:>12}  {target}")


if __name__ == "__main__":
    main()
