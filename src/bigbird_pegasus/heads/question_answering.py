"""BigBirdPegasusForQuestionAnswering: span start and end logits over the decoder positions."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..config import BigBirdPegasusConfig
from ..modeling.linear import Linear
from ..modeling.model import BigBirdPegasusModel
from ..modeling.outputs import Seq2SeqQuestionAnsweringModelOutput, as_requested
from ..modeling.pretrained import BigBirdPegasusPreTrainedModel


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
        out = self.model(input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                         decoder_attention_mask=decoder_attention_mask, encoder_outputs=encoder_outputs,
                         inputs_embeds=inputs_embeds, decoder_inputs_embeds=decoder_inputs_embeds, use_cache=use_cache)
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
            past_key_values=out.past_key_values, encoder_last_hidden_state=out.encoder_last_hidden_state)
        return as_requested(output, return_dict=return_dict)
