"""``engine/prompt.py`` without the model: ``model_inputs`` against a stand-in processor that shows what it was
given, and the branches of ``build_context`` that the layout tests in ``test_prompt.py`` do not reach.

(``test_prompt.py`` compares ``model_inputs`` with the real processor on the tiny model; these are the fast
checks that also pin the ids and shapes, so a mutation run can afford them.)
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from higgs_worker.engine.prompt import (
    AUDIO_PLACEHOLDER,
    DEFAULT_SCENE,
    DEFAULT_SYSTEM,
    MULTISPEAKER_SYSTEM,
    AudioTurn,
    Context,
    Prompt,
    build_context,
    model_inputs,
)

BOS_ID, EOS_ID = 50, 51


class StandInTokenizer:
    """One id per character, so the expanded text can be read back from ``input_ids``."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, texts, add_special_tokens=True, return_tensors=None):
        self.calls.append((texts, add_special_tokens, return_tensors))
        ids = torch.tensor([[ord(c) for c in texts[0]]])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


class StandInProcessor:
    audio_stream_bos_id = BOS_ID
    audio_stream_eos_id = EOS_ID

    def __init__(self, codebooks: int = 3) -> None:
        self.audio_tokenizer = SimpleNamespace(config=SimpleNamespace(num_quantizers=codebooks))
        self.tokenizer = StandInTokenizer()

    def get_audio_tokens(self, frames: int) -> str:
        return "A" * frames  # one character per delay-patterned frame


def text_of(inputs) -> str:
    return "".join(chr(i) for i in inputs["input_ids"][0].tolist())


def test_model_inputs_expand_each_audio_to_its_delayed_frames_in_order():
    processor = StandInProcessor(codebooks=3)
    first, second = torch.tensor([[1, 2, 3], [4, 5, 6]]), torch.tensor([[7, 8, 9]], dtype=torch.int32)
    prompt = Prompt(text="Say.", system=None, turns=[AudioTurn("One.", first), AudioTurn("Two.", second)])
    inputs = model_inputs(processor, prompt)
    rendered, _ = prompt.render()
    (texts, special, tensors), = processor.tokenizer.calls
    assert special is False and tensors == "pt" and len(texts) == 1
    # 2 frames + BOS/EOS + 2 of delay -> 6 delayed frames; 1 frame -> 5
    assert text_of(inputs) == rendered.replace(AUDIO_PLACEHOLDER, "A" * 6, 1).replace(AUDIO_PLACEHOLDER, "A" * 5, 1)
    assert set(inputs) == {"input_ids", "attention_mask", "audio_input_ids", "audio_input_ids_mask"}
    audio = inputs["audio_input_ids"]
    assert audio.shape == (1, 11, 3) and audio.dtype == torch.long
    assert audio[0].tolist() == [[BOS_ID] * 3, [1, BOS_ID, BOS_ID], [4, 2, BOS_ID], [EOS_ID, 5, 3], [EOS_ID, EOS_ID, 6],
                                 [EOS_ID] * 3,
                                 [BOS_ID] * 3, [7, BOS_ID, BOS_ID], [EOS_ID, 8, BOS_ID], [EOS_ID, EOS_ID, 9],
                                 [EOS_ID] * 3]
    assert inputs["audio_input_ids_mask"].dtype == torch.bool and inputs["audio_input_ids_mask"].shape == (1, 11)
    assert bool(inputs["audio_input_ids_mask"].all())
    assert torch.equal(inputs["attention_mask"], torch.ones_like(inputs["input_ids"]))


def test_model_inputs_without_audio_have_no_audio_keys():
    processor = StandInProcessor()
    prompt = Prompt(text="Just text.")
    inputs = model_inputs(processor, prompt)
    assert set(inputs) == {"input_ids", "attention_mask"} and text_of(inputs) == prompt.render()[0]


def test_model_inputs_put_system_audio_first():
    processor = StandInProcessor(codebooks=2)
    prompt = build_context(None, [AudioTurn("Ref.", torch.tensor([[1, 1]]))], ["SPEAKER0"],
                           references_in_system=True).prompt("Go.", [AudioTurn("Before.", torch.tensor([[2, 2]]))])
    audio = model_inputs(processor, prompt)["audio_input_ids"][0]
    assert audio[1].tolist() == [1, BOS_ID] and audio[5].tolist() == [2, BOS_ID]


