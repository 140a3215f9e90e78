"""Dropping the pages of memory-mapped weights from the process once they have been converted.

A checkpoint's tensors are views of a private memory map of its file (safetensors): their pages come in as they
are read and stay in the process's resident memory while the map lives, which is as long as any tensor of the file
does. Where the tensors read are converted (cast to another dtype when loading, quantized), their pages would stay
resident beside the copies. `hand_back` drops them from the process (madvise MADV_DONTNEED): the page cache keeps
them, so a later load reads no disk, and whoever still holds such a tensor reads the same bytes again from the
file. Only pages that still hold the file's bytes are dropped (/proc/self/pagemap: a page written to since, a
private copy, is left as it is), and only the whole pages of a storage that lie in a file mapping; elsewhere (not
Linux, no pagemap) nothing is done.
"""

from __future__ import annotations

import bisect
import ctypes
import functools
import os
import sys
from collections.abc import Iterable

import torch

MADV_DONTNEED = 4  # <sys/mman.h> on Linux
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
FILE_PAGE_BIT = 61  # of a /proc/self/pagemap entry: the page is the file's (or shared), not a private copy


def hand_back(tensors: Iterable[torch.Tensor], *, mapped: list[tuple[int, int]] | None = None) -> None:
    """Drop from the process the file-mapped whole pages of these tensors' storages that still hold the file's
    bytes. `mapped`: `file_mappings()`, read once for many calls (default: read now)."""
    mapped = file_mappings() if mapped is None else mapped
    for tensor in tensors:
        if tensor.device.type == "cpu":  # another device's addresses are no pages of this process
            _drop(_whole_pages(storage_span(tensor)), mapped)


def storage_span(tensor: torch.Tensor) -> tuple[int, int]:
    """The bytes [start, end) of the tensor's storage."""
    storage = tensor.untyped_storage()
    return storage.data_ptr(), storage.data_ptr() + storage.nbytes()


def file_mappings() -> list[tuple[int, int]]:
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


def _whole_pages(span: tuple[int, int]) -> tuple[int, int]:
    """The pages wholly inside span: the partial ones at its ends may hold other tensors' bytes."""
    return -(-span[0] // PAGE) * PAGE, span[1] // PAGE * PAGE


def _drop(pages: tuple[int, int], mapped: list[tuple[int, int]]) -> None:
    """Drop the parts of `pages` that lie in the file mappings `mapped` (in address order)."""
    first = max(bisect.bisect_right(mapped, (pages[0], float("inf"))) - 1, 0)  # the last one starting at or before
    for start, end in mapped[first:]:
        if start >= pages[1]:
            break
        low, high = max(start, pages[0]), min(end, pages[1])
        if low < high:
            for run_start, run_end in _runs_of_file_pages(low, high):
                _madvise(run_start, run_end - run_start)


def _runs_of_file_pages(start: int, end: int) -> list[tuple[int, int]]:
    """The runs [start, end) of pages in [start, end) that still hold the file's bytes, by /proc/self/pagemap;
    none where it cannot be read."""
    count = (end - start) // PAGE
    try:
        with open("/proc/self/pagemap", "rb") as pagemap:
            pagemap.seek(start // PAGE * 8)
            entries = pagemap.read(8 * count)
    except OSError:
        return []
    if len(entries) != 8 * count:
        return []
    is_file_page = (torch.frombuffer(bytearray(entries), dtype=torch.int64) >> FILE_PAGE_BIT) & 1  # (count,)
    edges = torch.diff(is_file_page, prepend=torch.zeros(1, dtype=torch.int64),
                       append=torch.zeros(1, dtype=torch.int64))                              # (count + 1,)
    firsts, ends = (edges == 1).nonzero().flatten(), (edges == -1).nonzero().flatten()  # page indices
    return [(start + first * PAGE, start + last * PAGE) for first, last in zip(firsts.tolist(), ends.tolist())]


def _madvise(address: int, length: int) -> None:
    libc = _libc()
    if libc is not None:
        libc.madvise(ctypes.c_void_p(address), ctypes.c_size_t(length), ctypes.c_int(MADV_DONTNEED))


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library's symbols (the process's own), on Linux."""
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None
