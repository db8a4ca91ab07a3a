"""The engine on the tiny model, loaded by the real loader."""

from pathlib import Path

import numpy as np
import pytest
import torch

from higgs_worker.engine import Engine, Prompt, Sampling, load_model
from higgs_worker.engine.codes import generated_codes
from higgs_worker.core.errors import ModelLoadError
from higgs_worker.weights.folders import resolve_device, resolve_dtype
from higgs_worker.engine.prompt import AudioTurn, model_inputs

GREEDY = Sampling(temperature=0.0, ras_win_len=0, max_new_tokens=24)
SAMPLED = Sampling(temperature=1.0, top_p=0.95, top_k=50, max_new_tokens=24)


def test_device_and_dtype_defaults():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16


def test_loader_refuses_missing_folders(tmp_path):
    with pytest.raises(ModelLoadError, match="MODEL_PATH folder"):
        load_model(tmp_path / "nope", tmp_path / "nope2", "cpu", "float32")


def test_loader_uses_local_files_only(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: any hub call would fail
    loaded = load_model(tiny_model_dir / "model", tiny_model_dir / "tokenizer", "cpu", "auto")
    assert loaded.dtype == torch.float32 and loaded.device.type == "cpu"
    assert loaded.sample_rate == 24000 and loaded.frame_rate == 25


def test_same_seed_same_codes_different_seed_differs(engine):
    prompt = Prompt(text="The same words twice.")
    a = engine.generate(prompt, SAMPLED, seed=7)
    b = engine.generate(prompt, SAMPLED, seed=7)
    c = engine.generate(prompt, SAMPLED, seed=8)
    assert a.codes.shape[0] > 0
    assert torch.equal(a.codes, b.codes)
    assert not torch.equal(a.codes, c.codes)
    assert np.array_equal(engine.decode(a.codes), engine.decode(b.codes))


def test_greedy_codes_equal_a_direct_generate_on_processor_inputs(engine):
    """Fidelity: the engine's path gives what ``model.generate`` gives on the same inputs, cut by the same rule
    (upstream's end of a chunk, :func:`~higgs_worker.engine.codes.generated_codes`), and decodes as the
    processor decodes those codes."""
    from higgs_worker.engine.codes import with_delay

    rng = np.random.default_rng(1)
    wave = (rng.standard_normal(36000) * 0.1).astype(np.float32)
    prompt = Prompt(text="Fidelity check.", scene="A quiet room.",
                    turns=[AudioTurn("Reference.", engine.encode_reference(wave))])
    ours = engine.generate(prompt, GREEDY, seed=0)

    inputs = model_inputs(engine.processor, prompt)  # equal to the processor's, given the same codes
    out = engine.model.generate(**inputs, do_sample=False, max_new_tokens=GREEDY.max_new_tokens,
                                return_dict_in_generate=True)
    direct = generated_codes(out.audio_sequences[0, inputs["audio_input_ids"].shape[1]:])
    assert ours.codes.shape[0] > 0
    assert torch.equal(ours.codes, direct)
    reference_audio = engine.processor.batch_decode(with_delay(ours.codes, engine.num_codebooks)[None])[0]
    assert np.allclose(engine.decode(ours.codes), reference_audio.numpy(), atol=1e-6)


def upstream_frames(codec, n: int) -> int:
    """Frames upstream's tokenizer makes from ``n`` samples: the semantic count floor((n + 841) / 960), or the
    acoustic count of the input padded 320 a side where that is shorter (the longer branch is cut)."""
    from higgs_worker.engine.codec_encode import acoustic_frames

    semantic = (n + 841) // 960
    acoustic = acoustic_frames(codec, n)
    return semantic if acoustic == semantic else min(semantic, acoustic_frames(codec, n + 640))


def test_reference_codes_are_encoded_once_and_reach_the_prompt(engine):
    rng = np.random.default_rng(2)
    wave = (rng.standard_normal(30000) * 0.1).astype(np.float32)
    before = engine.reference_encodes
    codes = engine.encode_reference(wave)
    again = engine.encode_reference(wave.copy())
    assert engine.reference_encodes == before + 1 and again is codes
    assert codes.shape == (upstream_frames(engine.processor.audio_tokenizer, 30000), 8)
    inputs = model_inputs(engine.processor, Prompt(text="x", turns=[AudioTurn("y", codes)]))
    delayed = inputs["audio_input_ids"][0]
    assert torch.equal(generated_codes(delayed), codes)


def test_cancel_before_start_raises(engine):
    import threading

    from higgs_worker.engine import Cancelled

    event = threading.Event()
    event.set()
    with pytest.raises(Cancelled):
        engine.generate(Prompt(text="never"), SAMPLED, seed=1, cancel=event)


def test_decode_of_no_codes_is_empty(engine: Engine):
    assert engine.decode(torch.zeros((0, 8), dtype=torch.long)).shape == (0,)


def test_very_short_codes_decode(engine: Engine):
    for frames in (1, 3, 7):
        wave = engine.decode(torch.randint(0, 1024, (frames, 8)))
        assert wave.shape == (frames * 960,)


def _acoustic_inputs(engine, wave) -> tuple[torch.Tensor, list[int]]:
    """Codes of ``wave`` and the lengths the codec's acoustic encoder was given while making them."""
    seen: list[int] = []
    hook = engine.processor.audio_tokenizer.acoustic_encoder.register_forward_pre_hook(
        lambda module, args: seen.append(int(args[0].shape[-1])))
    try:
        codes = engine.encode_reference(wave)
    finally:
        hook.remove()
    return codes, seen


def test_reference_encoding_pads_and_cuts_as_upstreams_tokenizer(engine):
    """Upstream encodes the acoustic branch as it is when its frame count matches the semantic branch's, and
    otherwise on the input padded with 160 * semantic_downsample_factor (320) zeros a side, cut to the semantic
    count; transformers pads hop / 2 (480). Upstream's frame count is floor((n + 841) / 960)."""
    from higgs_worker.engine.codec_encode import acoustic_frames

    codec = engine.processor.audio_tokenizer
    rng = np.random.default_rng(3)
    matching = next(n for n in range(960 * 10, 960 * 11) if acoustic_frames(codec, n) == (n + 841) // 960)
    padding = next(n for n in range(960 * 10, 960 * 11) if acoustic_frames(codec, n) != (n + 841) // 960)
    for n, padded in ((matching, matching), (padding, padding + 640)):
        wave = (0.2 * rng.standard_normal(n)).astype(np.float32)
        codes, seen = _acoustic_inputs(engine, wave)
        assert seen == [padded]  # the acoustic encoder saw exactly upstream's input, once
        # the semantic count, or the acoustic one where padding still leaves it short (cut at the end)
        assert codes.shape == (min((n + 841) // 960, acoustic_frames(codec, padded)), engine.num_codebooks)
        processor = engine.processor
        inputs = processor(text=[f"x {processor.audio_token}"], audio=[wave], return_tensors="pt")
        theirs = generated_codes(torch.cat([inputs["audio_input_ids"][0], inputs["audio_input_ids"][0][-1:]]),
                                 processor.audio_stream_bos_id, processor.audio_stream_eos_id)
        if n == matching:
            assert torch.equal(codes, theirs)  # no padding: the transformers path is upstream's
        else:
            assert not torch.equal(codes, theirs)  # padded 480 a side there: shifted acoustic frames


def test_a_generation_cut_at_max_new_tokens_says_truncated(engine):
    cut = engine.generate(Prompt(text="Cut short."), Sampling(temperature=0.0, ras_win_len=0, max_new_tokens=5), 1)
    assert cut.truncated and cut.steps == 5
    free = engine.generate(Prompt(text="Free."), Sampling(temperature=0.0, ras_win_len=0, max_new_tokens=5,
                                                         stop_at_eos=False), 1)
    assert not free.truncated  # asked to run to the limit: nothing was cut


def _copy_tiny(tiny_model_dir, tmp_path):
    import shutil

    dst = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, dst)
    return dst


def test_loader_refuses_a_tokenizer_whose_audio_ids_are_shuffled(tiny_model_dir, tmp_path):
    import json

    dst = _copy_tiny(tiny_model_dir, tmp_path)
    config_path = dst / "model" / "config.json"
    config = json.loads(config_path.read_text())
    config["audio_token_id"], config["audio_bos_token_id"] = config["audio_bos_token_id"], config["audio_token_id"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="does not match the model config") as err:
        load_model(dst / "model", dst / "tokenizer", "cpu", "float32")
    assert "<|AUDIO_OUT|>" in str(err.value)


def test_loader_refuses_a_tokenizer_without_the_system_audio_token(tiny_model_dir, tmp_path):
    """Reference audio in the system turn opens with ``<|audio_bos|>``: a tokenizer that splits it into bytes would
    feed the model text where it was trained on one special token."""
    dst = _copy_tiny(tiny_model_dir, tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        path = dst / "model" / name
        if path.exists():
            path.write_text(path.read_text().replace("<|audio_bos|>", "<|audio_bxs|>"))
    with pytest.raises(ModelLoadError, match="does not match the model config") as err:
        load_model(dst / "model", dst / "tokenizer", "cpu", "float32")
    assert "<|audio_bos|>" in str(err.value) and "not one special token" in str(err.value)


@pytest.mark.parametrize(("folder", "old_type", "setting"), [("model", "higgs_audio", "MODEL_REVISION"),
                                                             ("tokenizer", None, "TOKENIZER_REVISION")])
def test_loader_refuses_the_old_format_naming_the_revision(tiny_model_dir, tmp_path, folder, old_type, setting):
    import json

    dst = _copy_tiny(tiny_model_dir, tmp_path)
    config_path = dst / folder / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("model_type", None)
    if old_type:
        config["model_type"] = old_type
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=setting):
        load_model(dst / "model", dst / "tokenizer", "cpu", "float32")


def test_loaded_commit_comes_from_the_completion_marker(tiny_model_dir, tmp_path):
    import json

    dst = _copy_tiny(tiny_model_dir, tmp_path)
    (dst / "model" / ".higgs-complete.json").write_text(json.dumps(
        {"repo_id": "bosonai/higgs-audio-v2-generation-3B-base", "revision": "main", "commit": "a" * 40}))
    loaded = load_model(dst / "model", dst / "tokenizer", "cpu", "float32")
    assert loaded.commit == "a" * 40 and loaded.source["revision"] == "main"
    assert load_model(tiny_model_dir / "model", tiny_model_dir / "tokenizer", "cpu", "float32").commit is None


def _drop_tensor(folder: Path, pick) -> str:
    """Rewrite ``folder``'s safetensors without one tensor (the first name ``pick`` accepts); returns its name."""
    from safetensors.torch import load_file, save_file

    path = next(folder.glob("*.safetensors"))
    tensors = load_file(path)
    name = next(n for n in sorted(tensors) if pick(n))
    del tensors[name]
    save_file(tensors, path, metadata={"format": "pt"})
    return name


@pytest.mark.parametrize(("folder", "setting", "pick"), [
    ("model", "MODEL_PATH", lambda n: "layers.0." in n and n.endswith("weight")),
    ("tokenizer", "TOKENIZER_PATH", lambda n: "decoder" in n and n.endswith("weight")),
])
def test_a_checkpoint_missing_a_tensor_refuses_to_load_naming_it(tiny_model_dir, tmp_path, folder, setting, pick,
                                                                  caplog):
    dst = _copy_tiny(tiny_model_dir, tmp_path)
    name = _drop_tensor(dst / folder, pick)
    with pytest.raises(ModelLoadError, match="loaded incompletely") as err:
        load_model(dst / "model", dst / "tokenizer", "cpu", "float32")
    assert setting in str(err.value) and "1 missing" in str(err.value) and name in str(err.value)
    with caplog.at_level("WARNING"):
        loaded = load_model(dst / "model", dst / "tokenizer", "cpu", "float32", strict=False)  # STRICT_WEIGHTS=false
    assert loaded.model is not None and any(name in r.getMessage() for r in caplog.records)


def test_a_checkpoint_with_an_extra_tensor_refuses_to_load(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    dst = _copy_tiny(tiny_model_dir, tmp_path)
    path = next((dst / "model").glob("*.safetensors"))
    tensors = load_file(path)
    tensors["model.stray_projection.weight"] = torch.zeros(2, 2)
    save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="1 unexpected") as err:
        load_model(dst / "model", dst / "tokenizer", "cpu", "float32")
    assert "stray_projection" in str(err.value)


def test_rows_stop_at_upstreams_end_column_alone_and_batched(engine):
    """Each row stops at the column upstream ends its audio (codes.chunk_end), whether it runs alone or beside
    others, and its codes are those the whole decode and the streaming reverter cut from its frames."""
    from higgs_worker.engine.codes import chunk_end
    from higgs_worker.engine.streaming import DelayReverter

    sampling = Sampling(temperature=1.0, max_new_tokens=300)
    seeds = range(6)
    alone = []
    for seed in seeds:
        job = engine.start(Prompt(text="Hello there."), sampling, seed)
        alone.append((job, engine.finish(job)))
    jobs = [engine.start(Prompt(text="Hello there."), sampling, seed) for seed in seeds]
    batched = [(job, engine.finish(job)) for job in jobs]
    ended = 0
    for (job_a, gen_a), (job_b, gen_b) in zip(alone, batched, strict=True):
        assert torch.equal(gen_a.codes, gen_b.codes)
        frames = torch.stack(job_a.frames)
        if not gen_a.truncated:
            ended += 1
            assert len(job_a.frames) - 1 == chunk_end(frames)  # not one column more or less
        reverter = DelayReverter(engine.num_codebooks)
        pieces = [reverter.push(f) for f in frames]
        streamed = torch.cat(pieces + [reverter.close(truncated=gen_a.truncated)])
        assert torch.equal(streamed, gen_a.codes)
    assert ended >= 3  # the tiny model ends most of these well before 300 frames


def test_long_audio_is_decoded_in_windows_equal_to_one_call(engine, monkeypatch):
    """Past DECODE_WINDOW_FRAMES the codec sees windows (the window plus its reach of context), never the whole
    utterance, and the samples equal one call within float rounding."""
    from higgs_worker.engine import engine as engine_module

    codes = torch.randint(0, 1024, (100, 8), generator=torch.Generator().manual_seed(4))
    whole = engine.decode_batch(codes[None])[0]
    seen: list[int] = []
    real = engine.decode_batch

    def spy(batch):
        seen.append(int(batch.shape[1]))
        return real(batch)

    monkeypatch.setattr(engine_module, "DECODE_WINDOW_FRAMES", 30)
    monkeypatch.setattr(engine, "decode_batch", spy)
    windowed = engine.decode(codes)
    assert windowed.shape == whole.shape
    assert np.abs(windowed - whole).max() < 1e-4
    assert len(seen) > 1 and max(seen) <= 30 + 2 * 10  # a window and the codec's reach on each side
