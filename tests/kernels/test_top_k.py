"""The top-k kernel (beam search's best continuations) against torch.topk and a stable sort, what it refuses, and
that beam search takes it."""

from __future__ import annotations

import pytest
import torch

from bigbird_pegasus import kernels
from bigbird_pegasus.generation import beam_search


def stable_top_k(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The oracle: a stable descending sort keeps equal values in index order."""
    values, indices = torch.sort(x, dim=-1, descending=True, stable=True)
    return values[:, :k], indices[:, :k]


@pytest.mark.parametrize("rows, n, k", [(rows, n, k) for rows, n in [(1, 1), (1, 10), (2, 37), (3, 1000), (1, 480515)]
                                        for k in [1, 2, 10, 16] if k <= n])
def test_top_k_is_torch_topk_on_distinct_values(threads, rows, n, k):
    x = torch.randperm(rows * n, generator=torch.Generator().manual_seed(n + k)).float().view(rows, n) - 1e5
    assert kernels.serves_top_k(x, k)
    values, indices = kernels.top_k(x, k)
    expected = torch.topk(x, k)
    assert torch.equal(values, expected.values) and torch.equal(indices, expected.indices)


@pytest.mark.parametrize("n", [50, 100_000])
def test_equal_values_come_in_index_order(threads, n):
    x = torch.randint(0, 7, (2, n), generator=torch.Generator().manual_seed(n)).float()
    x[:, ::5] = float("-inf")
    values, indices = kernels.top_k(x, 12)
    expected_values, expected_indices = stable_top_k(x, 12)
    assert torch.equal(values, expected_values) and torch.equal(indices, expected_indices)


def test_fewer_finite_values_than_k_fill_up_with_minus_infinity(threads):
    x = torch.full((1, 300), float("-inf"))
    x[0, [3, 250]] = torch.tensor([1.0, 2.0])
    values, indices = kernels.top_k(x, 4)
    expected_values, expected_indices = stable_top_k(x, 4)
    assert torch.equal(values, expected_values) and torch.equal(indices, expected_indices)
    assert indices[0, :2].tolist() == [250, 3]


def test_a_nan_goes_to_torch_topk(threads):
    x = torch.randn(2, 1000, generator=torch.Generator().manual_seed(0))
    x[1, 500] = float("nan")
    values, indices = kernels.top_k(x, 5)
    expected = torch.topk(x, 5)
    assert torch.equal(indices, expected.indices) and indices[1, 0] == 500
    assert torch.equal(values[0], expected.values[0]) and values[1, 0].isnan()


@pytest.mark.parametrize("case", ["k 0", "k above n", "k above MAX_TOP_K", "float64", "strided", "one dimension",
                                  "gradients"])
def test_serves_top_k_refuses_what_the_kernel_does_not_take(case):
    x, k = torch.randn(2, 1000), 5
    if case == "k 0":
        k = 0
    elif case == "k above n":
        x = torch.randn(2, 4)
    elif case == "k above MAX_TOP_K":
        k = kernels.MAX_TOP_K + 1
    elif case == "float64":
        x = x.double()
    elif case == "strided":
        x = torch.randn(1000, 2).t()
    elif case == "one dimension":
        x = x[0]
    else:
        x.requires_grad_()
    assert not kernels.serves_top_k(x, k)


def test_beam_search_takes_it_for_its_best_continuations(monkeypatch):
    calls = []
    kernel = kernels.top_k
    monkeypatch.setattr(kernels, "top_k", lambda *a: calls.append(a) or kernel(*a))
    totals = torch.randn(2, 4 * 150, generator=torch.Generator().manual_seed(1))
    plan = beam_search.DecodingPlan(processors=None, max_length=20, eos_ids=None, pad_id=None, do_sample=False,
                                    generator=None, record_scores=False, num_beams=4, num_return_sequences=1,
                                    length_penalty=1.0, early_stopping=False)
    values, indices = beam_search._best_continuations(totals, k=8, plan=plan)
    expected = torch.topk(totals, 8)
    assert len(calls) == 1
    assert torch.equal(values, expected.values) and torch.equal(indices, expected.indices)
