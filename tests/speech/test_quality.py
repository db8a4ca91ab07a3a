"""Speech checks: the retry rule with a stub recogniser, and scoring of what was heard."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from higgs_worker.speech.quality import SEED_STRIDE, check_chunk, judge, longest_plausible_s, spoken_text
from higgs_worker.core.schema import VerifySpec

SPEC = VerifySpec(max_wer=0.2, max_attempts=3)


@dataclass
class Gen:
    seed: int
    heard: str
    seconds: float = 2.0
    truncated: bool = False


def run(first: Gen, later: dict[int, Gen], spec: VerifySpec = SPEC, chunk: str = "The quick brown fox jumps."):
    made = []

    def generate(seed):
        made.append(seed)
        return later[seed]

    kept, report = check_chunk(4, chunk, 100, spec, first, generate, lambda g: (g.heard, g.seconds),
                               lambda g: g.truncated)
    return kept, report, made


def test_a_chunk_that_says_its_text_is_kept_at_once():
    kept, report, made = run(Gen(100, "the quick brown fox jumps"), {})
    assert made == [] and report.passed and kept.seed == 100 and len(report.attempts) == 1


def test_failed_attempts_retry_with_the_next_seeds_until_one_passes():
    later = {100 + SEED_STRIDE: Gen(1, "a quick brown box"), 100 + 2 * SEED_STRIDE: Gen(2, "The quick brown fox jumps!")}
    kept, report, made = run(Gen(100, "the quick"), later)
    assert made == [100 + SEED_STRIDE, 100 + 2 * SEED_STRIDE]
    assert kept.seed == 2 and report.passed and report.kept == 2
    assert [a.passed for a in report.attempts] == [False, False, True]
    assert report.as_dict()["attempts"] == 3 and report.as_dict()["kept_attempt"] == 3


def test_when_nothing_passes_the_best_attempt_is_kept_and_reported():
    later = {100 + SEED_STRIDE: Gen(1, "quick brown fox"), 100 + 2 * SEED_STRIDE: Gen(2, "nothing like it")}
    kept, report, made = run(Gen(100, "fox"), later)
    assert len(made) == 2 and not report.passed and kept.seed == 1  # the lowest error rate of the three
    assert report.as_dict()["heard"] == "quick brown fox"


@pytest.mark.parametrize(("gen", "problem"), [(Gen(0, "the quick brown fox jumps", truncated=True), "max_new_tokens"),
                                              (Gen(0, "the quick brown fox jumps", seconds=30.0), "far longer")])
def test_a_cut_or_runaway_chunk_fails_even_when_the_words_are_right(gen, problem):
    _, report, made = run(gen, {100 + SEED_STRIDE: gen, 100 + 2 * SEED_STRIDE: gen})
    assert not report.passed and len(made) == 2 and any(problem in p for p in report.best.problems)


def test_max_attempts_one_never_regenerates():
    _, report, made = run(Gen(100, "wrong"), {}, VerifySpec(0.2, 1))
    assert made == [] and not report.passed


def test_scoring_ignores_speaker_tags_markers_case_and_punctuation():
    chunk = "[SPEAKER1] Hello <SE>[Laughter]</SE> there, General Kenobi!"
    assert spoken_text(chunk) == "Hello there, General Kenobi!"
    wer, problems = judge(chunk, "hello there general kenobi", 3.0, False, SPEC)
    assert wer == 0.0 and problems == []
    wer_zh, _ = judge("今天天气很好。", "今天天气很好", 2.0, False, SPEC)
    assert wer_zh == 0.0
    assert longest_plausible_s("one two three") == pytest.approx(2.0 + 3 * 1.2)
