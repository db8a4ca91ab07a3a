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
#: The scene upstream's generation example and the transformers documentation use when none is given.
DEFAULT_SCENE = "Audio is recorded from a quiet room."
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
#: Reference audio in the system turn is audio *input* upstream (``<|audio_bos|><|AUDIO|><|audio_eos|>``); its codes
#: take the same embeddings as audio output, so only the opening token differs from an assistant turn.
SYSTEM_AUDIO_BOS = "<|audio_bos|>"
_SYSTEM_AUDIO = SYSTEM_AUDIO_BOS + AUDIO_PLACEHOLDER + "<|audio_eos|>"
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
    system: str | None = DEFAULT_SYSTEM  # None: no system turn at all (upstream, with voices and no scene)
    scene: str | None = None
    turns: list[AudioTurn] = field(default_factory=list)
    system_audio: list[torch.Tensor] = field(default_factory=list)  # codes for ``<|AUDIO_OUT|>`` in the scene

    def render(self) -> tuple[str, list[torch.Tensor]]:
        """The prompt string (one ``<|AUDIO_OUT|>`` per audio) and the audio codes in order."""
        parts = [BOS]
        if self.system is not None:
            parts += [_HEADER.format(role="system"), self.system.strip()]
            if self.scene:
                parts += ["\n\n<|scene_desc_start|>\n", self.scene.strip(), "\n<|scene_desc_end|>"]
            parts.append(_EOT)
        for turn in self.turns:
            parts += [_HEADER.format(role="user"), turn.text.strip(), _EOT,
                      _HEADER.format(role="assistant"), _AUDIO_TURN, _EOT]
        parts += [_HEADER.format(role="user"), self.text.strip(), _EOT, GENERATION_PROMPT]
        return "".join(parts), [*self.system_audio, *(t.codes for t in self.turns)]


@dataclass
class Context:
    """The part of the prompt shared by every chunk of one request: system, scene and reference turns."""

    system: str | None
    scene: str | None
    references: list[AudioTurn]
    system_audio: list[torch.Tensor] = field(default_factory=list)

    def prompt(self, text: str, history: list[AudioTurn]) -> Prompt:
        return Prompt(text=text, system=self.system, scene=self.scene, turns=[*self.references, *history],
                      system_audio=list(self.system_audio))


def resolve_scene(scene: str | None) -> str | None:
    """No scene given: :data:`DEFAULT_SCENE`; an explicit empty scene: none."""
    if scene is None:
        return DEFAULT_SCENE
    return scene.strip() or None


def build_context(scene: str | None, references: list[AudioTurn], speakers: list[str],
                  descriptions: dict[str, str] | None = None, references_in_system: bool = False) -> Context:
    """The upstream rules for the shared context (``examples/generation.py``, ``prepare_generation_context``).

    ``scene`` is used as given (see :func:`resolve_scene` for the default). ``descriptions`` maps ``SPEAKERn`` to a
    voice description; ``references_in_system`` puts the reference audio in the scene instead of in turns.

    * Descriptions, or references in the system turn: the default system turn, whose scene block holds the scene
      and then one ``SPEAKERn: <description>`` line per speaker (a reference's audio in place of its description).
    * With reference voices: one user/assistant pair per voice (its transcript tagged ``[SPEAKERn]`` when there
      are several), after a system turn only when there is a scene.
    * Dialogue (several ``[SPEAKERn]`` tags) without voices: a system turn telling the model not to read the
      tags, and a scene that alternates feminine and masculine speakers.
    * Otherwise the default system turn and the scene.
    """
    if descriptions or (references_in_system and references):
        descriptions = descriptions or {}
        count = max([len(references)] + [int(tag[7:]) + 1 for tag in descriptions])
        lines, audio = [], []
        for i in range(count):
            tag = f"SPEAKER{i}"
            if tag in descriptions:
                lines.append(f"{tag}: {descriptions[tag].strip()}")
            elif i < len(references):
                lines.append(f"{tag}: {_SYSTEM_AUDIO}")
                audio.append(references[i].codes)
        block = "\n".join(lines)
        return Context(DEFAULT_SYSTEM, f"{scene}\n\n{block}" if scene else block, [], audio)
    if references:
        if len(references) > 1:
            references = [AudioTurn(f"[SPEAKER{i}] {r.text}", r.codes) for i, r in enumerate(references)]
        return Context(DEFAULT_SYSTEM if scene else None, scene, references)
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
