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


def test_capacity_evicts_the_first_arrival_and_prune():
    cache = StampedCache(3)
    for s in (5, 1, 9, 3):
        cache.add(s, s)
    assert cache.stamps() == [1, 3, 9]  # 5 came first; the late 3 is kept, not evicted
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


def test_a_late_item_is_kept_and_a_future_one_ages_out():
    """The LiDAR buffer's two failure modes when eviction went by stamp: a sweep older than
    the ones held was evicted on arrival, and a far-future sweep was never evicted."""
    cache = StampedCache(10)
    for k in range(10):
        cache.add(1000 + k, k)
    assert cache.add(999, 'late') and cache.get(999) == 'late'
    cache.add(10**9, 'future')
    for k in range(10):
        cache.add(2000 + k, k)
    assert 10**9 not in cache and cache.stamps() == list(range(2000, 2010))


def test_arrival_order_survives_prune_and_re_adding_a_stamp():
    rng = np.random.default_rng(1)
    for _ in range(100):
        cache = StampedCache(5)
        arrived = []  # brute force: stamps held, in arrival order
        for _ in range(40):
            if rng.random() < 0.15:
                cut = int(rng.integers(0, 50))
                assert cache.prune_before(cut) == sum(s < cut for s in arrived)
                arrived = [s for s in arrived if s >= cut]
                continue
            s = int(rng.integers(0, 50))
            assert cache.add(s, s) == (s not in arrived)
            if s not in arrived:
                arrived.append(s)
                arrived = arrived[-5:]
            assert cache.stamps() == sorted(arrived)
