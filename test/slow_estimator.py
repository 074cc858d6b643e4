"""A deliberately slow estimator for the overload test (imported by the node by path)."""

import time

import numpy as np

from depth_node.core.align import OutputKind, OutputSpec


class SlowEstimator:
    """Constant disparity after ``delay`` seconds: stands in for a model slower than the camera."""

    output = OutputSpec(OutputKind.DISPARITY)
    name = 'slow'

    def __init__(self, delay: float = 0.3) -> None:
        self.delay = delay

    def predict(self, rgb):
        time.sleep(self.delay)
        h, w = rgb.shape[:2]
        return np.tile(np.linspace(1.0, 2.0, h, dtype=np.float32)[:, None], (1, w))
