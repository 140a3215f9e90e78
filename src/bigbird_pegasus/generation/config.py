"""GenerationConfig: the defaults of `generate`, read from generation_config.json or the model's config."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..checkpoint.atomic import write_file_atomically
from ..checkpoint.files import GENERATION_CONFIG_NAME
from ..checkpoint.hub import resolve_file
from ..config import BigBirdPegasusConfig, read_json_object

# New tokens made when no length is set anywhere (the reference's model-agnostic default `max_length` of 20,
# which it counts after the decoder prompt).
DEFAULT_NEW_TOKENS = 20


@dataclass
class GenerationConfig:
    """The reference's generation keywords and defaults. Unknown keys are kept in `extra` and written back.

    `max_length` None means "not set": `generate` then makes DEFAULT_NEW_TOKENS new tokens, as the reference
    does when neither the call nor the checkpoint sets a length.
    """

    max_length: int | None = None
    max_new_tokens: int | None = None
    min_length: int = 0
    min_new_tokens: int | None = None
    early_stopping: bool | str = False
    num_beams: int = 1
    num_return_sequences: int = 1
    length_penalty: float = 1.0
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float | None = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    encoder_no_repeat_ngram_size: int = 0
    bad_words_ids: list[list[int]] | None = None
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | list[int] | None = None
    decoder_start_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    use_cache: bool = True
    remove_invalid_values: bool = False
    output_scores: bool = False
    output_logits: bool = False
    output_attentions: bool = False
    output_hidden_states: bool = False
    return_dict_in_generate: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)} - {"extra"}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GenerationConfig:
        known = cls.field_names()
        return cls(**{k: v for k, v in values.items() if k in known},
                   extra={k: v for k, v in values.items() if k not in known})

    @classmethod
    def from_model_config(cls, config: BigBirdPegasusConfig) -> GenerationConfig:
        """Special token ids from the model config, and any generation keys its config.json carries
        (the published checkpoints keep `num_beams`, `length_penalty`, `max_length` there)."""
        values = {k: v for k, v in config.extra.items() if k in cls.field_names()}
        for name in ("decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id"):
            values[name] = getattr(config, name)
        return cls.from_dict(values)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, model_config: BigBirdPegasusConfig,
                        **hub_options: Any) -> GenerationConfig:
        """generation_config.json of a checkpoint folder or hub id when it has one, else the defaults that
        `model_config` implies. hub_options: revision, cache_dir, local_files_only."""
        path = resolve_file(name_or_path, GENERATION_CONFIG_NAME, required=False, **hub_options)
        return cls.from_json_file(path) if path else cls.from_model_config(model_config)

    def update(self, **overrides: Any) -> GenerationConfig:
        """A copy with `overrides` applied (None leaves a value as it is); unknown names raise TypeError."""
        unknown = set(overrides) - self.field_names()
        if unknown:
            raise TypeError(f"unknown generation argument(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """Only the values that differ from the defaults, as the reference writes them."""
        default = GenerationConfig()
        out = {name: getattr(self, name) for name in sorted(self.field_names())
               if getattr(self, name) != getattr(default, name)}
        out.update(self.extra)
        return out

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        os.makedirs(folder, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        write_file_atomically(os.path.join(folder, GENERATION_CONFIG_NAME), text)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> GenerationConfig:
        return cls.from_dict(read_json_object(path))
