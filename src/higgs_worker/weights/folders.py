"""Reading a model folder this worker fetched or made: where it came from, and the device and dtype to load it on."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..core.errors import ModelLoadError

#: The completion marker a verified fetch writes into each model folder (see :mod:`.fetch`).
MARKER = ".higgs-complete.json"

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_device(setting: str) -> torch.device:
    """``auto`` means CUDA when a GPU is visible, else the CPU."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("DEVICE=cuda but no CUDA device is available")
    return torch.device(setting)


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    """``auto`` means bfloat16 on a GPU and float32 on the CPU."""
    if setting == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[setting]


def read_source(folder: Path) -> dict[str, str]:
    """Repo, revision and resolved commit recorded when the folder was fetched (empty for folders made by hand)."""
    try:
        marker = json.loads((folder / MARKER).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: str(marker[k]) for k in ("repo_id", "revision", "commit") if marker.get(k)}


