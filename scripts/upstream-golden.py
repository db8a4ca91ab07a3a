#!/usr/bin/env python3
"""Prompt parity fixtures rendered by upstream's own code (run by scripts/upstream-golden.sh, in its venv).

Upstream here is ``boson-multimodal==0.1.1`` (PyPI) plus ``examples/generation.py`` of boson-ai/higgs-audio at
a pinned commit. For every case below this script runs generation.py's own ``main`` (its click command) with the
case's options, so upstream's own code does everything that shapes a prompt: reading the transcript and scene
files, its text normalisation, ``prepare_generation_context`` (system message, reference turns, speaker profiles,
``ref_audio_in_system_message``), ``prepare_chunk_text``, and ``HiggsAudioModelClient.generate``'s loop (one user
message per chunk, previous chunks fed back, ``generation_chunk_buffer_size``), which calls boson_multimodal's
``prepare_chatml_sample`` and its ``HiggsAudioSampleCollator``. Only what needs weights is replaced:

* **The model.** ``HiggsAudioModelClient.__init__`` is swapped for one that loads nothing (the class's own
  ``generate`` method is kept and runs). The model's ``generate`` records the ``input_ids`` it is given (the
  collator's output: exactly what the model would see) and answers as the real one does when it ends an audio: a
  delay-patterned code sequence ``[stream BOS, F frames, stream EOS]`` (chunk ``j``, 0-based, gets ``F = 5 + j``
  frames of the constant code ``500 + j``), from which generation.py cuts the frames it feeds back.
* **The audio tokenizer.** A ``HiggsAudioTokenizer`` whose ``encode`` is upstream's own (``librosa.load`` at the
  file's rate, ``librosa.resample`` to 24 kHz when needed, upstream's feature extractor), with only the network
  (``_xcodec_encode``) stubbed: it returns codes of shape ``(8, frames)``, every code equal to the voice's index
  in the case's ``ref_audio`` list (0 for the first voice, 1 for the second; the value only tells the voices apart
  in the output), where ``frames`` is the count upstream's encoder gives for that many samples (see
  :func:`upstream_frames`). ``decode`` returns silence.
* **The text tokenizer.** The real one cannot be downloaded here. A stand-in is built: byte-level BPE without
  merges (one token per byte, so decoding gives back exactly the text encoded), the Llama-3 pre-tokenizer pattern,
  and the chat and audio special tokens as special tokens. Only the token *ids* differ from the real tokenizer's;
  the text of every token sequence is the same, which is what the fixtures record (no ids are stored).

Output (``tests/fixtures/upstream/prompts.json``): the voices (sine waves the test writes again, with their
sha256), and per case: its name, this project's request fields, upstream's command-line options, upstream's
normalised chunks, and per chunk the prompt text (the model's ``input_ids`` decoded; each audio placeholder token
followed by ``[voice NAME: N frames]`` or ``[chunk K]``, K 1-based).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import itertools
import json
import math
import os
import struct
import sys
import tempfile
import types
import wave
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

#: Reference voices: 16-bit mono sine waves. ``bass`` is at 16 kHz so that upstream's resampling runs.
VOICES = [
    {"name": "alto", "sample_rate": 24000, "samples": 31200, "frequency": 220.0, "amplitude": 0.3,
     "transcript": "This is the alto reference voice (a test) at 20°C, recorded for parity"},
    {"name": "bass", "sample_rate": 16000, "samples": 16800, "frequency": 110.0, "amplitude": 0.3,
     "transcript": "And this is the bass voice."},
]

#: Speaker profiles (upstream's ``profile:NAME`` voices, this project's ``speaker_descriptions``).
PROFILES = {
    "warm": "feminine; warm; British accent",
    "deep": "masculine; deep voice; slow pace",
}

#: Upstream's default scene: examples/scene_prompts/quiet_indoor.txt at the pinned commit.
QUIET_ROOM = "Audio is recorded from a quiet room."
HALL = "Audio is recorded in a large, echoing hall."

DIALOGUE = ("[SPEAKER0] Did you bring the map?\n"
            "[SPEAKER1] I thought you had it.\n"
            "[SPEAKER0] Then we are lost.\n"
            "[SPEAKER1] Not quite, I remember the way")

LONG = ("The lighthouse keeper climbed the stairs every evening at dusk. He counted the steps, one hundred and "
        "twelve, as his father had before him. At the top he lit the lamp and watched the beam sweep across the "
        "dark water.\n\nShips passed in the night, their crews never knowing his name. Still, he kept the light "
        "burning, season after season, until the day the harbour fell silent")

CHINESE = "今天天气很好，我们一起去公园散步吧！你觉得怎么样？“好啊”，她说。我们在湖边坐了一会儿，看着水里的鸭子游来游去"

SOUND_TAGS = ("[laugh] That was funny. [music start] Here comes the tune [music end] and now [applause] please. "
              "[cough] Sorry. [sing start] la la la [sing end] [cheering] [music] [humming end] done")

HUMMING = "[humming start] hmm hmm hmm [humming end] That was my humming"

PUNCTUATION = ("It is 25°C (77°F) today…   “Quoted,” she said — then paused：really？\n\n\n"
               "  Second   line（with brackets）、and more")


def case(name, transcript, *, ref_audio=None, scene=None, in_system=False, profiles=None, chunk_method=None,
         chunk_max_word_num=None, chunk_max_num_turns=None, buffer="absent", note=""):
    """One case: upstream's options and the same request in this project's fields.

    ``scene``: None means no scene (upstream ``--scene_prompt empty``, request ``scene_prompt: ""``); the string
    ``"default"`` means each side's default (upstream's quiet_indoor.txt, the request without ``scene_prompt``).
    ``profiles``: ``{speaker index: profile name}``; ``ref_audio``: voice names in speaker order (a speaker with a
    profile takes its place in upstream's list). ``buffer``: ``"absent"`` leaves both defaults (upstream None,
    this project 2), only for single-chunk cases; otherwise an int or None for both.
    """
    profiles = profiles or {}
    voices = list(ref_audio or [])
    upstream_list, k = [], 0
    for i in range(len(voices) + len(profiles)):
        if i in profiles:
            upstream_list.append(f"profile:{profiles[i]}")
        else:
            upstream_list.append(voices[k])
            k += 1
    request: dict = {"transcript": transcript}
    if voices:
        request["ref_audio"] = ",".join(voices)
    if scene is None:
        request["scene_prompt"] = ""
    elif scene != "default":
        request["scene_prompt"] = scene
    if profiles:
        request["speaker_descriptions"] = {f"SPEAKER{i}": PROFILES[p] for i, p in sorted(profiles.items())}
    if in_system:
        request["ref_audio_in_system_message"] = True
    request["chunk_method"] = chunk_method or "none"
    if chunk_max_word_num is not None:
        request["chunk_max_word_num"] = chunk_max_word_num
    if chunk_max_num_turns is not None:
        request["chunk_max_num_turns"] = chunk_max_num_turns
    if buffer != "absent":
        request["generation_chunk_buffer_size"] = buffer
    return {"name": name, "note": note, "request": request,
            "_upstream": {"ref_audio": ",".join(upstream_list) or None, "scene": scene, "in_system": in_system,
                          "chunk_method": chunk_method, "chunk_max_word_num": chunk_max_word_num,
                          "chunk_max_num_turns": chunk_max_num_turns,
                          "buffer": None if buffer == "absent" else buffer}}


CASES = [
    case("plain", "Hello there, this is a plain sentence without a scene", scene=None),
    case("default_scene", "Hello there, this is a sentence with the default scene", scene="default",
         note="upstream's default --scene_prompt file against this project's default scene"),
    case("scene", "Hello there, this is a sentence in a hall.", scene=HALL),
    case("voice_no_scene", "Good morning, everyone. Let us begin.", ref_audio=["alto"], scene=None,
         note="upstream has no system turn at all with a voice and no scene"),
    case("voice_scene", "Good morning, everyone. Let us begin.", ref_audio=["alto"], scene=HALL),
    case("dialogue_voices", DIALOGUE, ref_audio=["alto", "bass"], scene=HALL),
    case("dialogue_voices_in_system", DIALOGUE, ref_audio=["alto", "bass"], scene=HALL, in_system=True,
         note="upstream's --ref_audio_in_system_message"),
    case("dialogue_no_voices", DIALOGUE, scene=HALL,
         note="dialogue without voices: upstream's multi-speaker system message"),
    case("dialogue_no_voices_no_scene", DIALOGUE, scene=None),
    case("dialogue_tags_2_and_10", "[SPEAKER2] Hello from two.\n[SPEAKER10] And hello from ten.", scene=None,
         note="speaker tags in upstream's order (sorted as strings: SPEAKER10 before SPEAKER2)"),
    case("dialogue_fullwidth_tag", "[SPEAKER0] Hello there.\n【SPEAKER1】 Hello to you.", scene=None,
         note="upstream finds the speaker tags before normalising: 【SPEAKER1】 is no tag there"),
    case("profiles", DIALOGUE, profiles={0: "warm", 1: "deep"}, scene=HALL,
         note="speaker descriptions without voices (upstream: --ref_audio profile:warm,profile:deep)"),
    case("profile_single_no_scene", "A single described voice, no scene.", profiles={0: "warm"}, scene=None),
    case("voice_and_profile", DIALOGUE, ref_audio=["alto"], profiles={1: "deep"}, scene=HALL,
         note="SPEAKER0 a voice, SPEAKER1 described (upstream: --ref_audio alto,profile:deep)"),
    case("long_word_chunks", LONG, ref_audio=["alto"], scene=HALL, chunk_method="word", chunk_max_word_num=20,
         buffer=2, note="word chunks, the last 2 chunks fed back"),
    case("long_word_chunks_all_history", LONG, scene=HALL, chunk_method="word", chunk_max_word_num=15,
         buffer=None, note="generation_chunk_buffer_size None: upstream keeps every previous chunk"),
    case("speaker_chunks", DIALOGUE, ref_audio=["alto", "bass"], scene=HALL, chunk_method="speaker",
         chunk_max_num_turns=1, buffer=2),
    case("speaker_chunks_continued_lines", "[SPEAKER0] First line\nand its second line.\n[SPEAKER1] Reply.",
         ref_audio=["alto", "bass"], scene=None, chunk_method="speaker", buffer=2),
    case("speaker_chunks_two_turns", DIALOGUE, scene=None, chunk_method="speaker", chunk_max_num_turns=2,
         buffer=1),
    case("chinese_word_chunks", CHINESE, scene=None, chunk_method="word", chunk_max_word_num=8, buffer=2,
         note="Chinese: punctuation mapped, langid says zh, jieba words"),
    case("sound_tags", SOUND_TAGS, scene=None),
    case("humming", HUMMING, scene=None),
    case("punctuation", PUNCTUATION, scene=None, note="full-width punctuation, brackets, degrees, blank lines"),
]


# ---------------------------------------------------------------------------------------------------- voices

def sine_wav(spec: dict) -> bytes:
    """The voice as WAV bytes (16-bit PCM mono), exactly as tests/test_upstream_parity.py writes it."""
    sr, n, f, a = spec["sample_rate"], spec["samples"], spec["frequency"], spec["amplitude"]
    frames = b"".join(struct.pack("<h", round(a * 32767 * math.sin(2 * math.pi * f * i / sr))) for i in range(n))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(frames)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------- frames

def upstream_frames(n: int) -> int:
    """Codec frames upstream's tokenizer makes from ``n`` samples at 24 kHz (``_xcodec_encode``).

    Config of bosonai/higgs-audio-v2-tokenizer (old format): strides 8, 5, 4, 2, 3 (hop 960), semantic model
    HuBERT base at 16 kHz, semantic downsample factor 2.

    * acoustic (DAC encoder): each block is a conv of kernel 2s, stride s, padding ceil(s/2), so a block maps
      ``L`` to ``floor(L / s)`` for even s and ``floor((L + 1) / s)`` for odd s; the other convs keep the length.
    * semantic: resampled to 16 kHz (``ceil(2 n / 3)`` samples), padded by 160 on each side, HuBERT's conv
      feature extractor (kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2, no padding), every 2nd frame kept.
    * when they differ, the acoustic side is computed again on the input padded with 320 zeros on each side;
      when they still differ, the longer is cut to the shorter.
    """
    def acoustic(length: int) -> int:
        for s in (8, 5, 4, 2, 3):
            length = (length + (s % 2)) // s
        return length

    m = -(-2 * n // 3) + 320
    for k, s in zip((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2), strict=True):
        m = (m - k) // s + 1
    semantic = -(-m // 2)
    a = acoustic(n)
    if a != semantic:
        a = acoustic(n + 640)
    return min(a, semantic)


# ---------------------------------------------------------------------------------------------------- stand-ins

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                  "<|eom_id|>", "<|recipient|>", "<|audio_bos|>", "<|audio_eos|>", "<|audio_out_bos|>", "<|AUDIO|>",
                  "<|AUDIO_OUT|>", "<|scene_desc_start|>", "<|scene_desc_end|>"]


def stand_in_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|begin_of_text|>",
                                  eos_token="<|end_of_text|>", pad_token="<|end_of_text|>",
                                  clean_up_tokenization_spaces=False)
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    return tok


def make_audio_tokenizer(voice_index: dict[str, int]):
    """Upstream's HiggsAudioTokenizer with its own ``encode`` and a stubbed network (no weights)."""
    import numpy as np
    import torch
    from boson_multimodal.audio_processing import higgs_audio_tokenizer as hat

    tok = hat.HiggsAudioTokenizer.__new__(hat.HiggsAudioTokenizer)
    torch.nn.Module.__init__(tok)
    tok.sample_rate = 24000
    tok.n_q = 8
    tok.quantizer_dim = 1024  # D 256 + HuBERT 768: upstream's `codebook_size` property returns this
    tok.device = "cpu"
    tok.audio_tokenizer_feature_extractor = hat.HiggsAudioFeatureExtractor(sampling_rate=24000)
    tok.current = None  # set before each encode: the voice being encoded

    def _xcodec_encode(x, target_bw=None):
        frames = upstream_frames(int(x.shape[-1]))
        tok.encoded.append((tok.current, int(x.shape[-1]), frames))
        codes = torch.full((1, 8, frames), voice_index[tok.current], dtype=torch.long)
        return hat.EncodedResult(codes)

    original_encode = hat.HiggsAudioTokenizer.encode

    def encode(path, *args, **kwargs):
        tok.current = Path(path).stem
        return original_encode(tok, path, *args, **kwargs)

    def decode(codes):
        return np.zeros((1, 1, codes.shape[-1] * 960), dtype=np.float32)

    tok.encoded = []
    tok._xcodec_encode = _xcodec_encode
    tok.encode = encode
    tok.decode = decode
    return tok


