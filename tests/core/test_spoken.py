"""Spoken-form text: every number, money, time, date, unit and abbreviation form, and mapping back."""

from __future__ import annotations

import pytest

from higgs_worker.core import spoken

CASES = [
    # currencies
    ("It costs $23.50.", "It costs twenty-three dollars and fifty cents."),
    ("$1 each", "one dollar each"),
    ("only $0.01", "only one cent"),
    ("€5 and £3", "five euros and three pounds"),
    ("£1.2m raised", "one point two million pounds raised"),
    ("a $5 billion deal", "a five billion dollars deal"),
    ("¥300", "three hundred yen"),
    # dates
    ("On 2024-03-23.", "On March twenty-third, twenty twenty-four."),
    ("Due 3/23/2024.", "Due March twenty-third, twenty twenty-four."),
    ("March 23rd", "March twenty-third"),
    ("Mar. 5, 2021", "March fifth, twenty twenty-one"),
    ("on 23 March.", "on the twenty-third of March."),
    ("the 1st of May", "the first of May"),
    # times
    ("at 3:30 pm", "at three thirty p m"),
    ("at 10:05", "at ten oh five"),
    ("at 7:00.", "at seven o'clock."),
    ("at 9am. Then", "at nine a m. Then"),
    ("at 11 p.m. sharp", "at eleven p m. sharp"),
    # percentages and units
    ("up 12.5%", "up twelve point five percent"),
    ("-3% growth", "minus three percent growth"),
    ("5 km away", "five kilometres away"),
    ("1 km away", "one kilometre away"),
    ("3kg of flour", "three kilograms of flour"),
    ("60 mph", "sixty miles per hour"),
    ("100 km/h", "one hundred kilometres per hour"),
    ("21°C today", "twenty-one degrees Celsius today"),
    ("70 °F", "seventy degrees Fahrenheit"),
    ("10 GB", "ten gigabytes"),
    ("2.4 GHz", "two point four gigahertz"),
    ("1 h and 30 min", "one hour and thirty minutes"),
    ("250 ms", "two hundred and fifty milliseconds"),
    ("6 ft", "six feet"),
    # years, decades, ordinals, fractions
    ("in 1999", "in nineteen ninety-nine"),
    ("since 2010", "since twenty ten"),
    ("the 1990s", "the nineteen nineties"),
    ("the 21st century", "the twenty-first century"),
    ("her 2nd try", "her second try"),
    ("1/2 cup", "one half cup"),
    ("3/4 done", "three quarters done"),
    ("5/16 inch", "five sixteenths inch"),
    # cardinals
    ("1,234.5 people", "one thousand, two hundred and thirty-four point five people"),
    ("-3 degrees", "minus three degrees"),
    ("agent 007", "agent zero zero seven"),
    ("42 cats", "forty-two cats"),
    ("1999 people", "one thousand, nine hundred and ninety-nine people"),
    # abbreviations
    ("Dr. Smith vs. Mr. Jones", "Doctor Smith versus Mister Jones"),
    ("Mrs. Lee and Prof. Kay", "Missus Lee and Professor Kay"),
    ("St. Louis", "Saint Louis"),
    ("apples, pears, etc. are fine", "apples, pears, et cetera are fine"),
    ("fruit, e.g. apples", "fruit, for example apples"),
    ("No. 5", "number five"),
    ("salt & pepper", "salt and pepper"),
    # not covered: left as written
    ("version 2.0.1", "version 2.0.1"),
    ("MP3 and 4K", "MP3 and 4K"),
    # tags untouched
    ("[SPEAKER1] I have 2 cats. [laugh]", "[SPEAKER1] I have two cats. [laugh]"),
    # Chinese
    ("我在2024年花了123元。", "我在二零二四年花了一百二十三元。"),
    ("增长了50%。", "增长了百分之五十。"),
    ("圆周率是3.14。", "圆周率是三点一四。"),
    ("共10086人", "共一万零八十六人"),
    ("第10个", "第十个"),
]


@pytest.mark.parametrize(("written", "said"), CASES)
def test_each_form_is_said_in_words(written, said):
    assert spoken.spoken(written) == said


@pytest.mark.parametrize(("number", "said"), [("0", "零"), ("15", "十五"), ("105", "一百零五"), ("1000", "一千"),
                                              ("20000", "二万"), ("100000000", "一亿"), ("120034", "十二万零三十四")])
def test_chinese_numbers(number, said):
    assert spoken.chinese_number(number) == said


def test_written_forms_are_found_again_in_what_is_heard():
    pieces = spoken.spoken_pieces(spoken.pieces_of("It costs $23 on 23 March, at 3:30 pm."))
    heard = ["It", "costs", "twenty-three", "dollars", "on", "the", "twenty-third", "of", "March,", "at", "three",
             "thirty", "p", "m."]
    assert spoken.restore(heard, pieces) == [(2, 3, "$23"), (5, 8, "23 March,"), (10, 13, "3:30 pm.")]


def test_a_recogniser_writing_digits_still_maps_back():
    """Whisper often writes what it hears as digits: "$23" for "twenty-three dollars"."""
    pieces = spoken.spoken_pieces(spoken.pieces_of("It costs $23 today."))
    assert spoken.restore(["It", "costs", "$23", "today."], pieces) == [(2, 2, "$23")]


def test_plain_text_has_nothing_to_restore():
    pieces = spoken.spoken_pieces(spoken.pieces_of("Nothing to change here."))
    assert all(p.written is None for p in pieces)
    assert spoken.restore(["Nothing", "to", "change", "here."], pieces) == []


def test_the_readme_lists_every_sound_tag_with_what_it_becomes():
    from pathlib import Path

    from higgs_worker.core.text import SOUND_EVENTS

    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text(encoding="utf-8")
    for tag, marker in SOUND_EVENTS:
        assert f"`{tag}`" in readme and f"`{marker}`" in readme, tag
