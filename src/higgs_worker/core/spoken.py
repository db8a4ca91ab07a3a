"""Spoken-form text: numbers, money, times, dates, units and abbreviations written out as words, before chunking.

The model reads digits and symbols unreliably ("$23" may come out as "twenty-three" or as nothing), and upstream's
examples tell users to spell them out by hand. English rules, in this order (``num2words`` says the numbers):

* currencies: ``$23.50`` "twenty-three dollars and fifty cents", ``€5``, ``£1.2m``, ``¥300``, with ``k``/``m``/``bn``
  and ``thousand``/``million``/``billion`` after them;
* dates: ``2024-03-23`` and ``3/23/2024`` (month first, as written in US English) "March twenty-third, twenty
  twenty-four"; ``March 23rd``/``Mar. 23, 2024`` "March twenty-third"; ``23 March`` "the twenty-third of March";
* times: ``3:30 pm`` "three thirty p m", ``10:05`` "ten oh five", ``7:00`` "seven o'clock", ``9am`` "nine a m";
* percentages: ``12.5%`` "twelve point five percent"; temperatures ``21°C``; units after a number: ``5 km``,
  ``3kg``, ``60 mph``, ``10 GB``, ``1 h``... (singular after exactly 1, else plural);
* decades ``1990s`` "nineteen nineties"; years ``in 1999``/``since 2010`` (after in, since, by, from, until, of,
  year, circa, before, after; or in a date) "nineteen ninety-nine";
* ordinals ``21st`` "twenty-first"; fractions ``1/2`` "one half", ``3/4`` "three quarters", ``5/16`` "five
  sixteenths"; other numbers as cardinals (``1,234.5`` "one thousand, two hundred and thirty-four point five",
  ``-3`` "minus three"); digit strings with a leading zero (``007``) or over 15 digits, digit by digit;
* abbreviations: ``Dr.`` Doctor, ``Mr.`` Mister, ``Mrs.`` Missus, ``Prof.`` Professor, ``St.`` Saint (before a
  capitalised word), ``Jr.``/``Sr.``, ``vs.``, ``etc.``, ``e.g.``, ``i.e.``, ``approx.``, ``No. 5`` "number five",
  ``&`` "and".

Not covered (left as written): phone numbers and other hyphenated digit groups beyond the rules above, Roman
numerals, day-first slash dates, ``in``/``m`` as inches/minutes (``m`` is metres), scientific notation, and
abbreviations not listed. In Chinese text (a number next to a Han character) Arabic digits become Chinese
numerals, as upstream's Chinese examples write them: ``2024年`` 二零二四年 (years digit by digit), ``123`` 一百二十三,
``3.14`` 三点一四, ``50%`` 百分之五十.

Bracketed tags (``[SPEAKER0]``, ``[laugh]``) are never rewritten. The text is kept as :class:`Piece` s, each
rewritten piece remembering what was written, so word timings and captions can show the written form again
(:func:`restore`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from num2words import num2words

_TAG = re.compile(r"\[[^\[\]\n]{1,64}\]")


@dataclass(frozen=True)
class Piece:
    """A run of the text as it is sent on; ``written`` is what the user wrote when this run replaces it."""

    text: str
    written: str | None = None
    fixed: bool = False  # a replacement or a tag: later rules leave it alone


def pieces_of(text: str) -> list[Piece]:
    """``text`` as pieces, with its bracketed tags fixed so no rule rewrites inside them."""
    out: list[Piece] = []
    start = 0
    for m in _TAG.finditer(text):
        if m.start() > start:
            out.append(Piece(text[start:m.start()]))
        out.append(Piece(m.group(0), fixed=True))
        start = m.end()
    if start < len(text):
        out.append(Piece(text[start:]))
    return out


def joined(pieces: Sequence[Piece]) -> str:
    return "".join(p.text for p in pieces)


def rewrite(pieces: Sequence[Piece], pattern: re.Pattern[str],
            replace: Callable[[re.Match[str]], str | None]) -> list[Piece]:
    """Every match of ``pattern`` in the unfixed pieces replaced by ``replace(match)`` (``None`` keeps it)."""
    out: list[Piece] = []
    for piece in pieces:
        if piece.fixed:
            out.append(piece)
            continue
        start = 0
        for m in pattern.finditer(piece.text):
            said = replace(m)
            if said is None:
                continue
            if m.start() > start:
                out.append(Piece(piece.text[start:m.start()]))
            out.append(Piece(said, written=m.group(0), fixed=True))
            start = m.end()
        if start < len(piece.text):
            out.append(Piece(piece.text[start:]))
    return out


# -- numbers --------------------------------------------------------------------------------------------------

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SCALE = {"k": "thousand", "thousand": "thousand", "m": "million", "mn": "million", "million": "million",
          "b": "billion", "bn": "billion", "billion": "billion", "trillion": "trillion", "tn": "trillion"}


def _digits(value: str) -> str:
    return " ".join(num2words(int(d)) for d in value if d.isdigit())


def cardinal(value: str) -> str:
    """A written number (``1,234.5``, ``-3``, ``007``) said in English."""
    negative = value.startswith(("-", "−"))
    value = value.lstrip("-−").replace(",", "")
    whole, _, fraction = value.partition(".")
    if (len(whole) > 1 and whole.startswith("0")) or len(whole) > 15:
        said = _digits(whole)
    else:
        said = num2words(int(whole or "0"))
    if fraction:
        said += " point " + _digits(fraction)
    return ("minus " if negative else "") + said


def _year(value: str) -> str:
    return num2words(int(value), to="year")


# -- currencies -----------------------------------------------------------------------------------------------

_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents"),
             "£": ("pound", "pounds", "penny", "pence"), "¥": ("yen", "yen", "", "")}
_MONEY = re.compile(rf"(?<![\w$€£¥])([$€£¥])\s?({_NUM})(?:\s?(k|mn|m|bn|b|tn|thousand|million|billion|trillion)\b)?",
                    re.IGNORECASE)


def _money(m: re.Match[str]) -> str:
    one, many, cent, cents = _CURRENCY[m.group(1)]
    amount, scale = m.group(2).replace(",", ""), m.group(3)
    if scale:
        return f"{cardinal(amount)} {_SCALE[scale.lower()]} {many}"
    whole, _, fraction = amount.partition(".")
    said = f"{cardinal(whole)} {one if int(whole) == 1 else many}"
    if fraction and cent and len(fraction) <= 2:
        n = int(fraction.ljust(2, "0"))
        if n and int(whole) == 0:
            return f"{num2words(n)} {cent if n == 1 else cents}"
        return said if n == 0 else f"{said} and {num2words(n)} {cent if n == 1 else cents}"
    if fraction:
        return f"{cardinal(amount)} {many}"
    return said


# -- dates and times ------------------------------------------------------------------------------------------

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_MONTH = r"(Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sept?(?:ember)?|" \
         r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"


def _month(name: str) -> str:
    return next(full for full in MONTHS if full.lower().startswith(name.lower().rstrip(".")[:3]))


def _ordinal(n: int) -> str:
    return num2words(n, to="ordinal")


_ISO_DATE = re.compile(r"\b(\d{4})-(0?[1-9]|1[0-2])-(0?[1-9]|[12]\d|3[01])\b")
_SLASH_DATE = re.compile(r"\b(0?[1-9]|1[0-2])/(0?[1-9]|[12]\d|3[01])/(\d{4})\b")
_MONTH_DAY = re.compile(rf"\b{_MONTH}\s+([12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}})\b)?")
_DAY_MONTH = re.compile(rf"(?:\b[Tt]he\s+)?\b([12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}(?:,?\s+(\d{{4}})\b)?")


def _stop(replace: Callable[[re.Match[str]], str]) -> Callable[[re.Match[str]], str]:
    """A rule whose match may end with a sentence's full stop (``23 Mar.``, ``9 a.m.``): the stop is kept."""
    return lambda m: replace(m) + ("." if m.group(0).endswith(".") else "")


