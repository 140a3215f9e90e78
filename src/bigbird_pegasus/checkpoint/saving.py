"""save_pretrained: files that `transformers` opens too, published so that a folder never loads a mix.

Every file is staged under a temporary name first (`atomic.stage_file`) and renamed into place in an order that
leaves a folder that loads the old or the new checkpoint, or that fails to load, never one that loads a mix of
the two.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from ..config import CONFIG_NAME
from .atomic import Writer, stage_file, sync_folder
from .files import (GENERATION_CONFIG_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, SHARD_NAME, SHARD_PATTERN,
                    listing, tied_groups)

DEFAULT_MAX_SHARD_SIZE = "5GB"
# Decimal units as the reference reads them ("5GB" is 5 * 10**9 bytes); binary ones with "i".
SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
              "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def save_pretrained(model: nn.Module, folder: str | os.PathLike, *,
                    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE) -> None:
    """config.json, generation_config.json (when the model has a `generation_config`) and safetensors weights
    that `transformers` opens too.

    Weights larger than `max_shard_size` (bytes, or a string such as "200MB" or "2GiB") are split into
    `model-00001-of-0000N.safetensors` files listed in `model.safetensors.index.json`. Tied weights are written
    once, under the reference's name (`model.shared.weight`).
    """
    folder = os.fspath(folder)
    shards = _plan_shards(_state_to_save(model), limit=parse_size(max_shard_size))
    os.makedirs(folder, exist_ok=True)
    staged: dict[str, str] = {}  # final name -> temporary path
    try:
        if len(shards) == 1:
            staged[SAFE_WEIGHTS_NAME] = stage_file(folder, SAFE_WEIGHTS_NAME, _safetensors_writer(shards[0]))
        else:
            names = [SHARD_NAME.format(index=i + 1, count=len(shards)) for i in range(len(shards))]
            for name, shard in zip(names, shards):
                staged[name] = stage_file(folder, name, _safetensors_writer(shard))
            staged[SAFE_WEIGHTS_INDEX_NAME] = stage_file(folder, SAFE_WEIGHTS_INDEX_NAME,
                                                         _index_json(model, names=names, shards=shards))
        staged[CONFIG_NAME] = stage_file(folder, CONFIG_NAME, _config_json(model))
        generation_config = getattr(model, "generation_config", None)
        if generation_config is not None:
            staged[GENERATION_CONFIG_NAME] = stage_file(folder, GENERATION_CONFIG_NAME,
                                                        _json(generation_config.to_dict()))
        _publish(folder, staged)
    finally:
        for path in staged.values():
            if os.path.exists(path):
                os.remove(path)


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string such as "5GB" (10**9 bytes per GB, as the reference) or "2GiB"."""
    if isinstance(size, int) and not isinstance(size, bool):
        number = size
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(size))
        unit = match.group(2).upper() if match else ""
        if not match or (unit or "B") not in SIZE_UNITS:
            raise ValueError(f"max_shard_size={size!r}: expected bytes (an int) or a size such as '200MB' or '2GiB'")
        number = int(float(match.group(1)) * SIZE_UNITS[unit or "B"])
    if number <= 0:
        raise ValueError(f"max_shard_size={size!r} must be positive")
    return number


def _state_to_save(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without tied duplicates, in contiguous tensors."""
    state = model.state_dict()
    not_float = [name for name, value in state.items()
                 if not (isinstance(value, torch.Tensor) and value.is_floating_point())]
    if not_float:
        raise ValueError(f"cannot save weights that are not floating-point tensors (int8-quantized layers: save the "
                         f"model before `quantize_int8` and quantize after loading): {listing(not_float)}")
    for _, *aliases in tied_groups(model):
        for name in aliases:
            state.pop(name)
    on_meta = [name for name, tensor in state.items() if tensor.is_meta]
    if on_meta:
        raise ValueError(f"cannot save tensors that have no values (on the meta device): {listing(on_meta)}")
    return {name: tensor.contiguous() for name, tensor in state.items()}


def _plan_shards(state: dict[str, torch.Tensor], *, limit: int) -> list[dict[str, torch.Tensor]]:
    """Consecutive groups of tensors of at most `limit` bytes each (a larger tensor gets a shard of its own)."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    return shards


def _index_json(model: nn.Module, *, names: list[str], shards: list[dict[str, torch.Tensor]]) -> str:
    weight_map = {key: name for name, shard in zip(names, shards) for key in shard}
    total_size = sum(t.numel() * t.element_size() for shard in shards for t in shard.values())
    metadata = {"total_size": total_size, "total_parameters": sum(p.numel() for p in model.parameters())}
    return _json({"metadata": metadata, "weight_map": dict(sorted(weight_map.items()))})


def _config_json(model: nn.Module) -> str:
    """config.json as the reference writes it: with the model's class and dtype."""
    values = model.config.to_dict()
    values.pop("torch_dtype", None)  # the reference's older name for `dtype`
    values["dtype"] = str(model.dtype).removeprefix("torch.")
    values["architectures"] = [type(model).__name__]
    return _json(values)


def _json(values: dict[str, Any]) -> str:
    return json.dumps(values, indent=2, sort_keys=True) + "\n"


def _safetensors_writer(shard: dict[str, torch.Tensor]) -> Writer:
    return lambda path: save_file(shard, path, metadata={"format": "pt"})


def _publish(folder: str, staged: dict[str, str]) -> None:
    """Rename the staged files into place, in an order that keeps the folder loadable only as a whole.

    The old weights' entry point (model.safetensors or the index) goes first, so that until the new entry
    point is renamed, last, the folder has no safetensors weights and fails to load. Old shards that the
    new checkpoint does not overwrite are removed at the end.
    """
    for name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME):
        if os.path.exists(os.path.join(folder, name)):
            os.remove(os.path.join(folder, name))
    entry_point = SAFE_WEIGHTS_INDEX_NAME if SAFE_WEIGHTS_INDEX_NAME in staged else SAFE_WEIGHTS_NAME
    for name in sorted(staged, key=lambda n: n == entry_point):
        os.replace(staged[name], os.path.join(folder, name))
    for name in os.listdir(folder):
        if SHARD_PATTERN.fullmatch(name) and name not in staged:
            os.remove(os.path.join(folder, name))
    sync_folder(folder)
