"""Output records of `generate` with the reference's field names."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..modeling.outputs import ModelOutput


@dataclass
class GenerateEncoderDecoderOutput(ModelOutput):
    """Greedy search or sampling: sequences (rows, length); with `output_scores`, the processed scores of each
    step, (rows, vocab) each."""

    sequences: torch.Tensor
    scores: tuple[torch.Tensor, ...] | None = None


@dataclass
class GenerateBeamEncoderDecoderOutput(ModelOutput):
    """Beam search: sequences (docs * num_return_sequences, length); with `output_scores`, sequences_scores
    (docs * num_return_sequences,) (length-penalised sums of log-probabilities) and the processed log-probabilities
    of each step, (docs * num_beams, vocab) each; beam_indices (docs * num_return_sequences, length - prompt) the
    beam row each token was appended to, -1 past the end."""

    sequences: torch.Tensor
    sequences_scores: torch.Tensor | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    beam_indices: torch.Tensor | None = None


@dataclass
class GenerateDecoderOnlyOutput(GenerateEncoderDecoderOutput):
    """The causal LM's greedy search or sampling: the same fields, sequences beginning with their prompt."""


@dataclass
class GenerateBeamDecoderOnlyOutput(GenerateBeamEncoderDecoderOutput):
    """The causal LM's beam search: the same fields, sequences beginning with their prompt."""
