"""What the test machine's CPU has, read from /proc/cpuinfo independently of the package."""

from __future__ import annotations

from pathlib import Path

import pytest


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


# The int8 kernel's instructions (vpdpbusd on 512-bit registers, or vpmaddwd on 256-bit ones).
HAS_INT8_KERNEL = {"avx512_vnni", "avx512bw"} <= _cpu_flags() or {"avx2", "fma"} <= _cpu_flags()
needs_int8_kernel = pytest.mark.skipif(not HAS_INT8_KERNEL, reason="this CPU has neither AVX-512 VNNI nor AVX2: the "
                                       "int8 kernel is not built here")
# The attention kernels serve where they are built with AVX2 or AVX-512 (-march=native on a CPU that has them).
HAS_AVX2 = bool({"avx2", "avx512f"} & _cpu_flags())
needs_avx2 = pytest.mark.skipif(not HAS_AVX2, reason="this CPU has no AVX2: the attention kernels do not serve")
# PyTorch's int8 matrix product is oneDNN's (exact sums) with AVX-512 VNNI; without it, a plain loop (exact, slow).
HAS_AVX512_VNNI = "avx512_vnni" in _cpu_flags()
needs_onednn_int8 = pytest.mark.skipif(not HAS_AVX512_VNNI, reason="this CPU has no AVX-512 VNNI: PyTorch's int8 "
                                       "product is a plain loop here, Int8Linear's many-row path does not serve")
