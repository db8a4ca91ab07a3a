"""Reference audio to codes as upstream's audio tokenizer makes them, on the transformers codec classes.

Both branches of the codec encoder see the same 24 kHz waveform: the semantic branch (HuBERT at 16 kHz, one
feature per ``semantic_downsample_factor`` of its frames) and the acoustic branch (the DAC encoder, one frame per
hop). Their frame counts must agree. Upstream's ``higgs_audio_tokenizer.py`` (the code whose tokens the model was
trained on) makes them agree this way:

1. encode the acoustic branch on the waveform as it is;
2. if its frame count differs from the semantic one, encode it again on the waveform padded with
   ``160 * semantic_downsample_factor`` zeros on each side (320 samples for the real codec);
3. if they still differ, cut the longer at its end.

``HiggsAudioV2TokenizerModel.encode`` in transformers pads ``hop / 2`` (480) a side instead and never cuts, which
shifts the acoustic frames by 160 samples against upstream whenever padding applies (most of the real presets'
lengths), so the codes differ. :func:`encode_like_upstream` follows upstream with the transformers modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Samples (at 24 kHz) per semantic downsampling step that upstream pads a side before encoding again.
PAD_PER_SEMANTIC_STEP = 160


def acoustic_padding(codec) -> int:
    """Zeros upstream adds on each side when the branches disagree: ``160 * semantic_downsample_factor``."""
    return PAD_PER_SEMANTIC_STEP * max(1, int(codec.config.semantic_downsample_factor))


def acoustic_frames(codec, samples: int) -> int:
    """Frames the acoustic encoder makes from ``samples`` samples (its convolutions' own arithmetic)."""
    return int(codec._get_conv1d_output_lengths(samples, codec.acoustic_encoder))


@torch.inference_mode()
def encode_like_upstream(codec, values: torch.Tensor, bandwidth: float | None = None) -> torch.Tensor:
    """``values`` ``(1, 1, samples)`` at the codec's rate to codes ``(1, codebooks, frames)``."""
    if values.shape[1] != 1:
        raise ValueError(f"audio must be mono, got {values.shape[1]} channels")
    config = codec.config
    bandwidth = config.target_bandwidths[-1] if bandwidth is None else bandwidth
    semantic = codec.encoder_semantic(codec._extract_semantic_features(values).detach().transpose(1, 2))
    frames = semantic.shape[2]
    if acoustic_frames(codec, values.shape[2]) == frames:
        acoustic = codec.acoustic_encoder(values)
    else:
        pad = acoustic_padding(codec)
        acoustic = codec.acoustic_encoder(F.pad(values, (pad, pad)))
    keep = min(frames, acoustic.shape[2])  # upstream cuts the longer branch at its end
    embeddings = torch.cat([acoustic[..., :keep].to(semantic.device), semantic[..., :keep]], dim=1)
    embeddings = codec.fc(embeddings.transpose(1, 2)).transpose(1, 2)
    return codec.quantizer.encode(embeddings, bandwidth).transpose(0, 1)
