"""Keep freed memory in the process on glibc, so large CPU tensors do not page-fault every step.

glibc serves allocations above a threshold (128 KiB, raised on the fly up to 32 MiB) with fresh `mmap`
pages and gives memory back (`munmap`, heap trimming) as soon as it is freed. A training step allocates
and frees the same tens of megabytes of activations and gradients every time, so whether a step reuses
memory or faults in fresh zeroed pages depends on the allocator's history: conv_maxpool at batch 256 on the
2-core CPU made 0 to 12,512 page faults a step and took 78-129 ms from one `trainer.fit` to the next (fmnist,
a plain loop and a bare LightningModule alike). Fixed thresholds of 1 GiB keep such blocks in the heap for
reuse: 0-261 faults and 72-78 ms a step in the same benchmark (docs/speed.md, item 10). The price is that
the process keeps up to 1 GiB of freed memory instead of returning it to the system. PyTorch's CPU tuning
guides get the same effect by preloading jemalloc or tcmalloc; this needs no extra library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30


@functools.cache  # once per process: every trainer of a sweep or benchmark asks again
def keep_freed_memory(keep_bytes: int = KEEP_BYTES) -> bool:
    """True when glibc took the thresholds; False elsewhere (macOS, Windows, musl), where nothing changes."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, keep_bytes)) and bool(mallopt(M_TRIM_THRESHOLD, keep_bytes))
