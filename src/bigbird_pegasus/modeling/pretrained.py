"""BigBirdPegasusPreTrainedModel: loading, saving, initialisation and gradient checkpointing, shared by every
public class."""

from __future__ import annotations

import logging
import os

import torch
from torch import nn

from ..checkpoint.loading import load_pretrained
from ..checkpoint.saving import save_pretrained
from ..config import BigBirdPegasusConfig

logger = logging.getLogger("bigbird_pegasus")
_warned: set[str] = set()


def warn_once(message: str) -> None:
    """Log `message` the first time only; silent while torch.compile traces (logging breaks graphs)."""
    if not torch.compiler.is_compiling() and message not in _warned:
        _warned.add(message)
        logger.warning(message)


class BigBirdPegasusPreTrainedModel(nn.Module):
    """Loading, saving, initialisation and gradient checkpointing, shared by every public class.

    `generation_config` is None here; the classes that generate set theirs (see `generation.mixins`).
    """

    config_class = BigBirdPegasusConfig

    def __init__(self, config: BigBirdPegasusConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.generation_config = None

    def tie_weights(self) -> None:
        """Re-share tied parameters (after loading with `assign=True`); a class with ties overrides this."""

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, dtype: torch.dtype | str | None = None,
                        device: str | torch.device | None = None, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, local_files_only: bool | None = None,
                        strict: bool = True, torch_dtype: torch.dtype | str | None = None):
        """A model, in eval mode, from a folder or hub id saved by this library or by `transformers`
        (safetensors, sharded or not, or pytorch_model.bin). dtype: a torch.dtype or its name; None or
        "auto" keep the file's; `torch_dtype` is its older `transformers` name. strict=False accepts missing or
        unexpected keys, with a warning. See `bigbird_pegasus.checkpoint.loading.load_pretrained`."""
        return load_pretrained(cls, name_or_path, dtype=dtype, device=device, revision=revision,
                               cache_dir=cache_dir, local_files_only=local_files_only, strict=strict,
                               torch_dtype=torch_dtype)

    def save_pretrained(self, folder: str | os.PathLike, *, max_shard_size: int | str = "5GB") -> None:
        """config.json, generation_config.json (for the classes that generate) and safetensors weights that
        `transformers` opens too, sharded above `max_shard_size` (bytes, or a string such as "200MB")."""
        save_pretrained(self, folder, max_shard_size=max_shard_size)

    def init_weights(self, *modules: nn.Module) -> None:
        """The reference's initialisation of `modules` (default: the whole model): N(0, init_std) weights,
        zero biases and padding row, unit LayerNorms."""
        std = self.config.init_std
        for module in (m for root in (modules or (self,)) for m in root.modules()):
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=std)
                if module.padding_idx is not None:
                    with torch.no_grad():
                        module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def gradient_checkpointing_enable(self) -> None:
        """Recompute each layer in the backward pass instead of keeping its activations."""
        self._set_gradient_checkpointing(True)

    def gradient_checkpointing_disable(self) -> None:
        self._set_gradient_checkpointing(False)

    def _set_gradient_checkpointing(self, enabled: bool) -> None:
        """The layer stacks (encoder, decoder) are the modules with a `gradient_checkpointing` flag."""
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = enabled

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
