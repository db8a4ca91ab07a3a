"""Loading Higgs Audio V2 from local folders: the LLM, the text tokenizer and the audio codec.

Never reaches a hub: ``AutoProcessor.from_pretrained`` would fetch the codec from the hub id written in
``processor_config.json``, so the processor is assembled here from its local parts instead.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.errors import ModelLoadError
from ..weights.folders import read_source, resolve_device, resolve_dtype
from .prompt import SYSTEM_AUDIO_BOS

log = logging.getLogger(__name__)

@dataclass
class LoadedModel:
    model: object  # HiggsAudioV2ForConditionalGeneration
    processor: object  # HiggsAudioV2Processor
    device: torch.device
    dtype: torch.dtype
    load_s: float = 0.0
    source: dict[str, str] = field(default_factory=dict)  # repo_id, revision, commit (from the completion marker)

    @property
    def commit(self) -> str | None:
        return self.source.get("commit")

    @property
    def codec(self):
        return self.processor.audio_tokenizer

    @property
    def sample_rate(self) -> int:
        return int(self.codec.config.sample_rate)

    @property
    def frame_rate(self) -> int:
        return int(self.codec.config.frame_rate)


def _require(folder: Path, files: tuple[str, ...], what: str) -> None:
    if not folder.is_dir():
        raise ModelLoadError(f"{what} folder {folder} does not exist (run `higgs-worker fetch-models`)")
    missing = [f for f in files if not (folder / f).exists()]
    if missing:
        raise ModelLoadError(f"{what} folder {folder} lacks {', '.join(missing)}")


#: model_type in ``config.json`` of each folder in the format this worker loads (transformers-native, April 2026).
_FORMATS = {"MODEL_PATH": ("higgs_audio_v2", "MODEL_REVISION"),
            "TOKENIZER_PATH": ("higgs_audio_v2_tokenizer", "TOKENIZER_REVISION")}


def _check_format(folder: Path, what: str) -> None:
    """Refuse the pre-2026-04 ``higgs_audio`` layout (upstream's own code) before transformers fails obscurely."""
    want, revision = _FORMATS[what]
    try:
        model_type = json.loads((folder / "config.json").read_text("utf-8")).get("model_type")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{what} {folder}: config.json is unreadable ({exc.__class__.__name__})") from exc
    if model_type != want:
        raise ModelLoadError(
            f"{what} {folder} holds a {model_type!r} model, not {want!r}: it is in the format of the repository "
            f"before April 2026, which this worker cannot load; fetch the current revision ({revision}=main, then "
            "`higgs-worker fetch-models`)")


def check_special_tokens(processor, config) -> None:
    """The text tokenizer must give the audio special tokens the ids the model was trained with; a mismatched
    tokenizer would silently put audio codes in the wrong places."""
    pairs = {"audio token (<|AUDIO_OUT|>)": (processor.audio_token_id, config.audio_token_id),
             "audio start (<|audio_out_bos|>)": (processor.audio_bos_token_id, config.audio_bos_token_id),
             "audio delay": (processor.audio_delay_token_id, config.audio_delay_token_id),
             "audio stream bos": (processor.audio_stream_bos_id, config.audio_stream_bos_id),
             "audio stream eos": (processor.audio_stream_eos_id, config.audio_stream_eos_id)}
    wrong = [f"{name}: tokenizer {got}, model {want}" for name, (got, want) in pairs.items() if got != want]
    tokenizer = processor.tokenizer
    ids = tokenizer.encode(SYSTEM_AUDIO_BOS, add_special_tokens=False)
    if len(ids) != 1 or SYSTEM_AUDIO_BOS not in tokenizer.all_special_tokens + list(tokenizer.get_added_vocab()):
        wrong.append(f"{SYSTEM_AUDIO_BOS} (opens reference audio in the system turn): tokenized as {len(ids)} "
                     "tokens, not one special token")
    if wrong:
        raise ModelLoadError("the text tokenizer does not match the model config (" + "; ".join(wrong) + "); "
                             "MODEL_PATH must hold the tokenizer and config of one revision")


def check_complete(what: str, folder: Path, info: dict) -> None:
    """Every weight of the class came from the checkpoint, and nothing in the checkpoint went unused.

    A tensor transformers had to initialise itself is random: the model still loads and still makes audio of the
    right shape, which is noise, and passes every other check. So a missing, unexpected or mis-shaped tensor
    refuses the load, naming the first few."""
    problems = []
    for key, label in (("missing_keys", "missing"), ("unexpected_keys", "unexpected"),
                       ("mismatched_keys", "mis-shaped")):
        names = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get(key) or ())
        if names:
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            problems.append(f"{len(names)} {label} ({shown})")
    if info.get("error_msgs"):
        problems.append("errors: " + "; ".join(str(m) for m in info["error_msgs"][:2]))
    if problems:
        raise ModelLoadError(f"{what} {folder} loaded incompletely: " + "; ".join(problems) + ". A tensor the "
                             "checkpoint does not provide would be random and the audio noise; fetch the folder "
                             "again (`higgs-worker fetch-models`), or set STRICT_WEIGHTS=false to load it anyway")


