"""Estimator factories for the fleet tests (named by import path, as a user would)."""

from __future__ import annotations

import os

import numpy as np

from depth_node.testing.oracle import DisparityOracle


class CrashOnceOracle(DisparityOracle):
    """The exact oracle, but the first process to reach its ``after + 1``-th prediction dies
    there (``os._exit``, as a worker killed mid-bag), once: ``marker`` is created first, so
    the retry and every other worker run normally."""

    def __init__(self, frames_dir: str, marker: str, after: int = 5) -> None:
        super().__init__(frames_dir)
        self.marker = marker
        self.after = after
        self.calls = 0

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls > self.after:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os._exit(17)
        return super().predict(rgb)


class FlatAtOracle(DisparityOracle):
    """The exact oracle, but a flat (constant) prediction for the frames numbered in ``flat``
    (positions in ``frames_dir``): their fit is refused, the pipeline holds the last one."""

    def __init__(self, frames_dir: str, flat: tuple = ()) -> None:
        from pathlib import Path

        from depth_node.testing.oracle import image_key
        super().__init__(frames_dir)
        self.flat = set()
        for k, f in enumerate(sorted(Path(frames_dir).glob('*.npz'))):
            if k in flat:
                with np.load(f) as data:
                    self.flat.add(image_key(data['rgb']))
        self._key = image_key

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        if self._key(rgb) in self.flat:
            return np.full(rgb.shape[:2], 0.5, np.float32)
        return super().predict(rgb)
