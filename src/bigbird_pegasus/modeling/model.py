"""The encoder, the decoder and BigBirdPegasusModel, the bare encoder-decoder under every task head."""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BigBirdPegasusConfig
from .block_sparse import BlockLayout, SparseMasks, block_layout, sparse_masks
from .cache import DecoderCache
from .embeddings import ScaledEmbedding
from .fused_step import run_fused_step
from .layers import DecoderLayer, EncoderLayer
from .masks import causal_bias, masked_bias, padding_bias
from .outputs import DecoderOutput, EncoderOutput, Seq2SeqModelOutput, as_requested
from .pretrained import BigBirdPegasusPreTrainedModel, warn_once
from .training_hooks import default_checkpoint


class BigBirdPegasusModel(BigBirdPegasusPreTrainedModel):
    """The bare encoder-decoder; with `tie_word_embeddings` both share `shared`'s embedding table."""

    def __init__(self, config: BigBirdPegasusConfig):
        super().__init__(config)
        self.shared = token_embedding(config)
        self.encoder = BigBirdPegasusEncoder(config, embed_tokens=self._embedding_table(config))
        self.decoder = BigBirdPegasusDecoder(config, embed_tokens=self._embedding_table(config))
        self.init_weights()
        self.post_init()

    def _embedding_table(self, config: BigBirdPegasusConfig) -> nn.Embedding:
        return self.shared if config.tie_word_embeddings else token_embedding(config)

    def get_encoder(self) -> BigBirdPegasusEncoder:
        return self.encoder

    def get_decoder(self) -> BigBirdPegasusDecoder:
        return self.decoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        """The shared table (and the encoder's and decoder's, which share it), as the reference."""
        self.shared = self.encoder.embed_tokens = self.decoder.embed_tokens = value

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
                encoder_outputs: Any = None, past_key_values: DecoderCache | None = None,
                inputs_embeds: torch.Tensor | None = None, decoder_inputs_embeds: torch.Tensor | None = None,
                use_cache: bool | None = None, cache: DecoderCache | None = None,
                output_attentions: bool | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None) -> Seq2SeqModelOutput | tuple:
        """Encoder over (b, n) inputs, decoder over (b, t) decoder inputs -> last_hidden_state (b, t, d_model).

        Without decoder inputs, `input_ids` shifted right serve as decoder inputs, as in the reference.
        `cache` is the reference's newer name for `past_key_values`. output_attentions / output_hidden_states
        (default: the config's) add the encoder's and decoder's probabilities and hidden states per layer.
        """
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            if input_ids is None:
                raise ValueError("pass decoder_input_ids or decoder_inputs_embeds, or input_ids to shift right")
            decoder_input_ids = shift_tokens_right(input_ids, pad_token_id=self.config.pad_token_id,
                                                   decoder_start_token_id=self.config.decoder_start_token_id)
        if encoder_outputs is None:
            encoded = self.encoder(input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                                   output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        else:
            encoded = as_encoder_output(encoder_outputs)
        decoded = self.decoder(decoder_input_ids, attention_mask=decoder_attention_mask,
                               encoder_hidden_states=encoded.last_hidden_state, encoder_attention_mask=attention_mask,
                               past_key_values=past_key_values if past_key_values is not None else cache,
                               inputs_embeds=decoder_inputs_embeds, use_cache=use_cache,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        output = Seq2SeqModelOutput(
            last_hidden_state=decoded.last_hidden_state, cache=decoded.cache,
            decoder_hidden_states=decoded.hidden_states, decoder_attentions=decoded.attentions,
            cross_attentions=decoded.cross_attentions, encoder_last_hidden_state=encoded.last_hidden_state,
            encoder_hidden_states=encoded.hidden_states, encoder_attentions=encoded.attentions)
        return as_requested(output, return_dict=self.config.return_dict if return_dict is None else return_dict)


class LayerStack(BigBirdPegasusPreTrainedModel):
    """What the encoder and the decoder share: token and learned position embeddings, `layers`, a final
    LayerNorm, the function that checkpoints a layer. Built alone (no `embed_tokens`), a stack has a token table
    of its own and initialises itself, and loads and saves as a model of its own, as the reference's."""

    def __init__(self, config: BigBirdPegasusConfig, *, embed_tokens: nn.Embedding | None, layers: list[nn.Module]):
        super().__init__(config)
        self.embed_tokens = token_embedding(config) if embed_tokens is None else embed_tokens
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.d_model)
        self.layers = nn.ModuleList(layers)
        self.layernorm_embedding = nn.LayerNorm(config.d_model)
        self.checkpoint_function = default_checkpoint
        if embed_tokens is None:
            self.init_weights()
            self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed_tokens = value


class BigBirdPegasusEncoder(LayerStack):
    """Token + learned position embeddings, pre-LN layers with full or block-sparse attention, final LN."""

    def __init__(self, config: BigBirdPegasusConfig, *, embed_tokens: nn.Embedding | None = None):
        super().__init__(config, embed_tokens=embed_tokens,
                         layers=[EncoderLayer(config) for _ in range(config.encoder_layers)])

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, *,
                inputs_embeds: torch.Tensor | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None) -> EncoderOutput | tuple:
        """input_ids (b, n) or inputs_embeds (b, n, d_model) (what `embed_tokens` gives, scale included);
        attention_mask (b, n), 1 for real tokens. Returns last_hidden_state (b, n, d_model); with
        output_hidden_states also the embedding output and every layer's, with output_attentions every layer's
        probabilities (b, h, n, n) (defaults: the config's)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
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

        hidden_states = [] if _requested(output_hidden_states, self.config.output_hidden_states) else None
        attentions = [] if _requested(output_attentions, self.config.output_attentions) else None
        for layer, layer_masks in zip(self.layers, masks):
            if self.training and self.config.encoder_layerdrop > 0 and torch.rand([]) < self.config.encoder_layerdrop:
                continue
            if hidden_states is not None:
                hidden_states.append(x[:, :length])
            if layer.gradient_checkpointing and self.training:
                x = self.checkpoint_function(functools.partial(layer, masks=layer_masks, record=attentions), x)
            else:
                x = layer(x, masks=layer_masks, record=attentions)
        x = self.layernorm_embedding(x)[:, :length]
        output = EncoderOutput(last_hidden_state=x, hidden_states=_final(hidden_states, x),
                               attentions=None if attentions is None else tuple(a[..., :length, :length]
                                                                                for a in attentions))
        return as_requested(output, return_dict=return_dict)

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


class BigBirdPegasusDecoder(LayerStack):
    """Token + learned position embeddings, pre-LN layers with causal self-attention and cross-attention."""

    def __init__(self, config: BigBirdPegasusConfig, *, embed_tokens: nn.Embedding | None = None):
        super().__init__(config, embed_tokens=embed_tokens,
                         layers=[DecoderLayer(config, layer_index=i) for i in range(config.decoder_layers)])

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None, *,
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None,
                past_key_values: DecoderCache | None = None, inputs_embeds: torch.Tensor | None = None,
                use_cache: bool | None = None, cache: DecoderCache | None = None,
                output_attentions: bool | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None) -> DecoderOutput | tuple:
        """input_ids (b, t) or inputs_embeds (b, t, d_model); attention_mask (b, past + t);
        encoder_hidden_states (docs, s, d_model), b = docs * beams; encoder_attention_mask (docs, s).
        Returns last_hidden_state (b, t, d_model) and the cache when `use_cache` (`cache` is the newer name of
        `past_key_values`); hidden states and attention probabilities per layer as the encoder's."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of decoder input_ids and inputs_embeds")
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        use_cache = self.config.use_cache if use_cache is None else use_cache
        cache = past_key_values if past_key_values is not None else cache
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

        hidden_states = [] if _requested(output_hidden_states, self.config.output_hidden_states) else None
        attentions = [] if _requested(output_attentions, self.config.output_attentions) else None
        cross_attentions = None if attentions is None else []  # stays empty without encoder states (the reference's)
        for layer in self.layers:
            if self.training and self.config.decoder_layerdrop > 0 and torch.rand([]) < self.config.decoder_layerdrop:
                continue
            if hidden_states is not None:
                hidden_states.append(x)
            inputs = dict(self_bias=self_bias, is_causal=is_causal, cross_bias=cross_bias, cache=cache,
                          self_record=attentions, cross_record=cross_attentions)
            if layer.gradient_checkpointing and self.training:
                # the encoder states go positionally: a reentrant checkpoint passes gradients to those only
                x = self.checkpoint_function(functools.partial(_run_decoder_layer, layer, **inputs), x,
                                             encoder_hidden_states)
            else:
                x = layer(x, encoder_states=encoder_hidden_states, **inputs)
        if cache is not None:
            cache.advance(length)
        x = self.layernorm_embedding(x)
        output = DecoderOutput(last_hidden_state=x, cache=cache if use_cache else None,
                               hidden_states=_final(hidden_states, x), attentions=_tuple(attentions),
                               cross_attentions=_tuple(cross_attentions))
        return as_requested(output, return_dict=return_dict)

    def step(self, tokens: torch.Tensor, *, position: torch.Tensor, encoder_states: torch.Tensor | None,
             cross_bias: torch.Tensor | None, cache: DecoderCache,
             key_valid: torch.Tensor | None = None) -> torch.Tensor:
        """One new token per row at `position` (a 0-d long tensor) against the whole preallocated cache, the
        positions not written yet masked (and those where key_valid (rows, capacity) is False: prompt padding):
        every step has the same shapes, so it compiles once (a static cache, as in gpt-fast). The caller advances
        `cache` afterwards. Where the CPU kernels take the whole step (`fused_step.run_fused_step`: inference, a few
        rows, fp32 or int8 layers, no hooks), the layers run in one call of them. tokens (rows, 1) -> (rows, 1,
        d_model)."""
        x = self.embed_tokens(tokens) + self.embed_positions(position)
        x = F.dropout(x, self.config.dropout, self.training)
        capacity = cache.capacity
        visible = torch.arange(capacity, device=x.device) <= position                       # (capacity,)
        if key_valid is not None:
            visible = visible & key_valid                                                    # (rows, capacity)
        self_bias = masked_bias(visible, x.dtype).view(-1, 1, 1, capacity)                   # (rows|1, 1, 1, capacity)
        if run_fused_step(self.layers, x, position=position, self_bias=self_bias, encoder_states=encoder_states,
                          cross_bias=cross_bias, cache=cache):
            return self.layernorm_embedding(x)
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


