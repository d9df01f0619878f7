"""glibc malloc thresholds for worker processes.

glibc's dynamic mmap/trim thresholds hand the decoder's per-batch tensors (4 MB at batch 4096 for 8x8 digits)
back to the kernel after each batch and fault them in again: 7,649 page faults per 100k samples, 1.11-1.32x
of the bare loop's time (bench/README.md, `sample_throughput.py`). Fixed thresholds keep freed blocks of up to
32 MiB (glibc's cap for the mmap threshold) in the heap. Bytes produced are unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 128 << 20
# glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}


def tune_malloc() -> bool:
    """Fix this process's thresholds (mallopt) and export them for its children; False where not glibc.

    Values a user already exported win, in the environment and in this process.
    """
    for name, value in MALLOC_ENV.items():
        os.environ.setdefault(name, value)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim = int(os.environ["MALLOC_TRIM_THRESHOLD_"])
    mmap = int(os.environ["MALLOC_MMAP_THRESHOLD_"])
    return bool(mallopt(_M_TRIM_THRESHOLD, trim)) and bool(mallopt(_M_MMAP_THRESHOLD, mmap))
