"""Text before the model: the upstream normalisation, speaker tags and long-text chunking.

These follow the official Higgs Audio V2 generation recipe, so the model sees text shaped as in training.
"""

from __future__ import annotations

import logging
import re

#: Full-width and typographic punctuation mapped to the ASCII the model was trained on.
_PUNCTUATION = {
    "，": ", ", "。": ".", "：": ":", "；": ";", "？": "?", "！": "!", "（": "(", "）": ")",
    "【": "[", "】": "]", "《": "<", "》": ">", "“": '"', "”": '"', "‘": "'", "’": "'",
    "、": ",", "—": "-", "…": "...", "·": ".", "「": '"', "」": '"', "『": '"', "』": '"',
}

#: Sound-event tags written by users, and the markers the model knows them by.
SOUND_EVENTS = (
    ("[laugh]", "<SE>[Laughter]</SE>"),
    ("[humming start]", "<SE_s>[Humming]</SE_s>"),  # upstream fixed this in #89 (2025-07-31); it was <SE>
    ("[humming end]", "<SE_e>[Humming]</SE_e>"),
    ("[music start]", "<SE_s>[Music]</SE_s>"),
    ("[music end]", "<SE_e>[Music]</SE_e>"),
    ("[music]", "<SE>[Music]</SE>"),
    ("[sing start]", "<SE_s>[Singing]</SE_s>"),
    ("[sing end]", "<SE_e>[Singing]</SE_e>"),
    ("[applause]", "<SE>[Applause]</SE>"),
    ("[cheering]", "<SE>[Cheering]</SE>"),
    ("[cough]", "<SE>[Cough]</SE>"),
)

_FINAL = (".", "!", "?", ",", ";", '"', "'", "</SE_e>", "</SE>")
_SPEAKER_TAG = re.compile(r"\[(SPEAKER\d+)\]")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


#: Characters with no sound that only hide text or confuse the tokenizer: C0/C1 controls other than newline and
#: tab, zero-width and joiner characters, bidirectional overrides and isolates, the soft hyphen, the byte-order
#: mark, the combining grapheme joiner, the Arabic letter mark, Khmer's invisible vowels, Mongolian and Unicode
#: variation selectors, interlinear annotation marks and the tag characters (U+E0000-U+E007F).
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u034f\u061c\u17b4\u17b5\u180b-\u180f"
                        "\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufe00-\ufe0f\ufeff\ufff9-\ufffb"
                        "\U000e0000-\U000e007f\U000e0100-\U000e01ef]")
#: Characters drawn as an empty cell, used as spaces that no space-stripping sees: the Hangul fillers and the
#: blank braille pattern. They become spaces.
_BLANK = re.compile("[\u115f\u1160\u2800\u3164\uffa0]")
#: Terminal escape sequences (CSI ``ESC [ ... m``, OSC ``ESC ] ... BEL``, two-character escapes): removed whole,
#: so no ``[31m`` is left to be read out once the escape character itself is gone.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(text: str) -> str:
    """Remove terminal escapes and invisible characters; blank-cell characters become spaces and carriage returns
    newlines."""
    text = _ANSI.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _INVISIBLE.sub("", _BLANK.sub(" ", text))


