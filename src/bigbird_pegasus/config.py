"""BigBirdPegasusConfig: every field of the reference's config.json, validated, and named presets."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from .checkpoint.atomic import write_file_atomically
from .checkpoint.hub import resolve_file

MODEL_TYPE = "bigbird_pegasus"
CONFIG_NAME = "config.json"

ACTIVATIONS = (
    "gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "gelu_python", "quick_gelu",
    "relu", "silu", "swish", "tanh", "sigmoid", "linear",
)
ATTENTION_TYPES = ("block_sparse", "original_full")
RANDOM_ATTENTION_MODES = ("reference", "fixed")

# The reference exposes these alternative names for some fields (its `attribute_map`).
ALIASES = {
    "hidden_size": "d_model",
    "num_attention_heads": "encoder_attention_heads",
    "attention_probs_dropout_prob": "attention_dropout",
    "num_hidden_layers": "encoder_layers",
}

# Fields written to config.json only when they differ from these defaults: ours that the reference does not know,
# and the reference's run-time switches (what a forward returns), which it writes only when set.
UNWRITTEN_DEFAULTS = {"random_attention": "reference", "output_attentions": False, "output_hidden_states": False,
                      "return_dict": True}

# Named architectures for `BigBirdPegasusConfig.from_name`: the fields that differ from the defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # google/bigbird-pegasus-large-arxiv, -pubmed and -bigpatent (~576M parameters): the defaults.
    "large": {},
    # A few-MB model of the same shape of computation (block-sparse from 144 tokens), for smoke runs and tests.
    "tiny": dict(vocab_size=500, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, block_size=16,
                 num_random_blocks=3, max_position_embeddings=1024),
}


@dataclass
class BigBirdPegasusConfig:
    """Configuration of a BigBird-Pegasus model; the defaults are `google/bigbird-pegasus-large-*`.

    Field names and defaults are those of `transformers.BigBirdPegasusConfig`, so a config.json written by
    either library opens in the other. Keys this class does not know (generation defaults such as
    `num_beams`, `architectures`, ...) are kept in `extra`, readable as attributes, and written back.

    Options of ours, beyond the reference (their defaults reproduce it):
        random_attention: "reference" (training mode draws the seeded random blocks; eval mode points every
            random block at block 0, as the reference does) or "fixed" (the seeded training layout is used in
            eval mode too, as the original Google implementation did).
        num_random_blocks: 0 is allowed (the reference refuses it).
    """

    vocab_size: int = 96103
    max_position_embeddings: int = 4096
    encoder_layers: int = 16
    encoder_ffn_dim: int = 4096
    encoder_attention_heads: int = 16
    decoder_layers: int = 16
    decoder_ffn_dim: int = 4096
    decoder_attention_heads: int = 16
    encoder_layerdrop: float = 0.0
    decoder_layerdrop: float = 0.0
    use_cache: bool = True
    is_encoder_decoder: bool = True
    activation_function: str = "gelu_new"
    d_model: int = 1024
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    init_std: float = 0.02
    decoder_start_token_id: int = 2
    classifier_dropout: float = 0.0
    scale_embedding: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 2
    eos_token_id: int | list[int] | None = 1
    attention_type: str = "block_sparse"
    block_size: int = 64
    num_random_blocks: int = 3
    use_bias: bool = False
    is_decoder: bool = False
    tie_word_embeddings: bool = True
    id2label: dict[int, str] = field(default_factory=lambda: {0: "LABEL_0", 1: "LABEL_1"})
    problem_type: str | None = None
    output_attentions: bool = False
    output_hidden_states: bool = False
    return_dict: bool = True
    random_attention: str = "reference"
    extra: dict[str, Any] = field(default_factory=dict)

    def __init__(self, **kwargs: Any):
        for alias, name in ALIASES.items():
            if alias in kwargs:
                value = kwargs.pop(alias)
                kwargs.setdefault(name, value)
        num_labels = kwargs.pop("num_labels", None)
        label2id = kwargs.pop("label2id", None)
        if "torch_dtype" in kwargs:  # the reference's older name for `dtype`
            kwargs.setdefault("dtype", kwargs.pop("torch_dtype"))
        if isinstance(kwargs.get("dtype"), torch.dtype):
            kwargs["dtype"] = _dtype_name(kwargs["dtype"])
        kwargs.pop("model_type", None)
        known = {f.name for f in dataclasses.fields(self)} - {"extra"}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            if f.name in kwargs:
                value = kwargs.pop(f.name)
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = f.default
            object.__setattr__(self, f.name, value)
        extra = dict(kwargs.pop("extra", None) or {})
        extra.update({k: v for k, v in kwargs.items() if k not in known})
        object.__setattr__(self, "extra", extra)
        self.id2label = {int(k): v for k, v in self.id2label.items()}
        self.label2id = label2id  # kept as given (as the reference does), else derived from id2label
        if num_labels is not None:
            self.num_labels = num_labels
        self.validate()

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not fields: aliases and keys kept from config.json.
        if name in ALIASES:
            return getattr(self, ALIASES[name])
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __iter__(self):
        """The names of the fields and of the extra keys (the reference iterates a config's attribute names)."""
        yield from (f.name for f in dataclasses.fields(self) if f.name != "extra")
        yield from self.extra

    def __setattr__(self, name: str, value: Any) -> None:
        name = ALIASES.get(name, name)
        is_property = isinstance(getattr(type(self), name, None), property)
        if is_property or name in {f.name for f in dataclasses.fields(self)} or name.startswith("_"):
            object.__setattr__(self, name, value)  # a property's setter runs (num_labels)
        else:
            self.extra[name] = value

    def __delattr__(self, name: str) -> None:
        if name in self.__dict__.get("extra", {}):
            del self.extra[name]
        else:
            object.__delattr__(self, name)

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> BigBirdPegasusConfig:
        """The preset `name` ("large", "tiny"; see PRESETS), with `overrides` applied."""
        if name not in PRESETS:
            raise ValueError(f"no preset named {name!r}; choose one of {', '.join(sorted(PRESETS))}")
        return cls(**{**PRESETS[name], **overrides})

    # -- derived values ---------------------------------------------------------------------------------

    model_type = MODEL_TYPE  # a class attribute, as the reference's (config.json's "model_type")
    sub_configs: ClassVar[dict[str, type]] = {}  # no nested configs (the reference's class attribute)

    def get_text_config(self, *_: Any, **__: Any) -> BigBirdPegasusConfig:
        """The config of the text model: this one (the reference's API for composite models)."""
        return self

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        if value != len(self.id2label):
            self.id2label = {i: f"LABEL_{i}" for i in range(value)}
            self._label2id = None

    @property
    def label2id(self) -> dict[str, int]:
        """The label2id given, or else id2label reversed."""
        if self._label2id is not None:
            return self._label2id
        return {label: i for i, label in self.id2label.items()}

    @label2id.setter
    def label2id(self, value: dict[str, int] | None) -> None:
        self._label2id = None if value is None else dict(value)

    @property
    def dtype(self) -> torch.dtype | None:
        """The dtype recorded in config.json ("dtype", or the older "torch_dtype") as a torch.dtype, or None; as
        the reference's, it records what the weights were saved in and does not by itself change how they load."""
        name = self.extra.get("dtype", self.extra.get("torch_dtype"))
        return getattr(torch, name) if isinstance(name, str) and isinstance(getattr(torch, name, None),
                                                                            torch.dtype) else None

    @dtype.setter
    def dtype(self, value: torch.dtype | str | None) -> None:
        self.extra.pop("torch_dtype", None)
        if value is None:
            self.extra.pop("dtype", None)
        else:
            self.extra["dtype"] = _dtype_name(value) if isinstance(value, torch.dtype) else value

    # -- validation -------------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise a ValueError naming the first invalid field."""
        def _check(ok: bool, name: str, reason: str) -> None:
            if not ok:
                raise ValueError(f"BigBirdPegasusConfig.{name}={getattr(self, name)!r}: {reason}")

        positive = ("vocab_size", "max_position_embeddings", "encoder_ffn_dim", "decoder_ffn_dim", "d_model",
                    "encoder_attention_heads", "decoder_attention_heads")
        for name in positive:
            _check(isinstance(getattr(self, name), int) and getattr(self, name) > 0, name,
                   "must be a positive integer")
        for name in ("encoder_layers", "decoder_layers"):
            _check(isinstance(getattr(self, name), int) and getattr(self, name) >= 0, name,
                   "must be a non-negative integer")
        _check(self.attention_type in ATTENTION_TYPES, "attention_type", f"must be one of {ATTENTION_TYPES}")
        _check(isinstance(self.block_size, int) and self.block_size > 0, "block_size", "must be a positive integer")
        _check(isinstance(self.num_random_blocks, int) and self.num_random_blocks >= 0, "num_random_blocks",
               "must be a non-negative integer")
        _check(self.activation_function in ACTIVATIONS, "activation_function", f"must be one of {ACTIVATIONS}")
        _check(self.random_attention in RANDOM_ATTENTION_MODES, "random_attention",
               f"must be one of {RANDOM_ATTENTION_MODES}")
        for name in ("encoder_attention_heads", "decoder_attention_heads"):
            _check(self.d_model % getattr(self, name) == 0, name, f"must divide d_model ({self.d_model})")
        for name in ("dropout", "attention_dropout", "activation_dropout", "classifier_dropout",
                     "encoder_layerdrop", "decoder_layerdrop"):
            value = getattr(self, name)
            _check(value is None or 0.0 <= value <= 1.0, name, "must be between 0 and 1")

    # -- (de)serialisation ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The config.json content, in the reference's layout (ids of id2label as strings)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("extra", "id2label"):
                continue
            value = getattr(self, f.name)
            if f.name in UNWRITTEN_DEFAULTS and value == UNWRITTEN_DEFAULTS[f.name]:
                continue
            out[f.name] = value
        out["id2label"] = {str(i): label for i, label in self.id2label.items()}
        out["label2id"] = self.label2id
        out.update(self.extra)
        out["model_type"] = MODEL_TYPE
        return dict(sorted(out.items()))

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, return_unused_kwargs: bool = False,
                  **overrides: Any) -> BigBirdPegasusConfig | tuple[BigBirdPegasusConfig, dict[str, Any]]:
        """A config from config.json's content; `overrides` that name a field (or a key of `values`) replace it,
        as in the reference; the others are returned too when `return_unused_kwargs`, else ignored."""
        model_type = values.get("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ValueError(f"config has model_type {model_type!r}, expected {MODEL_TYPE!r}: "
                             "this is not a BigBirdPegasus checkpoint")
        config = cls(**values)
        unused = config.apply_overrides(overrides)
        return (config, unused) if return_unused_kwargs else config

    def apply_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Set the `overrides` that this config has (a field, an alias, num_labels, a key it read); return the
        others. Validated once all are set."""
        unused = {}
        for name, value in overrides.items():
            if hasattr(self, name):
                setattr(self, name, value)
            else:
                unused[name] = value
        self.validate()
        return unused

    def update(self, values: dict[str, Any]) -> None:
        """Set every key of `values` (unknown ones are kept as extra keys), as the reference's `update`."""
        for name, value in values.items():
            setattr(self, name, value)
        self.validate()

    def to_diff_dict(self) -> dict[str, Any]:
        """The config.json entries that differ from a default config's (and model_type), as the reference."""
        defaults = type(self)().to_dict()
        return {k: v for k, v in self.to_dict().items() if k == "model_type" or defaults.get(k, object()) != v}

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike) -> None:
        """Write config.json's content to `path` (atomically)."""
        write_file_atomically(os.fspath(path), self.to_json_string())

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        os.makedirs(folder, exist_ok=True)
        self.to_json_file(os.path.join(folder, CONFIG_NAME))

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> BigBirdPegasusConfig:
        return cls.from_dict(read_json_object(path))

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, subfolder: str = "", revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, local_files_only: bool | None = None,
                        token: str | bool | None = None, return_unused_kwargs: bool = False, **overrides: Any):
        """Read config.json from a folder (or its `subfolder`), a config file, or a hub id; `overrides` as in
        `from_dict`."""
        if os.path.isfile(name_or_path):
            path = name_or_path
        else:
            path = resolve_file(name_or_path, CONFIG_NAME, subfolder=subfolder, revision=revision,
                                cache_dir=cache_dir, local_files_only=local_files_only, token=token)
        return cls.from_dict(read_json_object(path), return_unused_kwargs=return_unused_kwargs, **overrides)

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"


def read_json_object(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in file `path`; a ValueError naming the file when it is not valid JSON or not an object."""
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return values


def _dtype_name(dtype: torch.dtype) -> str:
    """torch.float16 -> "float16", the spelling of config.json."""
    return str(dtype).removeprefix("torch.")
