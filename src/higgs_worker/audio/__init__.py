"""Audio processing that needs no model: decoding untrusted input, encoding output formats, tempo, silence.

* :mod:`.decode`: reference clips of any allow-listed container, rate and channel count to 24 kHz mono, within a
  budget (the only place that opens untrusted audio).
* :mod:`.encode`: wav, flac, mp3, opus, aac and pcm, whole or as one continuous stream.
* :mod:`.resample`: resampling to the model rate as upstream's tokenizer does (soxr HQ, length fixed).
* :mod:`.tempo`: pitch-preserving time stretch (``speed``), whole or streamed.
* :mod:`.loudness`: loudness normalisation to a LUFS target with a true-peak ceiling (ITU-R BS.1770).
* :mod:`.silence`: trimming a runaway silent tail.

May import: ``core`` only.
"""

from __future__ import annotations

from .decode import SAMPLE_RATE, AudioDecodeError, AudioLimitError, DecodeLimits, load_model_audio
from .encode import MEDIA_TYPES, StreamEncoder, encode, encode_stream, to_int16, wav_header

__all__ = ["MEDIA_TYPES", "SAMPLE_RATE", "AudioDecodeError", "AudioLimitError", "DecodeLimits", "StreamEncoder",
           "encode", "encode_stream", "load_model_audio", "to_int16", "wav_header"]
