"""The encoder, the decoder and BigBirdPegasusModel, the bare encoder-decoder under every task head."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import BigBirdPegasusConfig
from .block_sparse import BlockLayout, SparseMasks, block_layout, sparse_masks
from .cache import DecoderCache
from .layers import DecoderLayer, EncoderLayer
from .masks import causal_bias, masked_bias, padding_bias
from .outputs import DecoderOutput, EncoderOutput, Seq2SeqModelOutput, as_requested
from .pretrained import BigBirdPegasusPreTrainedModel, warn_once


class BigBirdPegasusModel(BigBirdPegasusPreTrainedModel):
    """The bare encoder-decoder; with `tie_word_embeddings` both share `shared`'s embedding table."""

    def __init__(self, config: BigBirdPegasusConfig):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.encoder = BigBirdPegasusEncoder(config, embed_tokens=self._embedding_table(config))
        self.decoder = BigBirdPegasusDecoder(config, embed_tokens=self._embedding_table(config))
        self.init_weights()

    def _embedding_table(self, config: BigBirdPegasusConfig) -> nn.Embedding:
        if config.tie_word_embeddings:
            return self.shared
        return nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)

    def get_encoder(self) -> BigBirdPegasusEncoder:
        return self.encoder

    def get_decoder(self) -> BigBirdPegasusDecoder:
        return self.decoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
                encoder_outputs: Any = None, past_key_values: DecoderCache | None = None,
                inputs_embeds: torch.Tensor | None = None, decoder_inputs_embeds: torch.Tensor | None = None,
                use_cache: bool | None = None, cache: DecoderCache | None = None,
                return_dict: bool | None = None) -> Seq2SeqModelOutput | tuple:
        """Encoder over (b, n) inputs, decoder over (b, t) decoder inputs -> last_hidden_state (b, t, d_model).

        Without decoder inputs, `input_ids` shifted right serve as decoder inputs, as in the reference.
        `cache` is the reference's newer name for `past_key_values`.
        """
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            if input_ids is None:
                raise ValueError("pass decoder_input_ids or decoder_inputs_embeds, or input_ids to shift right")
            decoder_input_ids = shift_tokens_right(input_ids, pad_token_id=self.config.pad_token_id,
                                                   decoder_start_token_id=self.config.decoder_start_token_id)
        if encoder_outputs is None:
            encoder_states = self.encoder(input_ids, attention_mask=attention_mask,
                                          inputs_embeds=inputs_embeds).last_hidden_state
        else:
            encoder_states = encoder_states_of(encoder_outputs)
        decoded = self.decoder(decoder_input_ids, attention_mask=decoder_attention_mask,
                               encoder_hidden_states=encoder_states, encoder_attention_mask=attention_mask,
                               past_key_values=past_key_values if past_key_values is not None else cache,
                               inputs_embeds=decoder_inputs_embeds, use_cache=use_cache)
        output = Seq2SeqModelOutput(last_hidden_state=decoded.last_hidden_state,
                                    past_key_values=decoded.past_key_values,
                                    encoder_last_hidden_state=encoder_states)
        return as_requested(output, return_dict=return_dict)


