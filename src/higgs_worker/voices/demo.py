"""The offline demo's voices: the pinned upstream presets when the network allows, else synthetic stand-ins.

The demo runs a tiny random model, so any voice "clones"; what matters is that every screen and example has
voices to pick. Synthetic voices are named ``synthetic_*`` so nobody mistakes them for recordings.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf

from .presets import BASE_URL, fetch_presets

log = logging.getLogger(__name__)

#: name -> (pitch in Hz, transcript)
SYNTHETIC_VOICES: dict[str, tuple[float, str]] = {
    "synthetic_alto": (210.0, "This is a synthetic demo voice, made from tones, with a higher pitch."),
    "synthetic_bass": (105.0, "This is a synthetic demo voice, made from tones, with a lower pitch."),
}


def speech_like(seconds: float, rate: int, pitch_hz: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A voiced signal with a gliding pitch, harmonics, a syllable envelope and breath noise, in [-1, 1].

    ``(frames,)`` for mono, ``(frames, channels)`` otherwise (each channel slightly delayed, as in a room).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    pitch = pitch_hz * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    syllables = np.clip(np.sin(2 * np.pi * 3.1 * t), 0, None) ** 0.6
    mono = 0.25 * voiced * syllables + 0.01 * rng.standard_normal(len(t))
    if channels == 1:
        return mono.astype(np.float32)
    return np.stack([np.roll(mono, 7 * c) * (1 - 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)


def write_synthetic_voices(voices_dir: Path) -> list[str]:
    voices_dir.mkdir(parents=True, exist_ok=True)
    for i, (name, (pitch, transcript)) in enumerate(SYNTHETIC_VOICES.items()):
        sf.write(str(voices_dir / f"{name}.wav"), speech_like(3.0, 24000, pitch, seed=i), 24000, subtype="PCM_16")
        (voices_dir / f"{name}.txt").write_text(transcript + "\n", "utf-8")
    return list(SYNTHETIC_VOICES)


def ensure_demo_voices(voices_dir: Path, presets: list[str], presets_url: str | None = None,
                       timeout: float = 5.0) -> str:
    """Give the demo voices on its first start; says what it did: ``present``, ``presets`` or ``synthetic``."""
    if voices_dir.is_dir() and any(voices_dir.glob("*.txt")):
        return "present"
    if presets:
        try:
            fetch_presets(voices_dir, presets, presets_url or BASE_URL, timeout=timeout)
            log.info("demo: installed the upstream voice presets (%s) in %s", ", ".join(presets), voices_dir)
            return "presets"
        except Exception as exc:  # noqa: BLE001 - offline is the expected case: fall back, say why
            log.info("demo: the voice presets could not be fetched (%s)", exc.__class__.__name__)
    names = write_synthetic_voices(voices_dir)
    log.info("demo: wrote synthetic demo voices (%s) in %s", ", ".join(names), voices_dir)
    return "synthetic"
