"""The four task heads on top of the bare model: generation, classification, QA and the causal LM."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .cache import DecoderCache
from .config import BigBirdPegasusConfig
from .generation import DecoderOnlyGenerationMixin, GenerationMixin
from .linear import Linear
from .model import BigBirdPegasusDecoder, BigBirdPegasusModel, BigBirdPegasusPreTrainedModel, shift_tokens_right
from .outputs import (
    CausalLMOutput, Seq2SeqLMOutput, Seq2SeqQuestionAnsweringModelOutput, Seq2SeqSequenceClassifierOutput,
)


def _as_requested(return_dict: bool | None, output):
    """The output record, or its tuple when `return_dict=False` (as the reference)."""
    return output if return_dict in (None, True) else output.to_tuple()


class BigBirdPegasusForConditionalGeneration(GenerationMixin, BigBirdPegasusPreTrainedModel):
    """The summarizer: the bare model, an LM head tied to the shared embedding and `final_logits_bias`."""

    def __init__(self, config: BigBirdPegasusConfig):
        super().__init__(config)
        self.model = BigBirdPegasusModel(config)
        self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)
        self.init_weights(self.lm_head)
        self.tie_weights()
        self.compiled_step = None  # set by compile_for_generation

    def tie_weights(self) -> None:
        """Share the LM head with the embedding table when `tie_word_embeddings` (e.g. after loading)."""
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.shared.weight

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

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
                encoder_outputs: Any = None, past_key_values: DecoderCache | None = None,
                inputs_embeds: torch.Tensor | None = None, decoder_inputs_embeds: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, use_cache: bool | None = None,
                cache: DecoderCache | None = None, return_dict: bool | None = None) -> Seq2SeqLMOutput | tuple:
        """logits (b, t, vocab); with `labels` (b, t) also the mean cross-entropy `loss` (-100 ignored),
        and decoder inputs built from the labels when none are given."""
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id,
                                                       self.config.decoder_start_token_id)
        out = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                         past_key_values, inputs_embeds, decoder_inputs_embeds, use_cache, cache)
        logits = self.project_to_vocab(out.last_hidden_state)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.config.vocab_size), labels.to(logits.device).view(-1))
        return _as_requested(return_dict, Seq2SeqLMOutput(loss, logits, out.past_key_values,
                                                          out.encoder_last_hidden_state))


class BigBirdPegasusClassificationHead(nn.Module):
    """dropout -> dense -> tanh -> dropout -> out_proj, as the reference."""

    def __init__(self, d_model: int, num_classes: int, dropout: float):
        super().__init__()
        self.dense = Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(x)))))


class BigBirdPegasusForSequenceClassification(BigBirdPegasusPreTrainedModel):
    """Classifies from the decoder state at the last `</s>` of each input."""

    def __init__(self, config: BigBirdPegasusConfig):
        super().__init__(config)
        self.model = BigBirdPegasusModel(config)
        self.classification_head = BigBirdPegasusClassificationHead(config.d_model, config.num_labels,
                                                                    config.classifier_dropout)
        self.init_weights(self.classification_head)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
                encoder_outputs: Any = None, inputs_embeds: torch.Tensor | None = None,
                decoder_inputs_embeds: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                use_cache: bool | None = None, return_dict: bool | None = None
                ) -> Seq2SeqSequenceClassifierOutput | tuple:
        """input_ids (b, n), each holding the same number (>= 1) of `</s>` -> logits (b, num_labels)."""
        if input_ids is None:
            raise ValueError("sequence classification needs input_ids: it pools at the last </s> token")
        if labels is not None:
            use_cache = False
        out = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                         None, inputs_embeds, decoder_inputs_embeds, use_cache)
        hidden = out.last_hidden_state
        eos = torch.isin(input_ids, torch.tensor(self.config.eos_token_id, device=input_ids.device))
        per_row = eos.sum(1)
        if bool((per_row != per_row[0]).any()):
            raise ValueError(f"every input must hold the same number of </s> tokens, got {per_row.tolist()}")
        if int(per_row[0]) == 0:
            raise ValueError("every input must hold at least one </s> token")
        pooled = hidden[eos.to(hidden.device)].view(hidden.shape[0], -1, hidden.shape[-1])[:, -1]   # (b, d)
        logits = self.classification_head(pooled)
        loss = None if labels is None else self._loss(logits, labels.to(logits.device))
        return _as_requested(return_dict, Seq2SeqSequenceClassifierOutput(loss, logits, out.past_key_values,
                                                                          out.encoder_last_hidden_state))

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Regression, single- or multi-label loss by `config.problem_type`, inferred as the reference does."""
        config = self.config
        if config.problem_type is None:
            if config.num_labels == 1:
                config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                config.problem_type = "single_label_classification"
            else:
                config.problem_type = "multi_label_classification"
        if config.problem_type == "regression":
            if config.num_labels == 1:
                return F.mse_loss(logits.squeeze(), labels.squeeze())
            return F.mse_loss(logits, labels)
        if config.problem_type == "single_label_classification":
            return F.cross_entropy(logits.view(-1, config.num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels)


class BigBirdPegasusForQuestionAnswering(BigBirdPegasusPreTrainedModel):
    """Span extraction: start and end logits over the decoder positions."""

    def __init__(self, config: BigBirdPegasusConfig):
        config.num_labels = 2
        super().__init__(config)
        self.model = BigBirdPegasusModel(config)
        self.qa_outputs = Linear(config.d_model, 2)
        self.init_weights(self.qa_outputs)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
                encoder_outputs: Any = None, start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                decoder_inputs_embeds: torch.Tensor | None = None, use_cache: bool | None = None,
                return_dict: bool | None = None) -> Seq2SeqQuestionAnsweringModelOutput | tuple:
        """start_logits, end_logits (b, t); with start/end positions (b,) the mean of their cross-entropies,
        positions outside the input ignored."""
        if start_positions is not None and end_positions is not None:
            use_cache = False
        out = self.model(input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, encoder_outputs,
                         None, inputs_embeds, decoder_inputs_embeds, use_cache)
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).unbind(-1)       # (b, t) each
        loss = None
        if start_positions is not None and end_positions is not None:
            ignored = start_logits.shape[1]
            start = start_positions.reshape(-1).clamp(0, ignored).to(start_logits.device)
            end = end_positions.reshape(-1).clamp(0, ignored).to(end_logits.device)
            loss = (F.cross_entropy(start_logits, start, ignore_index=ignored)
                    + F.cross_entropy(end_logits, end, ignore_index=ignored)) / 2
        return _as_requested(return_dict, Seq2SeqQuestionAnsweringModelOutput(
            loss, start_logits.contiguous(), end_logits.contiguous(), out.past_key_values,
            out.encoder_last_hidden_state))


class BigBirdPegasusDecoderWrapper(nn.Module):
    """Holds the decoder under `model.decoder`, the reference's state-dict layout for the causal LM."""

    def __init__(self, config: BigBirdPegasusConfig):
        super().__init__()
        embed_tokens = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.decoder = BigBirdPegasusDecoder(config, embed_tokens)


class BigBirdPegasusForCausalLM(DecoderOnlyGenerationMixin, BigBirdPegasusPreTrainedModel):
    """The decoder alone as a language model (its LM head is not tied, as in the reference); `generate`
    continues prompts."""

    def __init__(self, config: BigBirdPegasusConfig):
        config.is_decoder = True
        config.is_encoder_decoder = False
        super().__init__(config)
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
        out = self.model.decoder(input_ids, attention_mask, encoder_hidden_states, encoder_attention_mask,
                                 past_key_values if past_key_values is not None else cache, inputs_embeds,
                                 use_cache)
        hidden = out.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.config.vocab_size), labels.to(logits.device).view(-1))
        return _as_requested(return_dict, CausalLMOutput(loss, logits, out.past_key_values))
