"""How far what was heard is from what was meant: normalisation and word error rate.

Both sides go through the same normalisation, so only differences that a listener would hear count: case,
punctuation, bracketed tags and spacing do not; ``42`` and ``forty-two`` are the same in English; ``don't`` and
``dont`` are the same. Scripts written without spaces (Chinese, Japanese kana and kanji, Thai, Lao, Khmer,
Myanmar) are scored one character per token, found by script rather than by the language code, so mixed text
("我们用 Python 写") scores its Han characters singly and its Latin words as words.

Known limits: numbers are spelled out for English only (other languages keep digits on both sides, so "3" against
"trois" is an error); simplified and traditional Chinese characters are not unified.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

#: Characters scored one per token: Hiragana, Katakana, CJK ideographs (and extensions), Thai, Lao, Myanmar, Khmer.
_CHAR_SCRIPTS = ("\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
                 "\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff")
_CHAR_TOKEN = re.compile(f"[{_CHAR_SCRIPTS}]")
_TOKEN = re.compile(f"[{_CHAR_SCRIPTS}][\u0300-\u036f\u0e31\u0e34-\u0e3a\u0e47-\u0e4e]*|[^\\s{_CHAR_SCRIPTS}]+")
_TAGS = re.compile(r"<SE[^>]*>.*?</SE[^>]*>|<[^<>]*>|\[[^\[\]]*\]", re.IGNORECASE | re.DOTALL)
_APOSTROPHE = re.compile(r"(?<=\w)['’ʼ](?=\w)")
_ENGLISH = {None, "", "en", "english"}

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10 ** 12, "trillion"), (10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}
_NUMBER_WORDS = set(_ONES) | set(_TENS[2:]) | {"hundred"} | {name for _, name in _SCALES}


def number_to_words(n: int) -> str:
    """English cardinal words for ``n`` (``1999`` -> ``one thousand nine hundred ninety nine``).

    Beyond the trillions the digits are read one by one, as nobody says those numbers aloud anyway.
    """
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_to_words(n % 100))
    if n >= 1000 * _SCALES[0][0]:
        return " ".join(_ONES[int(d)] for d in str(n))
    for scale, name in _SCALES:
        if n >= scale:
            head, rest = divmod(n, scale)
            return f"{number_to_words(head)} {name}" + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError("unreachable")


def _ordinal(words: str) -> str:
    head, _, last = words.rpartition(" ")
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}".strip()


def _digits(text: str) -> str:
    return " ".join(_ONES[int(d)] for d in text)


def _spell_number(match: re.Match[str]) -> str:
    whole, fraction, suffix = match.group("whole"), match.group("fraction"), match.group("suffix")
    whole = whole.replace(",", "")
    spoken = _digits(whole) if len(whole) > 1 and whole.startswith("0") else number_to_words(int(whole))
    if fraction:
        spoken += " point " + _digits(fraction)
    if suffix:
        spoken = _ordinal(spoken)
    return f" {spoken} "


_NUMBER = re.compile(r"(?<![\w.])(?P<whole>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<fraction>\d+))?"
                     r"(?P<suffix>st|nd|rd|th)?(?!\w)")


def _english(text: str) -> str:
    text = text.replace("&", " and ").replace("%", " percent ")
    text = _NUMBER.sub(_spell_number, text)
    return text


def _drop_number_and(tokens: list[str]) -> list[str]:
    """``one hundred and five`` is ``one hundred five``: an ``and`` between number words is not a word of its own."""
    kept = []
    for i, tok in enumerate(tokens):
        if (tok == "and" and 0 < i < len(tokens) - 1 and tokens[i - 1] in {"hundred", "thousand", "million",
                                                                             "billion", "trillion"}
                and tokens[i + 1] in _NUMBER_WORDS):
            continue
        kept.append(tok)
    return kept


def normalise_for_scoring(text: str, language: str | None = None) -> str:
    """The text as a listener would compare it: no tags, case, punctuation or symbols; English numbers in words.

    ``language`` is a Whisper code or name (``en``, ``english``, ``zh``); it decides only whether English number
    reading applies (``None`` means English rules, as most input is English and digits are rare elsewhere).
    """
    text = unicodedata.normalize("NFKC", text)
    text = _TAGS.sub(" ", text)
    text = text.casefold()
    if (language or "").casefold() in _ENGLISH:
        text = _english(text)
    text = _APOSTROPHE.sub("", text)
    text = "".join(" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in text)
    tokens = text.split()
    if (language or "").casefold() in _ENGLISH:
        tokens = _drop_number_and(tokens)
    return " ".join(tokens)


def scoring_tokens(text: str, language: str | None = None) -> list[str]:
    """The units the error rate counts: words, or single characters in scripts written without spaces."""
    return _TOKEN.findall(normalise_for_scoring(text, language))


def scored_by_characters(text: str) -> bool:
    """True when ``text`` holds characters of a script scored one character at a time (Chinese, Japanese, ...)."""
    return bool(_CHAR_TOKEN.search(text))


@dataclass(frozen=True)
class ErrorCounts:
    """The edit operations that turn the reference into the hypothesis (the minimum number of them)."""

    substitutions: int
    deletions: int
    insertions: int
    reference_length: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """Errors per reference token. An empty reference scores 0 against an empty hypothesis, else 1."""
        if self.reference_length == 0:
            return 0.0 if self.insertions == 0 else 1.0
        return self.errors / self.reference_length


def align_counts(reference: list[str], hypothesis: list[str]) -> ErrorCounts:
    """Levenshtein alignment of two token lists, counted by kind (substitution, deletion, insertion)."""
    n, m = len(reference), len(hypothesis)
    # cost[i][j]: edits turning reference[:i] into hypothesis[:j]
    cost = [list(range(m + 1))]
    for i in range(1, n + 1):
        row = [i] + [0] * m
        prev = cost[-1]
        ref = reference[i - 1]
        for j in range(1, m + 1):
            row[j] = min(prev[j - 1] + (ref != hypothesis[j - 1]), prev[j] + 1, row[j - 1] + 1)
        cost.append(row)
    subs = dels = ins = 0
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i][j] == cost[i - 1][j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            subs += reference[i - 1] != hypothesis[j - 1]
            i, j = i - 1, j - 1
        elif i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            dels += 1
            i -= 1
        else:
            ins += 1
            j -= 1
    return ErrorCounts(subs, dels, ins, n)


def error_counts(reference: str, hypothesis: str, language: str | None = None) -> ErrorCounts:
    """Both texts normalised and tokenised with :func:`scoring_tokens`, then aligned."""
    return align_counts(scoring_tokens(reference, language), scoring_tokens(hypothesis, language))


def word_error_rate(reference: str, hypothesis: str, language: str | None = None) -> float:
    """Word error rate of ``hypothesis`` (what was heard) against ``reference`` (the text that was spoken).

    Characters stand in for words in scripts without spaces. May exceed 1 when the hypothesis adds many words.
    """
    return error_counts(reference, hypothesis, language).wer
