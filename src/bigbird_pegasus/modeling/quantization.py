"""Reduced-traffic options for faster CPU inference that change numbers: int8 linear layers, cross-attention
keys/values cached in bf16, and the encoder in bf16.

int8: weights are stored as int8 per output channel and activations quantized on the fly, a row at a time
(Int8Linear): a decoding step's few rows in the package's int8 kernel (AVX-512 VNNI or AVX2), more rows in
PyTorch's int8 matrix product where it is oneDNN's and exact (CPUs with AVX-512 VNNI). On other CPUs, more rows go
to PyTorch's int8 dynamic product (fbgemm, AVX2), and the layers that only run many rows (the encoder's, the
cross-attention key/value projections) hold only their weights packed for it. Embeddings, LayerNorms and attention
stay in float.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from .. import kernels
from .int8_linear import Int8Linear
from .int8_matmul import exact_int8_products
from .layers import DecoderLayer, EncoderLayer
from .linear import Linear, slow_products_reason
from .model import BigBirdPegasusEncoder
from .replaced_weights import releasing_replaced_weights


def quantize_int8(model: nn.Module, *, cross_attention_dtype: torch.dtype | None = torch.bfloat16,
                  encoder_dtype: torch.dtype | None = None) -> nn.Module:
    """The fastest reduced-traffic path: replace every nn.Linear of `model` (in place, on the CPU) by an int8
    counterpart, and cache the decoder's cross-attention keys/values in `cross_attention_dtype` (None: in fp32,
    as the activations); returns the model. They become Int8Linear (each input row quantized with its own scale);
    where PyTorch's int8 product is not exact (CPUs without AVX-512 VNNI: `int8_matmul.exact_int8_products`) their
    many rows go to PyTorch's int8 dynamic product (fbgemm), and the layers that run only many rows (all but those
    a decoding step runs where the package's int8 kernel serves) hold only the weights packed for it. A weight
    holding NaN or infinity raises a ValueError.

    encoder_dtype: run the encoder in this dtype instead (its linear layers stay float; its outputs come back in
    fp32), and the decoder's cross-attention key/value projections too (encoder work: once per document, over
    all its positions; their outputs are cached in `cross_attention_dtype`). torch.bfloat16 pays on CPUs with AMX
    or AVX512-BF16 (the encoder ran about 2x faster than int8 on a Sapphire Rapids); elsewhere bf16 is several
    times slower (a RuntimeWarning says so).

    For inference only (no gradients). The tied LM head becomes an int8 copy; the embedding stays fp32 (the
    encoder gets its own copy in `encoder_dtype`). The memory-mapped pages of the fp32 weights it replaces are
    dropped from the process (`releasing_replaced_weights`).
    """
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("int8 dynamic quantization runs on the CPU: move the model there first")
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise ValueError("int8 dynamic quantization starts from an fp32 model: load it with dtype=torch.float32")
    encoder = None if encoder_dtype is None else _encoder_of(model, dtype=encoder_dtype)  # checked before any change
    if (reason := slow_products_reason(encoder_dtype)) is not None:
        warnings.warn(f"encoder_dtype {str(encoder_dtype).removeprefix('torch.')}: {reason}", RuntimeWarning,
                      stacklevel=2)
    if cross_attention_dtype is not None:
        reduce_cross_attention_cache(model, dtype=cross_attention_dtype)
    kept_float: set[nn.Module] = set()
    if encoder is not None:
        for layer in encoder.layers:  # a layer at a time first, so that each one's fp32 pages leave as it is cast
            with releasing_replaced_weights(model, part=layer):
                layer.to(encoder_dtype)
        with releasing_replaced_weights(model):
            kept_float = set(_run_encoder_in(encoder, dtype=encoder_dtype).modules())
            kept_float |= _project_cross_attention_in(model, dtype=encoder_dtype)
    _into_int8_linear(model, keep=kept_float, packed_only=set() if exact_int8_products() else _many_row_linears(model))
    return model


def _into_int8_linear(model: nn.Module, *, keep: set[nn.Module], packed_only: set[nn.Module]) -> None:
    """Replace every linear layer of `model` but those in `keep` by Int8Linear (in place), those in `packed_only`
    holding only their weights packed for PyTorch's int8 product (`keep_only_packed`); the LM head first, then a
    layer at a time, so that each one's fp32 pages leave as it is converted."""
    if isinstance(getattr(model, "lm_head", None), nn.Linear):
        _lm_head_into_int8_linear(model, packed_only=model.lm_head in packed_only)
    layers = [module for module in model.modules() if isinstance(module, (EncoderLayer, DecoderLayer))
              and any(isinstance(child, nn.Linear) and child not in keep for child in module.modules())]
    for part in (*layers, model):
        with releasing_replaced_weights(model, part=part):
            _replace_linears(part, keep=keep, packed_only=packed_only)


def _many_row_linears(model: nn.Module) -> set[nn.Module]:
    """The linear layers of `model` that run many rows, for a CPU where PyTorch's int8 product is not exact: all but
    those a decoding step runs (the decoder's, but its cross-attention key/value projections, once per document
    over all its positions; and the LM head), which the package's int8 kernel takes where it serves (AVX-512 VNNI
    or AVX2, the kernels built) in models that generate (they have an LM head; elsewhere the decoder runs on whole
    sequences)."""
    linears = {module for module in model.modules() if isinstance(module, nn.Linear)}
    if kernels.unavailable_reason(int8=True) is not None or not isinstance(getattr(model, "lm_head", None), Linear):
        return linears
    layers = [module for module in model.modules() if isinstance(module, DecoderLayer)]
    once_per_document = {projection for layer in layers
                         for projection in (layer.encoder_attn.k_proj, layer.encoder_attn.v_proj)}
    stepped = {module for layer in layers for module in layer.modules() if isinstance(module, nn.Linear)}
    return linears - (stepped - once_per_document) - {model.lm_head}


