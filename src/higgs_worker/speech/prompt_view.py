"""The prompt inspector: what the model is told for each chunk of a request, without running the model.

Every chunk's prompt is rendered exactly as generation renders it; audio is shown as a labelled placeholder:
a reference voice with its frame count (from its length, by the real codec's arithmetic),
a previous chunk's audio as made at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..core import text
from ..core.schema import SpeechRequest
from ..engine.prompt import AUDIO_PLACEHOLDER, AudioTurn, build_context, resolve_scene

#: Samples of 24 kHz audio per codec frame (25 frames a second).
HOP = 960


@dataclass
class ChunkPrompt:
    index: int
    text: str
    words: int
    prompt: str  # the exact prompt text, each audio placeholder followed by its label
    audio: list[str]  # the labels, in order

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "text": self.text, "words": self.words, "prompt": self.prompt,
                "audio": self.audio}


def reference_frames(samples: int) -> int:
    """Frames the real codec makes from ``samples`` 24 kHz samples, as upstream's tokenizer encodes a reference:
    its semantic branch's count (HuBERT's convolutions at 16 kHz, every second feature), to which the acoustic
    branch is padded and cut (:mod:`higgs_worker.engine.codec_encode`)."""
    return (samples + 841) // HOP


def inspect(service, request: SpeechRequest) -> list[ChunkPrompt]:
    """The chunks of ``request`` and the prompt each one gets (voices are resolved; the model is not loaded)."""
    service.check(request)
    normalised, chunks = service.plan(request)
    references = request._references or []
    turns, labels = [], {}
    for ref in references:
        frames = reference_frames(len(ref.wave))
        codes = torch.zeros((frames, 1), dtype=torch.long)
        labels[id(codes)] = f"voice {ref.name}: {frames} frames, {ref.duration_s:.2f} s"
        turns.append(AudioTurn(ref.transcript, codes))
    context = build_context(resolve_scene(request.scene_prompt), turns, text.speaker_tags(normalised),
                            request.speaker_descriptions, request.ref_audio_in_system_message)
    buffer = request.generation_chunk_buffer_size
    history: list[AudioTurn] = []
    out = []
    for index, chunk in enumerate(chunks):
        kept = list(history) if buffer is None else (history[-buffer:] if buffer else [])  # the model may drop
        # the oldest of them at run time, when they and max_new_tokens would not fit its context
        rendered, audios = context.prompt(chunk, kept).render()
        names = [labels.get(id(a), "") or f"chunk {int(a[0, 0]) + 1} audio, made at run time" for a in audios]
        pieces = rendered.split(AUDIO_PLACEHOLDER)
        shown = pieces[0] + "".join(f"{AUDIO_PLACEHOLDER}[{name}]{rest}" for name, rest in zip(names, pieces[1:],
                                                                                              strict=True))
        out.append(ChunkPrompt(index, chunk, text.word_count(chunk), shown, names))
        history.append(AudioTurn(chunk, torch.full((1, 1), index, dtype=torch.long)))
    return out


def format_text(prompts: list[ChunkPrompt]) -> str:
    """Human-readable: a header per chunk, then its prompt with the special tokens kept visible."""
    lines = ["(a line break is shown after each <|eot_id|> for reading; --json gives the exact text)", ""]
    for p in prompts:
        lines.append(f"=== chunk {p.index + 1}/{len(prompts)} ({p.words} words) ===")
        lines.append(re.sub(r"(<\|eot_id\|>)", r"\1\n", p.prompt))
        lines.append("")
    return "\n".join(lines)
