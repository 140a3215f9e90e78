"""Output records of `generate` with the reference's field names (see `modeling.outputs.ModelOutput`).

Per-step fields are tuples over the generated tokens: `scores` (processed) and `logits` (raw), (rows, vocab)
each; `decoder_attentions` / `attentions` (rows, h, t, past + t), `cross_attentions` (rows, h, t, s) and
`decoder_hidden_states` / `hidden_states` (rows, t, d_model), a tuple over layers per step, where t is the
prompt's length at the first step and 1 after it. `cache` is the decoder's cache at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..modeling.cache import DecoderCache
from ..modeling.outputs import ModelOutput

Steps = tuple[torch.Tensor, ...]
LayersPerStep = tuple[tuple[torch.Tensor, ...], ...]


@dataclass
class GenerateEncoderDecoderOutput(ModelOutput):
    """Greedy search or sampling: sequences (rows, length); the encoder's attentions and hidden states per layer
    (docs, ...) with output_attentions / output_hidden_states."""

    sequences: torch.Tensor | None = None
    scores: Steps | None = None
    logits: Steps | None = None
    encoder_attentions: tuple[torch.Tensor, ...] | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    decoder_attentions: LayersPerStep | None = None
    cross_attentions: LayersPerStep | None = None
    decoder_hidden_states: LayersPerStep | None = None
    cache: DecoderCache | None = None


@dataclass
class GenerateBeamEncoderDecoderOutput(ModelOutput):
    """Beam search: sequences (docs * num_return_sequences, length); with `output_scores`, sequences_scores
    (docs * num_return_sequences,) (length-penalised sums of log-probabilities) and the processed log-probabilities
    of each step, (docs * num_beams, vocab) each; beam_indices (docs * num_return_sequences, length - prompt) the
    beam row each token was appended to, -1 past the end. Per-step fields have docs * num_beams rows."""

    sequences: torch.Tensor | None = None
    sequences_scores: torch.Tensor | None = None
    scores: Steps | None = None
    logits: Steps | None = None
    beam_indices: torch.Tensor | None = None
    encoder_attentions: tuple[torch.Tensor, ...] | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    decoder_attentions: LayersPerStep | None = None
    cross_attentions: LayersPerStep | None = None
    decoder_hidden_states: LayersPerStep | None = None
    cache: DecoderCache | None = None


@dataclass
class GenerateDecoderOnlyOutput(ModelOutput):
    """The causal LM's greedy search or sampling: sequences beginning with their prompt."""

    sequences: torch.Tensor | None = None
    scores: Steps | None = None
    logits: Steps | None = None
    attentions: LayersPerStep | None = None
    hidden_states: LayersPerStep | None = None
    cache: DecoderCache | None = None


@dataclass
class GenerateBeamDecoderOnlyOutput(ModelOutput):
    """The causal LM's beam search: sequences beginning with their prompt."""

    sequences: torch.Tensor | None = None
    sequences_scores: torch.Tensor | None = None
    scores: Steps | None = None
    logits: Steps | None = None
    beam_indices: torch.Tensor | None = None
    attentions: LayersPerStep | None = None
    hidden_states: LayersPerStep | None = None
    cache: DecoderCache | None = None
