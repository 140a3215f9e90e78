"""BigBirdPegasusForQuestionAnswering: span start and end logits over the decoder positions."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..config import BigBirdPegasusConfig
from ..modeling.cache import DecoderCache
from ..modeling.linear import Linear
from ..modeling.model import BigBirdPegasusModel
from ..modeling.outputs import Seq2SeqQuestionAnsweringModelOutput, as_requested, seq2seq_fields
from ..modeling.pretrained import BigBirdPegasusPreTrainedModel


class BigBirdPegasusForQuestionAnswering(BigBirdPegasusPreTrainedModel):
    """Span extraction: start and end logits over the decoder positions."""

    def __init__(self, config: BigBirdPegasusConfig):
        config.num_labels = 2
        super().__init__(config)
        self.model = BigBirdPegasusModel(config)
        self.qa_outputs = Linear(config.d_model, 2)
        self.init_weights(self.qa_outputs)
        self.post_init()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
                encoder_outputs: Any = None, start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                decoder_inputs_embeds: torch.Tensor | None = None, use_cache: bool | None = None,
                past_key_values: DecoderCache | None = None, cache: DecoderCache | None = None,
                output_attentions: bool | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None) -> Seq2SeqQuestionAnsweringModelOutput | tuple:
        """start_logits, end_logits (b, t); with start/end positions (b,) the mean of their cross-entropies,
        positions outside the input ignored. Hidden states and attention probabilities as BigBirdPegasusModel's."""
        if start_positions is not None and end_positions is not None:
            use_cache = False
        out = self.model(input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                         decoder_attention_mask=decoder_attention_mask, encoder_outputs=encoder_outputs,
                         inputs_embeds=inputs_embeds, decoder_inputs_embeds=decoder_inputs_embeds, use_cache=use_cache,
                         past_key_values=past_key_values, cache=cache, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states)
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).unbind(-1)       # (b, t) each
        loss = None
        if start_positions is not None and end_positions is not None:
            ignored = start_logits.shape[1]
            start = start_positions.reshape(-1).clamp(0, ignored).to(start_logits.device)
            end = end_positions.reshape(-1).clamp(0, ignored).to(end_logits.device)
            loss = (F.cross_entropy(start_logits, start, ignore_index=ignored)
                    + F.cross_entropy(end_logits, end, ignore_index=ignored)) / 2
        output = Seq2SeqQuestionAnsweringModelOutput(
            loss=loss, start_logits=start_logits.contiguous(), end_logits=end_logits.contiguous(),
            **seq2seq_fields(out))
        return as_requested(output, return_dict=self.config.return_dict if return_dict is None else return_dict)
