"""Which waiting frame a busy worker should start on: the one it has, or the next one, due soon.

A worker slower than its camera takes the newest waiting frame
(:class:`~depth_node.core.stamped.NewestSlot`) when it is done with the last one. That frame has
already waited anything from 0 to one camera period ``P``, so under overload the output latency
is the model time plus a wait spread over ``[0, P]`` (at 3x overload, up to a third of the model
time on top, and more when the camera jitters). :func:`take_fresh` bounds it: a frame that has
waited at least ``fraction * P`` is given up for the next one when that is due within the rest
of the period (plus ``slack * P`` for jitter); the worker then idles for at most
``(1 - fraction + slack) * P`` and starts on a frame that has not waited. With ``fraction``
0.5 the wait of the frame the model runs on stays under about ``P / 2`` and the worker idles
``P / 8`` per frame on average (a few percent of the output rate at 3x overload).

:class:`ArrivalPeriod` estimates ``P`` as the median interval of the latest arrivals, so a
stream that pauses or changes rate is followed within a few frames; until it knows a period,
and for a frame older than ``P`` (the stream paused), the waiting frame is taken as it is.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Optional, TypeVar

import numpy as np

from depth_node.core.stamped import NewestSlot

T = TypeVar('T')

#: A frame that waited this fraction of the camera period is replaced by the next one.
FRACTION = 0.5
#: Extra wait for the next frame, as a fraction of the period (camera jitter).
SLACK = 0.1


class ArrivalPeriod:
    """Median interval of the latest ``window`` + 1 arrivals, seconds (thread-safe)."""

    def __init__(self, window: int = 16) -> None:
        self._times: deque[float] = deque(maxlen=window + 1)
        self._lock = threading.Lock()

    def record(self, t: float) -> None:
        """An arrival at ``t`` (seconds, monotonic); a step back restarts the estimate."""
        with self._lock:
            if self._times and t < self._times[-1]:
                self._times.clear()
            self._times.append(t)

    @property
    def period(self) -> Optional[float]:
        """The median interval, s; None before 3 arrivals."""
        with self._lock:
            if len(self._times) < 3:
                return None
            return float(np.median(np.diff(np.asarray(self._times))))


def replace_wait(age: float, period: Optional[float], fraction: float = FRACTION,
                 slack: float = SLACK) -> float:
    """How long to wait for a newer frame instead of one that has waited ``age`` s (0: none).

    ``period`` is the camera period (s, None = unknown). A frame younger than ``fraction *
    period``, or older than a period (the stream paused: the next one is not due), is taken.
    """
    if period is None or not period > 0 or age < fraction * period or age > period:
        return 0.0
    return period - age + slack * period


def take_fresh(slot: NewestSlot[T], arrivals: ArrivalPeriod, arrival_of: Callable[[T], float],
               clock: Callable[[], float] = time.perf_counter,
               fraction: float = FRACTION) -> tuple[Optional[T], int]:
    """The frame to start on from ``slot``, and how many were given up for a newer one (0/1).

    Blocks until a frame is there (None when the slot is closed). ``arrival_of(item)`` is its
    arrival time on ``clock``. See the module docstring.
    """
    item = slot.take()
    if item is None:
        return None, 0
    wait = replace_wait(clock() - arrival_of(item), arrivals.period, fraction)
    if wait <= 0:
        return item, 0
    newer = slot.take(timeout=wait)
    if newer is None:  # not due after all (or closed): the one we have
        return item, 0
    return newer, 1


__all__ = ['ArrivalPeriod', 'FRACTION', 'replace_wait', 'SLACK', 'take_fresh']