class BigBirdPegasusEncoder(nn.Module):
    """Token + learned position embeddings, pre-LN layers with full or block-sparse attention, final LN."""

    def __init__(self, config: BigBirdPegasusConfig, *, embed_tokens: nn.Embedding):
        super().__init__()
        self.config = config
        self.embed_tokens = embed_tokens
        self.embed_scale = _embedding_scale(config)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.d_model)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.encoder_layers))
        self.layernorm_embedding = nn.LayerNorm(config.d_model)
        self.gradient_checkpointing = False

    def forward(self, input_ids: torch.Tensor | None = None, *, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> EncoderOutput:
        """input_ids (b, n) or inputs_embeds (b, n, d_model); attention_mask (b, n), 1 for real tokens.
        Returns last_hidden_state (b, n, d_model)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        x = self.embed_tokens(input_ids) * self.embed_scale if inputs_embeds is None else inputs_embeds
        batch, length, _ = x.shape
        x = F.dropout(x + _positions(self.embed_positions, start=0, length=length), self.config.dropout, self.training)
        key_valid = None if attention_mask is None else attention_mask.to(device=x.device, dtype=torch.bool)

        if self._uses_block_sparse(length):
            padding = -length % self.config.block_size
            if padding:
                x = F.pad(x, (0, 0, 0, padding))                                  # (b, n + pad, d_model)
                valid = torch.ones(batch, length, dtype=torch.bool, device=x.device) if key_valid is None else key_valid
                key_valid = F.pad(valid, (0, padding), value=False)
            masks = self._sparse_masks(length + padding, key_valid=key_valid, batch=batch, dtype=x.dtype,
                                       device=x.device)
        else:
            masks = [padding_bias(key_valid, x.dtype)] * len(self.layers)

        for layer, layer_masks in zip(self.layers, masks):
            if self.training and self.config.encoder_layerdrop > 0 and torch.rand([]) < self.config.encoder_layerdrop:
                continue
            if self.gradient_checkpointing and self.training:
                x = checkpoint(layer, x, masks=layer_masks, use_reentrant=False)
            else:
                x = layer(x, masks=layer_masks)
        x = self.layernorm_embedding(x)
        return EncoderOutput(last_hidden_state=x[:, :length])

    def _uses_block_sparse(self, length: int) -> bool:
        """Block-sparse needs more than `BlockLayout.min_length` tokens; shorter inputs use full attention for
        this call."""
        if self.config.attention_type != "block_sparse":
            return False
        min_length = BlockLayout.min_length(self.config.block_size, self.config.num_random_blocks)
        if length > min_length:
            return True
        warn_once(f"inputs of at most {min_length} tokens (block_size "
                  f"{self.config.block_size}, {self.config.num_random_blocks} random blocks) are too short for "
                  "block-sparse attention: they use full attention (decided per call)")
        return False

    def _sparse_masks(self, length: int, *, key_valid: torch.Tensor | None, batch: int, dtype: torch.dtype,
                      device: torch.device) -> list[SparseMasks]:
        """One SparseMasks per layer. Seeded layouts differ per layer; otherwise (eval mode) every layer
        has the same layout and shares one SparseMasks."""
        config = self.config
        seeded = self.training or config.random_attention == "fixed"

        def masks_of_layer(index: int) -> SparseMasks:
            layout = block_layout(length, block_size=config.block_size, num_random_blocks=config.num_random_blocks,
                                  num_heads=config.encoder_attention_heads, layer_index=index,
                                  max_seq_len=config.max_position_embeddings, seeded=seeded, device=device)
            return sparse_masks(layout, key_valid=key_valid, batch_size=batch,
                                num_heads=config.encoder_attention_heads, block_size=config.block_size, dtype=dtype)

        if not seeded:
            return [masks_of_layer(0)] * len(self.layers)
        return [masks_of_layer(index) for index in range(len(self.layers))]


class BigBirdPegasusDecoder(nn.Module):
    """Token + learned position embeddings, pre-LN layers with causal self-attention and cross-attention."""

    def __init__(self, config: BigBirdPegasusConfig, *, embed_tokens: nn.Embedding):
        super().__init__()
        self.config = config
        self.embed_tokens = embed_tokens
        self.embed_scale = _embedding_scale(config)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.d_model)
        self.layers = nn.ModuleList(DecoderLayer(config, layer_index=i) for i in range(config.decoder_layers))
        self.layernorm_embedding = nn.LayerNorm(config.d_model)
        self.gradient_checkpointing = False

    def forward(self, input_ids: torch.Tensor | None = None, *, attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None,
                past_key_values: DecoderCache | None = None, inputs_embeds: torch.Tensor | None = None,
                use_cache: bool | None = None) -> DecoderOutput:
        """input_ids (b, t) or inputs_embeds (b, t, d_model); attention_mask (b, past + t);
        encoder_hidden_states (docs, s, d_model), b = docs * beams; encoder_attention_mask (docs, s).
        Returns last_hidden_state (b, t, d_model) and the cache when `use_cache`."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of decoder input_ids and inputs_embeds")
        x = self.embed_tokens(input_ids) * self.embed_scale if inputs_embeds is None else inputs_embeds
        use_cache = self.config.use_cache if use_cache is None else use_cache
        cache = past_key_values
        if isinstance(cache, (tuple, list)):
            cache = DecoderCache.from_legacy(cache)
        if cache is None and use_cache:
            cache = DecoderCache(len(self.layers))
        past = cache.length if cache is not None else 0
        length = x.shape[1]
        positions = _positions(self.embed_positions, start=past, length=length)
        x = F.dropout(x + positions, self.config.dropout, self.training)

        key_valid = None if attention_mask is None else attention_mask.to(device=x.device, dtype=torch.bool)
        self_bias, is_causal = causal_bias(length, past_len=past, key_valid=key_valid, dtype=x.dtype, device=x.device)
        cross_valid = None if encoder_attention_mask is None else encoder_attention_mask.to(x.device, torch.bool)
        cross_bias = padding_bias(cross_valid, x.dtype)

        for layer in self.layers:
            if self.training and self.config.decoder_layerdrop > 0 and torch.rand([]) < self.config.decoder_layerdrop:
                continue
            inputs = dict(self_bias=self_bias, is_causal=is_causal, encoder_states=encoder_hidden_states,
                          cross_bias=cross_bias, cache=cache)
            if self.gradient_checkpointing and self.training:
                x = checkpoint(layer, x, **inputs, use_reentrant=False)
            else:
                x = layer(x, **inputs)
        if cache is not None:
            cache.advance(length)
        return DecoderOutput(last_hidden_state=self.layernorm_embedding(x),
                             past_key_values=cache if use_cache else None)

    def step(self, tokens: torch.Tensor, *, position: torch.Tensor, encoder_states: torch.Tensor | None,
             cross_bias: torch.Tensor | None, cache: DecoderCache) -> torch.Tensor:
        """One new token per row at `position` (a 0-d long tensor) against the whole preallocated cache, the
        positions not written yet masked: every step has the same shapes, so it compiles once (a static cache,
        as in gpt-fast). The caller advances `cache` afterwards. tokens (rows, 1) -> (rows, 1, d_model)."""
        x = self.embed_tokens(tokens) * self.embed_scale + self.embed_positions(position)
        x = F.dropout(x, self.config.dropout, self.training)
        capacity = cache.self_keys[0].shape[2]
        visible = torch.arange(capacity, device=x.device) <= position                       # (capacity,)
        self_bias = masked_bias(visible, x.dtype)[None, None, None, :]                       # (1, 1, 1, capacity)
        for layer in self.layers:
            x = layer(x, self_bias=self_bias, is_causal=False, encoder_states=encoder_states, cross_bias=cross_bias,
                      cache=cache, position=position)
        return self.layernorm_embedding(x)


