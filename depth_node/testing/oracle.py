"""Oracle estimator: the true disparity of known synthetic frames under an affine map.

Not a model. It tests and demonstrates the metric path (LiDAR projection, fit, depth, cloud)
with a relative input whose only unknown is the scale and shift the fit must recover. It looks
frames up by the exact bytes of their RGB image, so it works only on frames it was given (e.g.
by :func:`depth_node.sim.frames.save_frames`); any other image is an error.

Use it by import path: ``estimator.type: depth_node.testing.oracle:DisparityOracle`` with
``estimator.options: '{"frames_dir": "...", "scale": 0.37, "shift": 0.05}'``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from depth_node.core.align import OutputKind, OutputSpec
from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.estimators.base import check_input_image
from depth_node.sim.oracles import Corruption, oracle_prediction


def image_key(rgb: np.ndarray) -> str:
    """Hash of an RGB image's shape and bytes."""
    h = hashlib.sha1(str(rgb.shape).encode())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()


class DisparityOracle:
    """Relative disparity ``scale / z + shift`` of frames whose true depth ``z`` is known.

    Sky (infinite depth) maps to ``shift``, as a perfect disparity model would put it.
    ``distortion``, ``noise`` and ``blur`` corrupt it like a real model's errors
    (:class:`depth_node.sim.oracles.Corruption`).
    """

    output = OutputSpec(OutputKind.DISPARITY, metric=False)
    name = 'oracle'

    def __init__(self, frames_dir: str, scale: float = 0.37, shift: float = 0.05,
                 distortion: float = 0.0, noise: float = 0.0, blur: float = 0.0) -> None:
        if not scale > 0:
            raise ConfigError('estimator.options.scale', 'must be > 0', scale)
        try:
            self.corruption = Corruption(distortion=distortion, noise=noise, blur=blur)
        except DepthNodeError as exc:
            raise ConfigError('estimator.options', str(exc), {
                'distortion': distortion, 'noise': noise, 'blur': blur}) from None
        path = Path(frames_dir)
        files = sorted(path.glob('*.npz')) if path.is_dir() else []
        if not files:
            raise ConfigError('estimator.options.frames_dir',
                              'must be a folder of .npz frames (rgb, depth)', frames_dir)
        self._depth: dict[str, np.ndarray] = {}
        for f in files:
            with np.load(f) as data:
                self._depth[image_key(data['rgb'])] = data['depth'].astype(np.float32)
        self.scale = float(scale)
        self.shift = float(shift)

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """Disparity [H, W] float32 of a known frame; DepthNodeError for an unknown image."""
        check_input_image(rgb)
        depth = self._depth.get(image_key(rgb))
        if depth is None:
            raise DepthNodeError('oracle: this image is not one of the frames it was given')
        return oracle_prediction(depth, OutputKind.DISPARITY, self.scale, self.shift,
                                 self.corruption)
