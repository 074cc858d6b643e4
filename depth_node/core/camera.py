"""Pinhole camera model built from the numbers of a ``sensor_msgs/CameraInfo``.

Follows image_geometry's ``PinholeCameraModel``: projection uses the rectified projection matrix
``P`` (the input image is expected to be rectified, e.g. ``image_rect``); when ``P`` is all zero
the intrinsic matrix ``K`` is used instead. Binning and a region of interest shrink and shift the
model to the published image. Pixel centres are at integer coordinates (OpenCV convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from depth_node.core.errors import DepthNodeError


@dataclass(frozen=True)
class PinholeCamera:
    """Rectified pinhole model of the image as published.

    ``fx, fy, cx, cy`` in pixels; ``tx, ty`` are ``P[0, 3]`` and ``P[1, 3]`` (pixels·metres,
    non-zero only for the second camera of a stereo pair).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    tx: float = 0.0
    ty: float = 0.0

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise DepthNodeError(
                f'camera size must be positive, got width={self.width} height={self.height}')
        for name in ('fx', 'fy'):
            v = getattr(self, name)
            if not np.isfinite(v) or v <= 0:
                raise DepthNodeError(f'camera {name} must be a positive finite number, got {v}')
        for name in ('cx', 'cy', 'tx', 'ty'):
            if not np.isfinite(getattr(self, name)):
                raise DepthNodeError(f'camera {name} must be finite, got {getattr(self, name)}')

    @classmethod
    def from_camera_info(cls, width: int, height: int, k: Sequence[float], p: Sequence[float],
                         binning_x: int = 0, binning_y: int = 0,
                         roi: Optional[tuple[int, int, int, int]] = None) -> 'PinholeCamera':
        """Model from CameraInfo fields (``k`` 9 numbers, ``p`` 12, ``roi`` x, y, w, h).

        ``width``/``height`` are the full-sensor size of CameraInfo; the returned model is that
        of the published image after binning and ROI, as image_geometry computes it.
        """
        k_arr = np.asarray(k, dtype=np.float64).reshape(-1)
        p_arr = np.asarray(p, dtype=np.float64).reshape(-1)
        if p_arr.size != 12 or k_arr.size != 9:
            raise DepthNodeError(
                f'camera_info needs k of 9 and p of 12 numbers, got {k_arr.size} and {p_arr.size}')
        if np.any(p_arr[[0, 5]] != 0):
            fx, fy, cx, cy = p_arr[0], p_arr[5], p_arr[2], p_arr[6]
            tx, ty = p_arr[3], p_arr[7]
        elif np.any(k_arr[[0, 4]] != 0):
            fx, fy, cx, cy = k_arr[0], k_arr[4], k_arr[2], k_arr[5]
            tx = ty = 0.0
        else:
            raise DepthNodeError('camera_info has neither a projection matrix p nor intrinsics k '
                                 '(both are all zero): the camera is uncalibrated')
        bx = max(int(binning_x), 1)
        by = max(int(binning_y), 1)
        w, h = int(width), int(height)
        if roi is not None and roi[2] > 0 and roi[3] > 0:
            x0, y0, w, h = (int(v) for v in roi)
            cx, cy = cx - x0, cy - y0
        return cls(width=w // bx, height=h // by, fx=fx / bx, fy=fy / by, cx=cx / bx, cy=cy / by,
                   tx=tx / bx, ty=ty / by)

    @property
    def k(self) -> np.ndarray:
        """Intrinsic matrix [3, 3] float64."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    def resized(self, width: int, height: int) -> 'PinholeCamera':
        """The same camera for an image resized to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        # Pixel centres at integers: scaling acts on (c + 0.5).
        return PinholeCamera(width, height, self.fx * sx, self.fy * sy,
                             (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5,
                             self.tx * sx, self.ty * sy)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (u, v), each [N] float64, of optical-frame points [N, 3] (z > 0)."""
        pts = np.asarray(points, dtype=np.float64)
        z = pts[:, 2]
        u = (self.fx * pts[:, 0] + self.tx) / z + self.cx
        v = (self.fy * pts[:, 1] + self.ty) / z + self.cy
        return u, v

    def rays(self, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel ray slopes ``(x/z, y/z)`` on the strided grid, each [H', W'] float32."""
        us = np.arange(0, self.width, stride, dtype=np.float64)
        vs = np.arange(0, self.height, stride, dtype=np.float64)
        # Inverse of project() at depth z: x = ((u - cx) z - tx) / fx; the tx/z term is folded
        # in by depth_to_points since it depends on z.
        xr = ((us - self.cx) / self.fx).astype(np.float32)
        yr = ((vs - self.cy) / self.fy).astype(np.float32)
        return np.broadcast_to(xr[None, :], (vs.size, us.size)), \
            np.broadcast_to(yr[:, None], (vs.size, us.size))
