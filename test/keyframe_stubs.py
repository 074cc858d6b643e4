"""Stub teachers for the keyframe worker tests (importable, so picklable for process mode).

They are not models: :class:`AffineOracleTeacher` returns the exact depth of a known frame under
an affine map the fit must recover (plus a given uncertainty map), which tests the worker's
plumbing and alignment; the real teacher (Marigold) is tested in ``test_marigold.py``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Optional

import numpy as np

from depth_node.core.align import OutputKind, OutputSpec


class AffineOracleTeacher:
    """Predicts ``m = (z - shift) / scale`` for the one frame it knows (``z``: true depth).

    So the fit ``z ≈ s·m + t`` should find ``s = scale``, ``t = shift``. Sky (``z = inf``)
    stays inf (no prediction). The uncertainty map is returned as given (relative units).
    """

    name = 'affine_oracle'

    def __init__(self, depth: np.ndarray, scale: float = 40.0, shift: float = 2.0,
                 uncertainty: Optional[np.ndarray] = None, delay: float = 0.0) -> None:
        self.output = OutputSpec(OutputKind.DEPTH, metric=False)
        self.depth = np.asarray(depth, np.float32)
        self.scale = scale
        self.shift = shift
        self.uncertainty = uncertainty
        self.delay = delay
        self.threads_seen: list[int] = []
        self.cpus_seen: list[set[int]] = []
        self.nice_seen: list[int] = []

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        return self.predict_with_uncertainty(rgb)[0]

    def predict_with_uncertainty(self, rgb: np.ndarray):
        import sys
        torch = sys.modules.get('torch')
        if torch is not None:
            self.threads_seen.append(torch.get_num_threads())
        if hasattr(os, 'getpriority'):
            self.nice_seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        if hasattr(os, 'sched_getaffinity'):
            self.cpus_seen.append(os.sched_getaffinity(0))  # the calling thread's, on Linux
        if self.delay:
            time.sleep(self.delay)
        with np.errstate(invalid='ignore'):
            pred = (self.depth - np.float32(self.shift)) / np.float32(self.scale)
        return pred.astype(np.float32), self.uncertainty


class GatedTeacher:
    """Blocks in ``predict`` until its gate opens; records calls and the peak concurrency."""

    name = 'gated'

    def __init__(self, shape: tuple[int, int] = (48, 64)) -> None:
        self.output = OutputSpec(OutputKind.DEPTH, metric=False)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.shape = shape
        self.calls = 0
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        with self._lock:
            self.calls += 1
            self.active += 1
            self.peak = max(self.peak, self.active)
        self.entered.set()
        self.gate.wait(30.0)
        with self._lock:
            self.active -= 1
        return np.full(rgb.shape[:2], 0.5, np.float32)


class FailingTeacher:
    """Raises on images whose first pixel is 0, else predicts a constant."""

    name = 'failing'

    def __init__(self) -> None:
        self.output = OutputSpec(OutputKind.DEPTH, metric=False)

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        if rgb[0, 0, 0] == 0:
            raise RuntimeError('teacher exploded')
        return np.full(rgb.shape[:2], 0.5, np.float32)


class SleepyTeacher:
    """Sleeps ``seconds`` in every prediction (a teacher that does not finish in time)."""

    name = 'sleepy'

    def __init__(self, seconds: float = 30.0) -> None:
        self.output = OutputSpec(OutputKind.DEPTH, metric=False)
        self.seconds = seconds

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return np.full(rgb.shape[:2], 0.5, np.float32)


class DyingTeacher:
    """Ends its process (exit code 3) on images whose first pixel is 0: a crashing teacher."""

    name = 'dying'

    def __init__(self) -> None:
        self.output = OutputSpec(OutputKind.DEPTH, metric=False)

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        if rgb[0, 0, 0] == 0:
            os._exit(3)
        return np.full(rgb.shape[:2], 0.5, np.float32)
