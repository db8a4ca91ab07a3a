"""The ``higgs-worker`` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .core.errors import RequestError


def _make_tiny(args: argparse.Namespace) -> int:
    from .weights.tiny import BENCH_SIZE, TinySize, make_tiny_model

    size = BENCH_SIZE if args.bench_size else TinySize()
    out = make_tiny_model(args.dir, seed=args.seed, size=size)
    print(f"wrote {out}: {', '.join(p.name for p in sorted(out.iterdir()))}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from .core import cli_input
    from .core.errors import ModelLoadError
    from .core.settings import get_settings

    try:
        fmt = cli_input.output_format("--out", args.out, args.format)
        cli_input.check_output("--out", args.out)
        fields = ("scene", "seed", "temperature", "top_p", "top_k", "max_new_tokens", "chunk_method")
        body = {**cli_input.request_body(args, fields), "format": fmt}
        request = cli_input.parse_request(body, "--ref-audio" if args.ref_audio else "--voice")
        from .speech import SpeechService  # (PyTorch: a mistake above is answered before it loads)

        service = SpeechService(get_settings())
        if args.ref_audio:
            service.check(request)  # a recording that does not decode is refused before anything starts
        _start_log(get_settings())
        result = _speak(service, request, args.progress)
    except RequestError as exc:
        print(f"error: {cli_input.for_options(exc, '--ref-audio' if args.ref_audio else '--voice')}", file=sys.stderr)
        return 2
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    try:
        Path(args.out).write_bytes(result.audio)
    except OSError as exc:
        print(f"error: --out: {args.out}: could not be written ({exc.strerror or exc})", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), **result.metadata()}, indent=2))
    return 0


def _speak(service, request, mode: str):
    """``synth``'s generation, with progress: a bar on a terminal, lines every few seconds when asked."""
    from .speech.progress import ProgressDisplay, Throttled

    bar = sys.stderr.isatty() if mode == "auto" else mode == "bar"
    if mode == "off" or (mode == "auto" and not bar):  # auto: a bar on a terminal, else nothing
        return service.synthesize(request)
    display = ProgressDisplay(bar)
    try:
        lines = Throttled(display, service.settings.progress_interval_s, chunk_ends=True)
        return service.synthesize(request, progress=display if bar else lines)
    finally:
        display.close()


def _prompt(args: argparse.Namespace) -> int:
    from .core import cli_input
    from .core.settings import get_settings

    try:
        fields = ("scene", "max_new_tokens", "chunk_method", "chunk_max_word_num", "chunk_max_num_turns",
                  "generation_chunk_buffer_size")
        body = cli_input.request_body(args, fields)
        if args.ref_in_system:
            body["ref_audio_in_system_message"] = True
        request = cli_input.parse_request(body, "--ref-audio" if args.ref_audio else "--voice")
        from .speech import SpeechService
        from .speech.prompt_view import format_text, inspect

        prompts = inspect(SpeechService(get_settings()), request)
    except RequestError as exc:
        print(f"error: {cli_input.for_options(exc, '--ref-audio' if args.ref_audio else '--voice')}", file=sys.stderr)
        return 2
    print(json.dumps([p.as_dict() for p in prompts], indent=2, ensure_ascii=False) if args.json
          else format_text(prompts))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .core.logs import setup_logging
    from .core.settings import get_settings
    from .http.serve import serve

    settings = get_settings()
    setup_logging(settings, "server.log", args.log_level)
    _start_log(settings)
    return serve(settings, args.host or settings.host, args.port or settings.port)


def _handler(args: argparse.Namespace) -> int:
    from .core.logs import setup_logging
    from .core.settings import get_settings
    from .runpod_handler import start

    settings = get_settings()
    setup_logging(settings, "server.log", args.log_level)
    _start_log(settings)
    sys.argv = [sys.argv[0], *args.runpod_args]  # --rp_serve_api, --rp_api_port, ... are the SDK's
    return start(settings)


def _check(args: argparse.Namespace) -> int:
    from .core.logs import setup_logging
    from .core.settings import get_settings
    from .fitness import run_all
    from .speech import SpeechService

    # a check reports what is missing; it never starts a download (``fetch-models`` does)
    settings = get_settings().model_copy(update={"auto_fetch_models": False})
    setup_logging(settings, "server.log", args.log_level)
    for handler in logging.getLogger().handlers:  # stdout carries the report; log lines go to stderr (and the file)
        if type(handler) is logging.StreamHandler and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)
    outcomes = run_all(settings, SpeechService(settings))
    if args.json:
        print(json.dumps([o.as_dict() for o in outcomes], indent=2))
    else:
        for o in outcomes:
            print(f"{'ok  ' if o.ok else 'FAIL'} {o.name}: {o.detail} ({o.seconds:.2f} s)")
    return 0 if all(o.ok for o in outcomes) else 1


