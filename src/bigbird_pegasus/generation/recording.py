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
        self.inputs: torch.Tensor | None = None  # without a cache: the embeddings (rows, t, d_model) so far
        self.logits: list[torch.Tensor] | None = [] if output_logits else None
        self.attentions: list[tuple[torch.Tensor, ...]] = []
        self.cross_attentions: list[tuple[torch.Tensor, ...]] = []
        self.hidden_states: list[tuple[torch.Tensor, ...]] = []

    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        return self._recorded(self._forward(prompt, at_prefill=True) if self._exact else super().prefill(prompt))

    def decode_one_token(self, tokens: torch.Tensor) -> torch.Tensor:
        if not self._exact:
            return self._recorded(super().decode_one_token(tokens))
        return self._recorded(self._forward(tokens[:, None], at_prefill=False))

    @property
    def _exact(self) -> bool:
        return self.output_attentions or self.output_hidden_states

    def reorder(self, rows: torch.Tensor) -> None:
        super().reorder(rows)
        if self.inputs is not None:
            self.inputs = self.inputs.index_select(0, rows)

    def _forward(self, tokens: torch.Tensor, *, at_prefill: bool) -> torch.Tensor:
        """tokens (rows, t) after the cached ones (the prompt, at the prefill) -> next-token logits (rows, vocab),
        float32; records the step."""
        tokens, embeds = self.prompt_inputs(tokens) if at_prefill else (tokens, None)
        if self.use_cache:
            mask, cache = self.keys_so_far((tokens if embeds is None else embeds).shape[1]), self.cache
        else:  # the whole sequence so far, as embeddings (embed_tokens' output is what the tokens would give)
            new = self.decoder.embed_tokens(tokens) if embeds is None else embeds                  # (rows, t, d)
            embeds = self.inputs = new if self.inputs is None else torch.cat([self.inputs, new], dim=1)
            tokens, cache = None, None
            mask = None if self.key_valid is None else self.key_valid[:, :embeds.shape[1]]
        out = self.decoder(tokens, inputs_embeds=embeds, attention_mask=mask,
                           encoder_hidden_states=self.encoder_states,
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
