"""What the oldest supported Python (3.10: Humble, and Jazzy on Ubuntu 22.04) lacks.

``enum.StrEnum`` is 3.11+; :class:`StrEnum310` is the same contract (members are ``str``,
``str()`` and ``format()`` give the value) for 3.10, and ``StrEnum`` is whichever applies.
"""

from __future__ import annotations

import enum


class StrEnum310(str, enum.Enum):
    """``enum.StrEnum`` for Python 3.10: a ``str`` whose ``str()``, ``format()`` are its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


try:
    from enum import StrEnum
except ImportError:  # Python 3.10
    StrEnum = StrEnum310  # type: ignore[misc, assignment]

__all__ = ['StrEnum', 'StrEnum310']
