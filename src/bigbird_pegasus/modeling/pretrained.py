"""BigBirdPegasusPreTrainedModel: loading, saving, uploading, initialisation and the reference's model API
(embeddings, training hooks, sizes), shared by every public class."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn

from ..checkpoint.loading import load_pretrained
from ..checkpoint.saving import save_pretrained
from ..checkpoint.upload import push_to_hub, upload_folder
from ..config import BigBirdPegasusConfig
from .embeddings import EmbeddingsMixin
from .training_hooks import TrainingHooksMixin

logger = logging.getLogger("bigbird_pegasus")
_warned: set[str] = set()

# The keywords of `push_to_hub` that `save_pretrained(..., push_to_hub=True)` passes on.
HUB_UPLOAD_OPTIONS = ("commit_message", "commit_description", "private", "token", "revision", "create_pr")
# `attn_implementation` values accepted for the reference's sake; ours is always SDPA, with the exact path
# (`modeling/attention_weights.py`) whenever attention probabilities are asked for.
ATTENTION_IMPLEMENTATIONS = (None, "eager", "sdpa")


def warn_once(message: str) -> None:
    """Log `message` the first time only; silent while torch.compile traces (logging breaks graphs)."""
    if not torch.compiler.is_compiling() and message not in _warned:
        _warned.add(message)
        logger.warning(message)


def check_attention_implementation(value: str | None) -> None:
    if value not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"attn_implementation={value!r}: this library runs attention through SDPA (the exact path "
                         f"when attention probabilities are asked for); accepted: 'eager', 'sdpa' or None")


class BigBirdPegasusPreTrainedModel(EmbeddingsMixin, TrainingHooksMixin, nn.Module):
    """Loading, saving, initialisation, and the reference's model API shared by every public class.

    `generation_config` is None here; the classes that generate set theirs (see `generation.mixins`).
    """

    config_class = BigBirdPegasusConfig
    base_model_prefix = "model"  # the task classes hold the bare model (or the decoder) under this name
    main_input_name = "input_ids"

    def __init__(self, config: BigBirdPegasusConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.generation_config = None

    def post_init(self) -> None:
        """Last step of a public class's __init__: `config.gradient_checkpointing=True` (an older config key)
        turns activation checkpointing on, and is then dropped from the config, as in the reference."""
        if self.config.extra.pop("gradient_checkpointing", False):
            self.activation_checkpointing_enable()

    @property
    def base_model(self) -> nn.Module:
        return getattr(self, self.base_model_prefix, self)

    def tie_weights(self) -> None:
        """Re-share tied parameters (after loading with `assign=True`); a class with ties overrides this."""

    @classmethod
    def can_generate(cls) -> bool:
        """Whether the class has `generate` (the reference's test; the generating classes say True)."""
        return False

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @classmethod
    def _from_config(cls, config: BigBirdPegasusConfig, *, attn_implementation: str | None = None,
                     dtype: torch.dtype | None = None, torch_dtype: torch.dtype | None = None):
        """A freshly initialised model of `config` (the reference's constructor for `from_config`), in `dtype`."""
        check_attention_implementation(attn_implementation)
        model = cls(config)
        return model.to(dtype or torch_dtype) if (dtype or torch_dtype) is not None else model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None = None, *,
                        config: BigBirdPegasusConfig | None = None, state_dict: dict[str, torch.Tensor] | None = None,
                        dtype: torch.dtype | str | None = None, device: str | torch.device | None = None,
                        subfolder: str = "", revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                        local_files_only: bool | None = None, token: str | bool | None = None, strict: bool = True,
                        ignore_mismatched_sizes: bool = False, output_loading_info: bool = False,
                        torch_dtype: torch.dtype | str | None = None, attn_implementation: str | None = None,
                        **config_overrides: Any):
        """A model, in eval mode, from a folder or hub id saved by this library or by `transformers`
        (safetensors, sharded or not, or pytorch_model.bin), or from `config=` and `state_dict=`.

        The reference's keywords: `config` (instead of the checkpoint's config.json), `state_dict` (instead of its
        weights), config fields as keywords (`num_labels=5`, `id2label={...}`, ...), `ignore_mismatched_sizes`
        (re-initialise weights whose shape differs, e.g. a classifier's head for another number of labels),
        `output_loading_info` (also return {"missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"}),
        `subfolder`, `revision`, `cache_dir`, `local_files_only`, `token`. dtype: a torch.dtype or its name; None or
        "auto" keep the file's (`torch_dtype` is its older name). `attn_implementation` may be "eager" or "sdpa"
        and changes nothing here: attention runs through SDPA, and attention probabilities, when asked for, through
        an exact path. A task head the checkpoint lacks is initialised with a warning; a mismatch in the shared
        model raises unless strict=False (then: a warning). See `bigbird_pegasus.checkpoint.loading.load_pretrained`."""
        check_attention_implementation(attn_implementation)
        return load_pretrained(cls, pretrained_model_name_or_path, config=config, state_dict=state_dict, dtype=dtype,
                               torch_dtype=torch_dtype, device=device, subfolder=subfolder, revision=revision,
                               cache_dir=cache_dir, local_files_only=local_files_only, token=token, strict=strict,
                               ignore_mismatched_sizes=ignore_mismatched_sizes,
                               output_loading_info=output_loading_info, config_overrides=config_overrides)

    def save_pretrained(self, folder: str | os.PathLike, *, max_shard_size: int | str = "5GB",
                        push_to_hub: bool = False, repo_id: str | None = None, **hub_options: Any) -> None:
        """config.json, generation_config.json (for the classes that generate) and safetensors weights that
        `transformers` opens too, sharded above `max_shard_size` (bytes, or a string such as "200MB").
        push_to_hub=True then uploads the folder to `repo_id` (default: the folder's name) with the options of
        `push_to_hub`."""
        unknown = sorted(set(hub_options) - set(HUB_UPLOAD_OPTIONS))
        if unknown:
            raise TypeError(f"save_pretrained() got unexpected keyword arguments {unknown}")
        save_pretrained(self, folder, max_shard_size=max_shard_size)
        if push_to_hub:
            upload_folder(folder, repo_id or os.path.basename(os.path.normpath(folder)), **hub_options)

    def push_to_hub(self, repo_id: str, *, commit_message: str | None = None, commit_description: str | None = None,
                    private: bool | None = None, token: str | bool | None = None, revision: str | None = None,
                    create_pr: bool = False, max_shard_size: int | str = "5GB") -> Any:
        """Save the model (as `save_pretrained`) and upload it to the hub repository `repo_id` in one commit,
        through `huggingface_hub` (the repository is created when missing). Returns its CommitInfo."""
        return push_to_hub(lambda folder: self.save_pretrained(folder, max_shard_size=max_shard_size), repo_id,
                           commit_message=commit_message, commit_description=commit_description, private=private,
                           token=token, revision=revision, create_pr=create_pr)

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

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Parameters (tied ones once); only those that require gradients, or without the embedding tables."""
        excluded = set()
        if exclude_embeddings:
            excluded = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        return sum(p.numel() for p in self.parameters()
                   if id(p) not in excluded and (p.requires_grad or not only_trainable))

    def get_memory_footprint(self, return_buffers: bool = True) -> int:
        """Bytes held by the parameters (and the buffers, such as final_logits_bias)."""
        tensors = [*self.parameters(), *(self.buffers() if return_buffers else ())]
        return sum(t.numel() * t.element_size() for t in tensors)
