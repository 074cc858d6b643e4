"""StampedCache (message_filters.Cache semantics) and NewestSlot, checked against brute force."""

import threading

import numpy as np
import pytest

from depth_node.core.stamped import NewestSlot, StampedCache


def brute_nearest(stamps, s, tol):
    best = None
    for t in sorted(stamps):
        if abs(t - s) <= tol and (best is None or abs(t - s) < abs(best - s)):
            best = t
    return best


def test_nearest_before_after_match_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(200):
        stamps = sorted(set(int(x) for x in rng.integers(0, 1000, rng.integers(0, 12))))
        cache = StampedCache(64)
        for s in rng.permutation(stamps):
            cache.add(int(s), f'item{s}')
        q, tol = int(rng.integers(-50, 1050)), int(rng.integers(0, 200))
        want = brute_nearest(stamps, q, tol)
        got = cache.nearest(q, tol)
        assert (got[0] if got else None) == want
        if got:
            assert got[1] == f'item{got[0]}'
        before = [s for s in stamps if s <= q]
        after = [s for s in stamps if s > q]
        assert (cache.before(q) or (None,))[0] == (before[-1] if before else None)
        assert (cache.after(q) or (None,))[0] == (after[0] if after else None)


def test_tie_takes_the_earlier_and_duplicates_keep_the_first():
    cache = StampedCache(4)
    assert cache.add(10, 'a') and cache.add(20, 'b')
    assert not cache.add(10, 'again')
    assert cache.nearest(15, 5) == (10, 'a')
    assert cache.get(10) == 'a' and cache.get(11) is None
    assert 20 in cache and 21 not in cache


def test_capacity_evicts_oldest_and_prune():
    cache = StampedCache(3)
    for s in (5, 1, 9, 3):
        cache.add(s, s)
    assert cache.stamps() == [3, 5, 9]
    assert cache.prune_before(6) == 2 and cache.stamps() == [9]
    assert cache.newest() == (9, 9)
    cache.clear()
    assert len(cache) == 0 and cache.newest() is None
    with pytest.raises(ValueError, match='capacity'):
        StampedCache(0)


def test_newest_slot_supersedes_and_closes():
    slot = NewestSlot()
    assert not slot.put(1)
    assert slot.put(2)  # 1 was still waiting: superseded
    assert slot.waiting and slot.take() == 2 and not slot.waiting
    assert slot.take(timeout=0.01) is None
    got = []
    t = threading.Thread(target=lambda: got.append(slot.take()))
    t.start()
    slot.close()
    t.join(2)
    assert got == [None] and slot.closed
    assert slot.put(3) is False and slot.take() is None  # closed: nothing more is handed over
