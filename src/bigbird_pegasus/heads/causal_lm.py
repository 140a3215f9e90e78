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
from ..modeling.model import BigBirdPegasusDecoder, token_embedding
from ..modeling.outputs import CausalLMOutput, as_requested
from ..modeling.pretrained import BigBirdPegasusPreTrainedModel


class BigBirdPegasusDecoderWrapper(nn.Module):
    """Holds the decoder under `model.decoder`, the reference's state-dict layout for the causal LM."""

    def __init__(self, config: BigBirdPegasusConfig):
        super().__init__()
        self.decoder = BigBirdPegasusDecoder(config, embed_tokens=token_embedding(config))  # initialised by the LM


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
        self.post_init()

    def get_decoder(self):
        return self.model.decoder

    def get_input_embeddings(self) -> nn.Module:
        return self.model.decoder.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.decoder.embed_tokens = value

    def project_to_vocab(self, hidden: torch.Tensor) -> torch.Tensor:
        """Decoder states (..., d_model) -> logits (..., vocab)."""
        return self.lm_head(hidden)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None,
                past_key_values: DecoderCache | None = None, inputs_embeds: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, use_cache: bool | None = None,
                cache: DecoderCache | None = None, logits_to_keep: int = 0, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None) -> CausalLMOutput | tuple:
        """logits (b, t, vocab) (the last `logits_to_keep` positions when set). `labels` (b, t) are the
        targets of the same positions: not shifted inside, as in the reference. Hidden states and attention
        probabilities as the decoder's."""
        out = self.model.decoder(input_ids, attention_mask=attention_mask, encoder_hidden_states=encoder_hidden_states,
                                 encoder_attention_mask=encoder_attention_mask,
                                 past_key_values=past_key_values if past_key_values is not None else cache,
                                 inputs_embeds=inputs_embeds, use_cache=use_cache,
                                 output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        hidden = out.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.config.vocab_size), labels.to(logits.device).view(-1))
        output = CausalLMOutput(loss=loss, logits=logits, cache=out.cache, hidden_states=out.hidden_states,
                                attentions=out.attentions, cross_attentions=out.cross_attentions)
        return as_requested(output, return_dict=self.config.return_dict if return_dict is None else return_dict)
