"""Model loading, prompts, generation and decoding: the part that knows the model and nothing of callers.

May import: ``core`` and ``weights`` (a folder's marker, the device and dtype); nothing of HTTP, RunPod, jobs or
speech. The modules:

* :mod:`.loader`: the model, text tokenizer and codec from local folders, offline and strict.
* :mod:`.engine`: :class:`~.engine.Engine`: generate, encode references, decode; the decode path it serves on.
* :mod:`.prompt`: prompts in the layout the model was trained on, and the model inputs they become.
* :mod:`.codes`: audio codes, the delay pattern, and where a chunk ends (as upstream ends it).
* :mod:`.codec_encode`: reference audio to codes as upstream's tokenizer pads and cuts it.
* :mod:`.codec_batch`: decoding several requests' codes in one codec call.
* :mod:`.scheduler`: the batching decode loop over the model's own layers, and its slot KV cache.
* :mod:`.prefill`: prompts prefilled in pieces between decode steps.
* :mod:`.sampling`: device-side sampling (temperature, top-k/p, repetition-aware), counter-based draws.
* :mod:`.static_step`: the fast decode step on fixed shapes, captured as CUDA graphs on a GPU.
* :mod:`.selfcheck`: the fast step checked against the eager one on the loaded model (``DECODE_PATH=auto``).
* :mod:`.benchmark`: the decode paths measured (``higgs-worker bench``).
* :mod:`.streaming`: incremental codec decoding, equal to one whole decode.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..core.errors import Cancelled, ModelLoadError
from .engine import Engine, Generation, Sampling
from .loader import LoadedModel, load_model
from .prompt import AudioTurn, Context, Prompt, build_context

__all__ = ["AudioTurn", "Cancelled", "Context", "Engine", "EngineHolder", "Generation", "LoadedModel",
           "ModelLoadError", "Prompt", "Sampling", "build_context", "load_model"]


class EngineHolder:
    """Loads the engine once, on first use or at start; concurrent first callers wait for the one load.

    A failed load is remembered (``error``) and raised to every caller until :meth:`reset`, so a broken model
    folder does not turn each request into a new multi-second load attempt.
    """

    def __init__(self, factory: Callable[[], Engine]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self.error: Exception | None = None
        self.loading = False
        self.load_s: float | None = None
        self.on_load: list[Callable[[Engine], None]] = []  # observers told once the engine exists

    @property
    def ready(self) -> bool:
        return self._engine is not None

    def get(self) -> Engine:
        if self._engine is not None:
            return self._engine
        with self._lock:
            if self._engine is None:
                if self.error is not None:
                    raise self.error
                self.loading = True
                start = time.perf_counter()
                try:
                    engine = self._factory()
                except Exception as exc:
                    self.error = exc
                    raise
                finally:
                    self.loading = False
                self.load_s = time.perf_counter() - start
                for observer in self.on_load:
                    observer(engine)
                self._engine = engine
            return self._engine

    def reset(self) -> None:
        with self._lock:
            self._engine = None
            self.error = None
