"""A tiny, random Higgs Audio V2 written in the real repositories' layout.

The real weights cannot be fetched everywhere (CI, offline demos), so the project makes its own small model
with the same transformers classes and ``save_pretrained``. It is then loaded by exactly the code that loads
the real one (:mod:`higgs_worker.engine.loader`), which is the point: nothing downstream knows it is tiny.

Layout written (as the two hub repos):

* ``DIR/model``: ``config.json`` + weights of :class:`HiggsAudioV2ForConditionalGeneration`, the text tokenizer,
  the feature extractor (``preprocessor_config.json``) and a ``generation_config.json``.
* ``DIR/tokenizer``: ``config.json`` + weights of :class:`HiggsAudioV2TokenizerModel` (the audio codec).
* ``DIR/asr``: a random multilingual Whisper (:class:`WhisperForConditionalGeneration`, its tokenizer, feature
  extractor and a generation config with alignment heads), the speech recogniser's layout, as the hub repo
  ``openai/whisper-large-v3-turbo`` has it. It hears nonsense, but through the real loading and decoding path.
* ``DIR/sv``: a random speaker-verification x-vector model (:class:`WavLMForXVector` and its
  ``Wav2Vec2FeatureExtractor``), the voice check's layout, as the hub repo ``microsoft/wavlm-base-plus-sv`` has it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

#: The special tokens the Llama-3 chat format and Higgs Audio V2 use, in the order they get ids after the bytes.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|audio_out_bos|>",
    "<|reserved_special_token_6|>",
    "<|AUDIO|>",
    "<|AUDIO_OUT|>",
    "<|scene_desc_start|>",
    "<|scene_desc_end|>",
)

#: Codec frame rate of the real tokenizer: 24 kHz / 960 samples per frame.
TINY_HOP = (8, 5, 4, 6)


@dataclass(frozen=True)
class TinySize:
    """Shape of the random LLM. The default keeps the test suite fast on two cores."""

    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 128
    max_position_embeddings: int = 4096


#: About 40M parameters (40,016,896): the size the CPU benchmarks use.
BENCH_SIZE = TinySize(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
                      intermediate_size=1024)


def _text_tokenizer():
    """A byte-level BPE with no merges: every byte is a token, plus the chat and audio special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|end_of_text|>",
        model_max_length=131072,
    )


def _codec_config():
    from transformers import DacConfig, HubertConfig, HiggsAudioV2TokenizerConfig

    acoustic = DacConfig(
        encoder_hidden_size=4,
        downsampling_ratios=list(TINY_HOP),
        decoder_hidden_size=32,
        upsampling_ratios=list(TINY_HOP),
        hidden_size=64,
        n_codebooks=8,
        codebook_size=1024,
        codebook_dim=8,
    )
    semantic = HubertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16, 16, 16, 16, 16),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        mask_time_prob=0.0,
    )
    return HiggsAudioV2TokenizerConfig(
        acoustic_model_config=acoustic.to_dict(),
        semantic_model_config=semantic.to_dict(),
        target_bandwidths=[0.5, 1, 1.5, 2],
        codebook_size=1024,
        codebook_dim=8,
        sample_rate=24000,
        semantic_sample_rate=16000,
        downsample_factor=320,
    )


@torch.no_grad()
def _give_codec_range(codec, generator: torch.Generator) -> None:
    """Make the random codec behave like a codec: distinct codes for distinct audio, audio that depends on codes.

    A freshly initialised codec has all-zero codebooks (every frame encodes to the same code and decodes to the
    same sound) and near-silent output; tests of cloning and decoding would then prove nothing.
    """
    for module in codec.modules():
        if module.__class__.__name__ == "Snake1d":
            module.alpha.fill_(1.0)
    for q in codec.quantizer.quantizers:
        q.codebook.embed.copy_(torch.randn(q.codebook.embed.shape, generator=generator))
        q.codebook.embed_avg.copy_(q.codebook.embed)
        q.codebook.cluster_size.fill_(1.0)
        q.project_in.weight.normal_(0.0, 1.0, generator=generator)
        q.project_out.weight.normal_(0.0, 0.5, generator=generator)
    codec.fc2.weight.normal_(0.0, 0.3, generator=generator)
    codec.acoustic_decoder.conv2.weight.mul_(20.0)


