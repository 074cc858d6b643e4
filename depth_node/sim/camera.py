"""The simulated rectified camera: image and exact depth of the street, by culled ray casting.

Camera rays are separable (``x/z`` depends on the column, ``y/z`` on the row), so the window of
pixels that can see a primitive costs a few broadcast operations. Depth is exact along the
optical axis (``inf`` for sky). A ``rotation`` (camera optical frame -> world, e.g. a pitched
camera) keeps rays separable per world component when it is a rotation about one axis; the
window of a primitive is then the bounding rectangle of its bounding box clipped to the space in
front of the camera. ``conditions`` (:mod:`depth_node.sim.conditions`) add fog, veiling glare,
exposure, sensor noise and mono output on top of the shaded radiance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.sim.conditions import Conditions, develop, to_mono
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


# The 12 edges of a box as pairs of corner indices (corner 4i + 2j + k takes lo/hi by bit).
_EDGES = np.array([(a, a | bit) for a in range(8) for bit in (1, 2, 4) if not a & bit])


def camera_windows(prims: Primitives, origin: np.ndarray, camera: PinholeCamera,
                   rotation: Optional[np.ndarray] = None) -> list[Window]:
    """Pixel rectangles that can see each primitive (camera at ``origin``).

    ``rotation`` [3, 3] maps camera optical axes to the world's (None: aligned).
    """
    near = 1e-3
    if rotation is not None:
        return _rotated_windows(prims, origin, camera, np.asarray(rotation, np.float64), near)
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


def _rotated_windows(prims: Primitives, origin: np.ndarray, camera: PinholeCamera,
                     rotation: np.ndarray, near: float) -> list[Window]:
    """Windows of a rotated camera: each bounding box clipped to ``z >= near``, projected.

    A box cut by the plane ``z = near`` is a convex polytope whose vertices are the corners in
    front and the points where edges cross the plane; in front of the camera the projection of
    a convex set is the hull of its projected vertices, so their bounding rectangle is exact.
    """
    if prims.count == 0:
        return []
    lo, hi = prims.lo - origin, prims.hi - origin
    corners = np.stack([np.stack([(lo, hi)[i][:, 0], (lo, hi)[j][:, 1], (lo, hi)[k][:, 2]], 1)
                        for i in (0, 1) for j in (0, 1) for k in (0, 1)], axis=1)  # [P, 8, 3]
    cam = corners @ rotation  # rows: R^T p, camera optical frame
    a, b = cam[:, _EDGES[:, 0]], cam[:, _EDGES[:, 1]]  # [P, 12, 3]
    za, zb = a[..., 2] - near, b[..., 2] - near
    cross = za * zb < 0
    with np.errstate(divide='ignore', invalid='ignore'):
        f = np.where(cross, za / (za - zb), 0.0)
    cut = a + f[..., None] * (b - a)
    pts = np.concatenate([cam, cut], axis=1)  # [P, 20, 3]
    valid = np.concatenate([cam[..., 2] >= near, cross], axis=1)
    z = np.where(valid, np.maximum(pts[..., 2], near), 1.0)
    u = camera.fx * pts[..., 0] / z + camera.cx
    v = camera.fy * pts[..., 1] / z + camera.cy
    inf = np.inf
    c0 = np.clip(np.floor(np.where(valid, u, inf).min(1)) - 1, 0, camera.width)
    c1 = np.clip(np.ceil(np.where(valid, u, -inf).max(1)) + 2, 0, camera.width)
    r0 = np.clip(np.floor(np.where(valid, v, inf).min(1)) - 1, 0, camera.height)
    r1 = np.clip(np.ceil(np.where(valid, v, -inf).max(1)) + 2, 0, camera.height)
    keep = valid.any(1) & (c1 > c0) & (r1 > r0)
    return [(int(p), int(r0[p]), int(r1[p]), int(c0[p]), int(c1[p]))
            for p in np.flatnonzero(keep)]


def _world_component(rotation: np.ndarray, k: int, xr: np.ndarray,
                     yr: np.ndarray) -> np.ndarray:
    """World component ``k`` of the camera rays ``(xr, yr, 1)``, as broadcastable as it can be.

    A term whose coefficient is zero is left out, so a pitch keeps x per column and y, z per
    row ([1, W] / [H, 1]) and the caster stays separable.
    """
    r = rotation[k].astype(np.float64)
    out = np.full((1, 1), r[2])
    if r[0] != 0:
        out = out + r[0] * xr.astype(np.float64)
    if r[1] != 0:
        out = out + r[1] * yr.astype(np.float64)
    return out.astype(np.float32)


def render_camera(scene: Scene, camera: PinholeCamera,
                  position: Sequence[float] = (0.0, 0.0, 0.0),
                  time: float = 0.0, rotation: Optional[np.ndarray] = None,
                  conditions: Optional[Conditions] = None, seed: int = 0) -> RenderedFrame:
    """Render image and exact depth for a camera at ``position``.

    ``time`` (s of drive time) places the moving primitives. ``rotation`` [3, 3] maps the
    camera's optical axes to the world's (``d_world = rotation @ d_camera``; None: looking
    along +z, x right, y down). ``conditions`` change light, air and sensor (None or the
    defaults: today's image); ``seed`` draws the sensor noise.
    """
    origin = np.asarray(position, dtype=np.float64)
    h, w = camera.height, camera.width
    xr = ((np.arange(w) - camera.cx) / camera.fx).astype(np.float32)[None, :]  # [1, W]
    yr = ((np.arange(h) - camera.cy) / camera.fy).astype(np.float32)[:, None]  # [H, 1]
    if rotation is None:
        comps = (xr, yr, np.ones((1, 1), np.float32))
    else:
        rotation = np.asarray(rotation, np.float64)
        comps = tuple(_world_component(rotation, k, xr, yr) for k in range(3))
    rays = make_rays(*comps)
    ground = ground_distance(scene.ground_y, origin, rays)
    t = np.array(np.broadcast_to(ground, (h, w)))  # a writable copy
    label = np.where(np.isfinite(t), GROUND, SKY).astype(np.int32)
    prims = scene.primitives(time)
    trace(prims, origin, rays, camera_windows(prims, origin, camera, rotation), t, label)
    # Shade: camera directions have z = 1 (a rotation keeps their length), so t is the depth
    # along the optical axis.
    dirs = np.empty((h, w, 3), np.float32)
    for k in range(3):
        dirs[..., k] = rays.d[k]
    dirs = dirs.reshape(-1, 3)
    tf = np.where(np.isfinite(t), t, 0).reshape(-1, 1)
    pts = origin + dirs.astype(np.float64) * tf
    dist = tf[:, 0] * np.linalg.norm(dirs, axis=1)
    rgb = scene.shade(pts, label.reshape(-1), dirs, time, dist)
    if conditions is not None and conditions.photometric:
        dist = np.where(label.reshape(-1) >= 0, dist, np.inf)
        axis = (0.0, 0.0, 1.0) if rotation is None else rotation[:, 2]
        rgb = develop(rgb, dirs, dist, scene, origin, time, conditions, seed, axis)
    img = (rgb.reshape(h, w, 3) * 255 + 0.5).astype(np.uint8)
    if conditions is not None and conditions.mono:
        img = to_mono(img)
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
