"""What the decoding loops share: the call's resolved plan, and the decoder with its caches during generation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..modeling.cache import CrossAttentionCache, DecoderCache
from ..modeling.masks import padding_bias
from .logits_process import LogitsProcessorList


@dataclass
class DecodingPlan:
    """What the decoding loops need, resolved once per call. max_length counts the prompt; eos_ids: (n_eos,)."""

    processors: LogitsProcessorList
    max_length: int
    eos_ids: torch.Tensor | None
    pad_id: int | None
    do_sample: bool
    generator: torch.Generator | None
    record_scores: bool
    num_beams: int
    num_return_sequences: int
    length_penalty: float
    early_stopping: bool | str


class CachedDecoder:
    """The decoder during generation: its self-attention cache is preallocated to `capacity` positions; the
    cross-attention keys/values that `cross_attention_cache` keeps are projected from the encoder states
    (docs, s, d_model) once per layer, at the prefill, and shared by the rows = docs * g of each document (no
    encoder states: the decoder alone, as a causal LM); logits come from the last position only.
    prompt_mask (rows, p), 0 on padding: left-padded prompts, whose padding no position attends to.
    prompt_embeds (rows, p, d_model): the prompt as the decoder's input embeddings, read by the prefill instead
    of the prompt's tokens (a causal LM's `generate(inputs_embeds=...)`). past: an earlier call's cache holding the
    prompt's first positions (rows as the prompt's), copied: the prefill runs the other positions only."""

    def __init__(self, decoder: torch.nn.Module, *, project_to_vocab: Callable[[torch.Tensor], torch.Tensor],
                 encoder_states: torch.Tensor | None, encoder_mask: torch.Tensor | None, capacity: int,
                 step: Callable[..., torch.Tensor] | None = None,
                 cross_attention_cache: CrossAttentionCache = CrossAttentionCache.KEYS_AND_VALUES,
                 prompt_mask: torch.Tensor | None = None, prompt_embeds: torch.Tensor | None = None,
                 past: DecoderCache | None = None):
        self.decoder = decoder
        self.prompt_embeds = prompt_embeds
        self.project_to_vocab = project_to_vocab
        self.encoder_states = encoder_states
        self.encoder_mask = encoder_mask
        self.cross_bias = None if encoder_mask is None else padding_bias(encoder_mask.bool(), encoder_states.dtype)
        self.cache = DecoderCache(len(decoder.layers), cross_attention_cache=cross_attention_cache)
        self.cache.reserve(capacity)
        if past is not None:
            self.cache.continue_from(past)
        self.step = step or decoder.step  # the static-shape one-token step, compiled or not
        self.key_valid = None                                                       # (rows, capacity) or None
        if prompt_mask is not None:
            self.key_valid = F.pad(prompt_mask.bool(), (0, capacity - prompt_mask.shape[1]), value=True)

    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        """prompt (rows, p) -> next-token logits (rows, vocab), float32 (from `prompt_embeds` when given)."""
        tokens, embeds = self.prompt_inputs(prompt)
        length = (tokens if embeds is None else embeds).shape[1]
        hidden = self.decoder(tokens, inputs_embeds=embeds, attention_mask=self.keys_so_far(length),
                              encoder_hidden_states=self.encoder_states, encoder_attention_mask=self.encoder_mask,
                              past_key_values=self.cache, use_cache=True).last_hidden_state
        return self.project_to_vocab(hidden[:, -1]).float()

    def prompt_inputs(self, prompt: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The decoder's (input_ids, inputs_embeds) for the prompt (rows, p) at the prefill: the tokens the cache
        does not hold yet, or the embeddings."""
        if self.prompt_embeds is None:
            return prompt[:, self.cache.length:], None
        return None, self.prompt_embeds

    def decode_one_token(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (rows,) appended at the next position -> next-token logits (rows, vocab), float32."""
        position = torch.tensor(self.cache.length, device=tokens.device)
        hidden = self.step(tokens[:, None], position=position, encoder_states=self.encoder_states,
                           cross_bias=self.cross_bias, cache=self.cache, key_valid=self.key_valid)
        self.cache.advance(1)
        return self.project_to_vocab(hidden[:, -1]).float()

    def keys_so_far(self, new_tokens: int) -> torch.Tensor | None:
        """The attention mask (rows, cached + new_tokens) of a forward over `new_tokens` more tokens, or None
        when no prompt is padded."""
        return None if self.key_valid is None else self.key_valid[:, :self.cache.length + new_tokens]

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep the self-attention cache of `rows` (rows,), in that order (beam search)."""
        self.cache.reorder(rows)
        if self.key_valid is not None:
            self.key_valid = self.key_valid.index_select(0, rows)
