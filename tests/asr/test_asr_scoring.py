"""Scoring on fixed strings: what a listener would not notice costs nothing, every heard difference counts."""

import pytest

from higgs_worker.asr.scoring import (
    align_counts,
    error_counts,
    normalise_for_scoring,
    number_to_words,
    scoring_tokens,
    word_error_rate,
)


@pytest.mark.parametrize("text, expected", [
    ("Hello, World!", "hello world"),
    ("  Well...   THAT's it?! ", "well thats it"),
    ("“Quoted” — and (bracketed) words; here: yes.", "quoted and bracketed words here yes"),
    ("[laugh] Oh <SE>[Laughter]</SE> really [SPEAKER1]", "oh really"),
    ("rock-and-roll", "rock and roll"),
    ("ＦＵＬＬ　ＷＩＤＴＨ", "full width"),
    ("Ça va? Très bien.", "ça va très bien"),
])
def test_normalisation_drops_case_punctuation_and_tags(text, expected):
    assert normalise_for_scoring(text) == expected


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (40, "forty"), (42, "forty two"), (100, "one hundred"),
    (105, "one hundred five"), (999, "nine hundred ninety nine"), (1000, "one thousand"),
    (1999, "one thousand nine hundred ninety nine"), (2_000_017, "two million seventeen"),
    (10 ** 15, "one " + "zero " * 14 + "zero"),
])
def test_number_to_words(n, words):
    assert number_to_words(n) == words.strip()


@pytest.mark.parametrize("written, spoken", [
    ("I have 42 apples.", "I have forty-two apples"),
    ("It costs 1,250 dollars", "it costs one thousand two hundred fifty dollars"),
    ("pi is 3.14", "pi is three point one four"),
    ("the 21st century and the 3rd day", "the twenty first century and the third day"),
    ("my 12th birthday", "my twelfth birthday"),
    ("agent 007", "agent zero zero seven"),
    ("50% off", "fifty percent off"),
    ("one hundred and five", "105"),
    ("Tom & Jerry", "Tom and Jerry"),
])
def test_english_numbers_score_the_same_written_or_spoken(written, spoken):
    assert normalise_for_scoring(written, "en") == normalise_for_scoring(spoken, "en")
    assert word_error_rate(written, spoken, "en") == 0.0


def test_a_real_number_difference_still_counts():
    assert word_error_rate("I have 42 apples", "I have 43 apples") == pytest.approx(1 / 5)  # forty two / three
    assert word_error_rate("bread and butter", "bread butter") == pytest.approx(1 / 3)  # not a number's "and"


def test_numbers_outside_english_keep_their_digits():
    assert normalise_for_scoring("J'ai 3 pommes", "fr") == "jai 3 pommes"
    assert word_error_rate("J'ai 3 pommes", "J'ai trois pommes", "fr") == pytest.approx(1 / 3)


def test_substitution_deletion_insertion_are_counted_apart():
    counts = error_counts("one cat sat on the mat", "one bat sat the mat today")  # cat/bat, -on, +today
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, 1, 1)
    assert counts.reference_length == 6 and counts.wer == pytest.approx(3 / 6)


def test_error_rate_may_exceed_one_and_empty_reference_is_defined():
    assert word_error_rate("hi", "oh no not again") == pytest.approx(4.0)
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("...", "") == 0.0
    assert word_error_rate("", "something") == 1.0
    assert word_error_rate("hello there", "") == 1.0


def test_chinese_is_scored_by_characters():
    assert scoring_tokens("我们今天去公园。", "zh") == list("我们今天去公园")
    assert word_error_rate("我们今天去公园。", "我们今天去公圆", "zh") == pytest.approx(1 / 7)
    assert word_error_rate("你好，世界！", "你好世界") == 0.0  # full-width punctuation and no spaces: the same
    assert word_error_rate("我们今天去公园", "我们去公园") == pytest.approx(2 / 7)


def test_japanese_is_scored_by_characters():
    ref = "今日は良い天気ですね。"
    assert scoring_tokens(ref, "ja") == list("今日は良い天気ですね")
    assert word_error_rate(ref, "今日は いい天気ですね", "ja") == pytest.approx(1 / 10)
    assert word_error_rate("カタカナ", "ｶﾀｶﾅ") == 0.0  # half-width katakana is the same sound


def test_script_is_detected_without_a_language():
    assert scoring_tokens("我们用 Python 写代码") == ["我", "们", "用", "python", "写", "代", "码"]
    assert word_error_rate("我们用 Python 写代码", "我们用python写代码") == 0.0
    assert scoring_tokens("สวัสดีครับ")[:2] == ["ส", "วั"]  # Thai: characters, vowel marks kept with them


def test_alignment_of_token_lists():
    assert align_counts([], []).errors == 0
    assert align_counts(["a"], ["b"]).substitutions == 1
    assert align_counts(["a", "b", "c"], ["a", "c"]).deletions == 1
    assert align_counts(["a", "c"], ["a", "b", "c"]).insertions == 1
