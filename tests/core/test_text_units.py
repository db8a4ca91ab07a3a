"""``text.py`` edge cases the corpus tests in ``test_text.py`` do not reach: boundaries (exactly at a budget or a
ratio), dialogue packed several turns to a chunk, Chinese chunks joined without spaces, line breaks, odd input.
"""

from __future__ import annotations

import pytest

from higgs_worker.core import text

DIALOGUE = "[SPEAKER0] a b\n[SPEAKER1] c d\n[SPEAKER0] e f\n[SPEAKER1] g h"  # 3 words a turn, the tag counted
T0, T1, T2, T3 = DIALOGUE.split("\n")


def test_speaker_tags_sort_by_number_not_by_text():
    assert text.speaker_tags("[SPEAKER10] x [SPEAKER2] y [SPEAKER2] z") == ["SPEAKER2", "SPEAKER10"]


def test_mostly_cjk_means_more_than_thirty_percent():
    assert not text.is_mostly_cjk("你好吗abcdefg")  # 3 of 10: exactly 30%, not more
    assert text.is_mostly_cjk("你好吗abcdef")  # 3 of 9
    assert not text.is_mostly_cjk("Hello world 你")
    assert not text.is_mostly_cjk("") and not text.is_mostly_cjk("   ")


def test_split_by_speaker_defaults_to_one_turn_and_skips_blank_lines():
    assert text.split_by_speaker(DIALOGUE) == [T0, T1, T2, T3]
    assert text.split_by_speaker("\n\n[SPEAKER0] Hi\n\n[SPEAKER1] Yo") == ["[SPEAKER0] Hi", "[SPEAKER1] Yo"]
    assert text.split_by_speaker("") == [] and text.split_by_speaker("\n \n") == []
    assert text.split_by_speaker("Intro.\n[SPEAKER0] Hi") == ["Intro.", "[SPEAKER0] Hi"]


def test_a_line_break_always_ends_a_sentence():
    assert text.split_sentences("First line\nSecond line.") == ["First line", "Second line."]


def test_sentence_edge_cases():
    assert text.split_sentences("?! Hello.") == ["?!", "Hello."]  # an end with no word before it
    assert text.split_sentences("Wait ...no. Then go.") == ["Wait ...no.", "Then go."]  # '...no' is not 'No.'
    assert text.split_sentences("Is it new? iPhone owners asked. Yes.") == ["Is it new? iPhone owners asked.", "Yes."]
    assert text.split_sentences("Mr. Smith and Mrs. Jones met Prof. X at St. Paul. Then left.") == [
        "Mr. Smith and Mrs. Jones met Prof. X at St. Paul.", "Then left."]


def test_clauses_are_cut_even_after_a_single_letter():
    # at sentence ends a single letter is an initial ("J. R. R."); at commas it is just a word
    assert text.split_by_sentences("Take plan a, then go to the station now please.", 4) == [
        "Take plan a,", "then go to the", "station now please."]


def test_default_budget_is_200_words():
    sentence = " ".join(f"w{i}" for i in range(201)) + "."
    assert len(text.split_by_sentences(sentence)) == 2
    assert len(text.split_by_sentences(" ".join(f"w{i}" for i in range(200)) + ".")) == 1
    assert len(text.split_by_words(" ".join(f"w{i}" for i in range(201)))) == 2


def test_chinese_chunks_are_joined_without_spaces():
    sentences = "我们今天去北京.明天去上海.后天回家."
    chunks = text.split_by_sentences(sentences, 8)
    assert len(chunks) > 1 and "".join(chunks) == sentences and not any(" " in c for c in chunks)
    clauses = "我们今天去北京,明天去上海,后天回家."  # one long sentence, cut at its commas then packed
    chunks = text.split_by_sentences(clauses, 8)
    assert len(chunks) > 1 and "".join(chunks) == clauses and not any(" " in c for c in chunks)


