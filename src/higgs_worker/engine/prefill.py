"""A prompt's prefill, run a few layers at a time, so decoding rows keep their pace while a long prompt joins.

The model's own forward prefills a prompt in one call: with a reference voice that is hundreds or thousands of
tokens through every layer, during which no row of the running batch gets a frame. :class:`PiecewisePrefill`
does the same computation with the model's own modules (the same embedding merge, causal mask, rotary embedding,
layers, norm and audio head, in the same order, so the keys, values and logits are those of
``model(**inputs, cache=..., logits_to_keep=1)``), but stops after any layer; the scheduler runs a bounded amount
of prefill work between two decode steps.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.models.higgs_audio_v2 import modeling_higgs_audio_v2 as modeling


class PiecewisePrefill:
    """The prefill of one prompt (batch 1), advanced layer by layer with :meth:`advance`."""

    def __init__(self, model, inputs: dict[str, torch.Tensor]) -> None:
        self.model = model
        base = model.model
        self.base = base
        self.cache = DynamicCache(config=model.config)
        self.layers = list(base.layers[: model.config.num_hidden_layers])
        self.done_layers = 0
        input_ids = inputs["input_ids"]
        audio_ids = inputs.get("audio_input_ids")
        audio_mask = inputs.get("audio_input_ids_mask")
        with torch.inference_mode():
            self.audio_token_mask = base.get_placeholder_mask(input_ids, None, audio_mask)
            embeds = base.embed_tokens(input_ids)
            if audio_ids is not None:
                audio = base.embed_audio_tokens(audio_ids)
                if audio_mask is not None:
                    audio = audio[audio_mask.to(audio.device)]
                embeds = embeds.masked_scatter(self.audio_token_mask[..., None], audio.to(embeds.device))
            self.position_ids = torch.arange(embeds.shape[1], device=embeds.device)[None]
            self.mask = modeling.create_causal_mask(config=model.config, inputs_embeds=embeds,
                                                    attention_mask=inputs.get("attention_mask"), cache=self.cache,
                                                    position_ids=self.position_ids)
            self.position_embeddings = base.rotary_emb(embeds, self.position_ids)
        self.hidden = embeds
        self.tokens = int(embeds.shape[1])

    @property
    def finished(self) -> bool:
        return self.done_layers >= len(self.layers)

    @property
    def remaining_layers(self) -> int:
        return len(self.layers) - self.done_layers

    def advance(self, layers: int) -> None:
        """Run up to ``layers`` more decoder layers."""
        with torch.inference_mode():
            for layer in self.layers[self.done_layers:self.done_layers + layers]:
                self.hidden = layer(self.hidden, attention_mask=self.mask, audio_token_mask=self.audio_token_mask,
                                    position_ids=self.position_ids, cache=self.cache,
                                    position_embeddings=self.position_embeddings)
                self.done_layers += 1

    def logits(self) -> torch.Tensor:
        """The audio logits of the prompt's last position ``(1, K * V)``, once every layer has run."""
        assert self.finished, "the prefill has layers left"
        with torch.inference_mode():
            return self.model.audio_lm_head(self.base.norm(self.hidden[:, -1:]))[:, -1]
