"""What `generate` records per step when `output_logits`, `output_attentions` or `output_hidden_states` ask for
it. Only then: a call that asks for none of them decodes with the plain CachedDecoder."""

from __future__ import annotations

from typing import Any

import torch

from .decoding import CachedDecoder


class RecordingDecoder(CachedDecoder):
    """A CachedDecoder that records each step's raw logits (rows, vocab) and, when attentions or hidden states
    are asked for, runs each step through the decoder's forward (its exact attention path, over the same cache)
    to record its self- and cross-attention probabilities and hidden states per layer. With use_cache=False, as
    the reference, each step recomputes the whole sequence so far (so its records span every position)."""

    def __init__(self, decoder: torch.nn.Module, *, output_logits: bool, output_attentions: bool,
                 output_hidden_states: bool, use_cache: bool, **options: Any):
        super().__init__(decoder, **options)
        self.output_attentions = output_attentions
        self.output_hidden_states = output_hidden_states
        self.use_cache = use_cache
        self.tokens: torch.Tensor | None = None  # (rows, t) the sequences so far, without a cache
        self.logits: list[torch.Tensor] | None = [] if output_logits else None
        self.attentions: list[tuple[torch.Tensor, ...]] = []
        self.cross_attentions: list[tuple[torch.Tensor, ...]] = []
        self.hidden_states: list[tuple[torch.Tensor, ...]] = []

    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        return self._recorded(self._forward(prompt) if self._exact else super().prefill(prompt))

    def decode_one_token(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._recorded(self._forward(tokens[:, None]) if self._exact else super().decode_one_token(tokens))

    @property
    def _exact(self) -> bool:
        return self.output_attentions or self.output_hidden_states

    def reorder(self, rows: torch.Tensor) -> None:
        super().reorder(rows)
        if self.tokens is not None:
            self.tokens = self.tokens.index_select(0, rows)

    def _forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (rows, t) after the cached ones -> next-token logits (rows, vocab), float32; records the step."""
        if self.use_cache:
            mask, cache = self.keys_so_far(tokens.shape[1]), self.cache
        else:
            tokens = self.tokens = tokens if self.tokens is None else torch.cat([self.tokens, tokens], dim=1)
            mask, cache = None if self.key_valid is None else self.key_valid[:, :tokens.shape[1]], None
        out = self.decoder(tokens, attention_mask=mask, encoder_hidden_states=self.encoder_states,
                           encoder_attention_mask=self.encoder_mask, past_key_values=cache, use_cache=self.use_cache,
                           output_attentions=self.output_attentions, output_hidden_states=self.output_hidden_states)
        if self.output_attentions:
            self.attentions.append(out.attentions)
            self.cross_attentions.append(out.cross_attentions)
        if self.output_hidden_states:
            self.hidden_states.append(out.hidden_states)
        return self.project_to_vocab(out.last_hidden_state[:, -1]).float()

    def _recorded(self, logits: torch.Tensor) -> torch.Tensor:
        if self.logits is not None:
            self.logits.append(logits)
        return logits

    def records(self) -> dict[str, tuple | None]:
        """What was asked for, per step: logits, attentions, cross_attentions, hidden_states (None if not)."""
        return {"logits": None if self.logits is None else tuple(self.logits),
                "attentions": tuple(self.attentions) if self.output_attentions else None,
                "cross_attentions": tuple(self.cross_attentions) if self.output_attentions else None,
                "hidden_states": tuple(self.hidden_states) if self.output_hidden_states else None}