def has_lone_surrogate(value: object) -> bool:
    """Whether ``value`` (a string, or any string in a JSON object or list, keys included) holds a UTF-16 surrogate
    on its own: JSON's ``"\\ud800"`` decodes to one, and no UTF-8 text (the tokenizer's, a log's) can carry it."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_lone_surrogate(v) for v in value)
    return False


def normalize_punctuation(text: str) -> str:
    for src, dst in _PUNCTUATION.items():
        text = text.replace(src, dst)
    return text


def normalize(text: str) -> str:
    """The upstream normalisation: punctuation, brackets, degrees, sound events, whitespace, final stop; and
    before it, invisible characters removed (:func:`clean`)."""
    text = normalize_punctuation(clean(text))
    text = text.replace("(", " ").replace(")", " ")
    text = text.replace("°F", " degrees Fahrenheit").replace("°C", " degrees Celsius")
    for tag, marker in SOUND_EVENTS:
        text = text.replace(tag, marker)
    lines = [" ".join(line.split()) for line in text.split("\n") if line.strip()]
    text = "\n".join(lines).strip()
    if text and not text.endswith(_FINAL):
        text += "."
    return text


_TAG = re.compile(r"\[[^\[\]\n]{1,64}\]")


def unknown_tags(text: str) -> list[str]:
    """``[tags]`` in ``text`` that are neither a sound event of :data:`SOUND_EVENTS` nor ``[SPEAKERn]``: the model
    reads them as words, so callers report them (distinct, in order)."""
    known = {tag for tag, _ in SOUND_EVENTS}
    found = [t for t in _TAG.findall(text) if t not in known and not _SPEAKER_TAG.fullmatch(t)]
    return list(dict.fromkeys(found))


def tag_warnings(text: str) -> list[str]:
    """One warning per unknown tag (:func:`unknown_tags`), naming the tags that are known."""
    return [f"{tag} is not a sound tag the model knows, so it is read as text; known: "
            f"{', '.join(t for t, _ in SOUND_EVENTS)}" for tag in unknown_tags(text)]


def speaker_tags(text: str) -> list[str]:
    """Distinct ``SPEAKERn`` tags in order of their number (``SPEAKER0`` first)."""
    return sorted(set(_SPEAKER_TAG.findall(text)), key=lambda t: int(t[7:]))


def is_mostly_cjk(text: str) -> bool:
    """Chinese/Japanese text has no spaces between words."""
    visible = [c for c in text if not c.isspace()]
    return bool(visible) and sum(bool(_CJK.match(c)) for c in visible) / len(visible) > 0.3


def is_chinese(text: str) -> bool:
    """Upstream's test for the word chunker: ``langid`` names the language of the whole text."""
    if not _CJK.search(text):
        return False  # no Han characters: not Chinese, and langid is not loaded for nothing
    import langid

    return langid.classify(text)[0] == "zh"


def chinese_words(text: str) -> list[str]:
    """Chinese words as ``jieba`` cuts them (precise mode, as upstream); joined with ``""`` they give the text."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return list(jieba.cut(text, cut_all=False))


def split_by_speaker(text: str, max_turns: int = 1) -> list[str]:
    """One chunk per speaker turn (a line starting with ``[SPEAKERn]``), ``max_turns`` turns merged."""
    turns: list[str] = []
    current = ""
    for raw in text.split("\n"):
        line = raw.strip()
        if line.startswith("[SPEAKER"):
            if current:
                turns.append(current.strip())
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current.strip():
        turns.append(current.strip())
    if max_turns > 1:
        return ["\n".join(turns[i:i + max_turns]) for i in range(0, len(turns), max_turns)]
    return turns


def split_by_words(text: str, max_words: int = 200) -> list[str]:
    """Upstream's ``word`` chunker: paragraphs (blank-line separated) cut into runs of ``max_words`` words,
    counted as ``jieba`` words when ``langid`` finds the text Chinese, else as space-separated words."""
    chinese = is_chinese(text)
    chunks: list[str] = []
    for paragraph in text.split("\n\n"):
        if chinese:
            words = chinese_words(paragraph)
            pieces = ["".join(words[i:i + max_words]) for i in range(0, len(words), max_words)]
        else:
            words = paragraph.split(" ")
            pieces = [" ".join(words[i:i + max_words]) for i in range(0, len(words), max_words)]
        pieces = [p for p in pieces if p.strip()]
        if pieces:
            pieces[-1] += "\n\n"
            chunks.extend(pieces)
    return chunks


#: Words that end in a full stop without ending the sentence.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs etc e.g i.e no fig vol approx dept est inc ltd co jan feb mar apr jun jul aug "
    "sep sept oct nov dec".split())
#: A sentence ends at ``.``, ``!`` or ``?`` (closing quotes, brackets and sound-event markers stay with it),
#: before a space or, in Chinese/Japanese text, before the next character.
_SENTENCE_END = re.compile(r"""[.!?]+(?:["'\])\]]|</SE>|</SE_e>)*(?:\s+|(?=[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]))""")
_CLAUSE_END = re.compile(r"""[,;:]+["']*(?:\s+|(?=[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]))""")


def _tokens(text: str) -> tuple[list[str], str]:
    """The words of ``text`` and the string that joins them back: jieba words for CJK text, else spaces."""
    if is_mostly_cjk(text):
        return [w for w in chinese_words(text) if w.strip()], ""
    return text.split(), " "


def word_count(text: str) -> int:
    return len(_tokens(text)[0])


def _cut(text: str, pattern: re.Pattern[str], skip_abbreviations: bool = False) -> list[str]:
    pieces, start = [], 0
    for m in pattern.finditer(text):
        if skip_abbreviations:
            before = text[start:m.start()].split()
            last = before[-1].lower().rstrip(".") if before else ""
            if last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()):  # "Dr. No", "J. R. R. Tolkien"
                continue
            if text[m.end():m.end() + 1].islower():  # '"Where?" asked the chair': the sentence goes on
                continue
        pieces.append(text[start:m.end()].strip())
        start = m.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def split_sentences(text: str) -> list[str]:
    """Sentences, line by line (a line break always ends one)."""
    return [s for line in text.split("\n") for s in _cut(line, _SENTENCE_END, skip_abbreviations=True)]