def as_encoder_output(encoder_outputs: Any) -> EncoderOutput:
    """An EncoderOutput from what `encoder_outputs=` may be: one already, a tuple/list (last hidden state, hidden
    states, attentions), an output of the reference (read by field name), or the last hidden state itself."""
    if isinstance(encoder_outputs, EncoderOutput):
        return encoder_outputs
    if isinstance(encoder_outputs, torch.Tensor):
        return EncoderOutput(last_hidden_state=encoder_outputs)
    if isinstance(encoder_outputs, (tuple, list)) and encoder_outputs:
        return EncoderOutput(*encoder_outputs[:3])
    if hasattr(encoder_outputs, "last_hidden_state"):
        return EncoderOutput(last_hidden_state=encoder_outputs.last_hidden_state,
                             hidden_states=getattr(encoder_outputs, "hidden_states", None),
                             attentions=getattr(encoder_outputs, "attentions", None))
    raise TypeError(f"encoder_outputs of type {type(encoder_outputs).__name__} holds no last hidden state")


def token_embedding(config: BigBirdPegasusConfig) -> ScaledEmbedding:
    """A token table scaled by sqrt(d_model) with `scale_embedding` (the reference's ScaledWordEmbedding)."""
    return ScaledEmbedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id,
                           embed_scale=config.d_model ** 0.5 if config.scale_embedding else 1.0)


def _run_decoder_layer(layer: DecoderLayer, x: torch.Tensor, encoder_states: torch.Tensor | None,
                       **inputs: Any) -> torch.Tensor:
    return layer(x, encoder_states=encoder_states, **inputs)


def _requested(value: bool | None, default: bool) -> bool:
    """A forward's output_* flag, the config's when not passed."""
    return default if value is None else bool(value)


def _final(hidden_states: list[torch.Tensor] | None, last: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """Each layer's input, then the stack's output: the last layer's output after the final LayerNorm, as the
    reference returns hidden states."""
    return None if hidden_states is None else (*hidden_states, last)


def _tuple(values: list[torch.Tensor] | None) -> tuple[torch.Tensor, ...] | None:
    return None if values is None else tuple(values)


def _positions(table: nn.Embedding, *, start: int, length: int) -> torch.Tensor:
    """Rows start .. start+length of a learned position table, (length, d_model)."""
    if start + length > table.num_embeddings:
        raise ValueError(
            f"input of {start + length} positions is longer than max_position_embeddings={table.num_embeddings}: "
            "truncate it, or extend the position table")
    return table.weight[start:start + length]
