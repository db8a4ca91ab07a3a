import hashlib
import json

from higgs_worker.weights.tiny import make_tiny_model


def digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_of_the_real_repos(tiny_model_dir):
    model, codec = tiny_model_dir / "model", tiny_model_dir / "tokenizer"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "preprocessor_config.json", "generation_config.json"):
        assert (model / name).is_file(), name
    assert json.loads((model / "config.json").read_text())["model_type"] == "higgs_audio_v2"
    assert json.loads((codec / "config.json").read_text())["model_type"] == "higgs_audio_v2_tokenizer"
    assert json.loads((model / "config.json").read_text())["codebook_size"] == 1026


def test_seeded_same_command_same_weights(tiny_model_dir, tmp_path):
    again = make_tiny_model(tmp_path / "again", seed=0)
    other = make_tiny_model(tmp_path / "other", seed=1)
    assert digest(again) == digest(tiny_model_dir)
    assert digest(other)["model/model.safetensors"] != digest(again)["model/model.safetensors"]


def test_codec_distinguishes_codes(engine):
    import numpy as np
    import torch

    a = engine.decode(torch.randint(0, 1024, (20, 8), generator=torch.Generator().manual_seed(0)))
    b = engine.decode(torch.randint(0, 1024, (20, 8), generator=torch.Generator().manual_seed(1)))
    assert a.shape == (20 * 960,)
    assert np.abs(a - b).max() > 1e-3 and a.std() > 1e-3


def test_tiny_whisper_in_the_hub_layout(tiny_model_dir, tmp_path):
    asr = tiny_model_dir / "asr"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "preprocessor_config.json", "generation_config.json"):
        assert (asr / name).is_file(), name
    config = json.loads((asr / "config.json").read_text())
    generation = json.loads((asr / "generation_config.json").read_text())
    assert config["model_type"] == "whisper" and config["num_mel_bins"] == 80
    assert generation["alignment_heads"] and generation["is_multilingual"] is True
    assert generation["lang_to_id"]["<|en|>"] == generation["decoder_start_token_id"] + 1
    assert generation["no_timestamps_token_id"] == generation["task_to_id"]["transcribe"] + 4
    other = make_tiny_model(tmp_path / "other", seed=1)
    assert digest(other)["asr/model.safetensors"] != digest(tiny_model_dir)["asr/model.safetensors"]


def test_tiny_whisper_tokenizer_places_special_tokens_as_whisper_does(tiny_model_dir):
    from transformers import WhisperTokenizer

    tok = WhisperTokenizer.from_pretrained(tiny_model_dir / "asr", local_files_only=True)
    tok.set_prefix_tokens(language="french", task="transcribe", predict_timestamps=False)
    ids = tok("bonjour").input_ids
    assert tok.convert_ids_to_tokens(ids[:4]) == ["<|startoftranscript|>", "<|fr|>", "<|transcribe|>",
                                                  "<|notimestamps|>"]
    assert tok.decode(ids, skip_special_tokens=True) == "bonjour"
    assert tok.all_special_ids[-1] == tok.convert_tokens_to_ids("<|notimestamps|>")
    assert tok.convert_tokens_to_ids("<|0.02|>") == tok.all_special_ids[-1] + 2  # timestamps follow, 20 ms apart
