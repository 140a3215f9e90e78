"""int8 dynamic quantization of the linear layers: an option for faster CPU inference that changes numbers.

Weights are stored as int8 per output channel and activations quantized on the fly (PyTorch's fbgemm/x86
kernels, which need only AVX2). Embeddings, LayerNorms and attention stay in fp32.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .linear import Linear


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear of `model` (in place, on the CPU) by its int8 dynamic counterpart; returns it.

    For inference only (no gradients). The tied LM head becomes an int8 copy; the embedding stays fp32.
    """
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("int8 dynamic quantization runs on the CPU: move the model there first")
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise ValueError("int8 dynamic quantization starts from an fp32 model: load it with dtype=torch.float32")
    for module in model.modules():
        if isinstance(module, Linear):
            module.__class__ = nn.Linear  # the quantizer converts exact nn.Linear; ours adds no state to it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao on every use
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
