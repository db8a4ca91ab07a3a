import hashlib

import pytest

from conftest import shared_voices_or_skip
from higgs_worker.presets import PRESETS, PresetError, fetch_presets
from servers import serve_folder


@pytest.fixture()
def mirror(tmp_path):
    src = shared_voices_or_skip()
    root = tmp_path / "mirror"
    root.mkdir()
    for name in ("en_man", "vex"):
        for ext in (".wav", ".txt"):
            (root / f"{name}{ext}").write_bytes((src / f"{name}{ext}").read_bytes())
    with serve_folder(root) as server:
        yield root, server.url


def test_presets_installed_once_and_verified(mirror, tmp_path):
    root, url = mirror
    voices = tmp_path / "voices"
    assert fetch_presets(voices, ["en_man", "vex"], url) == ["en_man", "vex"]
    assert hashlib.sha256((voices / "vex.wav").read_bytes()).hexdigest() == PRESETS["vex"].wav_sha256
    assert fetch_presets(voices, ["en_man", "vex"], url) == []  # already there: nothing fetched


def test_tampered_file_is_refused(mirror, tmp_path):
    root, url = mirror
    (root / "vex.txt").write_text("something else")
    with pytest.raises(PresetError, match="sha256"):
        fetch_presets(tmp_path / "voices", ["vex"], url)
    assert not (tmp_path / "voices" / "vex.txt").exists()


def test_unknown_preset_named():
    with pytest.raises(PresetError, match="nobody"):
        fetch_presets(__import__("pathlib").Path("/nonexistent"), ["nobody"])
