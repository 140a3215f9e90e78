"""from_pretrained / save_pretrained: config.json and safetensors weights, with the reference's key names."""

from __future__ import annotations

import os
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .config import BigBirdPegasusConfig
from .generation_config import GENERATION_CONFIG_NAME, GenerationConfig
from .hub import resolve_file

WEIGHTS_NAME = "model.safetensors"


def tied_groups(model: torch.nn.Module) -> list[list[str]]:
    """State-dict names that share one tensor, canonical name first (the one the reference saves)."""
    names: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        names.setdefault(id(tensor), []).append(name)
    groups = [sorted(group, key=lambda n: ("shared" not in n, n)) for group in names.values() if len(group) > 1]
    return groups


def load_pretrained(cls, name_or_path: str | os.PathLike, *, dtype: torch.dtype | None = None,
                    device: str | torch.device | None = None, strict: bool = True, **hub_options: Any):
    config = BigBirdPegasusConfig.from_pretrained(name_or_path, **hub_options)
    model = cls(config)
    state = load_file(resolve_file(name_or_path, WEIGHTS_NAME, **hub_options))
    for canonical, *copies in tied_groups(model):
        for name in copies:
            state.setdefault(name, state.get(canonical))
    model.load_state_dict(state, strict=strict)
    generation_file = resolve_file(name_or_path, GENERATION_CONFIG_NAME, required=False, **hub_options)
    if generation_file is not None:  # else the defaults stay those derived from config.json
        model.generation_config = GenerationConfig.from_json_file(generation_file)
    if dtype is not None or device is not None:
        model.to(device=device, dtype=dtype)
    return model.eval()


def save_pretrained(model: torch.nn.Module, folder: str | os.PathLike) -> None:
    os.makedirs(folder, exist_ok=True)
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    state = model.state_dict()
    for _, *copies in tied_groups(model):
        for name in copies:
            state.pop(name)
    save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(folder, WEIGHTS_NAME),
              metadata={"format": "pt"})
