"""Giving memory back after big frames: ``malloc_trim`` where the C library is glibc.

A frame of a few megapixels allocates hundreds of megabytes on its way (the decoded image,
the network input in float64, the prediction resized back, depth, preview, cloud). glibc
keeps freed blocks of up to 32 MB in its heaps (its mmap threshold grows after the first big
free), so a process stays at its high-water mark: the runner kept +44 MB for good after four
3000x2000 frames. :func:`release_memory` returns the heaps' free pages to the system once
they hold more than ``min_free`` bytes (``mallinfo2`` tells, cheaply); the runner calls it
after every frame, the node after every image message. ``input.max_pixels`` bounds what one
frame may allocate in the first place.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any, Optional

#: Free heap memory beyond which :func:`release_memory` trims, bytes.
MIN_FREE_BYTES = 32 * 1024 * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks',
        'fordblks', 'keepcost')]


_LIBC: Optional[Any] = None
_LOOKED_UP = False


def _glibc() -> Optional[Any]:
    """glibc with ``malloc_trim`` and ``mallinfo2`` (2.33+), or None (musl, macOS, older)."""
    global _LIBC, _LOOKED_UP
    if not _LOOKED_UP:
        _LOOKED_UP = True
        try:
            libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
            libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
            libc.mallinfo2.argtypes, libc.mallinfo2.restype = [], _MallInfo2
            _LIBC = libc
        except (OSError, AttributeError):
            _LIBC = None
    return _LIBC


def heap_free_bytes() -> Optional[int]:
    """Bytes the C heaps hold free (glibc's ``fordblks``), None where unknown."""
    libc = _glibc()
    return None if libc is None else int(libc.mallinfo2().fordblks)


def release_memory(min_free: int = MIN_FREE_BYTES) -> bool:
    """Return the C heaps' free pages to the system when they hold more than ``min_free``
    bytes; True when it trimmed."""
    free = heap_free_bytes()
    if free is None or free < min_free:
        return False
    _glibc().malloc_trim(0)  # type: ignore[union-attr]  # not None when free is known
    return True


__all__ = ['heap_free_bytes', 'MIN_FREE_BYTES', 'release_memory']