def make_tiny_model(out_dir: str | Path, seed: int = 0, size: TinySize = TinySize()) -> Path:
    """Write a random tiny Higgs Audio V2 (LLM + text tokenizer + codec) under ``out_dir``; returns ``out_dir``.

    Seeded: the same ``seed`` and ``size`` write the same weights.
    """
    from transformers import (
        DacFeatureExtractor,
        GenerationConfig,
        HiggsAudioV2Config,
        HiggsAudioV2ForConditionalGeneration,
        HiggsAudioV2TokenizerModel,
    )

    out = Path(out_dir)
    model_dir, codec_dir = out / "model", out / "tokenizer"
    model_dir.mkdir(parents=True, exist_ok=True)
    codec_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = _text_tokenizer()
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    head_dim = size.hidden_size // size.num_attention_heads
    config = HiggsAudioV2Config(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        num_key_value_heads=size.num_key_value_heads,
        head_dim=head_dim,
        max_position_embeddings=size.max_position_embeddings,
        num_codebooks=8,
        codebook_size=1026,
        pad_token_id=ids["<|end_of_text|>"],
        bos_token_id=ids["<|begin_of_text|>"],
        eos_token_id=ids["<|eot_id|>"],
        audio_token_id=ids["<|AUDIO_OUT|>"],
        audio_bos_token_id=ids["<|audio_out_bos|>"],
        audio_delay_token_id=ids["<|reserved_special_token_6|>"],
        audio_stream_bos_id=1024,
        audio_stream_eos_id=1025,
    )
    torch.manual_seed(seed)
    model = HiggsAudioV2ForConditionalGeneration(config).eval()
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    DacFeatureExtractor(feature_size=1, sampling_rate=24000, hop_length=960).save_pretrained(model_dir)
    GenerationConfig(
        do_sample=True, temperature=0.3, top_p=0.95, top_k=50,
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
    ).save_pretrained(model_dir)

    torch.manual_seed(seed + 1)
    codec = HiggsAudioV2TokenizerModel(_codec_config()).eval()
    _give_codec_range(codec, torch.Generator().manual_seed(seed + 2))
    codec.save_pretrained(codec_dir)
    make_tiny_whisper(out / "asr", seed=seed)
    make_tiny_xvector(out / "sv", seed=seed)
    (out / "TINY_MODEL.json").write_text(json.dumps({"seed": seed, "size": size.__dict__}, indent=2) + "\n")
    return out


#: Byte tokens the random Whisper may write: lower-case letters, a few punctuation marks and the word-separating
#: space (``Ġ`` in byte-level BPE). Everything else is suppressed so its nonsense stays printable.
TINY_WHISPER_TEXT = "abcdefghijklmnopqrstuvwxyz.,'?Ġ"


def _whisper_tokenizer():
    """A byte-level Whisper tokenizer without merges, with Whisper's special tokens in Whisper's order.

    The order matters: transformers finds a language's token at ``<|startoftranscript|>`` + 1 + its index in
    ``LANGUAGES``, and the timestamp tokens right after ``<|notimestamps|>`` (the last special token).
    """
    from tokenizers import AddedToken, pre_tokenizers
    from transformers import WhisperTokenizer
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    specials = ["<|startoftranscript|>", *(f"<|{code}|>" for code in LANGUAGES), "<|translate|>", "<|transcribe|>",
                "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[], model_max_length=448)  # adds <|endoftext|> after the bytes
    tokenizer.add_special_tokens(
        {"extra_special_tokens": [AddedToken(s, special=True, normalized=False) for s in specials]})
    tokenizer.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", special=False, normalized=False) for i in range(1501)])
    tokenizer.set_prefix_tokens()
    return tokenizer


def make_tiny_whisper(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a random tiny multilingual Whisper (model, tokenizer, 80-bin feature extractor, generation config).

    Its weights are drawn with standard deviation 1 instead of Whisper's 0.02: with the usual small weights a
    random decoder says one letter forever, whatever it hears, which would leave nothing to align or caption.
    """
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _whisper_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    eos = tokenizer.eos_token_id
    allowed = {ids(ch) for ch in TINY_WHISPER_TEXT} | {eos}
    suppress = [i for i in range(len(tokenizer)) if i not in allowed]
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=1500, max_target_positions=448, pad_token_id=eos, bos_token_id=eos, eos_token_id=eos,
        decoder_start_token_id=ids("<|startoftranscript|>"), begin_suppress_tokens=[ids("Ġ"), eos],
    )
    torch.manual_seed(seed + 3)
    model = WhisperForConditionalGeneration(config).eval()
    generator = torch.Generator().manual_seed(seed + 4)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 1.0, generator=generator)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
        max_length=448, begin_suppress_tokens=[ids("Ġ"), eos], suppress_tokens=suppress,
        alignment_heads=[[1, h] for h in range(config.decoder_attention_heads)],
        is_multilingual=True, lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={"translate": ids("<|translate|>"), "transcribe": ids("<|transcribe|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"), prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50, return_timestamps=False,
    )
    model.save_pretrained(out)
    features = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000)
    WhisperProcessor(features, tokenizer).save_pretrained(out)
    features.save_pretrained(out)  # preprocessor_config.json, as in the hub repos
    return out


def make_tiny_xvector(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a random tiny :class:`WavLMForXVector` (32-dimensional embeddings) and its 16 kHz feature extractor."""
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                         num_buckets=32, max_bucket_distance=100, tdnn_dim=(32, 32, 32, 32, 64),
                         xvector_output_dim=32, mask_time_prob=0.0)
    torch.manual_seed(seed + 5)
    WavLMForXVector(config).eval().save_pretrained(out)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(out)
    return out