def _date(year: str | None, month: str, day: str, day_first: bool = False) -> str:
    said = f"the {_ordinal(int(day))} of {month}" if day_first else f"{month} {_ordinal(int(day))}"
    return f"{said}, {_year(year)}" if year else said


_TIME = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b(?:\s?([ap])\.?m\.?(?=\W|$))?", re.IGNORECASE)
_HOUR = re.compile(r"\b(1[0-2]|0?[1-9])\s?([ap])\.?m\.?(?=\W|$)", re.IGNORECASE)


def _time(m: re.Match[str]) -> str:
    hour, minute, half = int(m.group(1)), int(m.group(2)), m.group(3)
    said = num2words(hour)
    if minute == 0:
        said += "" if half else " o'clock"
    elif minute < 10:
        said += f" oh {num2words(minute)}"
    else:
        said += f" {num2words(minute)}"
    return f"{said} {half.lower()} m" if half else said


# -- units, percentages, ordinals, fractions ------------------------------------------------------------------

#: Units said after a number: symbol, singular, plural.
UNITS = {
    "km": ("kilometre", "kilometres"), "m": ("metre", "metres"), "cm": ("centimetre", "centimetres"),
    "mm": ("millimetre", "millimetres"), "mi": ("mile", "miles"), "ft": ("foot", "feet"),
    "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"), "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"), "oz": ("ounce", "ounces"),
    "l": ("litre", "litres"), "ml": ("millilitre", "millilitres"),
    "mph": ("mile per hour", "miles per hour"), "km/h": ("kilometre per hour", "kilometres per hour"),
    "kph": ("kilometre per hour", "kilometres per hour"),
    "°c": ("degree Celsius", "degrees Celsius"), "°f": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
    "kb": ("kilobyte", "kilobytes"), "mb": ("megabyte", "megabytes"), "gb": ("gigabyte", "gigabytes"),
    "tb": ("terabyte", "terabytes"), "hz": ("hertz", "hertz"), "khz": ("kilohertz", "kilohertz"),
    "mhz": ("megahertz", "megahertz"), "ghz": ("gigahertz", "gigahertz"),
    "w": ("watt", "watts"), "kw": ("kilowatt", "kilowatts"), "kwh": ("kilowatt hour", "kilowatt hours"),
    "v": ("volt", "volts"), "h": ("hour", "hours"), "hr": ("hour", "hours"), "hrs": ("hour", "hours"),
    "min": ("minute", "minutes"), "mins": ("minute", "minutes"), "s": ("second", "seconds"),
    "sec": ("second", "seconds"), "ms": ("millisecond", "milliseconds"),
}
_UNIT_NAMES = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
_UNIT = re.compile(rf"(?<![\w.])(-?(?:{_NUM}))\s?({_UNIT_NAMES})(?![\w/])", re.IGNORECASE)
_PERCENT = re.compile(rf"(?<![\w.])(-?(?:{_NUM}))\s?%")
_DECADE = re.compile(r"\b(1[1-9]|20)(\d)0s\b")
_YEAR_AFTER = re.compile(r"\b((?:[Ii]n|[Ss]ince|[Bb]y|[Ff]rom|[Uu]ntil|[Oo]f|[Yy]ear|[Cc]irca|[Bb]efore|[Aa]fter)\s+)"
                         r"(1[1-9]\d\d|20\d\d)\b(?![.,]\d|\s?%)")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_FRACTION = re.compile(r"(?<![\w/.])(\d{1,3})/(\d{1,3})(?![\w/])")
