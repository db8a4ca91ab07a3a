"""The demo model: the tiny random Higgs Audio V2 written once into ``DEMO_DIR`` and reused by later starts."""

from __future__ import annotations

import logging
from pathlib import Path

from filelock import FileLock

from .tiny import make_tiny_model

log = logging.getLogger(__name__)


#: Written beside ``model/`` and ``tokenizer/`` by :func:`~.tiny.make_tiny_model` (the demo model is one).
TINY_MARKER = "TINY_MODEL.json"


def is_tiny_model(model_path: Path) -> bool:
    """True when ``model_path`` is the ``model`` folder of a tiny random model (the demo's, or one made with
    ``make-tiny-model``): its audio is noise by design."""
    return (Path(model_path).parent / TINY_MARKER).is_file()


def ensure_demo_model(directory: Path) -> Path:
    """Write the tiny random model once (demo mode); later starts reuse it."""
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / TINY_MARKER
    with FileLock(str(directory) + ".lock"):
        if not marker.exists():
            log.info("demo mode: writing the tiny random model to %s", directory)
            make_tiny_model(directory)
    return directory