def shift_tokens_right(input_ids: torch.Tensor, *, pad_token_id: int | None,
                       decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs from labels (b, t): start token first, labels shifted right, -100 replaced by pad."""
    if pad_token_id is None:
        raise ValueError("config.pad_token_id must be set to build decoder inputs from labels")
    shifted = input_ids.new_empty(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


def encoder_states_of(encoder_outputs: Any) -> torch.Tensor:
    """The last hidden state from an EncoderOutput, a tuple/list holding it first, or the tensor itself."""
    if isinstance(encoder_outputs, torch.Tensor):
        return encoder_outputs
    if isinstance(encoder_outputs, EncoderOutput):
        return encoder_outputs.last_hidden_state
    if isinstance(encoder_outputs, (tuple, list)) and encoder_outputs:
        return encoder_outputs[0]
    if hasattr(encoder_outputs, "last_hidden_state"):
        return encoder_outputs.last_hidden_state
    raise TypeError(f"encoder_outputs of type {type(encoder_outputs).__name__} holds no last hidden state")


def _embedding_scale(config: BigBirdPegasusConfig) -> float:
    return config.d_model ** 0.5 if config.scale_embedding else 1.0


def _positions(table: nn.Embedding, *, start: int, length: int) -> torch.Tensor:
    """Rows start .. start+length of a learned position table, (length, d_model)."""
    if start + length > table.num_embeddings:
        raise ValueError(
            f"input of {start + length} positions is longer than max_position_embeddings={table.num_embeddings}: "
            "truncate it, or extend the position table")
    return table.weight[start:start + length]
