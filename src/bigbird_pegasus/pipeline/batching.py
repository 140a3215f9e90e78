"""Batches of model inputs grouped by length, so that little of each batch is padding, and their padding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

Result = TypeVar("Result")


def length_grouped_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices of `lengths` in batches of at most `batch_size`, longest first, so that each batch holds inputs
    of similar length (ties keep input order)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    return [order[first:first + batch_size] for first in range(0, len(order), batch_size)]


def run_in_batches(rows: Sequence[Sequence[int]], batch_size: int,
                   run_batch: Callable[[list[int]], list[Result]]) -> list[Result]:
    """`run_batch(indices)` over length-grouped batches of `rows`; its results come back in input order."""
    results: list[Result | None] = [None] * len(rows)
    for batch in length_grouped_batches([len(row) for row in rows], batch_size):
        for index, result in zip(batch, run_batch(batch), strict=True):
            results[index] = result
    return results


def padded_states(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-document encoder states (n_i, d) -> (b, n_max, d), zero after each document's end, and the mask
    (b, n_max), 1 for real positions (always given, so that every batch takes the same masked attention path)."""
    width = max(row.shape[0] for row in rows)
    states = rows[0].new_zeros(len(rows), width, rows[0].shape[1])                  # (b, n_max, d)
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=rows[0].device)   # (b, n_max)
    for index, row in enumerate(rows):
        states[index, :row.shape[0]] = row
        mask[index, :row.shape[0]] = 1
    return states, mask
