"""Compile the C kernels of this folder once per machine with the system's C compiler and load them.

The shared library is cached under a name made of a hash of the source, the compiler and the CPU's features
(`-march=native`: it is built for the machine that runs it), so a changed source, compiler or machine builds
anew and every later process loads it at once. Building is atomic (a private file, then a rename): processes that
start together may each build, and none loads a half-written file.

Environment:
    BIGBIRD_PEGASUS_KERNELS=0         do not build or load the kernels (PyTorch's own operators serve instead)
    BIGBIRD_PEGASUS_KERNEL_CACHE=dir  where the built library is kept (default: ~/.cache/bigbird_pegasus/kernels,
                                      under $XDG_CACHE_HOME when set)
    CC                                the C compiler (default: cc); it needs OpenMP (-fopenmp), as GCC has
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCES = ("few_row_linear.c", "few_row_int8_linear.c", "few_query_attention.c", "top_k.c", "activation.c",
           "decoder_step.c", "block_sparse_attention.c", "quantize.c")
HEADERS = ("kernels.h", "vectors.h")  # included by the sources: part of what a build depends on
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC")
BUILD_SECONDS = 120


class KernelsUnavailable(RuntimeError):
    """The kernels could not be built or loaded here; the message says why."""


def load_library() -> ctypes.CDLL:
    """The built kernels, built first if this machine has no cached copy; KernelsUnavailable says why not."""
    if os.environ.get("BIGBIRD_PEGASUS_KERNELS", "1") == "0":
        raise KernelsUnavailable("turned off by BIGBIRD_PEGASUS_KERNELS=0")
    if platform.system() not in ("Linux", "Darwin"):
        raise KernelsUnavailable(f"not built on {platform.system()}")
    compiler = os.environ.get("CC") or "cc"
    if shutil.which(compiler) is None:
        raise KernelsUnavailable(f"no C compiler: {compiler!r} is not on PATH (set CC to one)")
    folder = Path(__file__).parent
    sources = [folder / name for name in SOURCES]
    headers = [folder / name for name in HEADERS]
    library = _cache_folder() / f"kernels-{_build_key(compiler, sources + headers)}.so"
    if not library.exists():
        _build(compiler, sources, library)
    try:
        return ctypes.CDLL(str(library))
    except OSError as error:
        raise KernelsUnavailable(f"{library} does not load: {error}") from error


def _cache_folder() -> Path:
    if configured := os.environ.get("BIGBIRD_PEGASUS_KERNEL_CACHE"):
        return Path(configured)
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "bigbird_pegasus" / "kernels"


def _build_key(compiler: str, sources: list[Path]) -> str:
    """A hash of what the library depends on: the sources and headers, the flags, the compiler and the CPU."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.read_bytes())
    digest.update(" ".join(FLAGS).encode())
    digest.update(_output_of([compiler, "--version"]).encode())
    digest.update(_cpu_features().encode())
    return digest.hexdigest()[:20]


def _cpu_features() -> str:
    """The CPU's model and instruction-set flags (what -march=native compiles for)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:  # no /proc (macOS): the machine's name stands in
        return platform.machine() + platform.processor()
    return "\n".join(line for line in lines if line.startswith(("model name", "flags", "Features")))[:65536]


def _output_of(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise KernelsUnavailable(f"{command[0]} does not run: {error}") from error


def _build(compiler: str, sources: list[Path], library: Path) -> None:
    """Compile `sources` into `library`: into a private file of the same folder, then renamed into place."""
    try:
        library.parent.mkdir(parents=True, exist_ok=True)
        handle, private = tempfile.mkstemp(prefix=f".{library.name}.", dir=library.parent)
        os.close(handle)
    except OSError as error:
        raise KernelsUnavailable(f"cannot write to the kernel cache {library.parent}: {error}") from error
    command = [compiler, *FLAGS, *map(str, sources), "-o", private]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_SECONDS, check=False)
        if done.returncode != 0:
            raise KernelsUnavailable(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[:2000]}")
        os.replace(private, library)
    except (OSError, subprocess.SubprocessError) as error:
        raise KernelsUnavailable(f"{' '.join(command)} did not run: {error}") from error
    finally:
        if os.path.exists(private):
            os.unlink(private)
