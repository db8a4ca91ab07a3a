"""The voice check: a chunk in the wrong speaker's voice is flagged and generated again; the tiny x-vector model
runs end to end through the real loader and each checked chunk reports its similarity."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from higgs_worker.asr.metrics import ASRMetrics
from higgs_worker.core.errors import RequestError
from higgs_worker.core.schema import SpeechRequest, VerifySpec
from higgs_worker.core.settings import Settings
from higgs_worker.speech import quality
from higgs_worker.speech.voice_check import VoiceChecks

RATE = 24000
SPEC = VerifySpec(0.3, 3)


class SeparableVerifier:
    """A stand-in speaker model that tells two voices apart: audio above zero is one voice, below zero another."""

    sample_rate = 16000

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, waves, sample_rate):
        self.calls += 1
        return np.array([[1.0, 0.0] if float(np.mean(w)) > 0 else [0.0, 1.0] for w in waves])


def voice(sign: float) -> SimpleNamespace:
    """A reference voice (``.wave``), or a generation's codes that decode to that voice."""
    return SimpleNamespace(wave=np.full(RATE, sign, dtype=np.float32))


def generation(sign: float) -> SimpleNamespace:
    return SimpleNamespace(codes=np.full((5, 8), sign), truncated=False)


FAKE_ENGINE = SimpleNamespace(decode=lambda codes: np.full(RATE // 2, float(codes[0, 0]), dtype=np.float32),
                              sample_rate=RATE)


def start(tmp_path, references, speakers, spec=SPEC, metrics=None, timings=None):
    checks = VoiceChecks(Settings(volume_root=tmp_path), verifier=SeparableVerifier())
    return checks.start(spec, references, speakers, FAKE_ENGINE, {} if timings is None else timings, metrics)


def check(voice_check, chunk, first, regenerate, spec=SPEC):
    """``quality.check_chunk`` as the service calls it, hearing every attempt say its text exactly."""
    return quality.check_chunk(0, chunk, 7, spec, first, generate=lambda seed: regenerate(seed),
                               hear=lambda g: (quality.spoken_text(chunk), 0.5), truncated=lambda g: False,
                               voice=voice_check.for_chunk(chunk))


def test_a_chunk_in_the_other_speakers_voice_is_flagged_as_closer_to_them_and_generated_again(tmp_path):
    metrics = ASRMetrics(CollectorRegistry())
    timings: dict[str, float] = {}
    voice_check = start(tmp_path, [voice(+1), voice(-1)], ["SPEAKER0", "SPEAKER1"], metrics=metrics, timings=timings)
    seeds = []

    def regenerate(seed):  # the next seed gets SPEAKER0's voice right
        seeds.append(seed)
        return generation(+1)

    # The first attempt at SPEAKER0's line came out in SPEAKER1's voice (as if made with SPEAKER1's reference).
    kept, report = check(voice_check, "[SPEAKER0] Hello there.", generation(-1), regenerate)
    first, second = report.attempts
    assert first.voice == {"similarity": 0.0, "speaker": "SPEAKER0", "nearest_speaker": "SPEAKER1",
                           "nearest_similarity": 1.0}
    assert any("closer to SPEAKER1" in p for p in first.problems) and first.wer == 0.0
    assert seeds == [7 + quality.SEED_STRIDE] and float(kept.codes[0, 0]) == 1.0  # regenerated, and that one kept
    assert second.passed and report.kept == 1
    chunk = report.as_dict()
    assert chunk["similarity"] == 1.0 and chunk["nearest_speaker"] == "SPEAKER1" and chunk["passed"]
    assert [a["similarity"] for a in chunk["history"]] == [0.0, 1.0]
    assert metrics.similarity._sum.get() == 1.0 and timings["voice_check"] > 0  # both attempts observed


def test_the_best_attempt_is_kept_when_every_attempt_has_the_wrong_voice(tmp_path):
    voice_check = start(tmp_path, [voice(+1), voice(-1)], ["SPEAKER0", "SPEAKER1"])
    _kept, report = check(voice_check, "[SPEAKER1] Fine, thanks.", generation(+1), lambda seed: generation(+1),
                          spec=VerifySpec(0.3, 2))
    assert len(report.attempts) == 2 and not report.passed and report.kept == 0
    assert report.as_dict()["nearest_speaker"] == "SPEAKER0"


def test_a_single_voice_under_the_floor_is_generated_again_and_the_request_may_set_the_floor(tmp_path):
    voice_check = start(tmp_path, [voice(+1)], [])
    _kept, report = check(voice_check, "Just me.", generation(-1), lambda seed: generation(+1))
    assert "under 0.75" in report.attempts[0].problems[0] and report.attempts[0].voice == {"similarity": 0.0}
    lenient = start(tmp_path, [voice(+1)], [], spec=VerifySpec(0.3, 3, None, -0.5))
    _kept, report = check(lenient, "Just me.", generation(-1), lambda seed: generation(+1))
    assert len(report.attempts) == 1 and report.passed


def test_without_a_reference_the_first_chunk_of_a_speaker_becomes_it(tmp_path):
    voice_check = start(tmp_path, [], ["SPEAKER0", "SPEAKER1"])
    _kept, report = check(voice_check, "[SPEAKER0] First.", generation(+1), lambda seed: generation(+1))
    assert report.as_dict()["similarity"] is None and report.passed  # nothing to compare with yet
    voice_check.settle(report.kept)
    # SPEAKER1's first line in SPEAKER0's voice is a copy of that voice: generated again.
    _kept, report = check(voice_check, "[SPEAKER1] Second.", generation(+1), lambda seed: generation(-1))
    assert "sounds like SPEAKER0" in report.attempts[0].problems[0] and report.kept == 1
    voice_check.settle(report.kept)
    _kept, report = check(voice_check, "and more of it.", generation(-1), lambda seed: generation(-1))  # untagged:
    assert report.as_dict()["speaker"] == "SPEAKER1" and report.as_dict()["similarity"] == 1.0  # SPEAKER1 goes on


def test_a_chunk_with_several_speakers_is_not_judged(tmp_path):
    voice_check = start(tmp_path, [voice(+1), voice(-1)], ["SPEAKER0", "SPEAKER1"])
    _kept, report = check(voice_check, "[SPEAKER0] Hi. [SPEAKER1] Hello.", generation(-1), lambda s: generation(+1))
    assert report.as_dict()["similarity"] is None and len(report.attempts) == 1


def test_the_option_is_parsed_and_a_server_without_a_speaker_model_refuses_it(tmp_path):
    request = SpeechRequest(text="Hi.", verify={"voice_check": False, "min_similarity": 0.5})
    assert request.verify_spec(0.3, 3) == VerifySpec(0.3, 3, False, 0.5)
    assert start(tmp_path, [voice(+1)], [], spec=request.verify_spec(0.3, 3)) is None  # turned off
    for bad in ({"voice_check": "yes"}, {"min_similarity": 2}, {"voice": True}):
        with pytest.raises(ValueError, match="verify"):
            SpeechRequest(text="Hi.", verify=bad)
    off = VoiceChecks(Settings(volume_root=tmp_path, voice_check="off"))
    with pytest.raises(RequestError, match="voice_check needs a speaker-verification model") as err:
        off.require(SpeechRequest(text="Hi.", verify={"voice_check": True}))
    assert err.value.field == "verify"
    off.require(SpeechRequest(text="Hi.", verify=True))  # on by default only where a model is present


def test_the_tiny_xvector_model_runs_end_to_end_and_each_chunk_reports_its_similarity(env, service, tiny_model_dir):
    env(ASR_PATH=str(tiny_model_dir / "asr"), VOICE_CHECK_PATH=str(tiny_model_dir / "sv"))
    from higgs_worker.core.settings import get_settings

    service.settings = get_settings()
    service.voice_checks = VoiceChecks(service.settings)
    request = SpeechRequest(text="[SPEAKER0] Good morning. [SPEAKER1] Good evening.", ref_audio="alto,tenor",
                            seed=3, max_new_tokens=12, chunk_method="sentence", chunk_max_word_num=3,
                            verify={"max_attempts": 1})
    result = service.synthesize(request)
    chunks = result.extras["quality"]["chunks"]
    assert len(chunks) == 2
    for chunk, speaker, other in zip(chunks, ("SPEAKER0", "SPEAKER1"), ("SPEAKER1", "SPEAKER0"), strict=True):
        assert isinstance(chunk["similarity"], float) and -1.0 <= chunk["similarity"] <= 1.0
        assert chunk["speaker"] == speaker and chunk["nearest_speaker"] == other
    assert service.voice_checks.verifier.calls == 3  # the two references in one batch, then one per attempt
    assert result.timings["voice_check"] > 0
    plain = service.synthesize(SpeechRequest(text="Good morning.", seed=3, max_new_tokens=12,
                                             verify={"max_attempts": 1, "voice_check": False}))
    assert "similarity" not in plain.extras["quality"]["chunks"][0]


def test_the_speaker_model_is_pinned_and_fetched_like_whisper(tmp_path):
    from higgs_worker.weights import policy
    from higgs_worker.weights.fetch import specs, voice_check_spec

    on = Settings(volume_root=tmp_path, voice_check="on")
    spec = voice_check_spec(on)
    assert (spec.repo_id, spec.revision) == ("microsoft/wavlm-base-plus-sv", "feb593a6c23c1cc3d9510425c29b0a14d2b07b1e")
    assert spec.local_dir == tmp_path / "models" / "wavlm-base-plus-sv" and spec in specs(on)
    assert spec not in specs(Settings(volume_root=tmp_path, voice_check="off"))
    assert policy.voice_check_fetch_wanted(Settings(volume_root=tmp_path), gpu=True)
    assert not policy.voice_check_fetch_wanted(Settings(volume_root=tmp_path), gpu=False)
    demo = Settings(volume_root=tmp_path, higgs_demo=True, demo_dir=tmp_path / "demo")
    assert demo.voice_check_path == tmp_path / "demo" / "sv" and not policy.voice_check_fetch_wanted(demo)
