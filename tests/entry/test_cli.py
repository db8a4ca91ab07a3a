"""The ``higgs-worker`` command, run as users run it: in a subprocess."""

import io
import json
import os
import subprocess
import sys

import av
import pytest
import soundfile as sf

from fixture_voices import encoded
from higgs_worker.cli import build_parser


def run(args, env_extra, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_PATH", "TOKENIZER_PATH", "HIGGS_DEMO")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "higgs_worker.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_demo_mode_makes_the_tiny_model_and_speaks(tmp_path):
    out = tmp_path / "hello.wav"
    env = {"HIGGS_DEMO": "1", "DEMO_DIR": str(tmp_path / "demo"), "VOLUME_ROOT": str(tmp_path / "vol")}
    proc = run(["synth", "--text", "Hello from the demo.", "--seed", "1", "--max-new-tokens", "30",
                "--out", str(out)], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(proc.stdout)
    wave, rate = sf.read(out)
    assert rate == 24000 and len(wave) == meta["frames"] * 960 > 0
    assert (tmp_path / "demo" / "model" / "config.json").exists()


def test_synth_with_a_preset_voice_to_mp3(tmp_path, tiny_model_dir, voices_dir):
    out = tmp_path / "voice.mp3"
    env = {"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
           "VOICES_DIR": str(voices_dir)}
    proc = run(["synth", "--text", "Cloned.", "--voice", "bass", "--seed", "2", "--max-new-tokens", "30",
                "--scene", "A quiet room.", "--out", str(out)], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(proc.stdout)
    assert meta["format"] == "mp3"
    with av.open(io.BytesIO(out.read_bytes())) as container:
        assert container.streams.audio[0].codec_context.sample_rate == 24000



@pytest.mark.parametrize("mode", ["lines", "bar"])
def test_synth_shows_its_progress_on_stderr(tmp_path, tiny_model_dir, mode):
    env = {"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer")}
    text = tmp_path / "long.txt"
    text.write_text(" ".join(f"word{i}" for i in range(450)))  # three chunks of at most 200 words
    proc = run(["synth", "--text-file", str(text), "--chunk-method", "word", "--max-new-tokens", "12", "--seed", "1",
                "--progress", mode, "--out", str(tmp_path / "long.wav")], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["chunks"] == 3
    if mode == "lines":
        for n in (1, 2, 3):  # each chunk's end has its line
            assert f"chunk {n} of 3 ({n} done), " in proc.stderr
        assert "s of audio, " in proc.stderr and " s per second of it, " in proc.stderr
    else:
        assert "speaking" in proc.stderr and "3/3" in proc.stderr and "s of audio" in proc.stderr


def test_bad_input_exits_2_naming_the_field(tmp_path, tiny_model_dir):
    env = {"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer")}
    proc = run(["synth", "--text", "hi", "--temperature", "-1", "--out", str(tmp_path / "x.wav")], env, tmp_path)
    assert proc.returncode == 2
    assert "temperature" in proc.stderr
    assert not (tmp_path / "x.wav").exists()


def test_missing_model_exits_3_with_the_folder(tmp_path):
    proc = run(["synth", "--text", "hi", "--out", str(tmp_path / "x.wav")],
               {"VOLUME_ROOT": str(tmp_path / "empty")}, tmp_path)
    assert proc.returncode == 3
    assert "MODEL_PATH folder" in proc.stderr and "fetch-models" in proc.stderr


def test_parser_knows_the_commands():
    parser = build_parser()
    assert parser.parse_args(["make-tiny-model", "x"]).command == "make-tiny-model"
    assert parser.parse_args(["synth", "--text", "a", "--out", "b"]).command == "synth"


def test_a_bad_setting_is_named_in_one_line_without_its_value_or_a_traceback():
    import os
    import subprocess
    import sys

    from conftest import REPO

    env = {**os.environ, "DECODE_PATH": "graphs", "MAX_BATCH_SIZE": "0", "API_KEYS": "sk-secret-value-123"}
    proc = subprocess.run([sys.executable, "-m", "higgs_worker.cli", "settings"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert "invalid setting DECODE_PATH: Input should be 'auto', 'eager' or 'fast'" in lines
    assert any(line.startswith("invalid setting MAX_BATCH_SIZE: ") and "1" in line for line in lines)
    assert "Traceback" not in proc.stderr and "graphs" not in proc.stderr and "sk-secret" not in proc.stderr


# -- a user's mistakes: one line, a non-zero exit, no traceback --------------------------------------------------

def tiny_env(tiny_model_dir, tmp_path) -> dict[str, str]:
    return {"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
            "VOLUME_ROOT": str(tmp_path / "vol")}


def one_line_error(proc) -> str:
    """The command failed as a user's mistake should: a non-zero exit and one line on stderr, no traceback."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


MISTAKES = [
    (["synth", "--text-file", "{tmp}/missing.txt", "--out", "{tmp}/x.wav"],
     "--text-file: {tmp}/missing.txt: no such file"),
    (["synth", "--text", "Hi.", "--out", "{tmp}/no/such/folder/x.wav"],
     "the folder {tmp}/no/such/folder does not exist"),
    (["synth", "--text", "Hi.", "--out", "{tmp}/x.mp4a"], "no output format is written as .mp4a"),
    (["prompt", "--text", "Hi.", "--speaker-descriptions", '{"SPEAKER0": warm}'],
     "--speaker-descriptions: not valid JSON"),
    (["synth", "--text", "Hi.", "--speaker-descriptions", '{"SPEAKER0": ', "--out", "{tmp}/x.wav"],
     "--speaker-descriptions: not valid JSON"),
    (["synth", "--text", "Hi.", "--voice", "{tmp}/voice.wav", "--out", "{tmp}/x.wav"],
     "--voice: takes voice names from the library, and '{tmp}/voice.wav' is a file: to clone it, give --ref-audio"),
    (["synth", "--text", "Hi.", "--voice", "voice.wav", "--out", "{tmp}/x.wav"],
     "give --ref-audio voice.wav --ref-text"),
    (["synth", "--text", "Hi.", "--ref-audio", "{tmp}/voice.wav", "--out", "{tmp}/x.wav"], "--ref-audio: needs what"),
    (["synth", "--text", "Hi.", "--ref-audio", "{tmp}/missing.wav", "--ref-text", "Hi.", "--out", "{tmp}/x.wav"],
     "--ref-audio: {tmp}/missing.wav: no such file"),
    (["synth", "--text", "Hi.", "--ref-audio", "{tmp}/notes.txt", "--ref-text", "Hi.", "--out", "{tmp}/x.wav"],
     "--ref-audio: could not be decoded as audio"),
    (["prompt", "--text", "Hi.", "--ref-text-file", "{tmp}/notes.txt"], "--ref-text: is what --ref-audio says"),
]


@pytest.mark.parametrize(("args", "expected"), MISTAKES, ids=[expected.split(":")[0] for _, expected in MISTAKES])
def test_a_mistake_is_one_line_without_a_traceback(args, expected, tmp_path, tiny_model_dir):
    (tmp_path / "voice.wav").write_bytes(encoded("wav", seconds=1.0))
    (tmp_path / "notes.txt").write_text("Not audio.\n")
    proc = run([a.replace("{tmp}", str(tmp_path)) for a in args], tiny_env(tiny_model_dir, tmp_path), tmp_path)
    assert expected.replace("{tmp}", str(tmp_path)) in one_line_error(proc)
    assert "base64" not in proc.stderr
    assert not (tmp_path / "x.wav").exists()


def test_fetch_models_offline_is_one_line(tmp_path):
    proc = run(["fetch-models"], {"VOLUME_ROOT": str(tmp_path / "vol"), "HF_ENDPOINT": "http://127.0.0.1:9",
                                  "ASR": "off"}, tmp_path)
    assert proc.returncode == 4
    line = one_line_error(proc)
    assert "cannot reach the hub at http://127.0.0.1:9" in line and "ConnectError" in line


def test_check_reports_missing_models_and_never_downloads(tmp_path, tiny_model_dir):
    from fake_hub import FakeHub

    repos = {"test-org/tiny-higgs": tiny_model_dir / "model",
             "test-org/tiny-higgs-tokenizer": tiny_model_dir / "tokenizer"}
    with FakeHub(repos) as hub:
        env = {"VOLUME_ROOT": str(tmp_path / "vol"), "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "ASR": "off",
               "MODEL_REPO": "test-org/tiny-higgs", "TOKENIZER_REPO": "test-org/tiny-higgs-tokenizer"}
        proc = run(["check"], env, tmp_path)
        assert sum(hub.gets.values()) == 0  # nothing fetched (AUTO_FETCH_MODELS is on: serving would fetch)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    model_path = tmp_path / "vol" / "models" / "tiny-higgs"
    assert f"FAIL model_folders: MODEL_PATH {model_path} does not exist (run `higgs-worker fetch-models`)" in \
        proc.stdout
    assert not model_path.exists()


# -- cloning from a file -----------------------------------------------------------------------------------------

def test_synth_clones_the_voice_of_a_file(tmp_path, tiny_model_dir):
    env = tiny_env(tiny_model_dir, tmp_path)
    ref = tmp_path / "my voice.wav"
    ref.write_bytes(encoded("wav", seconds=1.5))
    (tmp_path / "said.txt").write_text("A reference voice.\n", encoding="utf-8")
    common = ["--text", "Hello there.", "--seed", "3", "--max-new-tokens", "20"]
    cloned = run(["synth", *common, "--ref-audio", str(ref), "--ref-text", "A reference voice.",
                  "--out", str(tmp_path / "cloned.ogg")], env, tmp_path)
    assert cloned.returncode == 0, cloned.stderr
    plain = run(["synth", *common, "--out", str(tmp_path / "plain.wav")], env, tmp_path)
    assert plain.returncode == 0, plain.stderr
    with_ref, without = json.loads(cloned.stdout), json.loads(plain.stdout)
    assert with_ref["format"] == "opus"  # from the extension: .ogg
    with av.open(str(tmp_path / "cloned.ogg")) as container:
        assert container.streams.audio[0].codec_context.name == "opus"
    # the recording was encoded into the prompt: 1.5 s is 38 frames of the codec, ahead of the text
    assert with_ref["timings"]["reference_encode"] > 0 and not without["timings"].get("reference_encode")
    assert with_ref["usage"]["prompt_tokens"] - without["usage"]["prompt_tokens"] >= 38

    # the same options on `prompt` show that recording and its text in the prompt the model gets
    shown = run(["prompt", "--text", "Hello there.", "--ref-audio", str(ref), "--ref-text-file",
                 str(tmp_path / "said.txt"), "--json"], env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    prompt = json.loads(shown.stdout)[0]
    assert prompt["audio"] == ["voice inline: 38 frames, 1.50 s"]
    assert "A reference voice." in prompt["prompt"]
