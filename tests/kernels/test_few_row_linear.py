"""The few-row linear kernel (bigbird_pegasus.kernels): built here, equal to F.linear on every row count and
shape it takes, refused where it does not apply, used by the model's Linear, and its build: cached, rebuilt for a
changed source, and a clear reason (with PyTorch's operators serving) when there is no compiler."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from bigbird_pegasus import kernels
from bigbird_pegasus.kernels import build
from bigbird_pegasus.modeling.linear import Linear


# Every row count a pass keeps in registers, and batches of beams taken in groups of 5 (a partial last group too).
ROW_COUNTS = [*range(1, 9), 9, 12, 20, 33, kernels.MAX_ROWS]


@pytest.fixture
def fresh_kernels(monkeypatch, tmp_path):
    """The kernels loaded anew (from an empty cache folder) by the next call, and again after the test."""
    monkeypatch.setenv("BIGBIRD_PEGASUS_KERNEL_CACHE", str(tmp_path / "cache"))
    kernels.reset()
    yield tmp_path / "cache"
    kernels.reset()


def test_the_kernels_build_on_this_machine():
    assert kernels.unavailable_reason() is None


@pytest.mark.parametrize("rows", ROW_COUNTS)
@pytest.mark.parametrize("out_features, in_features", [(4099, 64), (7, 1024), (1, 16)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_is_f_linear(rows, out_features, in_features, with_bias):
    generator = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, in_features, generator=generator)
    weight = torch.randn(out_features, in_features, generator=generator)
    bias = torch.randn(out_features, generator=generator) if with_bias else None
    assert kernels.serves_linear(x, weight, bias)
    actual = kernels.linear(x, weight, bias=bias)
    expected = F.linear(x, weight, bias)
    assert actual.shape == expected.shape and actual.is_contiguous()
    assert torch.allclose(actual, expected, rtol=1e-5, atol=1e-4)


def test_linear_keeps_leading_dimensions_and_reads_strided_rows():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 5, generator=generator).t()[:, None, :]                     # (5, 1, 32), strided
    weight = torch.randn(48, 32, generator=generator)
    actual = kernels.linear(x, weight)
    assert actual.shape == (5, 1, 48)
    assert torch.allclose(actual, F.linear(x, weight), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["too many rows", "no rows", "inner size not a multiple of 16", "no inner size",
                                  "float64", "bfloat16", "strided weight", "gradients"])
def test_serves_linear_refuses_what_the_kernel_does_not_take(case):
    x, weight, bias = torch.randn(5, 32), torch.randn(8, 32), torch.randn(8)
    if case == "too many rows":
        x = torch.randn(kernels.MAX_ROWS + 1, 32)
    elif case == "no rows":
        x = torch.randn(0, 32)
    elif case == "inner size not a multiple of 16":
        x, weight = torch.randn(5, 24), torch.randn(8, 24)
    elif case == "no inner size":
        x, weight = torch.randn(5, 0), torch.randn(8, 0)
    elif case == "float64":
        x, weight, bias = x.double(), weight.double(), bias.double()
    elif case == "bfloat16":
        bias = bias.bfloat16()
    elif case == "strided weight":
        weight = torch.randn(32, 8).t()
    else:
        weight.requires_grad_()
    assert not kernels.serves_linear(x, weight, bias)


def test_the_kernel_refuses_an_empty_inner_size_instead_of_reading_past_the_weights():
    x, weight, out = torch.randn(3, 16), torch.randn(4, 16), torch.empty(3, 4)      # k = 0 given, 16 there
    with pytest.raises(ValueError, match="few_row_linear: refused"):
        kernels.call("few_row_linear", x.data_ptr(), weight.data_ptr(), None, out.data_ptr(), 3, 4, 0, 1)


def test_the_model_linear_takes_the_kernel_for_a_few_rows_only(monkeypatch):
    calls = []
    kernel_linear = kernels.linear
    monkeypatch.setattr(kernels, "linear", lambda *args, **kwargs: calls.append(args) or kernel_linear(*args, **kwargs))
    layer = Linear(64, 96)
    with torch.no_grad():
        few, many = torch.randn(1, 5, 64), torch.randn(1, kernels.MAX_ROWS + 1, 64)
        assert torch.allclose(layer(few), F.linear(few, layer.weight, layer.bias), atol=1e-5)
        assert len(calls) == 1
        layer(many)
    assert len(calls) == 1
    few.requires_grad_()
    layer(few).sum().backward()  # with gradients: PyTorch's operators
    assert len(calls) == 1 and few.grad is not None


def test_the_build_is_cached_and_rebuilt_for_another_source(fresh_kernels, tmp_path):
    assert kernels.unavailable_reason() is None
    (library,) = fresh_kernels.glob("kernels-*.so")
    built = library.stat().st_mtime_ns
    kernels.reset()
    assert kernels.unavailable_reason() is None
    assert list(fresh_kernels.glob("kernels-*.so")) == [library] and library.stat().st_mtime_ns == built
    changed = tmp_path / "few_row_linear.c"
    original = build.Path(build.__file__).with_name("few_row_linear.c")
    changed.write_text(original.read_text() + "\n/* changed */\n")
    assert build._build_key("cc", [changed]) != build._build_key("cc", [original])
    assert not [name for name in os.listdir(fresh_kernels) if name.startswith(".")]  # no private leftovers


@pytest.mark.parametrize("compiler, reason", [("false", "failed"), ("no-such-compiler-here", "no C compiler")])
def test_without_a_working_compiler_torch_serves_and_says_why(fresh_kernels, monkeypatch, compiler, reason):
    monkeypatch.setenv("CC", compiler)
    with pytest.warns(RuntimeWarning, match="CPU kernels are unavailable"):
        assert not kernels.serves_linear(torch.randn(5, 32), torch.randn(8, 32), None)
    assert reason in kernels.unavailable_reason()
    layer = Linear(32, 8)
    with torch.no_grad():
        x = torch.randn(5, 32)
        assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-5)
    assert not list(fresh_kernels.glob("*"))  # nothing half-built left behind


def test_turned_off_by_the_environment_without_a_warning(fresh_kernels, monkeypatch, recwarn):
    monkeypatch.setenv("BIGBIRD_PEGASUS_KERNELS", "0")
    assert "BIGBIRD_PEGASUS_KERNELS=0" in kernels.unavailable_reason()
    assert not recwarn.list
    assert not fresh_kernels.exists()
