"""Int8Linear (int8 weights, each input row quantized with its own scale) and where quantize_int8 puts it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers.cpu import HAS_AVX512_VNNI, needs_int8_kernel, needs_onednn_int8
from torch import nn

from bigbird_pegasus import (
    BigBirdPegasusConfig,
    BigBirdPegasusForConditionalGeneration,
    BigBirdPegasusForSequenceClassification,
    kernels,
    quantize_int8,
)
from bigbird_pegasus.kernels import library
from bigbird_pegasus.modeling import int8_linear, int8_matmul, quantization
from bigbird_pegasus.modeling.int8_linear import Int8Linear
from bigbird_pegasus.modeling.int8_matmul import exact_int8_products
from bigbird_pegasus.modeling.linear import Linear


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


@needs_onednn_int8
def test_many_rows_are_quantized_a_row_at_a_time_as_the_kernel_quantizes_them():
    layer = float_layer()
    int8 = Int8Linear.from_float(layer)
    many = torch.randn(2, kernels.INT8_MAX_ROWS, 128)                    # more rows than the kernel takes
    many[0, 0] *= 50                                                     # one row far larger than the others
    with torch.no_grad():
        out = int8(many)
        expected = library.quantized_product(many.reshape(-1, 128), int8.weight, scales=int8.weight_scale,
                                             bias=int8.bias).reshape(out.shape)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        others = many.clone()
        others[1] *= 10                                                  # the other rows change: row 0 does not
        assert torch.equal(int8(others)[0], out[0])
        assert (out - F.linear(many, layer.weight, layer.bias)).abs().max() < 0.02 * out.abs().max()


@needs_onednn_int8
def test_many_rows_give_the_same_results_whatever_the_chunks(monkeypatch):
    int8 = Int8Linear.from_float(float_layer())
    many = torch.randn(100, 128)
    with torch.no_grad():
        whole = int8(many)
        monkeypatch.setattr(int8_matmul, "CHUNK_BYTES", 4 * 96 * 7)      # 7 rows a chunk, the last one 2
        monkeypatch.setattr(int8_matmul, "MIN_CHUNK_ROWS", 1)
        assert torch.equal(int8(many), whole)


@needs_int8_kernel
@needs_onednn_int8  # the many-row path of the kernel's numbers (elsewhere fbgemm's, quantized per tensor)
def test_few_rows_take_the_kernel_with_the_many_rows_numbers(monkeypatch):
    calls = []
    kernel = kernels.int8_linear
    monkeypatch.setattr(kernels, "int8_linear", lambda *a, **k: calls.append(a) or kernel(*a, **k))
    int8 = Int8Linear.from_float(float_layer())
    many = torch.randn(kernels.INT8_MAX_ROWS + 5, 128)
    with torch.no_grad():
        few = int8(many[:5])
        assert len(calls) == 1
        assert torch.equal(few, int8(many)[:5])                          # the same arithmetic, to the bit
    assert len(calls) == 1


@needs_onednn_int8
def test_few_rows_take_pytorchs_int8_product_without_the_kernel(monkeypatch):
    library.loaded()
    monkeypatch.setitem(library._reasons, "int8", "this CPU has no AVX-512 VNNI (pretended)")
    int8 = Int8Linear.from_float(float_layer())
    few = torch.randn(5, 128)
    with torch.no_grad():
        expected = library.quantized_product(few, int8.weight, scales=int8.weight_scale, bias=int8.bias)
        torch.testing.assert_close(int8(few), expected, rtol=1e-5, atol=1e-5)


@needs_onednn_int8
def test_a_documents_int8_summary_does_not_depend_on_its_batch_past_the_kernels_rows():
    torch.manual_seed(0)
    model = quantize_int8(BigBirdPegasusForConditionalGeneration(generation_config()).eval())
    ids = torch.randint(2, 96, (9, 40))                                 # 9 documents x 5 beams: 45 rows a step
    options = dict(num_beams=5, max_new_tokens=8, min_new_tokens=8, return_dict_in_generate=True,
                   output_scores=True)
    with torch.inference_mode():
        together = model.generate(ids, **options)
        alone = [model.generate(ids[i:i + 1], **options) for i in range(9)]
    assert torch.equal(together.sequences, torch.cat([one.sequences for one in alone]))
    assert torch.equal(together.sequences_scores, torch.cat([one.sequences_scores for one in alone]))  # to the bit


def test_pytorchs_int8_product_is_found_inexact_where_it_saturates():
    """Limited to AVX2 (no VNNI), oneDNN's int8 product sums byte pairs in int16 and saturates: the check says so,
    in a process of its own (oneDNN reads the limit once). A CPU without AVX-512 VNNI runs PyTorch's plain loop,
    exact and not taken."""
    script = ("import torch\n"
              "from bigbird_pegasus.modeling.int8_matmul import exact_int8_products\n"
              "x = torch.full((32, 128), 127, dtype=torch.int8)\n"
              "saturated = not torch.equal(torch._int_mm(x, x.t()).long(), x.long() @ x.long().t())\n"
              "print(saturated, exact_int8_products())\n")
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == (["True", "False"] if HAS_AVX512_VNNI else ["False", "False"])
    assert exact_int8_products() == HAS_AVX512_VNNI                      # this process: the CPU's own ISA


def test_pytorchs_int8_product_is_not_taken_where_it_is_a_plain_loop(monkeypatch):
    monkeypatch.setattr(int8_matmul.platform, "machine", lambda: "aarch64")
    int8_matmul.exact_int8_products.cache_clear()
    try:
        assert not int8_matmul.exact_int8_products()
    finally:
        int8_matmul.exact_int8_products.cache_clear()


def test_pytorchs_int8_product_is_not_taken_without_avx512_vnni(monkeypatch):
    """Where PyTorch reports no AVX-512 VNNI, its int8 product is a plain loop (~1 GOP/s on an AMD EPYC Zen 3)."""
    monkeypatch.setattr(int8_matmul.torch.cpu, "_is_vnni_supported", lambda: False)
    int8_matmul.exact_int8_products.cache_clear()
    try:
        assert not int8_matmul.exact_int8_products()
    finally:
        int8_matmul.exact_int8_products.cache_clear()


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")  # the oracle: PyTorch's int8 Linear
def test_many_rows_take_pytorchs_int8_dynamic_product_where_the_int8_product_is_not_exact(monkeypatch):
    monkeypatch.setattr(int8_linear, "exact_int8_products", lambda: False)
    layer = float_layer()
    int8 = Int8Linear.from_float(layer)
    many = torch.randn(2, kernels.INT8_MAX_ROWS, 128)
    with torch.no_grad():
        pytorchs = torch.ao.nn.quantized.dynamic.Linear(128, 96)
        zero_points = torch.zeros(96, dtype=torch.long)
        pytorchs.set_weight_bias(torch._make_per_channel_quantized_tensor(
            int8.weight, int8.weight_scale.double(), zero_points, 0), layer.bias.detach())
        assert torch.equal(int8(many), pytorchs(many))
        assert torch.equal(int8(many), pytorchs(many))  # the packed copy, made once, reused


def generation_config() -> BigBirdPegasusConfig:
    return BigBirdPegasusConfig(vocab_size=96, d_model=64, encoder_layers=1, decoder_layers=2,
                                encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128,
                                decoder_ffn_dim=128, max_position_embeddings=128, attention_type="original_full")


@needs_onednn_int8
def test_quantize_int8_puts_every_linear_layer_in_int8linear_where_the_int8_product_is_exact():
    torch.manual_seed(0)
    model = BigBirdPegasusForConditionalGeneration(generation_config()).eval()
    quantize_int8(model)
    assert isinstance(model.lm_head, Int8Linear)
    assert not any(type(m) in (nn.Linear, Linear) or isinstance(m, torch.ao.nn.quantized.dynamic.Linear)
                   for m in model.modules())
    assert isinstance(model.model.encoder.layers[0].fc1, Int8Linear)
    assert isinstance(model.model.decoder.layers[0].encoder_attn.k_proj, Int8Linear)
    ids = torch.randint(2, 96, (1, 40))
    with torch.inference_mode():
        summary = model.generate(ids, num_beams=3, max_new_tokens=6, min_new_tokens=6)
    assert summary.shape == (1, 7)
    classifier = quantize_int8(BigBirdPegasusForSequenceClassification(generation_config()).eval())
    assert isinstance(classifier.classification_head.dense, Int8Linear)


def test_quantize_int8_leaves_the_bf16_encoder_and_its_projections_in_float():
    torch.manual_seed(0)
    model = quantize_int8(BigBirdPegasusForConditionalGeneration(generation_config()).eval(),
                          encoder_dtype=torch.bfloat16)
    assert model.model.encoder.layers[0].fc1.weight.dtype == torch.bfloat16
    assert model.model.decoder.layers[0].encoder_attn.k_proj.weight.dtype == torch.bfloat16
    assert type(model.model.decoder.layers[0].fc1) is not Linear


@needs_int8_kernel
def test_quantize_int8_puts_the_decoding_steps_layers_in_the_kernel_where_the_int8_product_is_not_exact(
        monkeypatch):
    monkeypatch.setattr(quantization, "exact_int8_products", lambda: False)
    torch.manual_seed(0)
    model = BigBirdPegasusForConditionalGeneration(generation_config()).eval()
    quantize_int8(model)
    assert isinstance(model.lm_head, Int8Linear)
    for layer in model.model.decoder.layers:
        for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                     "encoder_attn.q_proj", "encoder_attn.out_proj", "fc1", "fc2"):
            assert isinstance(layer.get_submodule(name), Int8Linear), name
            assert layer.get_submodule(name).weight is not None, name
        for name in ("encoder_attn.k_proj", "encoder_attn.v_proj"):   # once per document: many rows
            assert packed_only(layer.get_submodule(name)), name
    assert all(packed_only(m) for m in model.model.encoder.modules() if isinstance(m, (nn.Linear, Int8Linear)))
    assert model.lm_head.weight is not None
    ids = torch.randint(2, 96, (1, 40))
    with torch.inference_mode():
        assert model.generate(ids, num_beams=3, max_new_tokens=6, min_new_tokens=6).shape == (1, 7)


def packed_only(module: nn.Module) -> bool:
    return isinstance(module, Int8Linear) and module.weight is None


def test_quantize_int8_packs_every_layer_without_an_exact_int8_product_nor_the_kernel(monkeypatch, tmp_path):
    monkeypatch.setattr(quantization, "exact_int8_products", lambda: False)
    torch.manual_seed(0)
    classifier = quantize_int8(BigBirdPegasusForSequenceClassification(generation_config()).eval())
    linears = [m for m in classifier.modules() if isinstance(m, (nn.Linear, Int8Linear))]
    assert linears and all(packed_only(m) for m in linears)   # no LM head: the decoder runs whole sequences
    library.loaded()
    monkeypatch.setitem(library._reasons, "int8", "this CPU has no AVX-512 VNNI (pretended)")
    generator = quantize_int8(BigBirdPegasusForConditionalGeneration(generation_config()).eval())
    assert all(packed_only(m) for m in generator.modules() if isinstance(m, (nn.Linear, Int8Linear)))
    assert packed_only(generator.lm_head)
    ids = torch.randint(2, 96, (1, 40))
    with torch.inference_mode():
        assert generator.generate(ids, num_beams=3, max_new_tokens=6, min_new_tokens=6).shape == (1, 7)
    with pytest.raises(ValueError, match="cannot save weights that are not floating-point tensors"):
        generator.save_pretrained(tmp_path)    # refused, though the packed layers hold no int8 weight tensor


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")  # the oracle: PyTorch's int8 Linear
def test_a_layer_keeping_only_its_packed_weights_is_pytorchs_int8_layer_for_every_row_count(monkeypatch):
    monkeypatch.setattr(int8_linear, "exact_int8_products", lambda: False)
    layer = float_layer()
    int8 = Int8Linear.from_float(layer)
    pytorchs = torch.ao.nn.quantized.dynamic.Linear(128, 96)
    zero_points = torch.zeros(96, dtype=torch.long)
    pytorchs.set_weight_bias(torch._make_per_channel_quantized_tensor(
        int8.weight, int8.weight_scale.double(), zero_points, 0), layer.bias.detach())
    assert int8.keep_only_packed() is int8 and int8.weight is None and "packed only" in repr(int8)
    with torch.no_grad():
        for rows in (1, 5, kernels.INT8_MAX_ROWS + 3):
            x = torch.randn(rows, 128)
            assert torch.equal(int8(x), pytorchs(x)), rows
        with pytest.raises(ValueError, match="takes fp32 CPU inputs, not bfloat16 on cpu"):
            int8(torch.randn(2, 128, dtype=torch.bfloat16))
