"""Where a file's pages are: in this process's resident memory (/proc/self/smaps), in the page cache (mincore)."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path


def resident_bytes_of(file: Path) -> int:
    """The resident bytes of this process's mappings of `file` (/proc/self/smaps)."""
    total, in_file = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:  # a mapping's header: addresses ... path
            in_file = len(fields) >= 6 and Path(fields[5]) == file
        elif in_file and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


def cached_fraction_of(file: Path) -> float:
    """The fraction of `file`'s pages in the page cache (mincore over a fresh read-only map of it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    size = file.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    descriptor = os.open(file, os.O_RDONLY)
    try:
        address = libc.mmap(None, ctypes.c_size_t(size), mmap.PROT_READ, mmap.MAP_SHARED, descriptor, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap of {file} failed")
        residency = (ctypes.c_ubyte * pages)()
        failed = libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), residency)
        libc.munmap(ctypes.c_void_p(address), ctypes.c_size_t(size))
        if failed:
            raise OSError(ctypes.get_errno(), f"mincore over {file} failed")
        return sum(byte & 1 for byte in residency) / pages
    finally:
        os.close(descriptor)