def _lm_head_into_int8_linear(model: nn.Module, *, packed_only: bool) -> None:
    """The (tied) LM head becomes an Int8Linear copy; its fp32 pages leave unless the embedding still holds them."""
    with releasing_replaced_weights(model, part=model.lm_head):
        model.lm_head = _int8_linear(model.lm_head, packed_only=packed_only)


def _replace_linears(part: nn.Module, *, keep: set[nn.Module], packed_only: set[nn.Module]) -> None:
    """Replace the linear layers inside `part` but those in `keep` by Int8Linear (in place), those in `packed_only`
    with only their packed weights."""
    for owner in list(part.modules()):
        for name, child in list(owner.named_children()):
            if isinstance(child, nn.Linear) and child not in keep:
                setattr(owner, name, _int8_linear(child, packed_only=child in packed_only))


def _int8_linear(linear: nn.Linear, *, packed_only: bool) -> Int8Linear:
    converted = Int8Linear.from_float(linear)
    return converted.keep_only_packed() if packed_only else converted


def reduce_cross_attention_cache(model: nn.Module, *, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Cache the decoder's cross-attention keys/values in `dtype` and attend over them in it (in place; returns
    the model): half the bytes each decoding step reads there, at the cost of their rounding. Where the CPU
    attention kernel serves (a decoding step's few query rows, head size 64), the attention runs in fp32 over them;
    elsewhere the queries are cast to `dtype` for the attention and its output back. Only the default
    `cross_attention_cache` ("keys_and_values") is affected."""
    if not dtype.is_floating_point:
        raise ValueError(f"cross-attention keys/values can be cached in a floating-point dtype, not {dtype}")
    for module in model.modules():
        if isinstance(module, DecoderLayer):
            module.encoder_attn.cache_dtype = dtype
    return model


def _encoder_of(model: nn.Module, *, dtype: torch.dtype) -> BigBirdPegasusEncoder:
    """The encoder of `model`, to run in `dtype`; a ValueError if it has none or `dtype` is no float."""
    if not dtype.is_floating_point:
        raise ValueError(f"encoder_dtype: the encoder runs in a floating-point dtype, not {dtype}")
    encoders = [module for module in model.modules() if isinstance(module, BigBirdPegasusEncoder)]
    if not encoders:
        raise ValueError(f"encoder_dtype: {type(model).__name__} has no encoder")
    return encoders[0]


def _run_encoder_in(encoder: BigBirdPegasusEncoder, *, dtype: torch.dtype) -> BigBirdPegasusEncoder:
    """Cast `encoder` to `dtype` (in place), on a copy of its token table (the decoder may share it); its
    inputs_embeds are cast to `dtype` and its outputs back to fp32 (forward hooks), so that the rest of the model
    is unchanged. Returns the encoder."""
    table = encoder.embed_tokens.weight  # the decoder keeps the shared fp32 table; the encoder's copy is cast at once
    in_dtype = nn.Parameter(table.detach().to(dtype), requires_grad=table.requires_grad)
    encoder.embed_tokens = copy.deepcopy(encoder.embed_tokens, memo={id(table): in_dtype})
    encoder.to(dtype)
    encoder.register_forward_pre_hook(_inputs_in(dtype), with_kwargs=True)
    encoder.register_forward_hook(_outputs_in(torch.float32))
    return encoder


def _project_cross_attention_in(model: nn.Module, *, dtype: torch.dtype) -> set[nn.Module]:
    """Cast the decoder's cross-attention key/value projections to `dtype` (in place), their input cast to it by a
    forward pre-hook; their outputs stay in `dtype` (DecoderAttention casts them to its cache's dtype). Returns
    them."""
    projections = {projection for module in model.modules() if isinstance(module, DecoderLayer)
                   for projection in (module.encoder_attn.k_proj, module.encoder_attn.v_proj)}
    for projection in projections:
        projection.to(dtype)
        projection.register_forward_pre_hook(_first_input_in(dtype))
    return projections


def _first_input_in(dtype: torch.dtype):
    """A forward pre-hook casting the first positional input to `dtype`."""
    def hook(module: nn.Module, args: tuple) -> tuple:
        return (args[0].to(dtype), *args[1:])
    return hook


def _inputs_in(dtype: torch.dtype):
    """A forward pre-hook casting a floating `inputs_embeds` keyword to `dtype`."""
    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        embeds = kwargs.get("inputs_embeds")
        if embeds is not None and embeds.is_floating_point():
            kwargs["inputs_embeds"] = embeds.to(dtype)
        return args, kwargs
    return hook


def _outputs_in(dtype: torch.dtype):
    """A forward hook casting the floating tensors of the output (a record or a tuple, and tuples in it) to
    `dtype`."""
    def cast(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.to(dtype)
        if isinstance(value, tuple):
            return tuple(cast(item) for item in value)
        return value

    def hook(module: nn.Module, args: tuple, output):
        if isinstance(output, tuple):                       # return_dict=False
            return cast(output)
        for name, value in list(output.items()):
            output[name] = cast(value)
        return output
    return hook
