"""Handing back the memory-mapped pages of the weights that a conversion replaced.

A checkpoint's tensors are views of a memory map of its file (safetensors): their pages come in as they are read
and stay in the process's resident memory while the map lives, which is as long as any tensor of the file does.
`quantize_int8` reads every fp32 weight it replaces while the embedding and the norms keep the map alive, so the
replaced weights stayed resident: 2.2 GB of the large checkpoint, where the int8 model itself takes 0.7 GB. On exit,
`releasing_replaced_weights` asks the kernel to reclaim the pages of every weight that the model no longer holds
(madvise MADV_PAGEOUT, Linux 5.4+: the contents are kept, and read again from the file by whoever still reads
them; a hint, ignored where it is unsupported). Only pages of file mappings are touched.
"""

from __future__ import annotations

import bisect
import ctypes
import functools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

MADV_PAGEOUT = 21  # <linux/mman.h>; Python's mmap module names it only where its build saw the header
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@contextmanager
def releasing_replaced_weights(model: nn.Module) -> Iterator[None]:
    """Within the block, convert `model`'s weights freely; on leaving it, the file-mapped pages of the tensors
    `model` held on entry and holds no more go back to the kernel (their contents kept)."""
    held = {_span(t): t.detach() for t in _tensors(model)}  # each storage (and its pages) kept alive to the end
    yield
    kept = [_span(t) for t in _tensors(model)]
    mapped = _file_mappings()
    for span in held:
        if not _overlaps(span, kept):
            _page_out(_whole_pages(span), mapped)


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    return [t for t in (*model.parameters(), *model.buffers()) if t.device.type == "cpu" and t.numel()]


def _span(tensor: torch.Tensor) -> tuple[int, int]:
    """The bytes [start, end) of the tensor's storage."""
    storage = tensor.untyped_storage()
    return storage.data_ptr(), storage.data_ptr() + storage.nbytes()


def _overlaps(span: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return any(start < span[1] and span[0] < end for start, end in spans)


def _whole_pages(span: tuple[int, int]) -> tuple[int, int]:
    """The pages wholly inside span: the partial ones at its ends may hold other tensors' bytes."""
    return -(-span[0] // PAGE) * PAGE, span[1] // PAGE * PAGE


def _file_mappings() -> list[tuple[int, int]]:
    """The address ranges [start, end) that map a file (an inode), in order, from /proc/self/maps; none where it
    is missing (not Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            lines = maps.read().splitlines()
    except OSError:
        return []
    ranges = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[4] != "0":  # address perms offset dev inode path
            start, end = fields[0].split("-")
            ranges.append((int(start, 16), int(end, 16)))
    return ranges


def _page_out(pages: tuple[int, int], mapped: list[tuple[int, int]]) -> None:
    """MADV_PAGEOUT over the parts of `pages` that lie in the file mappings `mapped` (in address order)."""
    first = max(bisect.bisect_right(mapped, (pages[0], float("inf"))) - 1, 0)  # the last one starting at or before
    for start, end in mapped[first:]:
        if start >= pages[1]:
            break
        low, high = max(start, pages[0]), min(end, pages[1])
        if low < high:
            _madvise(low, high - low)


def _madvise(address: int, length: int) -> None:
    libc = _libc()
    if libc is not None:
        libc.madvise(ctypes.c_void_p(address), ctypes.c_size_t(length), ctypes.c_int(MADV_PAGEOUT))  # a hint


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library's symbols (the process's own), on Linux."""
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None
