"""Output records with the reference's field names; indexable by name or position like its ModelOutput."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from .cache import DecoderCache


def as_requested(output: ModelOutput, *, return_dict: bool | None) -> ModelOutput | tuple:
    """The output record, or its tuple when `return_dict=False` (as the reference)."""
    return output if return_dict in (None, True) else output.to_tuple()


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
