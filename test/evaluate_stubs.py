"""Estimator factories for the bag-evaluation tests (named by import path, as a user would)."""

from __future__ import annotations

import numpy as np

from depth_node.testing.oracle import DisparityOracle


class InterruptingOracle(DisparityOracle):
    """The exact oracle, but the ``after + 1``-th prediction raises KeyboardInterrupt (Ctrl-C)."""

    def __init__(self, frames_dir: str, after: int = 3) -> None:
        super().__init__(frames_dir)
        self.after = after
        self.calls = 0

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return super().predict(rgb)
