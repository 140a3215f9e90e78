"""The names of a checkpoint's files and keys, as the reference writes them, and what loading and saving share."""

from __future__ import annotations

import re

from torch import nn

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
BIN_WEIGHTS_NAME = "pytorch_model.bin"
BIN_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
GENERATION_CONFIG_NAME = "generation_config.json"
# Looked for in this order, as the reference does: safetensors before pickled .bin files.
WEIGHT_FILES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, BIN_WEIGHTS_NAME, BIN_WEIGHTS_INDEX_NAME)
SHARD_NAME = "model-{index:05d}-of-{count:05d}.safetensors"
SHARD_PATTERN = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
# The reference's `base_model_prefix`: the task classes hold the bare model under `model`.
BASE_MODEL_PREFIX = "model."
LISTED_KEYS = 20  # error messages list this many keys, then a count


def tied_groups(model: nn.Module) -> list[list[str]]:
    """State-dict names that share one tensor, canonical name first (the one the reference saves)."""
    names: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        names.setdefault(id(tensor), []).append(name)
    return [sorted(group, key=lambda n: ("shared" not in n, n)) for group in names.values() if len(group) > 1]


def listing(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED_KEYS])
    return shown if len(names) <= LISTED_KEYS else f"{shown}, ... and {len(names) - LISTED_KEYS} more"
