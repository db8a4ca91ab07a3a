"""Streaming windows of concurrent streams decoded together: the same samples as each stream's own decode."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from higgs_worker.engine.codec_batch import CodecBatcher
from higgs_worker.engine.streaming import StreamDecoder

TOLERANCE = 1e-4


def test_decode_batch_equals_one_decode_per_window(engine):
    codes = torch.randint(0, 1024, (5, 32, 8), generator=torch.Generator().manual_seed(4))
    batched = engine.decode_batch(codes)
    assert len(batched) == 5
    for one, wave in zip(codes, batched, strict=True):
        alone = engine.decode(one)
        assert wave.shape == alone.shape == (32 * 960,)
        assert np.abs(wave - alone).max() < TOLERANCE
    short = torch.randint(0, 1024, (2, 3, 8), generator=torch.Generator().manual_seed(5))  # below the codec's kernel
    assert [w.shape for w in engine.decode_batch(short)] == [(3 * 960,), (3 * 960,)]


def test_concurrent_streams_share_codec_calls_and_match_the_whole_decode(engine):
    calls: list[int] = []

    def decode_batch(codes):
        calls.append(codes.shape[0])
        return engine.decode_batch(codes)

    batcher = CodecBatcher(decode_batch)
    streams = [torch.randint(0, 1024, (80, 8), generator=torch.Generator().manual_seed(10 + i)) for i in range(6)]
    results: list[np.ndarray | None] = [None] * len(streams)
    start = threading.Barrier(len(streams))

    def run(i):
        decoder = StreamDecoder(batcher.decode, 960, 8)
        start.wait()
        pieces = [decoder.push(streams[i][a:a + 12]) for a in range(0, 80, 12)]
        results[i] = np.concatenate(pieces + [decoder.flush()])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(streams))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    batcher.close()
    for codes, streamed in zip(streams, results, strict=True):
        full = engine.decode(codes)
        assert streamed is not None and streamed.shape == full.shape
        assert np.abs(streamed - full).max() < TOLERANCE
    assert batcher.windows == sum(calls) and max(calls) > 1  # windows really shared calls
    assert batcher.calls < batcher.windows


def test_a_failed_batch_fails_each_of_its_callers_and_the_batcher_goes_on():
    state = {"fail": True}

    def decode_batch(codes):
        if state["fail"]:
            raise RuntimeError("codec broke")
        return [np.zeros(c.shape[0]) for c in codes]

    batcher = CodecBatcher(decode_batch)
    try:
        with pytest.raises(RuntimeError, match="codec broke"):
            batcher.decode(torch.zeros((9, 8), dtype=torch.long))
        state["fail"] = False
        assert batcher.decode(torch.zeros((9, 8), dtype=torch.long)).shape == (9,)
    finally:
        batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.decode(torch.zeros((9, 8), dtype=torch.long))


def test_the_service_streams_through_the_batcher_when_enabled(service, engine, monkeypatch):
    from higgs_worker.core.schema import SpeechRequest

    batcher = CodecBatcher(engine.decode_batch)
    monkeypatch.setattr(engine, "codec_batcher", batcher)
    try:
        body = {"transcript": "Streamed through shared codec calls.", "seed": 4, "max_new_tokens": 40}
        whole = service.synthesize(SpeechRequest.parse(body))
        stream = service.synthesize_stream(SpeechRequest.parse(body))
        streamed = np.concatenate(list(stream))
    finally:
        batcher.close()
    assert batcher.windows > 0
    assert streamed.shape == whole.waveform.shape and np.abs(streamed - whole.waveform).max() < TOLERANCE
