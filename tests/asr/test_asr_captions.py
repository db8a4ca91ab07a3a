"""Captions read back by real SRT and WebVTT parsers: layout rules, times, escaping, chunk offsets."""

import html
import io
import itertools
import re
from datetime import timedelta

import pytest
import srt
import webvtt

from higgs_worker.asr.captions import build_cues, captions, offset_words, srt_escape, to_srt, to_vtt, width
from higgs_worker.asr.types import Word

TEXT = ("Long ago, in a quiet village by the sea, there lived an old fisherman who told stories every evening. "
        "Children gathered around him, and even the cats seemed to listen. One night he spoke of a whale so large "
        "that its shadow covered the whole bay, and nobody slept until morning! Was it true? Nobody knows.")


def timed(text, start=0.0, per_char=0.06, gap=0.08, sep=" "):
    words, t = [], start
    for w in (text.split() if sep == " " else list(text)):
        d = max(0.1, per_char * len(w))
        words.append(Word(w, t, t + d))
        t += d + gap
    return words


def parse_srt(text):
    return list(srt.parse(text, ignore_errors=False))


def parse_vtt(text):
    return webvtt.from_string(text)


def seconds(td: timedelta) -> float:
    return td.total_seconds()


def vtt_seconds(stamp: str) -> float:
    """webvtt-py keeps cue times as ``HH:MM:SS.mmm`` text (its ``*_in_seconds`` are whole seconds)."""
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def check_layout(subs, max_chars=42, max_lines=2, max_s=7.0):
    last_end = 0.0
    for sub in subs:
        lines = sub.content.split("\n")
        assert 1 <= len(lines) <= max_lines, sub.content
        assert all(0 < width(line) <= max_chars for line in lines), sub.content
        assert seconds(sub.start) >= last_end - 1e-9, "cues overlap or go back in time"
        assert seconds(sub.end) > seconds(sub.start)
        assert seconds(sub.end) - seconds(sub.start) <= max_s + 1e-9
        last_end = seconds(sub.end)


def test_srt_parses_keeps_every_word_and_follows_the_layout_rules():
    words = timed(TEXT)
    subs = parse_srt(captions(words, "srt"))
    check_layout(subs)
    assert [s.index for s in subs] == list(range(1, len(subs) + 1))
    assert " ".join(s.content.replace("\n", " ") for s in subs).split() == TEXT.split()
    # each cue starts when its first word starts
    starts = {round(w.start, 3) for w in words}
    assert all(round(seconds(s.start), 3) in starts for s in subs)


def test_webvtt_parses_with_the_same_cues_as_srt():
    words = timed(TEXT)
    subs = parse_srt(captions(words, "srt"))
    vtt = captions(words, "vtt")
    assert vtt.startswith("WEBVTT\n\n")
    cues = parse_vtt(vtt).captions
    assert len(cues) == len(subs)
    for cue, sub in zip(cues, subs):
        assert html.unescape(cue.text) == sub.content
        assert vtt_seconds(cue.start) == pytest.approx(seconds(sub.start), abs=1e-6)
        assert vtt_seconds(cue.end) == pytest.approx(seconds(sub.end), abs=1e-6)


def test_cues_end_at_sentence_ends_when_they_can():
    subs = parse_srt(captions(timed(TEXT), "srt"))
    ends = [s.content.rstrip()[-1] for s in subs]
    # the story has five sentences; every one that has room ends its cue
    assert sum(ch in ".!?" for ch in ends) >= 4, [s.content for s in subs]
    assert all(s.content.count(". ") + s.content.count(".\n") == 0 or len(s.content) < 20 for s in subs), \
        "a full cue ran past the end of a sentence"


def test_a_full_cue_breaks_after_a_comma_rather_than_mid_clause():
    text = ("Children gathered around him every single evening without fail, and even the old grey cats "
            "seemed to listen to every word")
    subs = parse_srt(captions(timed(text, per_char=0.03), "srt"))
    check_layout(subs)
    assert subs[0].content.endswith("fail,"), [s.content for s in subs]


def test_two_lines_are_balanced():
    text = "one two three four five six seven eight nine ten eleven twelve"
    (cue,) = build_cues(timed(text))
    assert len(cue.lines) == 2
    assert abs(len(cue.lines[0]) - len(cue.lines[1])) <= 6, cue.lines