_NUMBER = re.compile(rf"(?<![\w.])(?:-|−)?(?:{_NUM})(?![\w]|\.\d)")
_DENOMINATORS = {2: ("half", "halves"), 4: ("quarter", "quarters")}


def _unit(m: re.Match[str]) -> str:
    one, many = UNITS[m.group(2).lower()]
    amount = m.group(1)
    return f"{cardinal(amount)} {one if amount in ('1', '1.0') else many}"


def _fraction(m: re.Match[str]) -> str:
    top, bottom = int(m.group(1)), int(m.group(2))
    if bottom == 0:
        return f"{num2words(top)} over zero"
    one, many = _DENOMINATORS.get(bottom, (_ordinal(bottom), _ordinal(bottom) + "s"))
    return f"{num2words(top)} {one if top == 1 else many}"


def _decade(m: re.Match[str]) -> str:
    said = _year(m.group(1) + m.group(2) + "0")
    return (said[:-1] + "ies") if said.endswith("y") else said + "s"


# -- abbreviations --------------------------------------------------------------------------------------------

ABBREVIATIONS = {
    "Dr.": "Doctor", "Mr.": "Mister", "Mrs.": "Missus", "Ms.": "Miz", "Prof.": "Professor", "Jr.": "Junior",
    "Sr.": "Senior", "vs.": "versus", "etc.": "et cetera", "e.g.": "for example", "i.e.": "that is",
    "approx.": "approximately",
}
_ABBREVIATION = re.compile(r"(?<![\w.])(" + "|".join(re.escape(a) for a in ABBREVIATIONS) + r")(?=\s|$|[,;:])")
_SAINT = re.compile(r"(?<![\w.])St\.(?=\s+[A-Z])")
_NUMBER_SIGN = re.compile(r"(?<![\w.])No\.\s?(?=\d)")
_AMPERSAND = re.compile(r"(?<=\s)&(?=\s)")