def test_dialogue_packs_turns_up_to_max_turns_and_the_word_budget():
    assert text.split_auto(DIALOGUE, 9, max_turns=3) == [f"{T0}\n{T1}\n{T2}", T3]
    assert text.split_auto(DIALOGUE, 7, max_turns=3) == [f"{T0}\n{T1}", f"{T2}\n{T3}"]  # 9 words would not fit
    assert text.split_auto(DIALOGUE, 6, max_turns=3) == [f"{T0}\n{T1}", f"{T2}\n{T3}"]  # exactly 6 fits
    assert text.split_auto(DIALOGUE, 11, max_turns=2) == [f"{T0}\n{T1}", f"{T2}\n{T3}"]  # the turn limit first
    assert text.split_auto(DIALOGUE, 9) == [T0, T1, T2, T3]  # one turn a chunk by default
    assert text.split_chunks(DIALOGUE, "auto", 9, 4) == [f"{T0}\n{T1}\n{T2}", T3]


def test_a_dialogue_turn_within_the_budget_is_kept_as_written():
    dialogue = "[SPEAKER0] Hello.\n[SPEAKER1] Hi there.\nStill me.\n[SPEAKER0] Bye now."
    # the second turn is exactly 5 words, with a line break inside it
    assert text.split_auto(dialogue, 5) == ["[SPEAKER0] Hello.", "[SPEAKER1] Hi there.\nStill me.",
                                            "[SPEAKER0] Bye now."]


def test_is_dialogue_needs_a_tag_at_the_start_of_a_line():
    assert text.is_dialogue("Intro\n  [SPEAKER0] hi")
    assert not text.is_dialogue("He said [SPEAKER0] hi")
    assert not text.is_dialogue("no tags at all")


def test_text_exactly_at_the_budget_is_one_chunk_as_written():
    assert text.split_auto("One two.\nThree four.", 4) == ["One two.\nThree four."]
    assert text.split_chunks("One two.\nThree four.", "auto", 3) == ["One two.", "Three four."]


def test_auto_budget_is_a_whole_number_of_words():
    assert text.auto_word_budget(1000, 200) == 62 and isinstance(text.auto_word_budget(1000, 200), int)
    assert text.auto_word_budget(1000, 200, frames_per_word=10) == 100


def test_clean_turns_every_line_ending_into_one_newline():
    assert text.clean("a\r\nb\rc\nd") == "a\nb\nc\nd"


def test_degrees_are_spoken():
    assert text.normalize("It is 70°F or 21°C") == "It is 70 degrees Fahrenheit or 21 degrees Celsius."


def test_word_chunks_count_space_separated_words_and_keep_their_text():
    para = " ".join(f"w{i}" for i in range(12))
    assert text.split_by_words(para, 5) == ["w0 w1 w2 w3 w4", "w5 w6 w7 w8 w9", "w10 w11\n\n"]
    # a single line break inside a paragraph does not separate words: it stays as written
    assert text.split_by_words("a\nb c", 2) == ["a\nb c\n\n"]


def test_split_chunks_methods():
    words = " ".join(f"w{i}" for i in range(201)) + "."
    assert len(text.split_chunks(words, "sentence")) == 2  # 200 words by default
    assert text.split_chunks("One. Two.", "none") == ["One. Two."]
    with pytest.raises(ValueError, match="^unknown chunk method 'bogus'$"):
        text.split_chunks("x", "bogus")


def test_chinese_text_within_the_budget_keeps_its_spaces():
    sentence = "我们去北京, 明天去上海."  # 8 jieba words
    assert text.split_by_sentences(sentence, 8) == [sentence]
    # the first clause is exactly 7 words, with spaces around a Latin word: kept as written
    mixed = "我们用 iPhone 打电话给朋友, 然后去上海玩."
    assert text.split_by_sentences(mixed, 7) == ["我们用 iPhone 打电话给朋友,", "然后去上海玩."]