def test_a_placeholder_without_its_audio_is_an_error():
    prompt = Prompt(text=f"Spoken {AUDIO_PLACEHOLDER} here.")
    with pytest.raises(ValueError):
        model_inputs(StandInProcessor(), prompt)


def test_render_strips_the_text_of_each_part():
    codes = torch.zeros((1, 2), dtype=torch.long)
    prompt = Prompt(text="  Now.  ", system="  Be brief.  ", scene="  A room.  ", turns=[AudioTurn(" Then. ", codes)])
    text, audio = prompt.render()
    assert text == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.\n\n"
                    "<|scene_desc_start|>\nA room.\n<|scene_desc_end|><|eot_id|>"
                    "<|start_header_id|>user<|end_header_id|>\n\nThen.<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\n<|audio_out_bos|><|AUDIO_OUT|><|audio_eos|>"
                    "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nNow.<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\n<|audio_out_bos|>")
    assert audio == [codes]
    assert Prompt(text="x", scene="").render()[0] == Prompt(text="x").render()[0]  # an empty scene: no block


def test_context_prompt_copies_its_lists():
    ref, sys_audio = AudioTurn("Ref.", torch.zeros((1, 2))), torch.ones((1, 2))
    ctx = Context("S", "scene", [ref], [sys_audio])
    history = [AudioTurn("Before.", torch.zeros((1, 2)))]
    prompt = ctx.prompt("Now.", history)
    assert (prompt.text, prompt.system, prompt.scene) == ("Now.", "S", "scene")
    assert prompt.turns == [ref, *history] and prompt.system_audio == [sys_audio]
    prompt.turns.append(ref)
    prompt.system_audio.append(sys_audio)
    assert ctx.references == [ref] and ctx.system_audio == [sys_audio]  # the shared context is untouched


def test_descriptions_fill_gaps_and_extend_past_the_references():
    refs = [AudioTurn("One.", torch.zeros((1, 2))), AudioTurn("Two.", torch.ones((1, 2)))]
    # SPEAKER2 described, no SPEAKER1 description: SPEAKER1 takes its reference's audio; the count reaches 3
    ctx = build_context(None, refs, [], descriptions={"SPEAKER0": " low ", "SPEAKER2": "high"})
    assert ctx.system == DEFAULT_SYSTEM and ctx.references == []
    assert ctx.scene == ("SPEAKER0: low\nSPEAKER1: <|audio_bos|><|AUDIO_OUT|><|audio_eos|>\nSPEAKER2: high")
    assert len(ctx.system_audio) == 1 and ctx.system_audio[0] is refs[1].codes
    only_far = build_context("Hall.", [], [], descriptions={"SPEAKER3": "far"})
    assert only_far.scene == "Hall.\n\nSPEAKER3: far"  # speakers without a description or audio get no line


def test_references_in_system_without_references_is_the_plain_layout():
    assert build_context(DEFAULT_SCENE, [], [], references_in_system=True) == Context(DEFAULT_SYSTEM, DEFAULT_SCENE, [])


def test_a_single_reference_keeps_its_text_untagged():
    ref = AudioTurn("Words.", torch.zeros((1, 2)))
    ctx = build_context("A room.", [ref], ["SPEAKER0", "SPEAKER1"])
    assert ctx.system == DEFAULT_SYSTEM and ctx.references == [ref] and ctx.references[0].text == "Words."
    two = build_context(None, [ref, ref], [])
    assert two.system is None and two.scene is None
    assert [r.text for r in two.references] == ["[SPEAKER0] Words.", "[SPEAKER1] Words."]


def test_dialogue_without_voices_or_scene():
    ctx = build_context(None, [], ["SPEAKER0", "SPEAKER1", "SPEAKER2"])
    assert ctx.system == MULTISPEAKER_SYSTEM
    assert ctx.scene == "SPEAKER0: feminine\nSPEAKER1: masculine\nSPEAKER2: feminine"
    assert build_context(None, [], ["SPEAKER0"]) == Context(DEFAULT_SYSTEM, None, [])


def test_audio_codes_of_any_integer_type_become_long_ids():
    prompt = Prompt(text="Go.", turns=[AudioTurn("Ref.", torch.tensor([[3, 4, 5]], dtype=torch.int16))])
    audio = model_inputs(StandInProcessor(codebooks=3), prompt)["audio_input_ids"]
    assert audio.dtype == torch.long and audio[0, 1].tolist() == [3, BOS_ID, BOS_ID]
