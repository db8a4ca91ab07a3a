"""The ``higgs-worker`` command, run as users run it: in a subprocess."""

import io
import json
import os
import subprocess
import sys

import av
import soundfile as sf

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
    assert "invalid setting DECODE_PATH: Input should be 'eager' or 'fast'" in lines
    assert any(line.startswith("invalid setting MAX_BATCH_SIZE: ") and "1" in line for line in lines)
    assert "Traceback" not in proc.stderr and "graphs" not in proc.stderr and "sk-secret" not in proc.stderr
