"""The recognizer on the tiny random Whisper, loaded by the real loader: batching, word times, windows, errors.

Random weights hear nonsense, so these tests check structure (words, times, batching, offsets), never meaning.
The alignment maths is checked separately on attention whose answer is known.
"""

import json
import shutil
import threading

import numpy as np
import pytest
import torch
from prometheus_client import CollectorRegistry

from higgs_worker.asr.loader import ASRLoadError, load_asr
from higgs_worker.asr.metrics import ASRMetrics
from higgs_worker.asr.recognizer import (
    Recognizer,
    RecognizerClosed,
    dtw_path,
    language_code,
    token_start_times,
)

RATE = 24000


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_asr(tiny_model_dir / "asr", "cpu")


@pytest.fixture()
def recognizer(loaded):
    rec = Recognizer(loaded, batch_window_s=0.005)
    yield rec
    rec.close()


def speechlike(seconds, seed=0):
    """Bursts of a harmonic tone with pauses: something for the encoder to attend to."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = (np.sin(2 * np.pi * 1.5 * t) > -0.3).astype(np.float32)
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 540, 900), start=1))
    return (0.2 * envelope * voice + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


class CountingGenerate:
    """Wraps ``model.generate`` to count calls and the rows of each."""

    def __init__(self, model, fail=False):
        self.real = model.generate
        self.rows: list[int] = []
        self.fail = fail

    def __call__(self, *args, **kwargs):
        self.rows.append(int(kwargs["encoder_outputs"].last_hidden_state.shape[0]))
        if self.fail:
            raise RuntimeError("generate broke")
        return self.real(*args, **kwargs)


def check_words(transcript, duration):
    assert transcript.duration == pytest.approx(duration)
    assert transcript.words, "the tiny Whisper always says something (begin_suppress_tokens forbids ending first)"
    last = 0.0
    for w in transcript.words:
        assert w.word and w.word == w.word.strip()
        assert last <= w.start <= w.end <= duration + 1e-9
        last = w.end
    assert " ".join(w.word for w in transcript.words).split() == transcript.text.split()


def test_transcribe_gives_text_and_monotonic_word_times_inside_the_audio(recognizer):
    transcript = recognizer.transcribe(speechlike(3.0), "en")
    assert transcript.language == "en" and transcript.text and transcript.word_timestamps
    check_words(transcript, 3.0)
    as_dicts = [w.as_dict() for w in transcript.words]
    assert set(as_dicts[0]) == {"word", "start", "end"}


def test_same_audio_same_transcript_and_rates_are_honoured(recognizer):
    wave = speechlike(2.0, seed=3)
    first = recognizer.transcribe(wave, "english")
    assert recognizer.transcribe(wave, "en") == first
    at_16k = recognizer.transcribe(wave[::3][: len(wave) * 2 // 3], "en", sample_rate=16000)  # any other rate
    assert at_16k.duration == pytest.approx(len(wave[::3][: len(wave) * 2 // 3]) / 16000)


def test_language_is_detected_when_not_given(recognizer):
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    transcript = recognizer.transcribe(speechlike(1.5), None)
    assert transcript.language in LANGUAGES
    check_words(transcript, 1.5)


def test_unknown_language_is_refused_before_any_work(recognizer):
    counting = CountingGenerate(recognizer.model)
    recognizer.model.generate = counting
    try:
        with pytest.raises(ValueError, match="unknown language"):
            recognizer.transcribe(speechlike(1.0), "klingon")
    finally:
        del recognizer.model.generate
    assert counting.rows == []
    assert language_code("Mandarin") == "zh" and language_code("JA") == "ja" and language_code(None) is None


def test_callers_arriving_together_share_one_generate_call(loaded):
    # A long window and a batch of 2: the batch closes as soon as both are queued, so no timing is assumed.
    rec = Recognizer(loaded, batch_window_s=30.0, max_batch_size=2)
    counting = CountingGenerate(rec.model)
    rec.model.generate = counting
    waves = [speechlike(2.0, seed=1), speechlike(3.0, seed=2)]
    results: dict[int, object] = {}
    barrier = threading.Barrier(2)

    def call(k):
        barrier.wait()
        results[k] = rec.transcribe(waves[k], ["en", "fr"][k])

    threads = [threading.Thread(target=call, args=(k,)) for k in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert counting.rows == [2], "two callers at once should be one batch of two"
        assert rec.batches == 1 and rec.windows == 2
        assert results[0].language == "en" and results[1].language == "fr"
        check_words(results[0], 2.0)
        check_words(results[1], 3.0)
        # a batch row hears what it would hear alone
        alone = Recognizer(loaded)
        try:
            assert alone.transcribe(waves[0], "en").text == results[0].text
            assert alone.transcribe(waves[1], "fr").text == results[1].text
        finally:
            alone.close()
    finally:
        del rec.model.generate
        rec.close()


def test_audio_beyond_30_seconds_is_windowed_with_offsets(recognizer):
    counting = CountingGenerate(recognizer.model)
    recognizer.model.generate = counting
    try:
        transcript = recognizer.transcribe(speechlike(65.0), "en")
    finally:
        del recognizer.model.generate
    assert counting.rows == [3]  # three windows, one batch
    check_words(transcript, 65.0)
    # every window says something, and its words carry the window's offset
    assert any(w.start >= 30.0 for w in transcript.words) and any(w.start >= 55.0 for w in transcript.words)
    assert any(w.end <= 30.0 for w in transcript.words)


def test_alignment_in_parts_gives_the_same_times(recognizer, monkeypatch):
    from higgs_worker.asr import recognizer as module

    wave = speechlike(65.0, seed=4)
    whole = recognizer.transcribe(wave, "en")
    monkeypatch.setattr(module, "ALIGN_ROWS", 1)
    assert recognizer.transcribe(wave, "en") == whole


def test_a_failed_batch_fails_its_callers_and_the_next_batch_works(recognizer):
    recognizer.model.generate = CountingGenerate(recognizer.model, fail=True)
    try:
        with pytest.raises(RuntimeError, match="generate broke"):
            recognizer.transcribe(speechlike(1.0), "en")
    finally:
        del recognizer.model.generate
    check_words(recognizer.transcribe(speechlike(1.0), "en"), 1.0)


def test_empty_audio_needs_no_model_and_closed_recognizer_refuses(loaded):
    rec = Recognizer(loaded)
    empty = rec.transcribe(np.zeros(0, np.float32), "en")
    assert empty.text == "" and empty.words == () and rec.batches == 0
    rec.close()
    with pytest.raises(RecognizerClosed):
        rec.transcribe(speechlike(1.0), "en")


def test_close_finishes_or_refuses_queued_work_without_waiting_out_the_window(loaded):
    import time

    rec = Recognizer(loaded, batch_window_s=60.0)
    outcome = {}

    def call():
        try:
            outcome["result"] = rec.transcribe(speechlike(1.0), "en", timeout=120)
        except RecognizerClosed as exc:
            outcome["result"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    started = time.monotonic()
    rec.close()
    caller.join(timeout=120)
    assert not caller.is_alive() and time.monotonic() - started < 30  # not the 60 s window
    assert isinstance(outcome["result"], RecognizerClosed) or outcome["result"].text


def test_metrics_count_batches_and_audio(loaded):
    registry = CollectorRegistry()
    metrics = ASRMetrics(registry)
    with Recognizer(loaded, metrics=metrics) as rec:
        rec.transcribe(speechlike(2.0), "en")
    assert registry.get_sample_value("higgs_asr_seconds_count") == 1
    assert registry.get_sample_value("higgs_asr_batch_size_sum") == 1
    assert registry.get_sample_value("higgs_asr_audio_seconds_total") == pytest.approx(2.0)
    metrics.observe_check(0.25)
    metrics.observe_chunk(attempts=2, passed=False)
    assert registry.get_sample_value("higgs_asr_word_error_rate_bucket", {"le": "0.3"}) == 1
    assert registry.get_sample_value("higgs_asr_attempts_per_chunk_bucket", {"le": "1.0"}) == 0
    assert registry.get_sample_value("higgs_asr_attempts_per_chunk_bucket", {"le": "2.0"}) == 1
    assert registry.get_sample_value("higgs_asr_failed_checks_total") == 1


# -- the alignment maths, on attention whose answer is known ----------------------------------------------------


def brute_force_dtw_cost(cost):
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
    return acc[n, m]


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_dtw_finds_the_least_cost_monotonic_path(seed):
    rng = np.random.default_rng(seed)
    cost = rng.standard_normal((int(rng.integers(1, 8)), int(rng.integers(1, 40))))
    tokens, frames = dtw_path(cost)
    assert tokens[0] == 0 and frames[0] == 0
    assert tokens[-1] == cost.shape[0] - 1 and frames[-1] == cost.shape[1] - 1
    steps = set(zip(np.diff(tokens), np.diff(frames)))
    assert steps <= {(0, 1), (1, 0), (1, 1)}
    assert cost[tokens, frames].sum() == pytest.approx(brute_force_dtw_cost(cost))


def test_token_start_times_follow_the_attention():
    heads, tokens, frames = 3, 6, 150
    weights = torch.full((heads, tokens, frames), 0.01)
    for i in range(tokens):  # token i is heard in frames 25i .. 25i+24 (0.5 s each)
        weights[:, i, 25 * i:25 * (i + 1)] = 1.0
    starts = token_start_times(weights, filter_width=7)
    assert starts == pytest.approx([0.5 * i for i in range(tokens)], abs=0.061)


def test_tokens_are_grouped_into_words_with_their_times(recognizer):
    tok = recognizer.processor.tokenizer
    tokens = tok(" hello world.", add_special_tokens=False).input_ids
    starts = np.arange(len(tokens) + 1) * 0.1
    words = recognizer._words(tokens, starts, "en", duration=10.0)
    assert [w.word for w in words] == ["hello", "world."]
    assert words[0].start == pytest.approx(0.0) and words[0].end == pytest.approx(0.6)  # " hello" is 6 tokens
    assert words[1].start == pytest.approx(0.6) and words[1].end == pytest.approx(1.3)
    chinese = tok("你好，世界", add_special_tokens=False).input_ids  # byte tokens: three per character
    words = recognizer._words(chinese, np.arange(len(chinese) + 1) * 0.1, "zh", duration=10.0)
    assert [w.word for w in words] == ["你", "好，", "世", "界"]
    assert [round(w.start, 2) for w in words] == [0.0, 0.3, 0.9, 1.2]


# -- the loader ---------------------------------------------------------------------------------------------------


def test_loader_cpu_float32_and_gpu_half(loaded, tiny_model_dir):
    assert loaded.device.type == "cpu" and loaded.dtype == torch.float32 and loaded.sample_rate == 16000
    assert loaded.word_timestamps
    if torch.cuda.is_available():
        on_gpu = load_asr(tiny_model_dir / "asr", "auto")
        assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float16
        with Recognizer(on_gpu) as rec:
            check_words(rec.transcribe(speechlike(2.0), "en"), 2.0)


def test_loader_errors_name_asr_path(tmp_path, tiny_model_dir):
    with pytest.raises(ASRLoadError, match="ASR_PATH folder .* does not exist"):
        load_asr(tmp_path / "nothing")
    partial = tmp_path / "partial"
    shutil.copytree(tiny_model_dir / "asr", partial)
    (partial / "tokenizer.json").unlink()
    with pytest.raises(ASRLoadError, match="lacks a tokenizer"):
        load_asr(partial)
    wrong = tmp_path / "wrong"
    shutil.copytree(tiny_model_dir / "model", wrong)
    (wrong / "generation_config.json").write_text("{}")
    with pytest.raises(ASRLoadError, match="not a Whisper model"):
        load_asr(wrong)


def test_a_model_without_alignment_heads_gives_text_without_words(tmp_path, tiny_model_dir):
    folder = tmp_path / "no-heads"
    shutil.copytree(tiny_model_dir / "asr", folder)
    generation = json.loads((folder / "generation_config.json").read_text())
    del generation["alignment_heads"]
    (folder / "generation_config.json").write_text(json.dumps(generation))
    with Recognizer(load_asr(folder, "cpu")) as rec:
        transcript = rec.transcribe(speechlike(1.0), "en")
    assert transcript.text and transcript.words == () and transcript.word_timestamps is False
