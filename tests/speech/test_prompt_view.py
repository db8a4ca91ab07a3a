"""The prompt inspector shows exactly the prompts generation uses, with audio labelled."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from higgs_worker.engine.prompt import AUDIO_PLACEHOLDER
from higgs_worker.speech.prompt_view import inspect
from higgs_worker.core.schema import SpeechRequest

LABEL = re.compile(re.escape(AUDIO_PLACEHOLDER) + r"\[[^\]]*\]")


def test_inspected_prompts_equal_the_prompts_generation_renders(service, spy):
    body = {"transcript": "First sentence here. Second one follows it. The third closes the text.",
            "ref_audio": "alto", "chunk_method": "sentence", "chunk_max_word_num": 5,
            "generation_chunk_buffer_size": 1, "max_new_tokens": 8, "seed": 1}
    shown = inspect(service, SpeechRequest.parse(body))
    service.synthesize(SpeechRequest.parse(body))
    assert len(shown) == len(spy) == 3
    for view, (prompt, _, result) in zip(shown, spy, strict=True):
        assert LABEL.sub(AUDIO_PLACEHOLDER, view.prompt) == prompt.render()[0]
    frames = service.engine.encode_reference(service.voices.get("alto").wave).shape[0]
    assert shown[0].audio == [f"voice alto: {frames} frames, {service.voices.get('alto').duration_s:.2f} s"]
    assert shown[2].audio[1] == "chunk 2 audio, made at run time"  # the buffer keeps one previous chunk


def test_reference_frame_counts_match_the_codec_for_every_fixture_voice(service):
    from higgs_worker.speech.prompt_view import reference_frames

    for name in service.voices.names():
        wave = service.voices.get(name).wave
        assert reference_frames(len(wave)) == service.engine.encode_reference(wave).shape[0], name


def test_prompt_command_prints_json_without_loading_a_model(tmp_path, voices_dir):
    env = {"MODEL_PATH": str(tmp_path / "no-model"), "TOKENIZER_PATH": str(tmp_path / "no-tok"),
           "VOICES_DIR": str(voices_dir), "VOLUME_ROOT": str(tmp_path / "vol"), "LOG_DIR": str(tmp_path / "logs"),
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "higgs_worker.cli", "prompt", "--json", "--voice", "tenor",
                           "--text", "[SPEAKER0] Hello.\n[SPEAKER1] Hi there.", "--chunk-method", "speaker",
                           "--speaker-descriptions", '{"SPEAKER1": "masculine; deep"}'],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    chunks = json.loads(proc.stdout)
    assert [c["text"] for c in chunks] == ["[SPEAKER0] Hello.", "[SPEAKER1] Hi there."]
    assert "SPEAKER1: masculine; deep" in chunks[0]["prompt"] and "SPEAKER0: <|audio_bos|><|AUDIO_OUT|>[voice tenor" \
        in chunks[0]["prompt"]
    bad = subprocess.run([sys.executable, "-m", "higgs_worker.cli", "prompt", "--text", "hi", "--voice", "nobody"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--voice: unknown voice 'nobody'" in bad.stderr
