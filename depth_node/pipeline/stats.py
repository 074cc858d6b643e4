"""Counters and latency statistics for diagnostics (thread-safe, no rclpy)."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from depth_node.core.align import AffineFit
from depth_node.pipeline.frame import FitState
from depth_node.pipeline.trust import TrustReport


@dataclass(frozen=True)
class StageLatency:
    """One stage's latency over a report period, milliseconds."""

    mean: float
    max: float
    frames: int


@dataclass(frozen=True)
class StatsSnapshot:
    """What :meth:`FrameStats.snapshot` reports: the input of the node's diagnostics."""

    counts: dict[str, int] = field(default_factory=dict)  # cumulative counters
    latency: dict[str, StageLatency] = field(default_factory=dict)  # per stage, this period
    fit: Optional[AffineFit] = None  # the last frame's own fit attempt
    applied: Optional[AffineFit] = None  # the fit its depth used
    see_through_rejected: int = 0  # LiDAR pixels the last frame's see-through test dropped
    filter_event: str = ''  # FilterEvent of the last frame
    fit_state: FitState = FitState.NONE
    fit_age: float = float('inf')  # s
    last_error: str = ''  # why the last input was dropped
    new_problems: int = 0  # inputs dropped since the previous snapshot
    trust: Optional[TrustReport] = None  # the last frame's coverage and LiDAR support
    refused: str = ''  # why the last frame's metric depth was refused ('' = it was not)
    busy_s: float = 0.0  # s the frame being processed has taken so far (0: none)
    busy_frame: str = ''  # what that frame is (size, stamp)
    new_slow: int = 0  # frames over the watchdog's bound since the previous snapshot
    last_slow: str = ''  # what the last of them said
    notes: dict[str, str] = field(default_factory=dict)  # state of a stage (e.g. 'deskew')


class FrameStats:
    """What the node did since it started, and per-stage latency since the last report.

    Counters are cumulative (``frames_in``, ``published``, ``dropped_*``, ``malformed_*``);
    latency lists are cleared by :meth:`snapshot` so each report covers one period.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self._latency: dict[str, list[float]] = defaultdict(list)
        self.last_fit: Optional[AffineFit] = None
        self.applied_fit: Optional[AffineFit] = None
        self.see_through_rejected = 0
        self.filter_event = ''
        self.fit_state = FitState.NONE
        self.fit_age = float('inf')
        self.last_error = ''
        self._new_problems = 0
        self._last_latency: dict[str, StageLatency] = {}
        self.trust: Optional[TrustReport] = None
        self.refused = ''
        self._busy: Optional[tuple[float, str]] = None  # (perf_counter at start, frame)
        self._new_slow = 0
        self._last_slow = ''
        self._notes: dict[str, str] = {}

    def count(self, key: str, n: int = 1, problem: bool = False) -> None:
        with self._lock:
            self.counts[key] += n
            if problem:
                self._new_problems += n

    def error(self, key: str, message: str) -> None:
        """Count a dropped input and remember why."""
        with self._lock:
            self.counts[key] += 1
            self._new_problems += 1
            self.last_error = message

    def note(self, key: str, value: str) -> None:
        """Set what a stage is doing now (a diagnostics value, e.g. ``deskew``)."""
        with self._lock:
            self._notes[key] = value

    def begin_frame(self, what: str) -> None:
        """A frame starts processing (the watchdog reads how long it has run)."""
        with self._lock:
            self._busy = (time.perf_counter(), what)

    def end_frame(self) -> float:
        """The frame of :meth:`begin_frame` is done; returns the seconds it took."""
        with self._lock:
            start = self._busy[0] if self._busy is not None else time.perf_counter()
            self._busy = None
            return time.perf_counter() - start

    def slow_frame(self, message: str) -> None:
        """Count a frame that took longer than the watchdog's bound (``frames_over_time``)."""
        with self._lock:
            self.counts['frames_over_time'] += 1
            self._new_slow += 1
            self._last_slow = message

    def record_frame(self, timings_ms: dict[str, float], fit: AffineFit, state: FitState,
                     age: float, applied: Optional[AffineFit] = None,
                     see_through_rejected: int = 0, filter_event: str = '',
                     trust: Optional[TrustReport] = None, refused: str = '') -> None:
        with self._lock:
            self.trust = trust
            self.refused = refused
            for k, v in timings_ms.items():
                self._latency[k].append(v)
            self.last_fit = fit
            self.applied_fit = applied
            self.fit_state = state
            self.fit_age = age
            self.see_through_rejected = see_through_rejected
            self.filter_event = filter_event

    def snapshot(self) -> StatsSnapshot:
        """Counters, last fit, and mean/max latency per stage (ms) of the latest busy period."""
        with self._lock:
            lat = {k: StageLatency(float(np.mean(v)), float(np.max(v)), len(v))
                   for k, v in self._latency.items() if v}
            self._latency.clear()
            # A period without frames reports the last period that had some.
            lat = self._last_latency = lat or self._last_latency
            problems, self._new_problems = self._new_problems, 0
            slow, self._new_slow = self._new_slow, 0
            busy_s, busy_frame = 0.0, ''
            if self._busy is not None:
                busy_s, busy_frame = time.perf_counter() - self._busy[0], self._busy[1]
            return StatsSnapshot(
                busy_s=busy_s, busy_frame=busy_frame, new_slow=slow, last_slow=self._last_slow,
                notes=dict(self._notes),
                counts=dict(self.counts), latency=dict(lat), fit=self.last_fit,
                applied=self.applied_fit, see_through_rejected=self.see_through_rejected,
                filter_event=self.filter_event, fit_state=self.fit_state,
                fit_age=self.fit_age, last_error=self.last_error, new_problems=problems,
                trust=self.trust, refused=self.refused)
