"""BigBirdPegasusForSequenceClassification: a label from the decoder state at the last `</s>`."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BigBirdPegasusConfig
from ..modeling.cache import DecoderCache
from ..modeling.linear import Linear
from ..modeling.model import BigBirdPegasusModel
from ..modeling.outputs import Seq2SeqSequenceClassifierOutput, as_requested, seq2seq_fields
from ..modeling.pretrained import BigBirdPegasusPreTrainedModel


class BigBirdPegasusClassificationHead(nn.Module):
    """dropout -> dense -> tanh -> dropout -> out_proj, as the reference."""

    def __init__(self, d_model: int, *, num_classes: int, dropout: float):
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
        self.classification_head = BigBirdPegasusClassificationHead(config.d_model, num_classes=config.num_labels,
                                                                    dropout=config.classifier_dropout)
        self.init_weights(self.classification_head)
        self.post_init()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
                encoder_outputs: Any = None, inputs_embeds: torch.Tensor | None = None,
                decoder_inputs_embeds: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                use_cache: bool | None = None, past_key_values: DecoderCache | None = None,
                cache: DecoderCache | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None
                ) -> Seq2SeqSequenceClassifierOutput | tuple:
        """input_ids (b, n), each holding the same number (>= 1) of `</s>` -> logits (b, num_labels). Hidden states
        and attention probabilities as BigBirdPegasusModel's."""
        if input_ids is None:
            raise ValueError("sequence classification needs input_ids: it pools at the last </s> token")
        if labels is not None:
            use_cache = False
        out = self.model(input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                         decoder_attention_mask=decoder_attention_mask, encoder_outputs=encoder_outputs,
                         inputs_embeds=inputs_embeds, decoder_inputs_embeds=decoder_inputs_embeds, use_cache=use_cache,
                         past_key_values=past_key_values, cache=cache, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states)
        hidden = out.last_hidden_state
        eos = torch.isin(input_ids, torch.tensor(self.config.eos_token_id, device=input_ids.device))
        per_row = eos.sum(1)
        if bool((per_row != per_row[0]).any()):
            raise ValueError(f"every input must hold the same number of </s> tokens, got {per_row.tolist()}")
        if int(per_row[0]) == 0:
            raise ValueError("every input must hold at least one </s> token")
        pooled = hidden[eos.to(hidden.device)].view(hidden.shape[0], -1, hidden.shape[-1])[:, -1]   # (b, d)
        logits = self.classification_head(pooled)
        loss = None if labels is None else self._loss(logits, labels=labels.to(logits.device))
        output = Seq2SeqSequenceClassifierOutput(loss=loss, logits=logits, **seq2seq_fields(out))
        return as_requested(output, return_dict=self.config.return_dict if return_dict is None else return_dict)

    def _loss(self, logits: torch.Tensor, *, labels: torch.Tensor) -> torch.Tensor:
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
