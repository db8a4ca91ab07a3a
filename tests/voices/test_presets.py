"""Preset installation (fetched over HTTP, checked by sha256) on fixture files; the pinned upstream presets
themselves are checked only where they lie beside the project."""

import hashlib
import json

import pytest

from conftest import SHARED_VOICES, shared_voices_or_skip
from fixture_voices import write_voices
from higgs_worker.voices.presets import BASE_URL, PRESETS, Preset, PresetError, fetch_presets
from servers import serve_folder


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def mirror(tmp_path):
    """Fixture voices served over HTTP on 127.0.0.1, with a catalogue pinning their sha256."""
    root = write_voices(tmp_path / "mirror", ["alto", "tenor"])
    catalogue = {n: Preset(n, sha(root / f"{n}.wav"), sha(root / f"{n}.txt")) for n in ("alto", "tenor")}
    with serve_folder(root) as server:
        yield root, server.url, catalogue


def test_presets_installed_once_and_verified(mirror, tmp_path):
    root, url, catalogue = mirror
    voices = tmp_path / "voices"
    assert fetch_presets(voices, ["alto", "tenor"], url, catalogue=catalogue) == ["alto", "tenor"]
    assert sha(voices / "tenor.wav") == catalogue["tenor"].wav_sha256
    assert fetch_presets(voices, ["alto", "tenor"], url, catalogue=catalogue) == []  # already there
    (voices / "alto.txt").write_text("damaged")
    assert fetch_presets(voices, ["alto", "tenor"], url, catalogue=catalogue) == ["alto"]  # repaired
    assert sha(voices / "alto.txt") == catalogue["alto"].txt_sha256


def test_tampered_file_is_refused(mirror, tmp_path):
    root, url, catalogue = mirror
    (root / "tenor.txt").write_text("something else")
    with pytest.raises(PresetError, match="sha256"):
        fetch_presets(tmp_path / "voices", ["tenor"], url, catalogue=catalogue)
    assert not (tmp_path / "voices" / "tenor.txt").exists()


def test_unknown_preset_named():
    with pytest.raises(PresetError, match="nobody"):
        fetch_presets(__import__("pathlib").Path("/nonexistent"), ["nobody"])


def test_upstream_presets_match_their_pins():
    """The real presets (beside the project) have exactly the pinned sha256 and the manifest's provenance."""
    src = shared_voices_or_skip()
    manifest = json.loads((SHARED_VOICES / "MANIFEST.json").read_text())
    for name, preset in PRESETS.items():
        assert sha(src / f"{name}.wav") == preset.wav_sha256, name
        assert sha(src / f"{name}.txt") == preset.txt_sha256, name
    assert set(manifest["voices"]) == set(PRESETS)
    for name, entry in manifest["voices"].items():
        assert (entry["wav_sha256"], entry["txt_sha256"]) == (PRESETS[name].wav_sha256, PRESETS[name].txt_sha256)
        assert entry["wav_url"] == f"{BASE_URL}/{name}.wav" and entry["txt_url"] == f"{BASE_URL}/{name}.txt"
