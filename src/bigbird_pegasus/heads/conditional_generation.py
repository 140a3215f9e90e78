"""BigBirdPegasusForConditionalGeneration: the summarizer, with `generate`."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..config import BigBirdPegasusConfig
from ..generation.config import GenerationConfig
from ..generation.mixins import GenerationMixin
from ..modeling.cache import DecoderCache
from ..modeling.linear import Linear
from ..modeling.model import BigBirdPegasusModel, shift_tokens_right
from ..modeling.outputs import Seq2SeqLMOutput, as_requested, seq2seq_fields
from ..modeling.pretrained import BigBirdPegasusPreTrainedModel


class BigBirdPegasusForConditionalGeneration(GenerationMixin, BigBirdPegasusPreTrainedModel):
    """The summarizer: the bare model, an LM head tied to the shared embedding and `final_logits_bias`."""

    def __init__(self, config: BigBirdPegasusConfig):
        super().__init__(config)
        self.generation_config = GenerationConfig.from_model_config(config)
        self.model = BigBirdPegasusModel(config)
        self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)
        self.init_weights(self.lm_head)
        self.tie_weights()
        self.compiled_step = None  # set by compile_for_generation
        self.post_init()

    def tie_weights(self) -> None:
        """Share the LM head with the embedding table when `tie_word_embeddings` (e.g. after loading)."""
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.shared.weight

    def init_weights(self, *modules: torch.nn.Module) -> None:
        """The reference's initialisation; for the whole model, final_logits_bias too (zeros)."""
        super().init_weights(*modules)
        if not modules:
            with torch.no_grad():
                self.final_logits_bias.zero_()

    def resize_vocabulary_buffers(self, num_tokens: int) -> None:
        """final_logits_bias (1, vocab): cut, or extended with zeros."""
        bias = self.final_logits_bias
        added = bias.new_zeros(1, max(0, num_tokens - bias.shape[1]))
        self.final_logits_bias = torch.cat([bias[:, :num_tokens], added], dim=1)

    def compile_for_generation(self, **options: Any) -> None:
        """torch.compile the two hot loops of `generate`: the encoder (one graph per input length, as block-sparse
        layouts are per length) and the decoder's one-token step (one graph for every step: static shapes).
        Both compile without graph breaks; `options` go to torch.compile (`mode=...`, `backend=...`)."""
        self.model.encoder.compile(fullgraph=True, dynamic=False, **options)
        self.compiled_step = torch.compile(self.model.decoder.step, fullgraph=True, dynamic=False, **options)

    def get_encoder(self):
        return self.model.encoder

    def get_decoder(self):
        return self.model.decoder

    def project_to_vocab(self, hidden: torch.Tensor) -> torch.Tensor:
        """Decoder states (..., d_model) -> logits (..., vocab): the LM head plus `final_logits_bias`."""
        return self.lm_head(hidden) + self.final_logits_bias

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder inputs (b, t) from labels (b, t), as `forward` builds them (for data collators)."""
        return shift_tokens_right(labels, pad_token_id=self.config.pad_token_id,
                                  decoder_start_token_id=self.config.decoder_start_token_id)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
                encoder_outputs: Any = None, past_key_values: DecoderCache | None = None,
                inputs_embeds: torch.Tensor | None = None, decoder_inputs_embeds: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, use_cache: bool | None = None,
                cache: DecoderCache | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None) -> Seq2SeqLMOutput | tuple:
        """logits (b, t, vocab); with `labels` (b, t) also the mean cross-entropy `loss` (-100 ignored),
        and decoder inputs built from the labels when none are given. Hidden states and attention probabilities
        as BigBirdPegasusModel's."""
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        out = self.model(input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                         decoder_attention_mask=decoder_attention_mask, encoder_outputs=encoder_outputs,
                         past_key_values=past_key_values, inputs_embeds=inputs_embeds,
                         decoder_inputs_embeds=decoder_inputs_embeds, use_cache=use_cache, cache=cache,
                         output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        logits = self.project_to_vocab(out.last_hidden_state)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.config.vocab_size), labels.to(logits.device).view(-1))
        output = Seq2SeqLMOutput(loss=loss, logits=logits, **seq2seq_fields(out))
        return as_requested(output, return_dict=self.config.return_dict if return_dict is None else return_dict)
