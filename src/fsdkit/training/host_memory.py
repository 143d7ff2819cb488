"""Freed host memory kept for the next training step (glibc's malloc), instead of returned to the system.

A training step allocates and frees the same large tensors at every step: activations, their gradients, the
parameters' gradients (``zero_grad`` sets them to None), FSDG's student-memory gradient (100 × 49,152 floats). glibc
serves an allocation above its mmap threshold (128 KiB, growing as such chunks are freed, at most 32 MiB) with a
fresh ``mmap`` and unmaps it on free, and it trims the top of its heap back to the system: every step's large
tensors then fault fresh, zeroed pages in. The 47 MB gradient of a MiniLM student's word embeddings is above every
threshold, so it is mapped and unmapped at every step.

:func:`reused_host_memory` turns both off while it is active (``mallopt``: ``M_MMAP_MAX = 0``, ``M_TRIM_THRESHOLD``
above any run's memory): every chunk comes from the heap and stays there for the next step. Measured on MRPC batches
of 32 with the teacher-output cache (benchmarks/speed/SPEED.md): minor page faults per step fall from 10,000-17,000 to
700-1,300, and throughput rises 2-3 % on a quiet machine with 2 threads, 11-17 % with 1 thread beside two other
training processes (where faulting pages in competes with them). Peak memory is the steps' own; nothing changes
numerically. On exit mapped
chunks and trimming come back (``M_MMAP_MAX = 65536``; the mmap and trim thresholds at 32 and 64 MiB, where glibc's
dynamic ones settle once large tensors have been freed — fixed from then on, as glibc keeps any threshold a process
has set) and ``malloc_trim(0)`` returns the freed memory to the system.

Elsewhere than glibc (macOS, Windows, musl) it does nothing; with jemalloc or tcmalloc preloaded it changes glibc's
unused allocator only. ``--no-reuse-host-memory`` (``RunConfig.reuse_host_memory``) leaves the allocator as it is.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import platform
import threading
from collections.abc import Iterator

logger = logging.getLogger(__name__)

#: mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
#: on exit: glibc's default number of mapped chunks, and the thresholds where glibc's dynamic ones settle in a
#: process that has freed large tensors (the mmap threshold grows to the largest freed mapped chunk, at most 32 MiB;
#: the trim threshold follows at twice that) — set explicitly, because a process that has called mallopt keeps fixed
#: thresholds: glibc offers no way back to the dynamic ones
DEFAULT_MMAP_MAX = 65536
SETTLED_MMAP_THRESHOLD = 32 * 1024 * 1024
SETTLED_TRIM_THRESHOLD = 2 * SETTLED_MMAP_THRESHOLD
#: the largest trim threshold (mallopt's value is a C int, 2 GiB - 1): a step never frees that much at the heap's top
NEVER_TRIM = (1 << 31) - 1

_lock = threading.Lock()
_depth = 0


def glibc_malloc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc with ``mallopt`` and ``malloc_trim``; None elsewhere."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def keep_freed_memory(libc: ctypes.CDLL) -> bool:
    """No mmap'd chunks and no trimming of the heap from now on; whether glibc took both settings."""
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))


def return_freed_memory(libc: ctypes.CDLL) -> None:
    """Mapped chunks and trimming again (at the settled thresholds, see :data:`SETTLED_MMAP_THRESHOLD`), and the
    freed memory returned to the system (``malloc_trim``)."""
    libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
    libc.mallopt(M_MMAP_THRESHOLD, SETTLED_MMAP_THRESHOLD)
    libc.mallopt(M_TRIM_THRESHOLD, SETTLED_TRIM_THRESHOLD)
    libc.malloc_trim(0)


@contextlib.contextmanager
def reused_host_memory(enabled: bool = True) -> Iterator[bool]:
    """Keep freed host memory in the heap for reuse while the block runs (see the module docstring); yields whether
    it is in effect. Nested blocks share the outermost one's setting; the outermost exit gives mapped chunks and
    trimming back (:func:`return_freed_memory`)."""
    global _depth
    libc = glibc_malloc() if enabled else None
    if libc is None:
        yield False
        return
    with _lock:
        if _depth == 0 and not keep_freed_memory(libc):
            logger.debug("mallopt refused: freed host memory is returned to the system as usual")
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                return_freed_memory(libc)