def test_long_cue_is_split_by_duration_and_pauses_open_new_cues():
    slow = [Word(f"w{i}", i * 1.0, i * 1.0 + 0.5) for i in range(20)]  # short text, but 20 s of it
    subs = parse_srt(captions(slow, "srt"))
    check_layout(subs)
    assert len(subs) >= 3
    paused = timed("before the pause") + timed("after it", start=10.0)
    subs = parse_srt(captions(paused, "srt"))
    assert [s.content for s in subs] == ["before the pause", "after it"]
    assert seconds(subs[1].start) == pytest.approx(10.0)


def test_chinese_lines_are_measured_in_columns_and_joined_without_spaces():
    text = "我们今天去公园散步，天气非常好。然后我们一起吃了午饭，聊了很多有趣的事情，大家都很开心。"
    words = timed(text, per_char=0.2, gap=0.0, sep="")
    subs = parse_srt(captions(words, "srt"))
    check_layout(subs)
    assert "".join(s.content.replace("\n", "") for s in subs) == text
    assert all(" " not in s.content for s in subs)
    assert max(len(line) for s in subs for line in s.content.split("\n")) <= 21


def test_text_that_looks_like_markup_survives_both_formats():
    words = timed("a <b>bold</b> claim & x --> y")
    vtt = to_vtt(build_cues(words))
    assert "<b>" not in vtt and "&amp;" in vtt
    assert " ".join(html.unescape(c.text) for c in parse_vtt(vtt).captions) == "a <b>bold</b> claim & x --> y"
    subs = parse_srt(to_srt(build_cues(words)))
    assert subs[0].content == "a <b>bold</b> claim & x -> y"


@pytest.mark.parametrize("line", ["x --> y", "x ---> y", "x ----> y", "a -->--> b", "-->", "<!-- c -->", "a -> b"])
def test_srt_arrow_escaping_is_idempotent_and_leaves_no_arrow(line):
    once = srt_escape(line)
    assert "-->" not in once and srt_escape(once) == once
    assert re.sub("-+>", ">", once) == re.sub("-+>", ">", line)  # only the arrows' hyphens change
    subs = parse_srt(to_srt(build_cues(timed(f"before {line} after"))))
    assert len(subs) == 1 and subs[0].content == f"before {once} after"


def test_words_longer_than_a_line_are_cut():
    words = [Word("x" * 100, 0.0, 3.0), Word("end.", 3.0, 3.5)]
    subs = parse_srt(captions(words, "srt"))
    check_layout(subs)
    assert "".join(s.content.replace("\n", "").replace(" ", "") for s in subs) == "x" * 100 + "end."


def test_zero_length_and_crowded_words_still_give_valid_cues():
    words = [Word(f"w{i}", 1.0, 1.0) for i in range(30)]  # random weights can put every word at one instant
    subs = parse_srt(captions(words, "srt", duration=1.2))
    check_layout(subs)
    assert seconds(subs[-1].end) <= 1.2 + 1e-3 or seconds(subs[-1].end) - seconds(subs[-1].start) <= 0.002
    assert parse_vtt(captions(words, "vtt")).captions


def test_offset_words_places_chunks_in_the_final_audio():
    first, second = timed("The first chunk says this."), timed("And the second chunk follows it.")
    first_duration = first[-1].end + 0.4
    words = [*first, *offset_words(second, first_duration)]
    assert [w.start for w in words[len(first):]] == pytest.approx([w.start + first_duration for w in second])
    assert all(b.start >= a.end for a, b in itertools.pairwise(words))
    subs = parse_srt(captions(words, "srt"))
    assert [s.content for s in subs] == ["The first chunk says this.", "And the second chunk follows it."]
    assert seconds(subs[1].start) == pytest.approx(first_duration, abs=1e-3)
    assert seconds(subs[1].end) == pytest.approx(second[-1].end + first_duration, abs=1e-3)


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="srt or vtt"):
        captions(timed("hi"), "ass")


def test_empty_words_give_empty_but_valid_files():
    assert parse_srt(captions([], "srt")) == []
    assert parse_vtt(captions([], "vtt")).captions == []
    assert list(webvtt.from_buffer(io.StringIO(captions([], "vtt"))).captions) == []
