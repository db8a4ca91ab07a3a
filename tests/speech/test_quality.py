"""Speech checks: the retry rule with a stub recogniser, and scoring of what was heard."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from higgs_worker.core.schema import VerifySpec
from higgs_worker.speech.quality import SEED_STRIDE, check_chunk, judge, longest_plausible_s, ran_away, spoken_text

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


@pytest.mark.parametrize("runaway", [Gen(0, "the quick brown fox jumps", truncated=True),
                                     Gen(0, "the quick brown fox jumps", seconds=30.0)],
                         ids=["cut at max_new_tokens", "far past its text"])
def test_an_attempt_that_ended_its_audio_is_kept_over_a_runaway_with_a_lower_error_rate(runaway):
    ended = Gen(1, "the quick brown box")  # WER 0.4: fails, but its audio ends where the text does
    later = {100 + SEED_STRIDE: ended, 100 + 2 * SEED_STRIDE: Gen(2, "nothing like it at all")}
    kept, report, _ = run(runaway, later)
    assert report.attempts[0].wer == 0.0 and report.attempts[0].ran_away
    assert not report.attempts[1].ran_away and report.attempts[1].wer > SPEC.max_wer
    assert kept.seed == 1 and report.kept == 1 and report.as_dict()["kept_attempt"] == 2


def test_a_runaway_is_what_judge_calls_cut_or_far_too_long():
    limit = longest_plausible_s("one two three")
    for seconds, truncated in [(limit, False), (limit + 0.01, False), (1.0, True), (1.0, False)]:
        _, problems = judge("one two three", "one two three", seconds, truncated, SPEC)
        assert ran_away("one two three", seconds, truncated) == bool(problems), (seconds, truncated)


def test_the_kept_attempt_follows_the_full_order_of_criteria():
    """Passed, then ended its audio, then fewest problems, then lowest WER, then earliest. Each line below beats the
    next on exactly one criterion while the later ones point the other way, and the kept attempt is the best of
    those tried whatever order they came in."""
    chunk = "The quick brown fox jumps."
    gens = [Gen(0, "the quick brown fox jumps!", seconds=3.0),  # passed
            Gen(1, "the quick brown box"),  # ended, 1 problem, WER 0.4
            Gen(2, "the quick brown box"),  # the same: the earlier of the two is kept
            Gen(3, "the quick box"),  # ended, 1 problem, WER 0.6
            Gen(4, "the quick brown fox jump", truncated=True),  # runaway, 1 problem, WER 0.2
            Gen(5, "the quick brown fox jumps", truncated=True, seconds=30.0),  # runaway, 2 problems, WER 0
            Gen(6, "the quick brown box", truncated=True, seconds=30.0),  # runaway, 3 problems, WER 0.4
            Gen(7, "fox", truncated=True, seconds=30.0)]  # runaway, 3 problems, WER 0.8
    rank = {g.seed: (1 if g.seed == 2 else g.seed) for g in gens}  # 1 and 2 tie on every criterion but time
    checked = 0
    for first in range(len(gens)):  # each candidate in turn comes first; the rest follow in reverse
        order = [gens[first]] + [g for g in reversed(gens) if g is not gens[first]]
        for count in range(2, len(order) + 1):
            tried = order[:count]
            if any(g.seed == 0 for g in tried[:-1]):
                break  # a passing attempt ends the retries
            later = {100 + i * SEED_STRIDE: g for i, g in enumerate(tried) if i}
            kept, report, _ = run(tried[0], later, VerifySpec(max_wer=0.2, max_attempts=count), chunk)
            best = min(range(count), key=lambda i: (rank[tried[i].seed], i))
            assert (kept.seed, report.kept) == (tried[best].seed, best), [g.seed for g in tried]
            checked += 1
    assert checked > 40


def test_a_spent_frame_budget_stops_the_attempts_and_keeps_the_best_so_far():
    from higgs_worker.core.schema import VerifySpec
    from higgs_worker.speech.quality import check_chunk

    made = []
    allowed = iter([True, False])  # one retry, then the budget is spent

    def generate(seed):
        made.append(seed)
        return f"attempt {len(made) + 1}"

    kept, report = check_chunk(0, "Say this.", 7, VerifySpec(0.0, 8), "attempt 1", generate,
                               hear=lambda g: ("nothing like it", 1.0), truncated=lambda g: False,
                               may_retry=lambda: next(allowed))
    assert len(report.attempts) == 2 and len(made) == 1 and report.budget_spent
    assert report.as_dict()["budget_spent"] is True and kept in ("attempt 1", "attempt 2")