# -- Chinese --------------------------------------------------------------------------------------------------

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_ZH_DIGITS = "零一二三四五六七八九"
_ZH_YEAR = re.compile(r"(\d{2,4})(?=\s?年)")
_ZH_PERCENT = re.compile(rf"(?:(?<=[{_HAN}])\s?(\d+(?:\.\d+)?)\s?[%％])|(?:(\d+(?:\.\d+)?)\s?[%％](?=\s?[{_HAN}]))")
_ZH_NUMBER = re.compile(rf"(?:(?<=[{_HAN}])\s?(\d+(?:\.\d+)?))|(?:(\d+(?:\.\d+)?)(?=\s?[{_HAN}]))")


def _zh_four(n: int) -> str:
    out, zero = "", False
    for size, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = n // size % 10
        if digit == 0:
            zero = zero or bool(out)
            continue
        if zero:
            out, zero = out + "零", False
        out += _ZH_DIGITS[digit] + unit
    return out


def chinese_number(value: str) -> str:
    """A written number said in Chinese: ``123`` 一百二十三, ``10086`` 一万零八十六, ``3.14`` 三点一四; a leading zero
    or more than 16 digits, digit by digit."""
    whole, _, fraction = value.partition(".")
    if (len(whole) > 1 and whole.startswith("0")) or len(whole) > 16:
        said = "".join(_ZH_DIGITS[int(d)] for d in whole)
    else:
        n, groups = int(whole), []
        while n:
            groups.append(n % 10000)
            n //= 10000
        said, gap = "", False
        for index in reversed(range(len(groups))):
            group = groups[index]
            if group == 0:
                gap = gap or bool(said)
                continue
            if said and (gap or group < 1000):
                said += "零"
            said += _zh_four(group) + ("", "万", "亿", "万亿")[index]
            gap = False
        said = said or "零"
        if said.startswith("一十"):
            said = said[1:]
    if fraction:
        said += "点" + "".join(_ZH_DIGITS[int(d)] for d in fraction)
    return said


def _chinese(pieces: list[Piece]) -> list[Piece]:
    pieces = rewrite(pieces, _ZH_YEAR, lambda m: "".join(_ZH_DIGITS[int(d)] for d in m.group(1)))
    pieces = rewrite(pieces, _ZH_PERCENT, lambda m: "百分之" + chinese_number(m.group(1) or m.group(2)))
    return rewrite(pieces, _ZH_NUMBER, lambda m: chinese_number(m.group(1) or m.group(2)))


# -- the whole pass -------------------------------------------------------------------------------------------


