"""Int8Linear (the int8 layers of a decoding step) and where quantize_int8 puts them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers.cpu import needs_vnni
from torch import nn

from bigbird_pegasus import (
    BigBirdPegasusConfig,
    BigBirdPegasusForConditionalGeneration,
    BigBirdPegasusForSequenceClassification,
    kernels,
    quantize_int8,
)
from bigbird_pegasus.kernels import library
from bigbird_pegasus.modeling.int8_linear import Int8Linear


def float_layer(in_features: int = 128, out_features: int = 96) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(in_features, out_features)


def test_from_float_quantizes_each_output_row_within_half_a_step():
    layer = float_layer()
    int8 = Int8Linear.from_float(layer)
    assert int8.weight.dtype == torch.int8 and int8.weight.abs().max() == 127
    dequantized = int8.weight.float() * int8.weight_scale[:, None]
    assert ((dequantized - layer.weight).abs() <= int8.weight_scale[:, None] / 2 + 1e-7).all()
    assert torch.equal(int8.weight_sums, int8.weight.sum(1, dtype=torch.int32))
    assert torch.equal(int8.bias, layer.bias.detach())


def test_from_float_sums_rows_exactly_past_what_fp32_holds():
    layer = nn.Linear(132112, 1, bias=False)                    # 127 x 132112 > 2^24: past fp32's exact integers
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.weight[0, 0] = 126 / 127                           # an odd sum: fp32 would round it
    int8 = Int8Linear.from_float(layer)
    assert int(int8.weight_sums[0]) == 126 + 127 * 132111


@needs_vnni
@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")  # the oracle: PyTorch's int8 Linear
def test_few_rows_take_the_kernel_and_many_rows_pytorchs_int8_product(monkeypatch):
    calls = []
    kernel = kernels.int8_linear
    monkeypatch.setattr(kernels, "int8_linear", lambda *a, **k: calls.append(a) or kernel(*a, **k))
    layer = float_layer()
    int8 = Int8Linear.from_float(layer)
    with torch.no_grad():
        few = torch.randn(1, 5, 128)
        expected = F.linear(few, layer.weight, layer.bias)
        assert (int8(few) - expected).abs().max() < 0.02 * expected.abs().max()
        assert len(calls) == 1
        many = torch.randn(2, kernels.INT8_MAX_ROWS, 128)
        pytorchs = torch.ao.nn.quantized.dynamic.Linear(128, 96)
        zero_points = torch.zeros(96, dtype=torch.long)
        pytorchs.set_weight_bias(torch._make_per_channel_quantized_tensor(
            int8.weight, int8.weight_scale.double(), zero_points, 0), layer.bias.detach())
        assert torch.equal(int8(many), pytorchs(many))
        assert torch.equal(int8(many), pytorchs(many))  # the packed copy, made once, reused
    assert len(calls) == 1


def generation_config() -> BigBirdPegasusConfig:
    return BigBirdPegasusConfig(vocab_size=96, d_model=64, encoder_layers=1, decoder_layers=2,
                                encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128,
                                decoder_ffn_dim=128, max_position_embeddings=128, attention_type="original_full")


@needs_vnni
def test_quantize_int8_puts_the_decoding_steps_layers_in_the_kernel():
    torch.manual_seed(0)
    model = BigBirdPegasusForConditionalGeneration(generation_config()).eval()
    quantize_int8(model)
    assert isinstance(model.lm_head, Int8Linear)
    for layer in model.model.decoder.layers:
        for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                     "encoder_attn.q_proj", "encoder_attn.out_proj", "fc1", "fc2"):
            assert isinstance(layer.get_submodule(name), Int8Linear), name
        for name in ("encoder_attn.k_proj", "encoder_attn.v_proj"):   # once per document: PyTorch's int8
            assert isinstance(layer.get_submodule(name), torch.ao.nn.quantized.dynamic.Linear), name
    assert not any(isinstance(m, Int8Linear) for m in model.model.encoder.modules())
    ids = torch.randint(2, 96, (1, 40))
    with torch.inference_mode():
        summary = model.generate(ids, num_beams=3, max_new_tokens=6, min_new_tokens=6)
    assert summary.shape == (1, 7)


def test_quantize_int8_keeps_pytorchs_layers_without_the_int8_kernel_or_an_lm_head(monkeypatch):
    torch.manual_seed(0)
    classifier = quantize_int8(BigBirdPegasusForSequenceClassification(generation_config()).eval())
    assert not any(isinstance(m, Int8Linear) for m in classifier.modules())
    library.loaded()
    monkeypatch.setitem(library._reasons, "int8", "this CPU has no AVX-512 VNNI (pretended)")
    generator = quantize_int8(BigBirdPegasusForConditionalGeneration(generation_config()).eval())
    assert not any(isinstance(m, Int8Linear) for m in generator.modules())
    assert isinstance(generator.lm_head, torch.ao.nn.quantized.dynamic.Linear)