def _bench(args: argparse.Namespace) -> int:
    import torch

    from .engine.benchmark import build_model, format_table, self_bench

    if args.tiny or args.random:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        model, _ = build_model(args.tiny, device, dtype)
        label = "tiny random model" if args.tiny else "full-size random model"
    else:
        from .core.settings import get_settings
        from .engine import load_model

        settings = get_settings()
        loaded = load_model(settings.model_path, settings.tokenizer_path, args.device or settings.device,
                            settings.dtype, strict=settings.strict_weights)
        model, label = loaded.model, str(settings.model_path)
    frames = args.frames or (32 if args.tiny else 128)
    results = self_bench(model, budget_s=args.budget, batches=tuple(int(b) for b in args.batches.split(",")),
                         streams=args.streams, frames=frames, label=label)
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text if args.json else f"{format_table(results)}\n\n{text}")
    return 1 if results["errors"] else 0


def _fetch_models(args: argparse.Namespace) -> int:
    from .core.settings import get_settings
    from .weights.fetch import FetchError, fetch_models

    try:
        markers = fetch_models(get_settings(), force_verify=args.verify)
    except FetchError as exc:
        print(f"error: could not fetch the models: {exc}", file=sys.stderr)
        return 4
    except OSError as exc:  # the model folders cannot be made or written
        print(f"error: could not fetch the models: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 4
    print(json.dumps(markers, indent=2))
    return 0


def _fetch_voices(args: argparse.Namespace) -> int:
    from .core.settings import get_settings
    from .voices.presets import BASE_URL, PresetError, fetch_presets

    settings = get_settings()
    names = [n.strip() for n in settings.voice_presets.split(",") if n.strip()]
    try:
        installed = fetch_presets(settings.voices_dir, names, settings.voice_presets_url or BASE_URL)
    except (PresetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 5
    except Exception as exc:  # noqa: BLE001 - network errors: say which and exit non-zero
        print(f"error: could not fetch voice presets: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 5
    print(json.dumps({"voices_dir": str(settings.voices_dir), "installed": installed, "wanted": names}))
    return 0


def _settings(args: argparse.Namespace) -> int:
    from .core.settings import Settings, get_settings, settings_table

    if args.markdown:
        print(settings_table())
        return 0
    settings = get_settings()
    for name in Settings.model_fields:
        value = getattr(settings, name)
        shown = "***" if value is not None and "secret" in type(value).__name__.lower() else value
        print(f"{name.upper()}={'' if shown is None else shown}")
    print(f"# VOLUME_ROOT: {settings.volume_root_reason}")
    return 0


def _start_log(settings) -> None:
    """Once at start: where this process keeps its files, and the demo's voices."""
    log = logging.getLogger("higgs_worker")
    log.info("volume root %s (%s); models in %s; voices in %s; logs in %s", settings.volume_root,
             settings.volume_root_reason, settings.model_path.parent, settings.voices_dir, settings.log_dir)
    if settings.higgs_demo:
        from .voices.demo import ensure_demo_voices

        names = [n.strip() for n in settings.voice_presets.split(",") if n.strip()]
        ensure_demo_voices(settings.voices_dir, names, settings.voice_presets_url)


def build_parser() -> argparse.ArgumentParser:
    from .core import cli_input

    parser = argparse.ArgumentParser(prog="higgs-worker", description="Higgs Audio V2 text-to-speech worker")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-tiny-model", help="write a random tiny Higgs Audio V2 (DIR/model, DIR/tokenizer), a "
                                               "tiny Whisper (DIR/asr), a tiny speaker model (DIR/sv) and "
                                               "DIR/TINY_MODEL.json")
    p.add_argument("dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bench-size", action="store_true", help="the ~40M-parameter size the benchmarks use")
    p.set_defaults(func=_make_tiny)

    p = sub.add_parser("synth", help="speak text into an audio file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text")
    src.add_argument("--text-file")
    cli_input.add_voice_options(p)
    p.add_argument("--scene")
    p.add_argument("--seed", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", dest="top_p", type=float)
    p.add_argument("--top-k", dest="top_k", type=int)
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int)
    p.add_argument("--chunk-method", dest="chunk_method", choices=["auto", "sentence", "word", "speaker", "none"])
    p.add_argument("--format", choices=["wav", "flac", "mp3", "opus", "aac", "pcm"],
                   help="default: the one --out's extension names (.mp3, .ogg/.opus, ...), else wav")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--progress", choices=["auto", "bar", "lines", "off"], default="auto",
                   help="how far it has come (chunks, audio seconds, real-time factor) on stderr: auto (a bar on a "
                        "terminal, nothing otherwise), bar, lines (at each chunk's end and every 2 s), off")
    p.set_defaults(func=_synth)

    p = sub.add_parser("prompt", help="print each chunk and the exact prompt the model gets for it (no model needed)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text")
    src.add_argument("--text-file")
    cli_input.add_voice_options(p)
    p.add_argument("--scene", help="scene description ('' for none; absent: the default scene)")
    p.add_argument("--ref-in-system", action="store_true", help="reference audio in the system turn")
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int)
    p.add_argument("--chunk-method", dest="chunk_method", choices=["auto", "sentence", "word", "speaker", "none"])
    p.add_argument("--chunk-max-word-num", dest="chunk_max_word_num", type=int)
    p.add_argument("--chunk-max-num-turns", dest="chunk_max_num_turns", type=int)
    p.add_argument("--buffer", dest="generation_chunk_buffer_size", type=int, help="previous chunks fed back")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_prompt)

    p = sub.add_parser("serve", help="run the HTTP server (RunPod-compatible and OpenAI-compatible routes)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=_serve)

    p = sub.add_parser("handler", help="run the RunPod Serverless worker (SDK flags such as --rp_serve_api pass through)")
    p.set_defaults(func=_handler, runpod_args=[])

    p = sub.add_parser("check", help="fitness checks: the GPU and its free memory, complete model folders, one short "
                                     "generation, the decode path in use, a spoken canary (exit 1 when any fails; "
                                     "the RunPod worker runs them before its first job)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_check)

    p = sub.add_parser("bench", help="self-benchmark of the loaded model: frames/s at batch 1, 8 and 32 and time to "
                                     "first audio at 16 streams, eager and fast side by side (a table, then JSON)")
    p.add_argument("--tiny", action="store_true", help="a tiny random model instead (seconds, on the CPU)")
    p.add_argument("--random", action="store_true", help="a full-size random model instead (no weights needed)")
    p.add_argument("--device", choices=["cuda", "cpu"], help="default: DEVICE (a GPU when present)")
    p.add_argument("--budget", type=float, default=60.0, help="seconds; parts that would start later are skipped")
    p.add_argument("--batches", default="1,8,32", help="batch sizes of the frames/s runs")
    p.add_argument("--streams", type=int, default=16, help="requests submitted at once for time to first audio")
    p.add_argument("--frames", type=int, help="frames per request (default 128; 32 with --tiny)")
    p.add_argument("--json", action="store_true", help="the JSON alone")
    p.add_argument("--out", type=Path, help="also write the JSON to this file")
    p.set_defaults(func=_bench)

    p = sub.add_parser("fetch-models", help="download the model and tokenizer repos into MODEL_PATH / "
                                          "TOKENIZER_PATH, and Whisper and the speaker model on a GPU or with "
                                          "ASR=on / VOICE_CHECK=on (once, verified)")
    p.add_argument("--verify", action="store_true", help="re-verify (and repair) even when already complete")
    p.set_defaults(func=_fetch_models)

    p = sub.add_parser("fetch-voices", help="install the pinned upstream voice presets into VOICES_DIR")
    p.set_defaults(func=_fetch_voices)

    p = sub.add_parser("settings", help="print the effective configuration (or, with --markdown, the table of all "
                                        "variables)")
    p.add_argument("--markdown", action="store_true", help="the README's configuration table")
    p.set_defaults(func=_settings)
    return parser


def main(argv: list[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        if args.command != "handler":
            build_parser().error(f"unrecognized arguments: {' '.join(unknown)}")
        args.runpod_args = unknown
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from pydantic import ValidationError

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        # one line per bad variable, named as it is set; never the value (it may be a secret)
        for error in exc.errors(include_input=False, include_url=False):
            name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
            print(f"invalid setting {name}: {error['msg']}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
