import numpy as np
import torch

from higgs_worker.engine.prompt import (
    DEFAULT_SCENE,
    MULTISPEAKER_SYSTEM,
    AudioTurn,
    Prompt,
    build_context,
    model_inputs,
    resolve_scene,
)

SYS = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nGenerate audio following instruction."
USER = "<|start_header_id|>user<|end_header_id|>\n\n"
ASSISTANT_AUDIO = "<|start_header_id|>assistant<|end_header_id|>\n\n<|audio_out_bos|><|AUDIO_OUT|><|audio_eos|><|eot_id|>"
GEN = "<|start_header_id|>assistant<|end_header_id|>\n\n<|audio_out_bos|>"
CODES = torch.zeros((3, 8), dtype=torch.long)


def test_plain_prompt_layout():
    text, audio = build_context(None, [], []).prompt("Hello world.", []).render()
    assert text == SYS + "<|eot_id|>" + USER + "Hello world.<|eot_id|>" + GEN
    assert audio == []


def test_scene_prompt_layout():
    text, _ = build_context("Audio is recorded from a quiet room.", [], []).prompt("Hi.", []).render()
    assert text == (SYS + "\n\n<|scene_desc_start|>\nAudio is recorded from a quiet room.\n<|scene_desc_end|>"
                    "<|eot_id|>" + USER + "Hi.<|eot_id|>" + GEN)


SCENE_BLOCK = "\n\n<|scene_desc_start|>\nAudio is recorded from a quiet room.\n<|scene_desc_end|>"


def test_cloning_layout_puts_reference_as_user_and_assistant_turns():
    ref = AudioTurn("Reference words.", CODES)
    text, audio = build_context(DEFAULT_SCENE, [ref], []).prompt("New words.", []).render()
    assert text == (SYS + SCENE_BLOCK + "<|eot_id|>" + USER + "Reference words.<|eot_id|>" + ASSISTANT_AUDIO
                    + USER + "New words.<|eot_id|>" + GEN)
    assert len(audio) == 1 and audio[0] is CODES


def test_cloning_without_a_scene_has_no_system_turn_as_upstream():
    text, _ = build_context(None, [AudioTurn("Ref.", CODES)], []).prompt("New.", []).render()
    assert text == ("<|begin_of_text|>" + USER + "Ref.<|eot_id|>" + ASSISTANT_AUDIO + USER + "New.<|eot_id|>" + GEN)


def test_default_scene_and_explicit_empty_scene():
    assert DEFAULT_SCENE == "Audio is recorded from a quiet room."
    assert resolve_scene(None) == DEFAULT_SCENE
    assert resolve_scene("") is None and resolve_scene("  ") is None
    assert resolve_scene(" A hall. ") == "A hall."


def test_speaker_descriptions_are_rendered_into_the_scene_as_upstream_profiles():
    ctx = build_context("A studio.", [], ["SPEAKER0", "SPEAKER1"],
                        descriptions={"SPEAKER0": "feminine; warm; British accent", "SPEAKER1": "masculine; deep"})
    text, audio = ctx.prompt("[SPEAKER0] Hi.\n[SPEAKER1] Hello.", []).render()
    assert text == (SYS + "\n\n<|scene_desc_start|>\nA studio.\n\nSPEAKER0: feminine; warm; British accent\n"
                    "SPEAKER1: masculine; deep\n<|scene_desc_end|><|eot_id|>"
                    + USER + "[SPEAKER0] Hi.\n[SPEAKER1] Hello.<|eot_id|>" + GEN)
    assert audio == []
    single, _ = build_context(None, [], [], descriptions={"SPEAKER0": "a calm old man"}).prompt("Hi.", []).render()
    assert single == (SYS + "\n\n<|scene_desc_start|>\nSPEAKER0: a calm old man\n<|scene_desc_end|><|eot_id|>"
                      + USER + "Hi.<|eot_id|>" + GEN)


