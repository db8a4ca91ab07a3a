"""Model folders: fetching and verifying them, reading them, and making the tiny random ones.

* :mod:`.fetch`: the Hugging Face repos onto the volume, once, under a lock, resumable, verified, then offline.
* :mod:`.progress`: a fetch's progress (files, bytes, rate, time left): bars, log lines, ``/health``.
* :mod:`.folders`: a folder's completion marker (where it came from), and the device and dtype to load it on.
* :mod:`.policy`: what ``ASR=auto|on|off`` means for fetching and loading speech recognition.
* :mod:`.tiny`: a tiny random Higgs Audio V2 (model, text tokenizer, codec) and Whisper, made with the real classes.
* :mod:`.demo`: the demo model, written once.
* :mod:`.progress`: download progress, shown while a fetch runs and read by ``/health``.

May import: ``core`` only. Nothing here loads a model for use; ``engine`` and ``asr`` do.
"""
