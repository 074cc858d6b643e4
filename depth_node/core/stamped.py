"""Pairing by stamp and handing over the newest item: the two small buffers every path shares.

:class:`StampedCache` keeps items keyed by an integer stamp (nanoseconds), sorted, with the
semantics of ``message_filters.Cache``: the item nearest a stamp within a tolerance, the last
item at or before a stamp, the first after it, and pruning. The node's LiDAR buffer, the bag
reader's pairing of sweeps / camera_info / ground truth with images and the training data's
pairing of labels with images all use it, so they agree on which item goes with which frame.

:class:`NewestSlot` holds at most one waiting item for a worker: a newer item replaces the
waiting one (the caller counts it as superseded), so a slow consumer never builds a queue.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections import deque
from typing import Generic, Iterator, Optional, TypeVar

T = TypeVar('T')


class StampedCache(Generic[T]):
    """Items sorted by stamp (int ns), at most ``capacity`` of them.

    Inserting a stamp that is already present keeps the first item (a duplicate message).
    When full, the item that *arrived* first is evicted, not the oldest stamp: for a stream
    in stamp order the two are the same, but a late (older-stamped) item is then kept instead
    of being evicted on arrival, and a far-future stamp ages out like any other item instead
    of staying forever. Not thread-safe: callers hold their own lock.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f'capacity must be >= 1, got {capacity}')
        self.capacity = int(capacity)
        self._stamps: list[int] = []
        self._items: list[T] = []
        # Arrival order: (sequence, stamp); entries of items pruned since are skipped lazily.
        self._arrivals: deque[tuple[int, int]] = deque()
        self._seq_of: dict[int, int] = {}  # stamp -> sequence number of the item held
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._stamps)

    def __iter__(self) -> Iterator[tuple[int, T]]:
        return iter(list(zip(self._stamps, self._items)))

    def __contains__(self, stamp: int) -> bool:
        i = bisect.bisect_left(self._stamps, stamp)
        return i < len(self._stamps) and self._stamps[i] == stamp

    def stamps(self) -> list[int]:
        """The stamps held, oldest first (a copy)."""
        return list(self._stamps)

    def add(self, stamp: int, item: T) -> bool:
        """Insert in stamp order; False (and nothing changes) when the stamp is held already."""
        i = bisect.bisect_left(self._stamps, stamp)
        if i < len(self._stamps) and self._stamps[i] == stamp:
            return False
        self._stamps.insert(i, stamp)
        self._items.insert(i, item)
        seq = next(self._seq)
        self._seq_of[stamp] = seq
        self._arrivals.append((seq, stamp))
        while len(self._stamps) > self.capacity:
            self._evict_first_arrival()
        return True

    def _evict_first_arrival(self) -> None:
        while self._arrivals:
            seq, stamp = self._arrivals.popleft()
            if self._seq_of.get(stamp) == seq:  # still held (not pruned or replaced since)
                del self._seq_of[stamp]
                i = bisect.bisect_left(self._stamps, stamp)
                del self._stamps[i]
                del self._items[i]
                return

    def get(self, stamp: int) -> Optional[T]:
        """The item at exactly ``stamp``, or None."""
        i = bisect.bisect_left(self._stamps, stamp)
        if i < len(self._stamps) and self._stamps[i] == stamp:
            return self._items[i]
        return None

    def nearest(self, stamp: int, tolerance: int) -> Optional[tuple[int, T]]:
        """(stamp, item) nearest ``stamp`` with ``|difference| <= tolerance``; the earlier on a
        tie; None when nothing is that close."""
        i = bisect.bisect_left(self._stamps, stamp)
        best: Optional[int] = None
        for j in (i - 1, i):
            if 0 <= j < len(self._stamps):
                d = abs(self._stamps[j] - stamp)
                if d <= tolerance and (best is None or d < abs(self._stamps[best] - stamp)):
                    best = j
        return None if best is None else (self._stamps[best], self._items[best])

    def before(self, stamp: int) -> Optional[tuple[int, T]]:
        """The newest (stamp, item) at or before ``stamp`` (``Cache.getElemBeforeTime``)."""
        i = bisect.bisect_right(self._stamps, stamp)
        return (self._stamps[i - 1], self._items[i - 1]) if i else None

    def after(self, stamp: int) -> Optional[tuple[int, T]]:
        """The oldest (stamp, item) after ``stamp`` (``Cache.getElemAfterTime``)."""
        i = bisect.bisect_right(self._stamps, stamp)
        return (self._stamps[i], self._items[i]) if i < len(self._stamps) else None

    def newest(self) -> Optional[tuple[int, T]]:
        """The (stamp, item) with the largest stamp."""
        return (self._stamps[-1], self._items[-1]) if self._stamps else None

    def prune_before(self, stamp: int) -> int:
        """Drop every item older than ``stamp``; returns how many were dropped."""
        i = bisect.bisect_left(self._stamps, stamp)
        for s in self._stamps[:i]:
            del self._seq_of[s]
        del self._stamps[:i]
        del self._items[:i]
        if len(self._arrivals) > 2 * self.capacity + 16:  # drop the stale entries now and then
            self._arrivals = deque(a for a in self._arrivals if self._seq_of.get(a[1]) == a[0])
        return i

    def clear(self) -> None:
        """Drop everything (e.g. on a time jump backwards, as tf2 clears its buffer)."""
        self._stamps.clear()
        self._items.clear()
        self._arrivals.clear()
        self._seq_of.clear()


class NewestSlot(Generic[T]):
    """One waiting item for one consumer thread; a newer ``put`` replaces the waiting item.

    Thread-safe. ``take`` blocks until an item is there or the slot is closed (then None).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Optional[T] = None
        self._has = False
        self._closed = False

    def put(self, item: T) -> bool:
        """Hand over ``item``; True when it replaced one still waiting (superseded)."""
        with self._cond:
            replaced = self._has
            self._item, self._has = item, True
            self._cond.notify_all()
            return replaced

    def take(self, timeout: Optional[float] = None) -> Optional[T]:
        """The waiting item (the slot is then empty); None on close or after ``timeout`` s."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._has or self._closed, timeout):
                return None
            if self._closed:
                return None
            item, self._item, self._has = self._item, None, False
            return item

    def discard(self) -> bool:
        """Empty the slot; True when an item was waiting."""
        with self._cond:
            had, self._item, self._has = self._has, None, False
            return had

    @property
    def waiting(self) -> bool:
        """Whether an item is waiting."""
        with self._cond:
            return self._has

    def close(self) -> None:
        """Wake every waiting ``take`` with None; later ``take`` calls return None at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed
