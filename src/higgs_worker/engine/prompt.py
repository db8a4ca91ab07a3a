"""Prompts in the layout Higgs Audio V2 was trained on, and the model inputs they become.

Llama-3 chat format: a system turn (``Generate audio following instruction.`` plus an optional scene between
``<|scene_desc_start|>``/``<|scene_desc_end|>``), then user/assistant pairs where each assistant turn is audio
(reference voices first, then the previous chunks of a long text), then the user turn with the text, ending in
``<|start_header_id|>assistant<|end_header_id|>\\n\\n<|audio_out_bos|>`` so the model starts speaking.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .codes import with_delay

DEFAULT_SYSTEM = "Generate audio following instruction."
MULTISPEAKER_SYSTEM = (
    "You are an AI assistant designed to convert text into speech.\n"
    "If the user's message includes a [SPEAKER*] tag, do not read out the tag and generate speech for the "
    "following text, using the specified voice.\n"
    "If no speaker tag is present, select a suitable voice on your own."
)

BOS = "<|begin_of_text|>"
AUDIO_PLACEHOLDER = "<|AUDIO_OUT|>"
_HEADER = "<|start_header_id|>{role}<|end_header_id|>\n\n"
_EOT = "<|eot_id|>"
_AUDIO_TURN = "<|audio_out_bos|>" + AUDIO_PLACEHOLDER + "<|audio_eos|>"
GENERATION_PROMPT = _HEADER.format(role="assistant") + "<|audio_out_bos|>"


@dataclass
class AudioTurn:
    """A user turn with its text and the assistant's answer as audio codes ``(frames, codebooks)``."""

    text: str
    codes: torch.Tensor


@dataclass
class Prompt:
    """Everything the model is conditioned on for one generation."""

    text: str
    system: str = DEFAULT_SYSTEM
    scene: str | None = None
    turns: list[AudioTurn] = field(default_factory=list)

    def render(self) -> tuple[str, list[torch.Tensor]]:
        """The prompt string (one ``<|AUDIO_OUT|>`` per audio turn) and the audio codes in order."""
        parts = [BOS, _HEADER.format(role="system"), self.system.strip()]
        if self.scene:
            parts += ["\n\n<|scene_desc_start|>\n", self.scene.strip(), "\n<|scene_desc_end|>"]
        parts.append(_EOT)
        for turn in self.turns:
            parts += [_HEADER.format(role="user"), turn.text.strip(), _EOT,
                      _HEADER.format(role="assistant"), _AUDIO_TURN, _EOT]
        parts += [_HEADER.format(role="user"), self.text.strip(), _EOT, GENERATION_PROMPT]
        return "".join(parts), [t.codes for t in self.turns]


@dataclass
class Context:
    """The part of the prompt shared by every chunk of one request: system, scene and reference turns."""

    system: str
    scene: str | None
    references: list[AudioTurn]

    def prompt(self, text: str, history: list[AudioTurn]) -> Prompt:
        return Prompt(text=text, system=self.system, scene=self.scene, turns=[*self.references, *history])


def build_context(scene: str | None, references: list[AudioTurn], speakers: list[str]) -> Context:
    """The upstream rules for the shared context.

    * With reference voices: the default system turn, the scene if any, one user/assistant pair per voice
      (its transcript tagged ``[SPEAKERn]`` when there are several voices).
    * Dialogue (several ``[SPEAKERn]`` tags) without voices: a system turn telling the model not to read the
      tags, and a scene that alternates feminine and masculine speakers.
    * Otherwise the default system turn and the scene.
    """
    if references:
        if len(references) > 1:
            references = [AudioTurn(f"[SPEAKER{i}] {r.text}", r.codes) for i, r in enumerate(references)]
        return Context(DEFAULT_SYSTEM, scene, references)
    if len(speakers) > 1:
        voices = "\n".join(f"{tag}: {'feminine' if i % 2 == 0 else 'masculine'}" for i, tag in enumerate(speakers))
        return Context(MULTISPEAKER_SYSTEM, "\n\n".join([s for s in (scene, voices) if s]), [])
    return Context(DEFAULT_SYSTEM, scene, [])


def model_inputs(processor, prompt: Prompt) -> dict[str, torch.Tensor]:
    """Tokenise ``prompt`` for the model, with the audio turns as delay-patterned codes.

    Equal to what ``HiggsAudioV2Processor(text, audio=...)`` gives for the same audio, but from codes: reference
    codes are encoded once and cached, and a long text's previous chunks are fed back without re-encoding.
    """
    text, audios = prompt.render()
    num_codebooks = processor.audio_tokenizer.config.num_quantizers
    delayed = [with_delay(c.to(torch.long), num_codebooks, processor.audio_stream_bos_id,
                          processor.audio_stream_eos_id) for c in audios]
    pieces = text.split(AUDIO_PLACEHOLDER)
    expanded = pieces[0]
    for d, rest in zip(delayed, pieces[1:], strict=True):
        expanded += processor.get_audio_tokens(d.shape[0]) + rest
    enc = processor.tokenizer([expanded], add_special_tokens=False, return_tensors="pt")
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if delayed:
        audio = torch.cat(delayed)[None]
        inputs["audio_input_ids"] = audio
        inputs["audio_input_ids_mask"] = torch.ones(audio.shape[:2], dtype=torch.bool)
    return inputs
