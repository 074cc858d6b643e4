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


def check_image_size(image: np.ndarray, sparse: SparseDepth, name: str) -> tuple[int, int]:
    """``(H, W)`` of ``image`` (named ``name`` in errors) when it is [H, W] and ``sparse`` is
    of the same size; :class:`DepthNodeError` otherwise."""
    if image.ndim != 2:
        raise DepthNodeError(f'{name} must be [H, W], got shape {image.shape}')
    h, w = image.shape
    if (sparse.height, sparse.width) != (h, w):
        raise DepthNodeError(f'sparse depth is {sparse.width}x{sparse.height} but the '
                             f'{name} is {w}x{h}')
    return h, w


def point_pixels(points: np.ndarray, camera: PinholeCamera, lidar_to_camera: RigidTransform,
                 min_depth: float = 0.1, max_depth: float = float('inf')
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Where each LiDAR point [N, 3] lands: flat pixel ``v * width + u`` and depth.

    Returns ``pixel`` [N] int64 (-1 where the point is dropped: non-finite, outside
    ``(min_depth, max_depth]`` or outside the image) and ``z`` [N] float32 metres (optical Z;
    meaningful where ``pixel >= 0``). :func:`project_points` is this plus the z-buffer.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise DepthNodeError(f'points must have shape [N, 3], got {pts.shape}')
    pts = pts.astype(np.float32, copy=False)
    # Depth first: most of a 360-degree sweep is behind the camera, so transform the rest only.
    z_all = lidar_to_camera.row(2, pts)  # [N] float32, optical Z
    max_depth = min(max_depth, _MAX_RANGE)
    # NaN compares False, so this also drops non-finite points.
    keep = (z_all > min_depth) & (z_all <= max_depth)
    front = np.compress(keep, pts, axis=0)
    z = np.compress(keep, z_all)
    inv_z = 1.0 / z
    x = lidar_to_camera.row(0, front)
    y = lidar_to_camera.row(1, front)
    u = np.rint((camera.fx * x + camera.tx) * inv_z + camera.cx)
    v = np.rint((camera.fy * y + camera.ty) * inv_z + camera.cy)
    inside = (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    pix = np.full(u.shape, -1, dtype=np.int64)
    pix[inside] = v[inside].astype(np.int64) * camera.width + u[inside].astype(np.int64)
    pixel = np.full(pts.shape[0], -1, dtype=np.int64)
    pixel[np.flatnonzero(keep)] = pix
    return pixel, z_all


def project_points(points: np.ndarray, camera: PinholeCamera,
                   lidar_to_camera: RigidTransform, min_depth: float = 0.1,
                   max_depth: float = float('inf')) -> SparseDepth:
    """Project LiDAR points [N, 3] (LiDAR frame, metres) to sparse depth in ``camera``.

    ``lidar_to_camera`` is the pose of the LiDAR in the camera optical frame.
    """
    pixel, z_all = point_pixels(points, camera, lidar_to_camera, min_depth, max_depth)
    hit = np.flatnonzero(pixel >= 0)
    pix = pixel[hit]
    z = z_all[hit]
    # z-buffer: the nearest depth per pixel by an unbuffered minimum (O(N), no sort), then one
    # winner per pixel among the returns at that depth (exact ties keep the last one).
    zbuf = np.full(camera.width * camera.height, np.inf, dtype=np.float32)
    np.minimum.at(zbuf, pix, z)
    nearest = np.flatnonzero(z == zbuf[pix])
    owner = np.empty(zbuf.size, dtype=np.int64)
    owner[pix[nearest]] = nearest
    sel = nearest[owner[pix[nearest]] == nearest]
    win = pix[sel]
    return SparseDepth((win % camera.width).astype(np.int32),
                       (win // camera.width).astype(np.int32), z[sel].astype(np.float32),
                       camera.width, camera.height)
