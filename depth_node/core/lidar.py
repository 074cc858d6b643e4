"""Project LiDAR points into a camera image as sparse depth.

Points are moved into the camera optical frame (z forward, x right, y down; REP 103), points
with ``z <= min_depth`` or ``z > max_depth`` or non-finite coordinates are dropped, the rest are
projected with the pinhole model and rounded to the nearest pixel centre. Where several returns
land on one pixel the nearest wins (z-buffer), as in depth_image_proc's ``register``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.errors import DepthNodeError
from depth_node.core.transforms import RigidTransform


# No LiDAR reaches 10 km; the bound keeps the z-buffer sort key exact.
_MAX_RANGE = 9999.0


@dataclass(frozen=True)
class SparseDepth:
    """LiDAR depth at the pixels it hit, one entry per pixel (nearest return)."""

    u: np.ndarray  # [M] int32, column
    v: np.ndarray  # [M] int32, row
    z: np.ndarray  # [M] float32, metres along the optical axis
    width: int
    height: int

    @property
    def count(self) -> int:
        return int(self.z.size)

    def to_image(self) -> np.ndarray:
        """Dense [H, W] float32 metres, NaN where no return landed."""
        img = np.full((self.height, self.width), np.nan, dtype=np.float32)
        img[self.v, self.u] = self.z
        return img

    def sample(self, image: np.ndarray) -> np.ndarray:
        """Values of an [H, W] image at the hit pixels: [M], the image's dtype."""
        if image.shape[:2] != (self.height, self.width):
            raise DepthNodeError(f'image of shape {image.shape[:2]} does not match the sparse '
                                 f'depth size {(self.height, self.width)}')
        return image[self.v, self.u]

    def subset(self, mask: np.ndarray) -> 'SparseDepth':
        return SparseDepth(self.u[mask], self.v[mask], self.z[mask], self.width, self.height)


def project_points(points: np.ndarray, camera: PinholeCamera,
                   lidar_to_camera: RigidTransform, min_depth: float = 0.1,
                   max_depth: float = float('inf')) -> SparseDepth:
    """Project LiDAR points [N, 3] (LiDAR frame, metres) to sparse depth in ``camera``.

    ``lidar_to_camera`` is the pose of the LiDAR in the camera optical frame.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise DepthNodeError(f'points must have shape [N, 3], got {pts.shape}')
    cam = lidar_to_camera.apply(pts.astype(np.float32, copy=False))  # [N, 3] float32
    z = cam[:, 2]
    max_depth = min(max_depth, _MAX_RANGE)
    # NaN compares False, so this also drops non-finite points.
    keep = (z > min_depth) & (z <= max_depth)
    cam = cam[keep]
    z = z[keep]
    inv_z = 1.0 / z
    u = np.rint((camera.fx * cam[:, 0] + camera.tx) * inv_z + camera.cx)
    v = np.rint((camera.fy * cam[:, 1] + camera.ty) * inv_z + camera.cy)
    inside = (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    ui = u[inside].astype(np.int64)
    vi = v[inside].astype(np.int64)
    z = z[inside]
    # z-buffer: sort by (pixel, depth) in one key and keep the first entry of each pixel.
    # Depths are < _MAX_RANGE, so pixel * 1e4 + z keeps both in a float64 without collisions.
    pix = vi * camera.width + ui
    order = np.argsort(pix * 1e4 + z.astype(np.float64), kind='stable')
    pix_sorted = pix[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = pix_sorted[1:] != pix_sorted[:-1]
    sel = order[first]
    return SparseDepth(ui[sel].astype(np.int32), vi[sel].astype(np.int32),
                       z[sel].astype(np.float32), camera.width, camera.height)
