"""Reduced-traffic options for faster CPU inference that change numbers: int8 linear layers, and
cross-attention keys/values cached in bf16.

int8: weights are stored as int8 per output channel and activations quantized on the fly (PyTorch's
fbgemm/x86 kernels, which need only AVX2). Embeddings, LayerNorms and attention stay in float.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .layers import DecoderLayer
from .linear import Linear


def quantize_int8(model: nn.Module, *, cross_attention_dtype: torch.dtype | None = torch.bfloat16) -> nn.Module:
    """The fastest reduced-traffic path: replace every nn.Linear of `model` (in place, on the CPU) by its int8
    dynamic counterpart, and cache the decoder's cross-attention keys/values in `cross_attention_dtype`
    (None: in fp32, as the activations); returns the model.

    For inference only (no gradients). The tied LM head becomes an int8 copy; the embedding stays fp32.
    """
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("int8 dynamic quantization runs on the CPU: move the model there first")
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise ValueError("int8 dynamic quantization starts from an fp32 model: load it with dtype=torch.float32")
    if cross_attention_dtype is not None:
        reduce_cross_attention_cache(model, dtype=cross_attention_dtype)
    for module in model.modules():
        if isinstance(module, Linear):
            module.__class__ = nn.Linear  # the quantizer converts exact nn.Linear; ours adds no state to it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao on every use
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)


def reduce_cross_attention_cache(model: nn.Module, *, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Cache the decoder's cross-attention keys/values in `dtype` and attend over them in it (in place; returns
    the model): half the bytes each decoding step reads there, at the cost of their rounding. The queries are
    cast to `dtype` for the attention and its output back. Only the default `cross_attention_cache`
    ("keys_and_values") is affected."""
    if not dtype.is_floating_point:
        raise ValueError(f"cross-attention keys/values can be cached in a floating-point dtype, not {dtype}")
    for module in model.modules():
        if isinstance(module, DecoderLayer):
            module.encoder_attn.cache_dtype = dtype
    return model