def load_model(model_path: Path, tokenizer_path: Path, device: str = "auto", dtype: str = "auto",
               strict: bool = True) -> LoadedModel:
    """Load model, text tokenizer, feature extractor and codec from local folders, offline.

    ``strict`` (``STRICT_WEIGHTS``) refuses a model or codec whose checkpoint leaves a weight uninitialised, or
    holds one the class does not use (:func:`check_complete`); off, the same finding is a warning."""
    import time

    from transformers import (
        AutoTokenizer,
        DacFeatureExtractor,
        HiggsAudioV2ForConditionalGeneration,
        HiggsAudioV2Processor,
        HiggsAudioV2TokenizerModel,
    )

    start = time.perf_counter()
    model_path, tokenizer_path = Path(model_path), Path(tokenizer_path)
    _require(model_path, ("config.json", "tokenizer_config.json"), "MODEL_PATH")
    _require(tokenizer_path, ("config.json",), "TOKENIZER_PATH")
    _check_format(model_path, "MODEL_PATH")
    _check_format(tokenizer_path, "TOKENIZER_PATH")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    try:
        text_tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        if (model_path / "preprocessor_config.json").exists():
            features = DacFeatureExtractor.from_pretrained(model_path, local_files_only=True)
        else:
            features = DacFeatureExtractor(feature_size=1, sampling_rate=24000, hop_length=960)
        codec, codec_info = HiggsAudioV2TokenizerModel.from_pretrained(tokenizer_path, local_files_only=True,
                                                                       output_loading_info=True)
        codec = codec.to(dev).eval()  # the codec stays float32: it is small and bf16 costs fidelity
        processor = HiggsAudioV2Processor(features, text_tokenizer, codec)
        model, model_info = HiggsAudioV2ForConditionalGeneration.from_pretrained(
            model_path, local_files_only=True, dtype=dt, output_loading_info=True)
        model = model.to(dev).eval()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"could not load the model: {exc}") from exc
    for what, folder, info in (("MODEL_PATH", model_path, model_info), ("TOKENIZER_PATH", tokenizer_path, codec_info)):
        try:
            check_complete(what, folder, info)
        except ModelLoadError as exc:
            if strict:
                raise
            log.warning("STRICT_WEIGHTS=false: loading anyway, though %s", exc)
    check_special_tokens(processor, model.config)
    loaded = LoadedModel(model=model, processor=processor, device=dev, dtype=dt,
                         load_s=time.perf_counter() - start, source=read_source(model_path))
    log.info("model loaded from %s (%s) on %s (%s) in %.2f s", model_path,
             "{repo_id}@{commit}".format_map({"repo_id": "?", "commit": "?", **loaded.source}), dev, dt, loaded.load_s)
    return loaded
