import numpy as np
import torch

from higgs_worker.engine.streaming import StreamDecoder
from higgs_worker.schema import SpeechRequest

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
        streamed = torch.cat(pieces)
        assert torch.equal(streamed, generated_codes(delayed))


def test_first_audio_arrives_before_the_end(service):
    body = {"transcript": "One long chunk of speech.", "seed": 3, "max_new_tokens": 200, "temperature": 1.0,
            "ras_win_len": 0}
    stream = service.synthesize_stream(SpeechRequest.parse(body))
    pieces = list(stream)
    meta = stream.metadata()
    assert meta["frames"] >= 40  # this seed makes a long run (192 frames on the tiny model)
    assert len(pieces) >= 3
    assert meta["timings"]["first_audio"] < meta["timings"]["total"] * 0.6