def _pack(pieces: list[str], max_words: int, joiner: str) -> list[str]:
    """Consecutive pieces joined while the total stays within ``max_words``."""
    chunks: list[str] = []
    current: list[str] = []
    count = 0
    for piece in pieces:
        n = word_count(piece)
        if current and count + n > max_words:
            chunks.append(joiner.join(current))
            current, count = [], 0
        current.append(piece)
        count += n
    if current:
        chunks.append(joiner.join(current))
    return chunks


def _fit(sentence: str, max_words: int) -> list[str]:
    """A sentence within the budget as it is; a longer one cut at clauses, and a clause still too long at words."""
    if word_count(sentence) <= max_words:
        return [sentence]
    joiner = "" if is_mostly_cjk(sentence) else " "
    pieces: list[str] = []
    for clause in _cut(sentence, _CLAUSE_END):
        words, glue = _tokens(clause)
        if len(words) <= max_words:
            pieces.append(clause)
        else:
            pieces.extend(glue.join(words[i:i + max_words]) for i in range(0, len(words), max_words))
    return _pack(pieces, max_words, joiner)


def split_by_sentences(text: str, max_words: int = 200) -> list[str]:
    """Whole sentences packed into chunks of at most ``max_words`` words (jieba words for Chinese); a sentence
    longer than that is cut at clause boundaries, then at word boundaries. Never cuts inside a word."""
    pieces = [piece for sentence in split_sentences(text) for piece in _fit(sentence, max_words)]
    joiner = "" if is_mostly_cjk(text) else " "
    return _pack(pieces, max_words, joiner)


def _split_dialogue(text: str, max_words: int, max_turns: int) -> list[str]:
    """Speaker turns, ``max_turns`` to a chunk within the word budget; a long turn is cut into sentence packs,
    each keeping its speaker tag so the model knows who speaks."""
    pieces: list[str] = []
    for turn in split_by_speaker(text, 1):
        tag = _SPEAKER_TAG.match(turn)
        if tag is None or word_count(turn) <= max_words:
            pieces.append(turn)
            continue
        body = turn[tag.end():].strip()
        pieces.extend(f"[{tag.group(1)}] {part}" for part in split_by_sentences(body, max_words))
    chunks: list[str] = []
    current: list[str] = []
    count = 0
    for piece in pieces:
        n = word_count(piece)
        if current and (len(current) >= max_turns or count + n > max_words):
            chunks.append("\n".join(current))
            current, count = [], 0
        current.append(piece)
        count += n
    if current:
        chunks.append("\n".join(current))
    return chunks


def is_dialogue(text: str) -> bool:
    return any(_SPEAKER_TAG.match(line.strip()) for line in text.split("\n"))


def auto_word_budget(max_new_tokens: int, max_words: int, frames_per_word: int = 16) -> int:
    """Words per chunk that fit in ``max_new_tokens`` frames even for slow speech (16 frames, 0.64 s, a word),
    and never more than the request's ``chunk_max_word_num``."""
    return max(8, min(max_words, max_new_tokens // frames_per_word))


def split_auto(text: str, max_words: int, max_turns: int = 1) -> list[str]:
    """Short text as one chunk; longer dialogue by speaker turns; longer prose as packed whole sentences."""
    if word_count(text) <= max_words:
        return [text]
    if is_dialogue(text):
        return _split_dialogue(text, max_words, max_turns)
    return split_by_sentences(text, max_words)


def split_chunks(text: str, method: str | None, max_words: int = 200, max_turns: int = 1) -> list[str]:
    """Split ``text`` as the request asks: whole (``none``/``None``), ``auto``, by ``sentence``, by ``word`` count
    or by ``speaker`` turn. ``max_words`` is the budget as given (``auto`` callers pass :func:`auto_word_budget`)."""
    if method is None or method == "none":
        return [text]
    if method == "auto":
        return split_auto(text, max_words, max_turns)
    if method == "sentence":
        return split_by_sentences(text, max_words)
    if method == "speaker":
        return split_by_speaker(text, max_turns)
    if method == "word":
        return split_by_words(text, max_words)
    raise ValueError(f"unknown chunk method {method!r}")
