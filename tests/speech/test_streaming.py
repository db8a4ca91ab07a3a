import numpy as np
import pytest
import torch

from higgs_worker.engine.streaming import StreamDecoder
from higgs_worker.core.schema import SpeechRequest
from higgs_worker.jobs.runner import JobRunner

TOLERANCE = 1e-4


def test_incremental_decode_matches_one_decode(engine):
    codes = torch.randint(0, 1024, (90, 8), generator=torch.Generator().manual_seed(3))
    full = engine.decode(codes)
    decoder = StreamDecoder(engine.decode, 960, 8)
    pieces = [decoder.push(codes[i:i + n]) for i, n in ((0, 5), (5, 17), (22, 1), (23, 40), (63, 27))]
    pieces.append(decoder.flush())
    streamed = np.concatenate(pieces)
    assert streamed.shape == full.shape
    assert np.abs(streamed - full).max() < TOLERANCE
    assert pieces[0].size == 0  # fewer frames than the right context: nothing yet
    assert pieces[3].size > 0


def test_service_stream_equals_the_whole_result(service):
    body = {"transcript": " ".join(f"w{i}" for i in range(12)), "chunk_method": "word", "chunk_max_word_num": 4,
            "seed": 11, "max_new_tokens": 30, "ref_audio": "tenor"}
    whole = service.synthesize(SpeechRequest.parse(body))
    stream = service.synthesize_stream(SpeechRequest.parse(body))
    pieces = list(stream)
    assert len(pieces) >= 2
    streamed = np.concatenate(pieces)
    assert streamed.shape == whole.waveform.shape
    assert np.abs(streamed - whole.waveform).max() < TOLERANCE
    meta = stream.metadata()
    assert meta["frames"] == whole.frames and meta["seed"] == 11 and meta["chunks"] == 3
    assert 0 < meta["timings"]["first_audio"] <= meta["timings"]["total"]


def test_delay_reverter_equals_generated_codes():
    from higgs_worker.engine.codes import generated_codes, with_delay
    from higgs_worker.engine.streaming import DelayReverter

    codes = torch.randint(0, 1024, (30, 8), generator=torch.Generator().manual_seed(5))
    for delayed in (with_delay(codes, 8), with_delay(codes, 8)[:20]):  # ended, and cut off before the end
        reverter = DelayReverter(8)
        pieces = [reverter.push(frame) for frame in delayed]
        streamed = torch.cat(pieces + [reverter.close(truncated=not reverter.ended)])
        assert torch.equal(streamed, generated_codes(delayed))


def test_first_audio_arrives_before_the_end(service):
    for seed in range(20):  # the random tiny model ends some runs early: take the first seed with a long one
        body = {"transcript": "One long chunk of speech.", "seed": seed, "max_new_tokens": 200, "temperature": 1.0,
                "ras_win_len": 0}
        stream = service.synthesize_stream(SpeechRequest.parse(body))
        pieces = list(stream)
        meta = stream.metadata()
        if meta["frames"] >= 40:
            break
    assert meta["frames"] >= 40
    assert len(pieces) >= 3
    assert meta["timings"]["first_audio"] < meta["timings"]["total"] * 0.6


# -- every caller of encode_stream hands it the engine's rate ----------------------------------------------------

@pytest.fixture()
def encode_stream_calls(monkeypatch):
    """Record the arguments of every ``audio.encode_stream`` call (bound to its signature), then encode as usual."""
    import inspect

    from higgs_worker import audio

    real = audio.encode_stream
    calls: list[dict] = []

    def spy(*args, **kwargs):
        calls.append(inspect.signature(real).bind(*args, **kwargs).arguments)
        return real(*args, **kwargs)

    monkeypatch.setattr(audio, "encode_stream", spy)
    return calls


def test_a_streamed_job_encodes_at_the_engines_rate(service, encode_stream_calls):
    pieces = []
    output = JobRunner(service).run_job({"transcript": "Rate check.", "seed": 2, "max_new_tokens": 20, "stream": True,
                              "format": "wav"}, emit=pieces.append)
    assert "error" not in output and pieces
    assert len(encode_stream_calls) == 1
    assert encode_stream_calls[0].get("sample_rate") == service.engine.sample_rate


@pytest.mark.parametrize("stream_format", ["audio", "sse"])
def test_streamed_speech_encodes_at_the_engines_rate(service, encode_stream_calls, stream_format):
    from fastapi.testclient import TestClient

    from higgs_worker.http import create_app

    with TestClient(create_app(service.settings, service)) as client:
        response = client.post("/v1/audio/speech", json={
            "model": "tts-1", "voice": "tenor", "input": "Rate check.", "response_format": "wav",
            "stream_format": stream_format, "seed": 2, "max_new_tokens": 20})
    assert response.status_code == 200 and response.content
    assert len(encode_stream_calls) == 1
    assert encode_stream_calls[0].get("sample_rate") == service.engine.sample_rate


def test_the_stream_context_covers_the_real_codecs_reach():
    """The full-size codec's decoder layout (as the published tokenizer converts to transformers), built without
    weights: one code frame reaches 10 frames each side, and the windows give at least that."""
    from transformers import DacConfig, HiggsAudioV2TokenizerConfig, HiggsAudioV2TokenizerModel

    from higgs_worker.engine.streaming import LEFT_CONTEXT_FRAMES, RIGHT_CONTEXT_FRAMES, decoder_reach

    acoustic = DacConfig(encoder_hidden_size=64, downsampling_ratios=[8, 5, 4, 2, 3], decoder_hidden_size=1024,
                         upsampling_ratios=[8, 5, 4, 2, 3], hidden_size=256)
    config = HiggsAudioV2TokenizerConfig(acoustic_model_config=acoustic.to_dict())
    with torch.device("meta"):
        codec = HiggsAudioV2TokenizerModel(config)
    assert config.hop_length == 960
    left, right = decoder_reach(codec.acoustic_decoder, 960)
    assert (left, right) == (10, 10)
    assert LEFT_CONTEXT_FRAMES >= left and RIGHT_CONTEXT_FRAMES >= right


def test_the_measured_reach_of_the_tiny_codec_is_the_computed_one(engine):
    """Perturb one code frame and see how far the decoded audio moves: never past the computed reach."""
    from higgs_worker.engine.streaming import decoder_reach

    codec = engine.processor.audio_tokenizer
    left, right = decoder_reach(codec.acoustic_decoder, 960)
    codes = torch.randint(0, 1024, (40, 8), generator=torch.Generator().manual_seed(9))
    other = codes.clone()
    other[20] = (other[20] + 512) % 1024
    moved = np.nonzero(np.abs(engine.decode(codes) - engine.decode(other)) > 0)[0]
    assert len(moved)
    first, last = moved[0] // 960, moved[-1] // 960
    assert 20 - first <= right and last - 20 <= left
