"""The frame a busy worker starts on (core/freshness.py): newest, or the next when due soon."""

import threading
import time

import pytest

from depth_node.core.freshness import ArrivalPeriod, replace_wait, take_fresh
from depth_node.core.stamped import NewestSlot


def test_replace_wait():
    assert replace_wait(0.3, None) == 0.0  # no period known yet
    assert replace_wait(0.4, 1.0) == 0.0  # waited less than half a period: taken
    assert replace_wait(0.6, 1.0) == pytest.approx(0.5)  # the next is due in 0.4 s (+0.1 slack)
    assert replace_wait(1.2, 1.0) == 0.0  # older than a period: the stream paused
    assert replace_wait(0.6, 1.0, fraction=0.7) == 0.0


def test_arrival_period_is_the_median_interval_and_restarts_on_a_step_back():
    arrivals = ArrivalPeriod(window=4)
    for t in (0.0, 0.1):
        arrivals.record(t)
    assert arrivals.period is None
    for t in (0.2, 0.3, 0.9, 1.0):  # one long gap among intervals of 0.1
        arrivals.record(t)
    assert arrivals.period == pytest.approx(0.1)
    arrivals.record(0.5)  # time went back
    assert arrivals.period is None


def _periodic(period=1.0):
    arrivals = ArrivalPeriod()
    now = time.perf_counter()
    for k in (3, 2, 1):
        arrivals.record(now - k * period)
    return arrivals


def test_a_frame_that_waited_long_is_given_up_for_the_next_one():
    slot, arrivals = NewestSlot(), _periodic(1.0)
    slot.put(('stale', time.perf_counter() - 0.6))  # waited 0.6 periods: next due in 0.4 s
    timer = threading.Timer(0.05, lambda: slot.put(('next', time.perf_counter())))
    timer.start()
    try:
        item, given_up = take_fresh(slot, arrivals, lambda it: it[1])
    finally:
        timer.cancel()
    assert item[0] == 'next' and given_up == 1


def test_the_waiting_frame_is_taken_when_no_newer_one_comes_in_time():
    slot, arrivals = NewestSlot(), _periodic(0.2)
    slot.put(('stale', time.perf_counter() - 0.15))  # next due in 0.05 s (+0.02): none comes
    t0 = time.perf_counter()
    item, given_up = take_fresh(slot, arrivals, lambda it: it[1])
    assert item[0] == 'stale' and given_up == 0
    assert time.perf_counter() - t0 >= 0.06


def test_a_fresh_frame_is_taken_at_once_and_a_closed_slot_ends_the_worker():
    slot, arrivals = NewestSlot(), _periodic(10.0)
    slot.put(('fresh', time.perf_counter() - 1.0))  # a tenth of the period
    t0 = time.perf_counter()
    item, given_up = take_fresh(slot, arrivals, lambda it: it[1])
    assert item[0] == 'fresh' and given_up == 0
    assert time.perf_counter() - t0 < 1.0
    slot.close()
    assert take_fresh(slot, arrivals, lambda it: it[1]) == (None, 0)
