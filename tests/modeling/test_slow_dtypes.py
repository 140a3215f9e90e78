"""bf16 or fp16 on a CPU whose oneDNN has no products in them (an AVX2 CPU): PyTorch's own loops run them, several
times slower than fp32, so the ways into such a model say so (a RuntimeWarning), and nothing else changes."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers.cli import build_tiny_checkpoint
from helpers.reference import CONFIG_A

import bigbird_pegasus
from bigbird_pegasus import quantize_int8
from bigbird_pegasus.modeling import linear
from bigbird_pegasus.pipeline.loading import load_model

SLOW = "matrix products in oneDNN"


@pytest.fixture
def without_bfloat16_products(monkeypatch):
    monkeypatch.setattr(linear, "ONEDNN_DTYPES", (torch.float32,))


@pytest.fixture
def with_bfloat16_products(monkeypatch):
    monkeypatch.setattr(linear, "ONEDNN_DTYPES", (torch.float32, torch.bfloat16))


def model():
    torch.manual_seed(0)
    config = bigbird_pegasus.BigBirdPegasusConfig(**CONFIG_A)
    return bigbird_pegasus.BigBirdPegasusForConditionalGeneration(config).eval()


def test_the_reason_names_the_dtype_only_where_it_is_slow(without_bfloat16_products):
    assert "bfloat16" in linear.slow_products_reason(torch.bfloat16)
    assert "float16" in linear.slow_products_reason(torch.float16)
    assert linear.slow_products_reason(torch.float32) is None and linear.slow_products_reason(None) is None


def test_a_bfloat16_encoder_warns_where_its_products_are_slow(without_bfloat16_products):
    with pytest.warns(RuntimeWarning, match=f"encoder_dtype bfloat16: .*{SLOW}"):
        converted = quantize_int8(model(), encoder_dtype=torch.bfloat16)
    assert {p.dtype for p in converted.model.encoder.parameters()} == {torch.bfloat16}   # converted all the same


def test_a_bfloat16_encoder_does_not_warn_where_its_products_are_fast(with_bfloat16_products):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=f".*{SLOW}")
        quantize_int8(model(), encoder_dtype=torch.bfloat16)


def test_loading_in_bfloat16_warns_where_its_products_are_slow(tmp_path, without_bfloat16_products):
    folder = build_tiny_checkpoint(tmp_path / "tiny")
    with pytest.warns(RuntimeWarning, match=f"dtype bfloat16: .*{SLOW}.*use float32 here"):
        loaded = load_model(folder, dtype="bf16", device="cpu")
    assert loaded.model.shared.weight.dtype == torch.bfloat16
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=f".*{SLOW}")
        load_model(folder, dtype="float32", device="cpu")
