"""Which documents this process summarizes: its shard of the inputs (`--shard K/N`, for launchers without
torch.distributed) and, under torchrun, its rank's share of what the shard still has to do.

Under torchrun (WORLD_SIZE > 1) the processes join a gloo process group, used only to wait for each other
before the output is set up and before it is merged; the model runs wherever `--device` puts it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch.distributed as dist

Item = TypeVar("Item")
# Processes that finish their share first wait this long for the slowest one before the output is merged. A
# process that fails ends them all sooner: torchrun stops every process of a run when one exits with an error.
FINISH_WAIT = datetime.timedelta(days=7)
_SHARD = re.compile(r"(\d+)/(\d+)")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: the documents at input positions index, index + count, index + 2 count, ..."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """"K/N" -> shard K of N (K counted from 0); ValueError for anything else."""
        match = _SHARD.fullmatch(text.strip())
        if not match:
            raise ValueError(f"expected K/N (shard K of N, K from 0 to N-1), got {text!r}")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or index >= count:
            raise ValueError(f"shard {index} of {count} does not exist: K goes from 0 to N-1")
        return cls(index, count)

    def positions(self, total: int) -> range:
        """The input positions of this shard's documents among `total`."""
        return range(self.index, total, self.count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Processes:
    """This process's rank among `world_size` processes started together (1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def share(self, items: Sequence[Item]) -> list[Item]:
        """This rank's items: every world_size-th one, from its rank on."""
        return list(items[self.rank::self.world_size])

    def wait_for_all(self) -> None:
        """Return once every process has come here."""
        if self.distributed:
            dist.barrier()

    def sum(self, counts: list[int]) -> list[int]:
        """Element-wise sums of every process's `counts` (each process must call it)."""
        if not self.distributed:
            return counts
        gathered: list[list[int] | None] = [None] * self.world_size
        dist.all_gather_object(gathered, counts)
        return [sum(column) for column in zip(*gathered)]


@contextlib.contextmanager
def processes() -> Iterator[Processes]:
    """This process's place; joins (and at the end leaves) a gloo process group when started by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        yield Processes()
        return
    dist.init_process_group("gloo", timeout=FINISH_WAIT)
    try:
        yield Processes(dist.get_rank(), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    finally:
        dist.destroy_process_group()
