"""What PEFT/LoRA and the Trainer switch on a model: activation (gradient) checkpointing and input embeddings
that require gradients, under the reference's method names."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .embeddings import token_tables

# Non-reentrant checkpointing: the reference's default too when no kwargs are given.
default_checkpoint = functools.partial(checkpoint, use_reentrant=False)


class TrainingHooksMixin:
    """Activation checkpointing (`activation_checkpointing_enable`, and `gradient_checkpointing_enable`, its older
    name) and `enable_input_require_grads`. The host is an nn.Module whose layers carry a `gradient_checkpointing`
    flag and whose layer stacks carry a `checkpoint_function`."""

    supports_gradient_checkpointing = True

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: dict[str, Any] | None = None, *,
                                        every_n_layers: int = 1, offload: bool = False) -> None:
        """Recompute layers in the backward pass instead of keeping their activations.

        activation_checkpointing_kwargs: passed to `torch.utils.checkpoint.checkpoint` (default
        `{"use_reentrant": False}`). every_n_layers: checkpoint only every n-th layer (encoder layers first, then
        decoder layers), trading memory back for speed. offload: keep what the recompute needs in CPU memory.
        As the reference, the input embeddings then require gradients (a reentrant checkpoint needs inputs that do).
        """
        if not isinstance(every_n_layers, int) or every_n_layers < 1:
            raise ValueError(f"every_n_layers={every_n_layers!r}: must be a positive integer")
        kwargs = activation_checkpointing_kwargs
        if kwargs is None:
            kwargs = {"use_reentrant": False}
        function = functools.partial(_offloaded_checkpoint if offload else checkpoint, **kwargs)
        self._set_checkpointing(every_n_layers=every_n_layers, function=function)
        self.enable_input_require_grads()

    def activation_checkpointing_disable(self) -> None:
        self._set_checkpointing(every_n_layers=None, function=default_checkpoint)

    @property
    def is_activation_checkpointing(self) -> bool:
        return any(getattr(module, "gradient_checkpointing", False) for module in self.modules())

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None,
                                      **options: Any) -> None:
        """The older name of `activation_checkpointing_enable` (its kwargs argument named after it)."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, **options)

    def gradient_checkpointing_disable(self) -> None:
        self.activation_checkpointing_disable()

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.is_activation_checkpointing

    def _set_checkpointing(self, *, every_n_layers: int | None, function: Callable[..., Any]) -> None:
        """Flag every n-th layer (none when `every_n_layers` is None); give the stacks `function`."""
        layers = [module for module in self.modules() if hasattr(module, "gradient_checkpointing")]
        for index, layer in enumerate(layers):
            layer.gradient_checkpointing = every_n_layers is not None and index % every_n_layers == 0
        for module in self.modules():
            if hasattr(module, "checkpoint_function"):
                module.checkpoint_function = function

    def enable_input_require_grads(self) -> None:
        """Make the input embeddings' output require gradients, so that gradients reach adapters (LoRA) inside a
        frozen model and inputs of checkpointed layers require them."""
        self.disable_input_require_grads()
        self._require_grads_hooks = [table.register_forward_hook(_output_requires_grad) for table in token_tables(self)]

    def disable_input_require_grads(self) -> None:
        for hook in getattr(self, "_require_grads_hooks", []):
            hook.remove()
        self._require_grads_hooks = []


def _output_requires_grad(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
    output.requires_grad_(True)


def _offloaded_checkpoint(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """torch.utils.checkpoint.checkpoint with the tensors it saves held in (pinned, with a GPU) CPU memory."""
    with torch.autograd.graph.save_on_cpu(pin_memory=torch.cuda.is_available()):
        return checkpoint(function, *args, **kwargs)