def test_references_in_the_system_message_with_a_description_beside_them():
    refs = [AudioTurn("One.", CODES)]
    ctx = build_context(DEFAULT_SCENE, refs, ["SPEAKER0", "SPEAKER1"], descriptions={"SPEAKER1": "masculine"},
                        references_in_system=True)
    text, audio = ctx.prompt("[SPEAKER0] a\n[SPEAKER1] b", []).render()
    assert text == (SYS + "\n\n<|scene_desc_start|>\nAudio is recorded from a quiet room.\n\nSPEAKER0: "
                    "<|audio_bos|><|AUDIO_OUT|><|audio_eos|>\nSPEAKER1: masculine\n<|scene_desc_end|><|eot_id|>"
                    + USER + "[SPEAKER0] a\n[SPEAKER1] b<|eot_id|>" + GEN)
    assert len(audio) == 1 and audio[0] is CODES
    history = [AudioTurn("Chunk one.", CODES + 2)]
    _, with_history = ctx.prompt("next", history).render()
    assert [int(a[0, 0]) for a in with_history] == [0, 2]  # the system's audio first, then the turns


def test_multi_speaker_with_voices_tags_each_reference():
    refs = [AudioTurn("One.", CODES), AudioTurn("Two.", CODES + 1)]
    ctx = build_context(DEFAULT_SCENE, refs, ["SPEAKER0", "SPEAKER1"])
    text, audio = ctx.prompt("[SPEAKER0] a\n[SPEAKER1] b", []).render()
    assert text == (SYS + SCENE_BLOCK + "<|eot_id|>" + USER + "[SPEAKER0] One.<|eot_id|>" + ASSISTANT_AUDIO
                    + USER + "[SPEAKER1] Two.<|eot_id|>" + ASSISTANT_AUDIO
                    + USER + "[SPEAKER0] a\n[SPEAKER1] b<|eot_id|>" + GEN)
    assert torch.equal(audio[1], CODES + 1)


def test_multi_speaker_without_voices_uses_the_dialogue_system_turn():
    ctx = build_context("A busy street.", [], ["SPEAKER0", "SPEAKER1"])
    text, _ = ctx.prompt("[SPEAKER0] a", []).render()
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + MULTISPEAKER_SYSTEM
                           + "\n\n<|scene_desc_start|>\nA busy street.\n\nSPEAKER0: feminine\nSPEAKER1: masculine"
                           "\n<|scene_desc_end|><|eot_id|>")


def test_chunk_carry_over_appends_previous_chunks_after_references():
    ref = AudioTurn("Ref.", CODES)
    history = [AudioTurn("Chunk one.", CODES + 2), AudioTurn("Chunk two.", CODES + 3)]
    text, audio = build_context(DEFAULT_SCENE, [ref], []).prompt("Chunk three.", history).render()
    assert text == (SYS + SCENE_BLOCK + "<|eot_id|>" + USER + "Ref.<|eot_id|>" + ASSISTANT_AUDIO
                    + USER + "Chunk one.<|eot_id|>" + ASSISTANT_AUDIO
                    + USER + "Chunk two.<|eot_id|>" + ASSISTANT_AUDIO
                    + USER + "Chunk three.<|eot_id|>" + GEN)
    assert [int(a[0, 0]) for a in audio] == [0, 2, 3]


def test_model_inputs_equal_the_processor_given_the_same_audio(engine):
    """Codes fed back through ``model_inputs`` give exactly what the processor makes from the waveform."""
    rng = np.random.default_rng(0)
    wave = (rng.standard_normal(24000) * 0.1).astype(np.float32)
    codes = engine.encode_reference(wave)
    prompt = Prompt(text="Say this.", scene="Quiet.", turns=[AudioTurn("Ref text.", codes)])
    ours = model_inputs(engine.processor, prompt)
    text, _ = prompt.render()
    theirs = engine.processor(text=text, audio=[wave], return_tensors="pt", add_special_tokens=False)
    for key in ("input_ids", "attention_mask", "audio_input_ids", "audio_input_ids_mask"):
        assert torch.equal(ours[key], theirs[key]), key


def test_system_audio_model_inputs_equal_the_processor(engine):
    rng = np.random.default_rng(1)
    waves = [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in (12000, 20000)]
    codes = [engine.encode_reference(w) for w in waves]
    ctx = build_context(None, [AudioTurn("A.", codes[0])], ["SPEAKER0"], references_in_system=True)
    prompt = ctx.prompt("Say this.", [AudioTurn("Chunk one.", codes[1])])
    ours = model_inputs(engine.processor, prompt)
    text, _ = prompt.render()
    theirs = engine.processor(text=text, audio=waves, return_tensors="pt", add_special_tokens=False)
    for key in ("input_ids", "attention_mask", "audio_input_ids", "audio_input_ids_mask"):
        assert torch.equal(ours[key], theirs[key]), key
