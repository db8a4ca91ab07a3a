"""The speaker-verification model: the tiny x-vector model through the real loader, embeddings, thread safety."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from higgs_worker.asr.speaker import SpeakerLoadError, SpeakerVerifier, cosine, load_speaker


@pytest.fixture(scope="module")
def verifier(tiny_model_dir):
    return SpeakerVerifier(load_speaker(tiny_model_dir / "sv", "cpu"))


def tone(hz: float, seconds: float = 1.0, rate: int = 24000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_embeddings_are_unit_vectors_and_the_same_voice_matches_itself(verifier):
    vectors = verifier.embed([tone(140), tone(140), tone(420, 0.1)], 24000)  # 0.1 s is padded, not refused
    assert vectors.shape == (3, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosine(vectors[0], vectors[1]) == pytest.approx(1.0, abs=1e-5)
    alone = verifier.embed([tone(140)], 24000)[0]  # batched with others or alone, the same embedding
    assert cosine(alone, vectors[0]) == pytest.approx(1.0, abs=1e-4)
    assert verifier.loaded.sample_rate == 16000 and cosine(np.zeros(3), np.ones(3)) == 0.0


def test_concurrent_callers_share_the_model_safely(verifier):
    waves = [tone(100 + 40 * i) for i in range(6)]
    serial = [verifier.embed([w], 24000)[0] for w in waves]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda w: verifier.embed([w], 24000)[0], waves))
    for a, b in zip(serial, together, strict=True):
        assert cosine(a, b) == pytest.approx(1.0, abs=1e-5)


def test_loader_errors_name_the_folder_and_what_is_wrong(tmp_path, tiny_model_dir):
    with pytest.raises(SpeakerLoadError, match="VOICE_CHECK_PATH folder .* does not exist .*VOICE_CHECK=off"):
        load_speaker(tmp_path / "absent", "cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpeakerLoadError, match="VOICE_CHECK_PATH folder .* is empty"):
        load_speaker(tmp_path / "empty", "cpu")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir / "sv", broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(SpeakerLoadError, match=r"VOICE_CHECK_PATH .*: config.json is unreadable \(JSONDecodeError\)"):
        load_speaker(broken, "cpu")
    partial = tmp_path / "partial"
    shutil.copytree(tiny_model_dir / "sv", partial)
    (partial / "preprocessor_config.json").unlink()
    with pytest.raises(SpeakerLoadError, match="lacks preprocessor_config.json"):
        load_speaker(partial, "cpu")
    with pytest.raises(SpeakerLoadError, match="not an x-vector model"):
        load_speaker(tiny_model_dir / "asr", "cpu")  # Whisper: a real model, the wrong kind
