"""Length-grouped batches and padding."""

from __future__ import annotations

import pytest
import torch

from bigbird_pegasus.pipeline.batching import length_grouped_batches, padded_states, run_in_batches


def test_length_grouped_batches_sort_longest_first_and_respect_the_size():
    lengths = [5, 30, 7, 30, 1, 12, 9]
    batches = length_grouped_batches(lengths, batch_size=3)
    assert batches == [[1, 3, 5], [6, 2, 0], [4]]
    with pytest.raises(ValueError, match="batch_size"):
        length_grouped_batches(lengths, 0)


def test_run_in_batches_restores_input_order():
    rows = [[1] * n for n in (3, 9, 1, 9, 4, 6, 2)]
    seen = []

    def run_batch(indices):
        seen.append([len(rows[i]) for i in indices])
        return [f"row {i}" for i in indices]

    assert run_in_batches(rows, 2, run_batch) == [f"row {i}" for i in range(len(rows))]
    assert seen == [[9, 9], [6, 4], [3, 2], [1]]


def test_padded_states_pad_with_zeros_and_a_mask():
    rows = [torch.ones(3, 2), 2 * torch.ones(1, 2)]
    states, mask = padded_states(rows)
    assert states.tolist() == [[[1, 1], [1, 1], [1, 1]], [[2, 2], [0, 0], [0, 0]]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
