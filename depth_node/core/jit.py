"""The compiled kernels' one decorator: numba's ``njit(cache=True, nogil=True)``, or the plain
Python function where numba is missing (a broken install: the same code runs, slowly).

``cache=True`` keeps the machine code next to the package (or in the user's cache), so a new
process loads it instead of compiling; ``nogil=True`` lets the node's other threads run while
a kernel does.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

try:  # numba is a dependency; without it (a broken install) the kernels run as Python
    from numba import njit
except ImportError:  # pragma: no cover - exercised only on a broken install
    njit = None

F = TypeVar('F', bound=Callable[..., Any])


def compiled(fn: F) -> F:
    """``fn`` compiled with ``njit(cache=True, nogil=True)`` (``fn`` itself without numba)."""
    return njit(cache=True, nogil=True)(fn) if njit is not None else fn


__all__ = ['compiled', 'njit']
