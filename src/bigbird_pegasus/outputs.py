"""Output records with the reference's field names; indexable by name or position like its ModelOutput."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from .cache import DecoderCache


class ModelOutput:
    """Fields by attribute (`out.logits`), by name (`out["logits"]`) or by position among the fields that
    are set (`out[0]`), as with the reference's outputs."""

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(v for v in (getattr(self, f.name) for f in dataclasses.fields(self)) if v is not None)

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self):
        return iter(self.to_tuple())

    @property
    def cache(self) -> DecoderCache | None:
        """The reference's newer name for `past_key_values`."""
        return getattr(self, "past_key_values", None)


@dataclass
class EncoderOutput(ModelOutput):
    last_hidden_state: torch.Tensor


@dataclass
class DecoderOutput(ModelOutput):
    last_hidden_state: torch.Tensor
    past_key_values: DecoderCache | None = None


@dataclass
class Seq2SeqModelOutput(ModelOutput):
    last_hidden_state: torch.Tensor
    past_key_values: DecoderCache | None = None
    encoder_last_hidden_state: torch.Tensor | None = None


@dataclass
class Seq2SeqLMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: DecoderCache | None = None
    encoder_last_hidden_state: torch.Tensor | None = None


@dataclass
class Seq2SeqSequenceClassifierOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: DecoderCache | None = None
    encoder_last_hidden_state: torch.Tensor | None = None


@dataclass
class Seq2SeqQuestionAnsweringModelOutput(ModelOutput):
    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    past_key_values: DecoderCache | None = None
    encoder_last_hidden_state: torch.Tensor | None = None


@dataclass
class CausalLMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: DecoderCache | None = None


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
