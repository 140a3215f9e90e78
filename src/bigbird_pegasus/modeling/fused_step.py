"""A decoding step through all the decoder's layers in one call of the CPU kernels (`kernels.DecoderStep`), where
they take the decoder as it is: the same computation as the layers run one by one (layer norms, the attentions over
the cache, the feed-forward block; fp32 or int8 layers), without PyTorch's dispatch of ~150 operators a layer."""

from __future__ import annotations

import torch
from torch import nn

from .. import kernels
from .cache import CrossAttentionCache, DecoderCache
from .int8_linear import Int8Linear
from .layers import DecoderLayer
from .linear import Linear


def run_fused_step(layers: nn.ModuleList, x: torch.Tensor, *, position: torch.Tensor, self_bias: torch.Tensor | None,
                   encoder_states: torch.Tensor | None, cross_bias: torch.Tensor | None, cache: DecoderCache) -> bool:
    """Run `layers` over x (rows, 1, d_model), one new token per row at `position`, in place, writing the step's
    keys/values into `cache`; False (x untouched) where the kernels do not take this step, and the caller runs the
    layers one by one. The layers are laid out for the kernels at the first step of a cache (a generation)."""
    if torch.compiler.is_compiling() or layers.training or cache.capacity == 0:
        return False
    step = _step_for(layers, cache)
    if step is None:
        return False
    keys, values, origins = cache.stored_buffers()
    cross_keys = cross_values = None
    if encoder_states is not None:
        if (cache.cross_attention_cache is not CrossAttentionCache.KEYS_AND_VALUES
                or any(layer_keys is None for layer_keys in cache.cross_keys)):
            return False
        cross_keys, cross_values = cache.cross_keys, cache.cross_values
    rows = x.shape[0] * x.shape[1]
    flat = x.view(rows, x.shape[-1])                                                   # (rows, d_model)
    if x.shape[1] != 1 or not kernels.serves_step(flat, keys=keys[0], self_bias=self_bias,
                                                  cross_keys=None if cross_keys is None else cross_keys[0],
                                                  cross_values=None if cross_values is None else cross_values[0],
                                                  cross_bias=cross_bias):
        return False
    cache.reads_through_origins()
    step(flat, keys=keys, values=values, origins=origins, position=int(position), self_bias=self_bias,
         cross_keys=cross_keys, cross_values=cross_values, cross_bias=cross_bias)
    return True


def _step_for(layers: nn.ModuleList, cache: DecoderCache) -> kernels.DecoderStep | None:
    """The layers laid out for the kernels, made once per cache (None: they do not fit; `_fit` says why)."""
    if cache.fused_step is None or cache.fused_step[0] is not layers:
        cache.fused_step = (layers, _laid_out(layers))
    return cache.fused_step[1]


def _laid_out(layers: nn.ModuleList) -> kernels.DecoderStep | None:
    """The layers in the kernels' structures, or None where they do not fit (`_fit` says why)."""
    reason, weights = _fit(layers)
    if reason is not None:
        return None
    first = layers[0]
    return kernels.DecoderStep(weights, heads=first.self_attn.num_heads, activation=first.activation_name,
                               norm_eps=first.self_attn_layer_norm.eps)


def _fit(layers: nn.ModuleList) -> tuple[str | None, list[kernels.LayerWeights]]:
    """(why the kernels cannot run these layers or None, their weights): plain decoder layers of fp32 or int8
    linear layers and affine LayerNorms of one eps, head size 64, no hooks on what a step runs (the kernels would
    skip them; the cross-attention's key/value projections run at the prefill only), as the kernels take."""
    first = layers[0] if len(layers) else None
    if not isinstance(first, DecoderLayer) or any(type(layer) is not DecoderLayer for layer in layers):
        return "not the package's decoder layers", []
    stepped = [module for layer in layers
               for module in (layer, layer.self_attn, layer.encoder_attn, *_norms(layer), *_linears(layer))]
    if (nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks
            or any(module._forward_hooks or module._forward_pre_hooks for module in stepped)):
        return "forward hooks are registered on the modules a step runs", []
    norms = [norm for layer in layers for norm in _norms(layer)]
    if any(type(norm) is not nn.LayerNorm or norm.weight is None or norm.bias is None or norm.eps != norms[0].eps
           for norm in norms):
        return "the layer norms are not affine LayerNorms of one eps", []
    if any(type(linear) not in (Linear, nn.Linear, Int8Linear) or linear.weight is None
           for layer in layers for linear in _linears(layer)):
        return "a linear layer of another kind, or int8 weights packed for PyTorch's product only", []
    heads = first.self_attn.num_heads
    if first.self_attn_layer_norm.normalized_shape != (heads * kernels.ATTENTION_HEAD_DIM,):
        return f"head size {first.self_attn_layer_norm.normalized_shape[0] // heads}, not 64", []
    weights = [_weights(layer) for layer in layers]
    return kernels.unavailable_step_reason(weights, activation=first.activation_name), weights


def _norms(layer: DecoderLayer) -> tuple[nn.Module, ...]:
    return layer.self_attn_layer_norm, layer.encoder_attn_layer_norm, layer.final_layer_norm


def _linears(layer: DecoderLayer) -> tuple[nn.Module, ...]:
    self_attn, cross = layer.self_attn, layer.encoder_attn
    return (self_attn.q_proj, self_attn.k_proj, self_attn.v_proj, self_attn.out_proj, cross.q_proj, cross.out_proj,
            layer.fc1, layer.fc2)


def _weights(layer: DecoderLayer) -> kernels.LayerWeights:
    q, k, v, out, cross_q, cross_out, fc1, fc2 = map(_linear_weights, _linears(layer))
    self_norm, cross_norm, final_norm = ((norm.weight.detach(), norm.bias.detach()) for norm in _norms(layer))
    return kernels.LayerWeights(self_norm=self_norm, q=q, k=k, v=v, out=out, cross_norm=cross_norm, cross_q=cross_q,
                                cross_out=cross_out, final_norm=final_norm, fc1=fc1, fc2=fc2)


def _linear_weights(linear: nn.Module) -> kernels.LinearWeights:
    if isinstance(linear, Int8Linear):
        return kernels.LinearWeights(linear.weight, linear.bias, scale=linear.weight_scale, sums=linear.weight_sums)
    return kernels.LinearWeights(linear.weight.detach(), None if linear.bias is None else linear.bias.detach())
