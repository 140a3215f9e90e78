"""BigBirdPegasusForCausalLM: the decoder alone as a language model, with `generate`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BigBirdPegasusConfig
from ..generation.config import GenerationConfig
from ..generation.mixins import DecoderOnlyGenerationMixin
from ..modeling.cache import DecoderCache
from ..modeling.linear import Linear
from ..modeling.model import BigBirdPegasusDecoder
from ..modeling.outputs import CausalLMOutput, as_requested
from ..modeling.pretrained import BigBirdPegasusPreTrainedModel


class BigBirdPegasusDecoderWrapper(nn.Module):
    """Holds the decoder under `model.decoder`, the reference's state-dict layout for the causal LM."""

    def __init__(self, config: BigBirdPegasusConfig):
        super().__init__()
        embed_tokens = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.decoder = BigBirdPegasusDecoder(config, embed_tokens=embed_tokens)


class BigBirdPegasusForCausalLM(DecoderOnlyGenerationMixin, BigBirdPegasusPreTrainedModel):
    """The decoder alone as a language model (its LM head is not tied, as in the reference); `generate`
    continues prompts."""

    def __init__(self, config: BigBirdPegasusConfig):
        config.is_decoder = True
        config.is_encoder_decoder = False
        super().__init__(config)
        self.generation_config = GenerationConfig.from_model_config(config)
        self.model = BigBirdPegasusDecoderWrapper(config)
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)
        self.init_weights()

    def get_decoder(self):
        return self.model.decoder

    def project_to_vocab(self, hidden: torch.Tensor) -> torch.Tensor:
        """Decoder states (..., d_model) -> logits (..., vocab)."""
        return self.lm_head(hidden)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None,
                past_key_values: DecoderCache | None = None, inputs_embeds: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, use_cache: bool | None = None,
                cache: DecoderCache | None = None, logits_to_keep: int = 0,
                return_dict: bool | None = None) -> CausalLMOutput | tuple:
        """logits (b, t, vocab) (the last `logits_to_keep` positions when set). `labels` (b, t) are the
        targets of the same positions: not shifted inside, as in the reference."""
        out = self.model.decoder(input_ids, attention_mask=attention_mask, encoder_hidden_states=encoder_hidden_states,
                                 encoder_attention_mask=encoder_attention_mask,
                                 past_key_values=past_key_values if past_key_values is not None else cache,
                                 inputs_embeds=inputs_embeds, use_cache=use_cache)
        hidden = out.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.config.vocab_size), labels.to(logits.device).view(-1))
        output = CausalLMOutput(loss=loss, logits=logits, past_key_values=out.past_key_values)
        return as_requested(output, return_dict=return_dict)
