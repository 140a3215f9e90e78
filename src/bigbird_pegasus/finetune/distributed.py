"""One process or many: process groups, DDP / FSDP wrapping, gradient sync, clipping and full state dicts.

Under `torchrun` (WORLD_SIZE > 1) every process joins a process group (nccl on GPUs, gloo on the CPU);
the model is wrapped in DistributedDataParallel, or sharded with FSDP (`fully_shard`, one unit per
encoder/decoder layer plus the root that holds the tied embedding). Model and optimizer state go through
`torch.distributed.checkpoint.state_dict`, which gives the same full, unsharded dicts for all three.

FSDP shards over a group of its own: torch's DTensor caches keep its mesh, and so that group, alive after
`destroy_process_group`. Were it the default group, which our last collectives use just before the process exits,
its gloo worker threads would outlive the interpreter, and one still releasing a collective's tensors while Python
shuts down aborts the process ("terminate called without an active exception"). This way the default group is
destroyed, its threads joined, when the process leaves; the FSDP group's last collectives (gathering the final
weights) come before the final model is written.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions, get_model_state_dict, get_optimizer_state_dict, set_optimizer_state_dict,
)
from torch.distributed.device_mesh import DeviceMesh
from torch.nn.parallel import DistributedDataParallel

from ..modeling.model import BigBirdPegasusDecoder, BigBirdPegasusEncoder
from ..modeling.pretrained import BigBirdPegasusPreTrainedModel
from .errors import FinetuneError

try:  # torch >= 2.6
    from torch.distributed.fsdp import FSDPModule, fully_shard
except ImportError:  # torch 2.4 / 2.5
    from torch.distributed._composable.fsdp import FSDPModule, fully_shard

FULL_STATE = StateDictOptions(full_state_dict=True, cpu_offload=True)
# FSDP2 warns, in every process, when a sharded model returns a view (an in-place op on it would skip FSDP's
# backward hook); ours is encoder_last_hidden_state (a slice of the block-padded states), which training never
# touches. Only this message about our models is silenced.
FSDP_VIEW_WARNING = r"FSDP2-wrapped module \(FSDPBigBirdPegasus\w*\) returned a view tensor"


@dataclass(frozen=True)
class Processes:
    """Where this process stands: its rank among `world_size`, and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of `values` over all processes."""
        if not self.distributed:
            return values
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.tolist()

    def gather(self, value: Any) -> list[Any]:
        """Every process's `value`, in rank order (on every process)."""
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


@contextlib.contextmanager
def processes(device: str | None) -> Iterator[Processes]:
    """This process's place; joins (and at the end leaves) the process group when run by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = _device(device, local_rank if world_size > 1 else None)
    if world_size == 1:
        yield Processes(0, 1, chosen)
        return
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    try:
        yield Processes(dist.get_rank(), world_size, chosen)
    finally:
        dist.destroy_process_group()


def _device(option: str | None, local_rank: int | None) -> torch.device:
    if option is None:
        option = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(option)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FinetuneError(f"--device {option}: no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", local_rank or 0)
    return device


def wrap(model: BigBirdPegasusPreTrainedModel, procs: Processes, fsdp: bool) -> nn.Module:
    """`model` (already on its device) as trained here: itself, in DDP, or sharded in place by FSDP."""
    if fsdp:
        if not procs.distributed:
            raise FinetuneError("--fsdp needs several processes: start the command with torchrun")
        warnings.filterwarnings("ignore", message=FSDP_VIEW_WARNING, category=UserWarning)
        mesh = DeviceMesh.from_group(dist.new_group(), procs.device.type)
        for layers in _layer_stacks(model):
            for layer in layers:
                fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    if procs.distributed:
        device_ids = [procs.device.index] if procs.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)
    return model


def _layer_stacks(model: nn.Module) -> list[nn.ModuleList]:
    return [m.layers for m in model.modules() if isinstance(m, (BigBirdPegasusEncoder, BigBirdPegasusDecoder))]


def unwrap(model: nn.Module) -> BigBirdPegasusPreTrainedModel:
    """The BigBird-Pegasus module inside a DDP wrapper (an FSDP-sharded model is its own module)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce of the backward passes inside, except for the last micro-batch."""
    if enabled or not dist.is_initialized():
        yield
    elif isinstance(model, DistributedDataParallel):
        with model.no_sync():
            yield
    else:
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)


def clip_gradients(model: nn.Module, max_norm: float) -> float:
    """Clip the global gradient norm to `max_norm` (0: only measure it); returns the norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):  # a DTensor under FSDP
        norm = norm.full_tensor()
    return float(norm)


def full_model(model: nn.Module, model_class: type[BigBirdPegasusPreTrainedModel], procs: Processes
               ) -> BigBirdPegasusPreTrainedModel | None:
    """On the main process, an unsharded model to save or to generate with (None elsewhere).

    Collective under FSDP: every process must call it. The gathered weights are put into a model built on
    the meta device, so no second random initialisation is paid for."""
    if not is_sharded(model):
        return unwrap(model) if procs.is_main else None
    state = get_model_state_dict(model, options=FULL_STATE)
    if not procs.is_main:
        return None
    with torch.device("meta"):
        copy = model_class(model.config)
    copy.load_state_dict(state, strict=False, assign=True)
    copy.tie_weights()
    left_on_meta = [name for name, tensor in copy.state_dict().items() if tensor.is_meta]
    if left_on_meta:
        raise RuntimeError(f"the gathered state dict lacks {left_on_meta[:3]}")
    return copy.to(procs.device).train(model.training)


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's full state keyed by parameter names (collective under FSDP; full on the main process)."""
    return get_optimizer_state_dict(unwrap(model), optimizer, options=FULL_STATE)


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a state from `optimizer_state` into this process's (possibly sharded) optimizer."""
    set_optimizer_state_dict(unwrap(model), optimizer, state, options=StateDictOptions(full_state_dict=True))