# ---------------------------------------------------------------------------------------------------- running

def load_generation(path: Path):
    spec = importlib.util.spec_from_file_location("upstream_generation", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["upstream_generation"] = module
    spec.loader.exec_module(module)
    return module


class Recorder:
    """Stands in for HiggsAudioModel: records each chunk's model inputs, answers with a finished audio."""

    def __init__(self, text_tok):
        self.text_tok = text_tok
        self.calls: list[dict] = []

    def generate(self, input_ids=None, **kwargs):
        import torch
        from boson_multimodal.model.higgs_audio.utils import build_delay_pattern_mask

        j = len(self.calls)
        self.calls.append({"input_ids": input_ids[0].tolist(), **{k: kwargs.get(k) for k in (
            "audio_in_ids", "audio_in_ids_start", "audio_out_ids", "audio_out_ids_start")}})
        frames = 5 + j
        body = torch.full((8, frames), 500 + j, dtype=torch.long)
        seq = torch.cat([torch.full((8, 1), 1024), body, torch.full((8, 1), 1025)], dim=1)
        delayed = build_delay_pattern_mask(seq[None], bos_token_id=1024, pad_token_id=1025)[0][0]
        return input_ids, [delayed]


def segment_values(ids, starts) -> list[int]:
    """The constant code of each audio segment (row 0, stream BOS/EOS skipped)."""
    if ids is None or starts is None or ids.numel() == 0:
        return []
    bounds = [*starts.tolist(), ids.shape[1]]
    out = []
    for a, b in itertools.pairwise(bounds):
        row = [v for v in ids[0, a:b].tolist() if v < 1024]
        out.append(row[0] if row else -1)
    return out


def run_case(gen, workdir: Path, text_tok, spec: dict, voices: dict) -> dict:
    up = spec["_upstream"]
    names = [n for n in (up["ref_audio"] or "").split(",") if n and not n.startswith("profile:")]
    voice_index = {n: i for i, n in enumerate(names)}
    audio_tok = make_audio_tokenizer(voice_index)
    recorder = Recorder(text_tok)
    cfg = types.SimpleNamespace(
        audio_in_token_idx=text_tok.convert_tokens_to_ids("<|AUDIO|>"),
        audio_out_token_idx=text_tok.convert_tokens_to_ids("<|AUDIO_OUT|>"),
        audio_stream_bos_id=1024, audio_stream_eos_id=1025, encode_whisper_embed=False,
        pad_token_id=text_tok.pad_token_id, encode_audio_in_tokens=True, use_delay_pattern=True,
        audio_num_codebooks=8)

    original_client = gen.HiggsAudioModelClient

    class Client(original_client):
        def __init__(self, model_path, audio_tokenizer, device=None, device_id=None, max_new_tokens=2048,
                     kv_cache_lengths=(1024,), use_static_kv_cache=False):
            self._device = "cpu"
            self._audio_tokenizer = audio_tokenizer
            self._model = recorder
            self._kv_cache_lengths = kv_cache_lengths
            self._use_static_kv_cache = False
            self._tokenizer = text_tok
            self._config = cfg
            self._max_new_tokens = max_new_tokens
            self._collator = gen.HiggsAudioSampleCollator(
                whisper_processor=None, audio_in_token_id=cfg.audio_in_token_idx,
                audio_out_token_id=cfg.audio_out_token_idx, audio_stream_bos_id=cfg.audio_stream_bos_id,
                audio_stream_eos_id=cfg.audio_stream_eos_id, encode_whisper_embed=cfg.encode_whisper_embed,
                pad_token_id=cfg.pad_token_id, return_audio_in_tokens=cfg.encode_audio_in_tokens,
                use_delay_pattern=cfg.use_delay_pattern, round_to=1, audio_num_codebooks=cfg.audio_num_codebooks)
            self.kv_caches = None

    captured: dict = {}
    original_chunker = gen.prepare_chunk_text

    def chunker(*args, **kwargs):
        captured["chunks"] = original_chunker(*args, **kwargs)
        return captured["chunks"]

    gen.HiggsAudioModelClient = Client
    gen.load_higgs_audio_tokenizer = lambda *a, **k: audio_tok
    gen.prepare_chunk_text = chunker
    gen.sf = types.SimpleNamespace(write=lambda *a, **k: None)
    gen.CURR_DIR = str(workdir)
    try:
        transcript = workdir / "transcript.txt"
        transcript.write_text(spec["request"]["transcript"], encoding="utf-8")
        scene_arg = "empty"
        if up["scene"] is not None:
            scene_file = workdir / "scene.txt"
            scene_file.write_text(QUIET_ROOM + "\n" if up["scene"] == "default" else up["scene"], encoding="utf-8")
            scene_arg = str(scene_file)
        argv = ["--transcript", str(transcript), "--scene_prompt", scene_arg, "--device", "none",
                "--use_static_kv_cache", "0", "--out_path", str(workdir / "out.wav"), "--seed", "0"]
        shown = ["--transcript", "<transcript file>", "--scene_prompt",
                 "empty" if up["scene"] is None else "<scene file>"]
        for opt, key in (("--ref_audio", "ref_audio"), ("--chunk_method", "chunk_method"),
                         ("--chunk_max_word_num", "chunk_max_word_num"),
                         ("--chunk_max_num_turns", "chunk_max_num_turns"),
                         ("--generation_chunk_buffer_size", "buffer")):
            if up[key] is not None:
                argv += [opt, str(up[key])]
                shown += [opt, str(up[key])]
        if up["in_system"]:
            argv.append("--ref_audio_in_system_message")
            shown.append("--ref_audio_in_system_message")
        gen.main.main(args=argv, standalone_mode=False)
    finally:
        gen.HiggsAudioModelClient = original_client
        gen.prepare_chunk_text = original_chunker

    names_by_value = {i: n for n, i in voice_index.items()}
    frames_by_name = {name: frames for name, _, frames in audio_tok.encoded}
    placeholders = {cfg.audio_in_token_idx: "<|AUDIO|>", cfg.audio_out_token_idx: "<|AUDIO_OUT|>"}
    prompts = []
    for call in recorder.calls:
        labels = {"<|AUDIO|>": iter(segment_values(call["audio_in_ids"], call["audio_in_ids_start"])),
                  "<|AUDIO_OUT|>": iter(segment_values(call["audio_out_ids"], call["audio_out_ids_start"]))}
        text, run, audio = "", [], []
        for t in call["input_ids"]:
            if t in placeholders:
                token = placeholders[t]
                value = next(labels[token])
                label = (f"chunk {value - 500 + 1}" if value >= 500
                         else f"voice {names_by_value[value]}: {frames_by_name[names_by_value[value]]} frames")
                text += text_tok.decode(run) + f"{token}[{label}]"
                run = []
                audio.append(label)
            else:
                run.append(t)
        text += text_tok.decode(run)
        for token, rest in labels.items():
            assert next(rest, None) is None, f"{spec['name']}: unused {token} audio"
        prompts.append({"prompt": text, "audio": audio})
    assert len(prompts) == len(captured["chunks"]), spec["name"]
    return {"name": spec["name"], "note": spec["note"], "request": spec["request"], "upstream_options": shown,
            "chunks": captured["chunks"], "prompts": prompts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generation-py", required=True, type=Path, help="examples/generation.py at the commit")
    parser.add_argument("--commit", required=True, help="the commit generation.py comes from (recorded)")
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/upstream/prompts.json"))
    args = parser.parse_args()

    from importlib.metadata import version

    import boson_multimodal  # noqa: F401
    import transformers

    gen = load_generation(args.generation_py)
    from loguru import logger
    logger.remove()
    text_tok = stand_in_tokenizer()
    sample = "<|begin_of_text|>Hé, 25°C 今天\n\n<|AUDIO_OUT|> x"
    assert text_tok.decode(text_tok.encode(sample, add_special_tokens=False)) == sample

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "voice_prompts").mkdir()
        voices = {}
        for spec in VOICES:
            data = sine_wav(spec)
            (workdir / "voice_prompts" / f"{spec['name']}.wav").write_bytes(data)
            (workdir / "voice_prompts" / f"{spec['name']}.txt").write_text(spec["transcript"] + "\n", "utf-8")
            voices[spec["name"]] = {**spec, "sha256": hashlib.sha256(data).hexdigest()}
        import yaml
        (workdir / "voice_prompts" / "profile.yaml").write_text(yaml.safe_dump({"profiles": PROFILES}), "utf-8")
        cases = [run_case(gen, workdir, text_tok, spec, voices) for spec in CASES]

    out = {
        "about": "Prompts rendered by upstream's own code; see scripts/upstream-golden.py for how. Regenerate "
                 "with scripts/upstream-golden.sh.",
        "upstream": {"boson_multimodal": version("boson-multimodal"), "transformers": transformers.__version__,
                     "torch": version("torch"), "generation_py_commit": args.commit,
                     "generation_py_sha256": hashlib.sha256(args.generation_py.read_bytes()).hexdigest()},
        "tokenizer": "stand-in (byte-level, Llama-3 pre-tokenizer, chat/audio special tokens): text exact, "
                     "ids not the real model's, so none are stored",
        "labels": "each audio placeholder token is followed by [voice NAME: N frames] (N: upstream's frame count "
                  "for the voice) or [chunk K] (the audio generated for chunk K, 1-based)",
        "voices": list(voices.values()),
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(cases)} cases, {args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
