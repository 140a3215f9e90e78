"""Pre-LayerNorm encoder and decoder layers, with the reference's parameter names."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BigBirdPegasusConfig
from .attention import DecoderAttention, EncoderAttention
from .block_sparse import SparseMasks
from .cache import DecoderCache
from .linear import Linear, linear_then_activation


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


# "gelu_new" and "gelu_fast" are the tanh approximation written out in Python in the reference;
# PyTorch's fused kernel computes the same function (differences ~1e-7).
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_python": F.gelu,
    "gelu_new": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "quick_gelu": _quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "linear": lambda x: x,
}

# fp16 activations are clamped this far below the largest finite value, as in the reference.
FP16_CLAMP_MARGIN = 1000.0


class EncoderLayer(nn.Module):
    def __init__(self, config: BigBirdPegasusConfig):
        super().__init__()
        d = config.d_model
        self.self_attn = EncoderAttention(d, num_heads=config.encoder_attention_heads, block_size=config.block_size,
                                          bias=config.use_bias, dropout=config.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = Linear(d, config.encoder_ffn_dim)
        self.fc2 = Linear(config.encoder_ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.activation = ACTIVATIONS[config.activation_function]
        self.activation_name = config.activation_function
        self.dropout = config.dropout
        self.gradient_checkpointing = False  # recompute this layer in the backward pass (the stack reads it)

    def forward(self, x: torch.Tensor, *, masks: SparseMasks | torch.Tensor | None,
                record: list[torch.Tensor] | None = None) -> torch.Tensor:
        """x: (b, n, d_model) -> (b, n, d_model). The reference applies no activation dropout here. With a `record`
        list, the attention probabilities are appended to it."""
        attended = self.self_attn(self.self_attn_layer_norm(x), masks=masks, record=record)
        x = x + F.dropout(attended, self.dropout, self.training)
        hidden = linear_then_activation(self.fc1, self.final_layer_norm(x), activation=self.activation_name,
                                        apply=self.activation)
        x = x + F.dropout(self.fc2(hidden), self.dropout, self.training)
        if x.dtype == torch.float16:
            limit = torch.finfo(torch.float16).max - FP16_CLAMP_MARGIN
            x = x.clamp(-limit, limit)
        return x


class DecoderLayer(nn.Module):
    def __init__(self, config: BigBirdPegasusConfig, *, layer_index: int):
        super().__init__()
        d, heads = config.d_model, config.decoder_attention_heads
        self.layer_index = layer_index
        self.self_attn = DecoderAttention(d, num_heads=heads, bias=config.use_bias, dropout=config.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.encoder_attn = DecoderAttention(d, num_heads=heads, bias=config.use_bias,
                                             dropout=config.attention_dropout)
        self.encoder_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = Linear(d, config.decoder_ffn_dim)
        self.fc2 = Linear(config.decoder_ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.activation = ACTIVATIONS[config.activation_function]
        self.activation_name = config.activation_function
        self.dropout = config.dropout
        self.activation_dropout = config.activation_dropout
        self.gradient_checkpointing = False  # recompute this layer in the backward pass (the stack reads it)

    def forward(self, x: torch.Tensor, *, self_bias: torch.Tensor | None, is_causal: bool,
                encoder_states: torch.Tensor | None, cross_bias: torch.Tensor | None,
                cache: DecoderCache | None, position: torch.Tensor | None = None,
                self_record: list[torch.Tensor] | None = None,
                cross_record: list[torch.Tensor] | None = None) -> torch.Tensor:
        """x: (b, t, d_model) -> (b, t, d_model); cross-attention is skipped without encoder states.
        With `position` (a 0-d tensor) the step's keys/values go there in the cache (a static-shape step).
        With record lists, the self- and cross-attention probabilities are appended to them."""
        attended = self.self_attn.self_attention(self.self_attn_layer_norm(x), bias=self_bias, is_causal=is_causal,
                                                 cache=cache, layer=self.layer_index, position=position,
                                                 record=self_record)
        x = x + F.dropout(attended, self.dropout, self.training)
        if encoder_states is not None:
            attended = self.encoder_attn.cross_attention(self.encoder_attn_layer_norm(x),
                                                         encoder_states=encoder_states, bias=cross_bias, cache=cache,
                                                         layer=self.layer_index, record=cross_record)
            x = x + F.dropout(attended, self.dropout, self.training)
        hidden = F.dropout(self.activation(self.fc1(self.final_layer_norm(x))), self.activation_dropout,
                           self.training)
        return x + F.dropout(self.fc2(hidden), self.dropout, self.training)
