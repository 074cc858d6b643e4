"""Depth image to 3-D points in the camera optical frame."""

from __future__ import annotations

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.errors import DepthNodeError


class PointGrid:
    """Back-projects depth images of one camera on a strided pixel grid.

    The ray slopes are computed once per camera and stride; each call is then two
    multiplications. Output is organized: ``[H', W', 3]`` float32 metres, NaN where depth is NaN.
    """

    def __init__(self, camera: PinholeCamera, stride: int = 1) -> None:
        if stride < 1:
            raise DepthNodeError(f'stride must be >= 1, got {stride}')
        self.camera = camera
        self.stride = stride
        xr, yr = camera.rays(stride)
        self._xr = np.ascontiguousarray(xr)  # [H', W'] float32
        self._yr = np.ascontiguousarray(yr)  # [H', W'] float32
        self._tx = np.float32(camera.tx / camera.fx)
        self._ty = np.float32(camera.ty / camera.fy)

    def points(self, depth: np.ndarray) -> np.ndarray:
        """Organized points [H', W', 3] float32 (metres, optical frame) from depth [H, W]."""
        if depth.shape != (self.camera.height, self.camera.width):
            raise DepthNodeError(f'depth of shape {depth.shape} does not match the camera size '
                                 f'{(self.camera.height, self.camera.width)}')
        z = depth[::self.stride, ::self.stride]
        out = np.empty(z.shape + (3,), dtype=np.float32)
        np.multiply(self._xr, z, out=out[..., 0])
        np.multiply(self._yr, z, out=out[..., 1])
        if self._tx:
            out[..., 0] -= self._tx
        if self._ty:
            out[..., 1] -= self._ty
        out[..., 2] = z
        return out


def depth_to_points(depth: np.ndarray, camera: PinholeCamera, stride: int = 1) -> np.ndarray:
    """Organized points [H', W', 3] float32 metres from depth [H, W] (see :class:`PointGrid`)."""
    return PointGrid(camera, stride).points(depth)