def _english(pieces: list[Piece]) -> list[Piece]:
    rules: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str | None]]] = [
        (_MONEY, _money),
        (_ISO_DATE, lambda m: _date(m.group(1), MONTHS[int(m.group(2)) - 1], m.group(3))),
        (_SLASH_DATE, lambda m: _date(m.group(3), MONTHS[int(m.group(1)) - 1], m.group(2))),
        (_MONTH_DAY, lambda m: _date(m.group(3), _month(m.group(1)), m.group(2))),
        (_DAY_MONTH, _stop(lambda m: _date(m.group(3), _month(m.group(2)), m.group(1), day_first=True).replace(
            "the", "The" if m.group(0).startswith("The") else "the", 1))),
        (_TIME, _stop(_time)),
        (_HOUR, _stop(lambda m: f"{num2words(int(m.group(1)))} {m.group(2).lower()} m")),
        (_PERCENT, lambda m: f"{cardinal(m.group(1))} percent"),
        (_DECADE, _decade),
        (_UNIT, _unit),
        (_YEAR_AFTER, lambda m: m.group(1) + _year(m.group(2))),
        (_ORDINAL, lambda m: _ordinal(int(m.group(1)))),
        (_FRACTION, _fraction),
        (_NUMBER_SIGN, lambda m: "number "),
        (_NUMBER, lambda m: cardinal(m.group(0))),
        (_SAINT, lambda m: "Saint"),
        (_ABBREVIATION, lambda m: ABBREVIATIONS[m.group(1)]),
        (_AMPERSAND, lambda m: "and"),
    ]
    for pattern, replace in rules:
        pieces = rewrite(pieces, pattern, replace)
    return pieces


def spoken_pieces(pieces: Sequence[Piece]) -> list[Piece]:
    """The unfixed pieces' numbers, dates, units and abbreviations as words (Chinese digits first)."""
    return _english(_chinese(list(pieces)))


def spoken(text: str) -> str:
    """``text`` with the rules above applied."""
    return joined(spoken_pieces(pieces_of(text)))


# -- back to the written form ---------------------------------------------------------------------------------

_WORD_CHARS = re.compile(rf"[{_HAN}]|[^\W_]+(?:'[^\W_]+)*")
_TRAILING = re.compile(r"[.,!?;:…。！？，、；：\"')\]]+$")


def _keys(word: str) -> list[str]:
    """The comparable parts of a word: lower-case letters and digits, hyphens split, Han characters one by one."""
    return [k.lower() for k in _WORD_CHARS.findall(word)]


def restore(heard: Sequence[str], pieces: Sequence[Piece]) -> list[tuple[int, int, str]]:
    """Which heard words say a rewritten piece: ``(first, last, written)`` for each run of heard words (indices
    inclusive) aligned with the words of one rewritten piece, ``written`` being what the user wrote there, with
    the last heard word's trailing punctuation kept. Runs are in order and do not overlap."""
    said: list[str] = []
    owner: list[int | None] = []
    for index, piece in enumerate(pieces):
        keys = _keys(piece.text)
        said.extend(keys)
        owner.extend([index if piece.written is not None else None] * len(keys))
    heard_keys: list[str] = []
    heard_of: list[int] = []
    for index, word in enumerate(heard):
        keys = _keys(word)
        heard_keys.extend(keys)
        heard_of.extend([index] * len(keys))
    piece_of_word: dict[int, int] = {}
    matcher = difflib.SequenceMatcher(None, said, heard_keys, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                if owner[i] is not None:
                    piece_of_word.setdefault(heard_of[j], owner[i])  # type: ignore[arg-type]
        elif tag == "replace":
            owners = {owner[i] for i in range(i1, i2)}
            if len(owners) == 1 and None not in owners:  # "$23" heard for "twenty three dollars"
                only = owner[i1]
                for j in range(j1, j2):
                    piece_of_word.setdefault(heard_of[j], only)  # type: ignore[arg-type]
    runs: list[tuple[int, int, str]] = []
    for index in sorted(piece_of_word):
        piece = piece_of_word[index]
        if runs and runs[-1][1] == index - 1 and piece_of_word.get(index - 1) == piece:
            runs[-1] = (runs[-1][0], index, runs[-1][2])
        else:
            runs.append((index, index, pieces[piece].written or ""))
    out = []
    for first, last, written in runs:
        tail = _TRAILING.search(heard[last])
        if tail and not written.endswith(tail.group(0)):
            written += tail.group(0)
        out.append((first, last, written))
    return out
