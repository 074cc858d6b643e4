"""The simulated rectified camera: image and exact depth of the street, by culled ray casting.

Camera rays are separable (``x/z`` depends on the column, ``y/z`` on the row), so the window of
pixels that can see a primitive costs a few broadcast operations. Depth is exact along the
optical axis (``inf`` for sky).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.sim.geometry import (GROUND, ground_distance, make_rays, Primitives, SKY, trace,
                                     Window)
from depth_node.sim.street import Scene


@dataclass(frozen=True)
class RenderedFrame:
    """One camera frame: image and exact depth."""

    rgb: np.ndarray  # [H, W, 3] uint8
    depth: np.ndarray  # [H, W] float32, metres along optical Z; inf = sky
    position: np.ndarray  # [3] float64, camera centre in the world
    labels: Optional[np.ndarray] = None  # [H, W] int32: SKY, GROUND or 1 + primitive index


def camera_windows(prims: Primitives, origin: np.ndarray,
                   camera: PinholeCamera) -> list[Window]:
    """Pixel rectangles that can see each primitive (world-aligned camera at ``origin``)."""
    near = 1e-3
    lo, hi = prims.lo - origin, prims.hi - origin
    zlo = np.maximum(lo[:, 2], near)  # clip to the half-space in front of the camera
    zhi = hi[:, 2]
    vis = zhi > near
    zhi = np.maximum(zhi, 2 * near)
    out: list[Window] = []
    # x/z and y/z over a box in front of the camera are extreme at its corners.
    rx = np.stack([a / b for a in (lo[:, 0], hi[:, 0]) for b in (zlo, zhi)])
    ry = np.stack([a / b for a in (lo[:, 1], hi[:, 1]) for b in (zlo, zhi)])
    c0 = np.clip(np.floor(camera.fx * rx.min(0) + camera.cx) - 1, 0, camera.width)
    c1 = np.clip(np.ceil(camera.fx * rx.max(0) + camera.cx) + 2, 0, camera.width)
    r0 = np.clip(np.floor(camera.fy * ry.min(0) + camera.cy) - 1, 0, camera.height)
    r1 = np.clip(np.ceil(camera.fy * ry.max(0) + camera.cy) + 2, 0, camera.height)
    keep = vis & (c1 > c0) & (r1 > r0)
    for p in np.flatnonzero(keep):
        out.append((int(p), int(r0[p]), int(r1[p]), int(c0[p]), int(c1[p])))
    return out


def render_camera(scene: Scene, camera: PinholeCamera,
                  position: Sequence[float] = (0.0, 0.0, 0.0),
                  time: float = 0.0) -> RenderedFrame:
    """Render image and exact depth for a camera at ``position`` looking along +z.

    ``time`` (s of drive time) places the moving primitives.
    """
    origin = np.asarray(position, dtype=np.float64)
    h, w = camera.height, camera.width
    xr = ((np.arange(w) - camera.cx) / camera.fx).astype(np.float32)[None, :]  # [1, W]
    yr = ((np.arange(h) - camera.cy) / camera.fy).astype(np.float32)[:, None]  # [H, 1]
    rays = make_rays(xr, yr, np.ones((1, 1), np.float32))
    ground = ground_distance(scene.ground_y, origin, rays)
    t = np.ascontiguousarray(np.broadcast_to(ground, (h, w)))
    label = np.where(np.isfinite(t), GROUND, SKY).astype(np.int32)
    prims = scene.primitives(time)
    trace(prims, origin, rays, camera_windows(prims, origin, camera), t, label)
    # Shade: directions have z = 1, so t is the depth along the optical axis.
    dirs = np.empty((h, w, 3), np.float32)
    dirs[..., 0], dirs[..., 1], dirs[..., 2] = xr, yr, 1.0
    dirs = dirs.reshape(-1, 3)
    tf = np.where(np.isfinite(t), t, 0).reshape(-1, 1)
    pts = origin + dirs.astype(np.float64) * tf
    dist = tf[:, 0] * np.linalg.norm(dirs, axis=1)
    rgb = scene.shade(pts, label.reshape(-1), dirs, time, dist)
    img = (rgb.reshape(h, w, 3) * 255 + 0.5).astype(np.uint8)
    return RenderedFrame(img, t, origin, label)


# KITTI's rectified left colour camera (P_rect_02 of the raw calibration): 1242 x 375.
KITTI_SIZE = (1242, 375)
KITTI_FOCAL = 721.5377


def default_camera(width: int = 640, height: int = 480) -> PinholeCamera:
    """A KITTI-like rectified camera for a ``width`` x ``height`` image.

    KITTI's focal length scaled with the width (fx = fy = 721.54 at 1242 px: about 81 degrees
    wide, whatever the size), square pixels, principal point at the image centre.
    """
    f = KITTI_FOCAL * width / KITTI_SIZE[0]
    return PinholeCamera(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0)
