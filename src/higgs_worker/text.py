"""Text before the model: the upstream normalisation, speaker tags and long-text chunking.

These follow the official Higgs Audio V2 generation recipe, so the model sees text shaped as in training.
"""

from __future__ import annotations

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
    ("[humming start]", "<SE_s>[Humming]</SE_s>"),
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
#: tab, zero-width and joiner characters, bidirectional overrides, the soft hyphen and the byte-order mark.
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u180e\u200b-\u200f\u202a-\u202e"
                        "\u2060-\u2064\u2066-\u2069\ufeff]")


def clean(text: str) -> str:
    """Remove invisible characters; carriage returns become newlines."""
    return _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


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


def speaker_tags(text: str) -> list[str]:
    """Distinct ``SPEAKERn`` tags in order of their number (``SPEAKER0`` first)."""
    return sorted(set(_SPEAKER_TAG.findall(text)), key=lambda t: int(t[7:]))


def is_mostly_cjk(text: str) -> bool:
    """Chinese/Japanese text has no spaces between words; chunk it by characters instead."""
    visible = [c for c in text if not c.isspace()]
    return bool(visible) and sum(bool(_CJK.match(c)) for c in visible) / len(visible) > 0.3


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
    """Paragraphs (blank-line separated) cut into runs of ``max_words`` words; CJK text by characters."""
    chunks: list[str] = []
    for paragraph in text.split("\n\n"):
        if not paragraph.strip():
            continue
        if is_mostly_cjk(paragraph):
            chars = paragraph.strip()
            pieces = [chars[i:i + max_words] for i in range(0, len(chars), max_words)]
        else:
            words = paragraph.split(" ")
            pieces = [" ".join(words[i:i + max_words]) for i in range(0, len(words), max_words)]
        pieces = [p for p in pieces if p.strip()]
        if pieces:
            pieces[-1] += "\n\n"
            chunks.extend(pieces)
    return chunks


def split_chunks(text: str, method: str | None, max_words: int = 200, max_turns: int = 1) -> list[str]:
    """Split ``text`` as the request asks: whole (``None``), by ``word`` count or by ``speaker`` turn."""
    if method is None:
        return [text]
    if method == "speaker":
        return split_by_speaker(text, max_turns)
    if method == "word":
        return split_by_words(text, max_words)
    raise ValueError(f"unknown chunk method {method!r}")
