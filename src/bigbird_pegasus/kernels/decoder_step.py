"""A decoding step through all the decoder's layers in one call of `decoder_step.c`: the layers' tensors laid out
once in its C structures (`DecoderStep`), the step's own (cache buffers, position, masks) set at each call."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .key_layout import key_row_stride
from .library import ATTENTION_HEAD_DIM, LANES, MAX_ROWS, call, loaded, unavailable_reason

# The activations decoder_step.c computes, by the config's names (gelu_new and gelu_fast: the tanh approximation).
STEP_ACTIVATIONS = {"gelu": 0, "gelu_python": 0, "gelu_new": 1, "gelu_fast": 1, "gelu_pytorch_tanh": 1, "relu": 2}

_pointer, _size = ctypes.c_void_p, ctypes.c_int64


class _Linear(ctypes.Structure):
    _fields_ = [("weight", _pointer), ("scale", _pointer), ("sums", _pointer), ("bias", _pointer), ("n", _size),
                ("k", _size)]


class _Norm(ctypes.Structure):
    _fields_ = [("weight", _pointer), ("bias", _pointer)]


class _Layer(ctypes.Structure):
    _fields_ = [("self_norm", _Norm), ("q", _Linear), ("k", _Linear), ("v", _Linear), ("out", _Linear),
                ("keys", _pointer), ("values", _pointer), ("cross_norm", _Norm), ("cross_q", _Linear),
                ("cross_out", _Linear), ("cross_keys", _pointer), ("cross_values", _pointer), ("final_norm", _Norm),
                ("fc1", _Linear), ("fc2", _Linear)]


class _Shape(ctypes.Structure):
    _fields_ = [("rows", _size), ("docs", _size), ("heads", _size), ("ffn", _size), ("capacity", _size),
                ("position", _size), ("source_length", _size), ("key_stride", _size), ("origins", _pointer),
                ("self_bias", _pointer), ("self_bias_rows", _size), ("cross_bias", _pointer),
                ("cross_bfloat16", ctypes.c_int), ("cross_attention", ctypes.c_int), ("activation", ctypes.c_int),
                ("norm_eps", ctypes.c_float), ("threads", ctypes.c_int)]


@dataclass(frozen=True)
class LinearWeights:
    """y = x @ weight.T + bias: weight (out, in) fp32, or int8 with `scale` (out,) fp32 and `sums` (out,) int32
    (its rows' sums), as `int8_linear` takes them."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    scale: torch.Tensor | None = None
    sums: torch.Tensor | None = None


@dataclass(frozen=True)
class LayerWeights:
    """A pre-LayerNorm decoder layer: each norm as (weight, bias), each linear as LinearWeights."""

    self_norm: tuple[torch.Tensor, torch.Tensor]
    q: LinearWeights
    k: LinearWeights
    v: LinearWeights
    out: LinearWeights
    cross_norm: tuple[torch.Tensor, torch.Tensor]
    cross_q: LinearWeights
    cross_out: LinearWeights
    final_norm: tuple[torch.Tensor, torch.Tensor]
    fc1: LinearWeights
    fc2: LinearWeights


def unavailable_step_reason(layers: list[LayerWeights], *, activation: str) -> str | None:
    """Why `DecoderStep` cannot take these layers here (None: it can): the kernels built and self-checked (the
    cross-attention's with AVX2 or AVX-512, the int8 one for int8 layers), d_model a multiple of 64, fp32 norms
    and linear layers laid out as the product kernels read them, the activation one of STEP_ACTIVATIONS."""
    if loaded() is None or (reason := unavailable_reason(attention=True)) is not None:
        return unavailable_reason() or reason
    if (reason := _self_check()) is not None:
        return reason
    if activation not in STEP_ACTIVATIONS:
        return f"activation {activation!r} is not one of {sorted(STEP_ACTIVATIONS)}"
    for layer in layers:
        d_model = layer.self_norm[0].shape[0]
        if d_model % ATTENTION_HEAD_DIM or layer.fc1.weight.shape[0] % LANES:
            return f"d_model {d_model} or ffn {layer.fc1.weight.shape[0]} does not fit the kernels"
        norms = (*layer.self_norm, *layer.cross_norm, *layer.final_norm)
        if not all(norm.dtype == torch.float32 and norm.is_contiguous() and norm.device.type == "cpu"
                   for norm in norms):
            return "a layer norm is not fp32, contiguous, on the CPU"
        for linear in (layer.q, layer.k, layer.v, layer.out, layer.cross_q, layer.cross_out, layer.fc1, layer.fc2):
            if (reason := _unfit(linear)) is not None:
                return reason
    return None


class DecoderStep:
    """The decoder's layers in `decoder_step.c`'s structures (pointers to their tensors, which it keeps alive), and
    the call of one step; build it where `unavailable_step_reason` is None."""

    def __init__(self, layers: list[LayerWeights], *, heads: int, activation: str, norm_eps: float) -> None:
        d_model = layers[0].self_norm[0].shape[0]
        if d_model != heads * ATTENTION_HEAD_DIM:
            raise ValueError(f"d_model {d_model} is not {heads} heads of {ATTENTION_HEAD_DIM}: the step's head size")
        self._tensors = layers
        self._layers = (_Layer * len(layers))(*(_layer(layer) for layer in layers))
        self._shape = _Shape(heads=heads, ffn=layers[0].fc1.weight.shape[0],
                             activation=STEP_ACTIVATIONS[activation], norm_eps=norm_eps)

    def __call__(self, x: torch.Tensor, *, keys: list[torch.Tensor], values: list[torch.Tensor],
                 origins: torch.Tensor | None, position: int, self_bias: torch.Tensor | None,
                 cross_keys: list[torch.Tensor] | None, cross_values: list[torch.Tensor] | None,
                 cross_bias: torch.Tensor | None) -> None:
        """x (rows, d_model) fp32 contiguous, the first layer's input, becomes the last layer's output (in place).
        keys, values: per layer the self-attention cache as stored (rows, heads, capacity, 64) fp32, this step's
        written at `position`; origins (rows, capacity) int64: the stored row of each row's position (None: its
        own); self_bias (1 or rows, 1, 1, capacity) fp32; cross_keys (docs, heads, s, 64) position-minor (rows
        padded or not: `key_row_stride`) and cross_values (docs, heads, s, 64) contiguous, fp32 or bf16, per layer,
        or None without cross-attention; cross_bias (docs, 1, 1, s) fp32 or None."""
        shape = self._shape
        shape.rows, shape.capacity, shape.position = x.shape[0], keys[0].shape[2], position
        shape.origins = None if origins is None else origins.data_ptr()
        shape.self_bias = None if self_bias is None else self_bias.data_ptr()
        shape.self_bias_rows = 0 if self_bias is None else self_bias.shape[0]
        shape.cross_attention = int(cross_keys is not None)
        shape.cross_bias = None if cross_bias is None else cross_bias.data_ptr()
        for layer, stored_keys, stored_values in zip(self._layers, keys, values):
            layer.keys, layer.values = stored_keys.data_ptr(), stored_values.data_ptr()
        if cross_keys is not None:
            shape.docs, shape.source_length = cross_keys[0].shape[0], cross_keys[0].shape[2]
            shape.key_stride = key_row_stride(cross_keys[0])
            shape.cross_bfloat16 = int(cross_keys[0].dtype == torch.bfloat16)
            for layer, layer_keys, layer_values in zip(self._layers, cross_keys, cross_values):
                layer.cross_keys, layer.cross_values = layer_keys.data_ptr(), layer_values.data_ptr()
        else:
            shape.docs, shape.source_length, shape.key_stride = 1, 0, 0
        shape.threads = torch.get_num_threads()
        call("decoder_step", ctypes.addressof(self._layers), len(self._layers), ctypes.addressof(shape), x.data_ptr())


def serves_step(x: torch.Tensor, *, keys: torch.Tensor, self_bias: torch.Tensor | None,
                cross_keys: torch.Tensor | None, cross_values: torch.Tensor | None,
                cross_bias: torch.Tensor | None) -> bool:
    """Whether a step of x (rows, d_model) fits `DecoderStep` (its layers aside): fp32 contiguous on the CPU, 1 to
    MAX_ROWS rows, no gradients; the first layer's cache buffers, masks and cross-attention keys/values as its call
    takes them (the other layers' are made alike)."""
    rows = x.shape[0]
    return (x.dim() == 2 and 0 < rows <= MAX_ROWS and x.dtype == torch.float32 and x.is_contiguous()
            and x.device.type == "cpu" and not torch.is_grad_enabled()
            and keys.dtype == torch.float32 and keys.is_contiguous() and keys.shape[0] == rows
            and (self_bias is None or (self_bias.dtype == torch.float32 and self_bias.is_contiguous()
                                       and self_bias.shape[0] in (1, rows)))
            and (cross_keys is None or _fits_cross(rows, cross_keys, cross_values, cross_bias)))


def _fits_cross(rows: int, keys: torch.Tensor, values: torch.Tensor | None, bias: torch.Tensor | None) -> bool:
    docs, source_length = keys.shape[0], keys.shape[2]
    return (values is not None and keys.dtype == values.dtype and keys.dtype in (torch.float32, torch.bfloat16)
            and rows % docs == 0 and key_row_stride(keys) is not None and values.is_contiguous()
            and (bias is None or (bias.shape == (docs, 1, 1, source_length) and bias.dtype == torch.float32
                                  and bias.is_contiguous())))


def _unfit(linear: LinearWeights) -> str | None:
    """Why the product kernels do not take this linear layer, or None."""
    weight = linear.weight
    if weight.device.type != "cpu" or not weight.is_contiguous():
        return "a linear layer's weight is not contiguous on the CPU"
    if linear.bias is not None and not (linear.bias.dtype == torch.float32 and linear.bias.is_contiguous()):
        return "a linear layer's bias is not fp32 and contiguous"
    if weight.dtype == torch.int8:
        if (reason := unavailable_reason(int8=True)) is not None:
            return reason
        return None if weight.shape[1] % 64 == 0 and linear.scale is not None else "an int8 layer does not fit"
    if weight.dtype != torch.float32 or weight.shape[1] % LANES:
        return f"a linear layer's weight is {weight.dtype} of width {weight.shape[1]}"
    return None


def _layer(layer: LayerWeights) -> _Layer:
    def linear(weights: LinearWeights) -> _Linear:
        return _Linear(weights.weight.data_ptr(), _data(weights.scale), _data(weights.sums), _data(weights.bias),
                       weights.weight.shape[0], weights.weight.shape[1])

    def norm(weights: tuple[torch.Tensor, torch.Tensor]) -> _Norm:
        return _Norm(weights[0].data_ptr(), weights[1].data_ptr())

    return _Layer(self_norm=norm(layer.self_norm), q=linear(layer.q), k=linear(layer.k), v=linear(layer.v),
                  out=linear(layer.out), cross_norm=norm(layer.cross_norm), cross_q=linear(layer.cross_q),
                  cross_out=linear(layer.cross_out), final_norm=norm(layer.final_norm), fc1=linear(layer.fc1),
                  fc2=linear(layer.fc2))


def _data(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


# The self-check's verdict per loaded library (a reset loads anew, and checks again).
_checked: dict[int, str | None] = {}


def _self_check() -> str | None:
    """decoder_step against the same layer in PyTorch's operators, once per loaded library: one layer, 3 rows of
    one document reading their pasts through random origins, each activation; None when they agree."""
    library = loaded()
    if id(library) not in _checked:
        _checked[id(library)] = _check_step()
    return _checked[id(library)]


def _check_step() -> str | None:
    generator = torch.Generator().manual_seed(0)
    heads, ffn, rows, capacity, position, source_length = 2, 64, 3, 6, 3, 70
    d_model = heads * ATTENTION_HEAD_DIM

    def linear(out_features: int, in_features: int) -> LinearWeights:
        return LinearWeights(torch.randn(out_features, in_features, generator=generator) / in_features ** 0.5,
                             torch.randn(out_features, generator=generator))

    def norm() -> tuple[torch.Tensor, torch.Tensor]:
        return 1 + 0.1 * torch.randn(d_model, generator=generator), 0.1 * torch.randn(d_model, generator=generator)

    layer = LayerWeights(self_norm=norm(), q=linear(d_model, d_model), k=linear(d_model, d_model),
                         v=linear(d_model, d_model), out=linear(d_model, d_model), cross_norm=norm(),
                         cross_q=linear(d_model, d_model), cross_out=linear(d_model, d_model), final_norm=norm(),
                         fc1=linear(ffn, d_model), fc2=linear(d_model, ffn))
    keys, values = (torch.randn(rows, heads, capacity, ATTENTION_HEAD_DIM, generator=generator) for _ in range(2))
    origins = torch.randint(0, rows, (rows, capacity), generator=generator)
    origins[:, position] = torch.arange(rows)                                          # the step writes its own row
    cross_keys, cross_values = (torch.randn(1, heads, source_length, ATTENTION_HEAD_DIM, generator=generator)
                                for _ in range(2))
    stored = F.pad(cross_keys.transpose(-1, -2), (0, 6))                              # (1, h, d, s + 6)
    cross_keys = stored[..., :source_length].transpose(-1, -2)                        # position-minor, padded
    x = torch.randn(rows, d_model, generator=generator)
    for activation in ("gelu", "gelu_new", "relu"):
        expected = _step_in_torch(layer, x, keys=keys.clone(), values=values.clone(), origins=origins,
                                  position=position, cross_keys=cross_keys, cross_values=cross_values,
                                  activation=activation)
        out = x.clone()
        DecoderStep([layer], heads=heads, activation=activation, norm_eps=1e-5)(
            out, keys=[keys.clone()], values=[values.clone()], origins=origins, position=position, self_bias=None,
            cross_keys=[cross_keys], cross_values=[cross_values], cross_bias=None)
        if not torch.allclose(out, expected, atol=1e-4, rtol=1e-4):
            return f"the built decoder_step disagrees with torch with {activation} (a miscompiled kernel?)"
    return None


def _step_in_torch(layer: LayerWeights, x: torch.Tensor, *, keys: torch.Tensor, values: torch.Tensor,
                   origins: torch.Tensor, position: int, cross_keys: torch.Tensor, cross_values: torch.Tensor,
                   activation: str) -> torch.Tensor:
    """What decoder_step computes for one layer and one document, in PyTorch's operators: x (rows, d_model)."""
    rows, heads = x.shape[0], keys.shape[1]

    def linear(weights: LinearWeights, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, weights.weight, weights.bias)

    def norm(weights: tuple[torch.Tensor, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(h, (h.shape[-1],), weights[0], weights[1], 1e-5)

    h = norm(layer.self_norm, x)
    q, k, v = (linear(weights, h).view(rows, heads, 1, ATTENTION_HEAD_DIM) for weights in (layer.q, layer.k, layer.v))
    keys[:, :, position], values[:, :, position] = k[:, :, 0], v[:, :, 0]
    stored, positions = origins[:, :position + 1], torch.arange(position + 1)
    past_keys, past_values = (t[stored, :, positions].transpose(1, 2) for t in (keys, values))  # (rows, h, p, d)
    x = x + linear(layer.out, F.scaled_dot_product_attention(q, past_keys, past_values).reshape(rows, -1))
    q = linear(layer.cross_q, norm(layer.cross_norm, x)).view(rows, heads, ATTENTION_HEAD_DIM)
    q = q.transpose(0, 1)[None]                                                        # (1, heads, rows, d)
    attended = F.scaled_dot_product_attention(q, cross_keys, cross_values)[0].transpose(0, 1)  # (rows, heads, d)
    x = x + linear(layer.cross_out, attended.reshape(rows, -1))
    hidden = linear(layer.fc1, norm(layer.final_norm, x))
    activated = {"gelu": F.gelu, "gelu_new": lambda t: F.gelu(t, approximate="tanh"), "relu": F.relu}[activation]
    return x + linear(layer.fc2, activated(hidden))
