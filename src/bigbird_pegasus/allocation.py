"""How this process allocates memory, set when the package is imported (before PyTorch allocates anything):
large activations freshly allocated on the CPU are otherwise paid for in page faults, again at every layer.

- `THP_MEM_ALLOC_ENABLE=1` (unless set): PyTorch's CPU allocator backs large tensors with transparent huge pages,
  which made the encoder's copies and elementwise passes several times cheaper on a Sapphire Rapids. PyTorch reads
  it once, at its first allocation.
- Freed memory kept for reuse (glibc only; `BIGBIRD_PEGASUS_REUSE_FREED_MEMORY=0` opts out): allocations up to
  1 GiB come from the heap instead of each being a fresh memory map, and the heap keeps up to 1 GiB freed at its
  top instead of handing it back, so that the next layer's activations reuse pages already faulted in. By
  default glibc maps every allocation over 32 MiB anew (the large encoder's 64 MiB feed-forward activations, 16
  layers a document) and unmaps it when freed. The int8 encoder at 4096 tokens ran 9.8-10.3 against 11.9-12.4 s
  on a 2-core AMD EPYC Zen 3, the fp32 one 14.7-14.9 against 15.6-16.1 s (first document of a process; peak
  resident memory +60-130 MB; scratch `/tmp/s31/enc_malloc.py`). The process's resident memory then stays near
  its peak after a document instead of shrinking.
"""

from __future__ import annotations

import ctypes
import os

# <malloc.h>'s mallopt parameters
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEPT_BYTES = 1 << 30


def configure() -> None:
    """Make both settings of the module docstring, each unless opted out."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    if os.environ.get("BIGBIRD_PEGASUS_REUSE_FREED_MEMORY", "1") != "0":
        keep_freed_memory()


def keep_freed_memory() -> bool:
    """Ask glibc to serve allocations up to KEPT_BYTES from the heap and keep as much freed there; whether it
    took both (False where the C library is not glibc)."""
    library = _glibc()
    if library is None:
        return False
    return bool(library.mallopt(M_MMAP_THRESHOLD, KEPT_BYTES)) and bool(library.mallopt(M_TRIM_THRESHOLD,
                                                                                        KEPT_BYTES))


def _glibc() -> ctypes.CDLL | None:
    """The process's C library where it is glibc, else None. Looked up in the process itself (no search for the
    library's file, which runs other programs and can fail)."""
    try:
        library = ctypes.CDLL(None)
        library.gnu_get_libc_version  # glibc's own symbol: musl and macOS have none
        library.mallopt
    except (OSError, AttributeError):
        return None
    library.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    library.mallopt.restype = ctypes.c_int
    return library
