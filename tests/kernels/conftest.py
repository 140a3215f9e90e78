"""Fixtures the kernel tests share."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def threads(request):
    """PyTorch's thread count (the kernels' OpenMP threads) set to 1, then 2; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)
