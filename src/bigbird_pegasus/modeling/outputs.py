"""Output records with the reference's field names and behaviour: an ordered mapping of the fields that are set
(iteration yields their names, `in`, `keys()`, `values()`, `items()`), readable by attribute, by name or by
position (`out.logits`, `out["logits"]`, `out[0]`), `to_tuple()`; the decoder cache under 5.x's name `cache`,
with `past_key_values` as its older alias."""

from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from .cache import DecoderCache

# transformers 5 renamed the cache field; its older names still read and write it.
CACHE_ALIASES = {"past_key_values": "cache", "cache_params": "cache"}

Tensors = tuple[torch.Tensor, ...]


def as_requested(output: ModelOutput, *, return_dict: bool | None) -> ModelOutput | tuple:
    """The output record, or its tuple when `return_dict=False` (as the reference)."""
    return output if return_dict in (None, True) else output.to_tuple()


class ModelOutput(collections.OrderedDict):
    """Base of the output dataclasses: an OrderedDict of the fields that are not None, kept in step with the
    attributes (setting either sets both). As with the reference's outputs, a record cannot be unpacked into its
    values directly (iteration yields names): use `to_tuple()`."""

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            return super().__getitem__(CACHE_ALIASES.get(key, key))
        return self.to_tuple()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        key = CACHE_ALIASES.get(key, key)
        super().__setitem__(key, value)
        object.__setattr__(self, key, value)

    def __setattr__(self, name: str, value: Any) -> None:
        name = CACHE_ALIASES.get(name, name)
        if value is not None and name in {f.name for f in dataclasses.fields(self)}:
            super().__setitem__(name, value)
        object.__setattr__(self, name, value)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(CACHE_ALIASES.get(key, key) if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(CACHE_ALIASES.get(key, key), default)

    def __reduce__(self):
        """Pickle and deepcopy through the dataclass constructor, with the fields as arguments."""
        return type(self), tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def to_tuple(self) -> tuple[Any, ...]:
        """The values of the fields that are set, in field order."""
        return tuple(self[name] for name in self.keys())

    @property
    def past_key_values(self) -> DecoderCache | None:
        """The older name of `cache`."""
        return getattr(self, "cache", None)


@dataclass
class EncoderOutput(ModelOutput):
    """last_hidden_state (b, n, d_model); with output_hidden_states, the embedding output and every layer's
    (layers + 1 of them, the last one after the final LayerNorm); with output_attentions, each layer's
    probabilities (b, h, n, n)."""

    last_hidden_state: torch.Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None


@dataclass
class DecoderOutput(ModelOutput):
    """last_hidden_state (b, t, d_model); attentions (b, h, t, past + t) and cross_attentions (b, h, t, s) per
    layer with output_attentions; hidden states as the encoder's."""

    last_hidden_state: torch.Tensor | None = None
    cache: DecoderCache | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
    cross_attentions: Tensors | None = None


@dataclass
class Seq2SeqModelOutput(ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    cache: DecoderCache | None = None
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None


@dataclass
class Seq2SeqLMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: DecoderCache | None = None
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None


@dataclass
class Seq2SeqSequenceClassifierOutput(Seq2SeqLMOutput):
    """The same fields as Seq2SeqLMOutput; logits (b, num_labels)."""


@dataclass
class Seq2SeqQuestionAnsweringModelOutput(ModelOutput):
    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    cache: DecoderCache | None = None
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None


@dataclass
class CausalLMOutput(ModelOutput):
    """The reference's CausalLMOutputWithCrossAttentions."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: DecoderCache | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
    cross_attentions: Tensors | None = None


def seq2seq_fields(model_output: Seq2SeqModelOutput) -> dict[str, Any]:
    """The fields a task head passes on from the bare model's output (everything but last_hidden_state)."""
    return {f.name: getattr(model_output, f.name) for f in dataclasses.fields(model_output)
            if f.name != "last_hidden_state"}
