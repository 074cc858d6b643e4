"""A ray-cast street scene: ground plane, boxes (cars, buildings, poles) and sky.

The world frame is an optical-style frame (x right, y down, z forward) with the ground plane at
``y = camera_height`` below the camera's starting position. Cameras and LiDARs are ray casters
over the same geometry, so camera depth and LiDAR ranges agree exactly (up to the noise added on
purpose), and a LiDAR mounted apart from the camera sees past foreground edges as real rigs do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.transforms import RigidTransform

# LiDAR body frame (x forward, y left, z up) -> camera optical frame (x right, y down, z fwd).
BODY_TO_OPTICAL = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in the world frame with a base colour (RGB in [0, 1])."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    color: tuple[float, float, float]


@dataclass
class Scene:
    """Ground plane plus boxes; everything else is sky (no return, infinite depth)."""

    ground_y: float = 1.65
    boxes: list[Box] = field(default_factory=list)

    @classmethod
    def street(cls, seed: int = 0, length: float = 120.0) -> 'Scene':
        """A straight street: facades both sides, parked cars, poles; deterministic by seed."""
        rng = np.random.default_rng(seed)
        g = 1.65
        boxes: list[Box] = []
        z = 4.0
        while z < length:  # building facades, 7-9 m from the centre line
            w = rng.uniform(8, 18)
            hgt = rng.uniform(6, 20)
            for side in (-1, 1):
                x0 = side * rng.uniform(7.0, 9.0)
                c = tuple(rng.uniform(0.35, 0.85, 3))
                lo = (min(x0, x0 + side * 6), g - hgt, z)
                hi = (max(x0, x0 + side * 6), g, z + w - 0.5)
                boxes.append(Box(lo, hi, c))
            z += w
        z = 6.0
        while z < length:  # parked cars along both curbs, poles in between
            side = rng.choice([-1, 1])
            x0 = side * rng.uniform(3.2, 4.2)
            c = tuple(rng.uniform(0.1, 0.9, 3))
            boxes.append(Box((x0 - 0.9, g - 1.5, z), (x0 + 0.9, g, z + 4.2), c))
            px = -side * 5.5
            boxes.append(Box((px - 0.12, g - 6.0, z + 2), (px + 0.12, g, z + 2.24),
                             (0.5, 0.5, 0.5)))
            z += rng.uniform(7, 14)
        boxes.append(Box((-2.0, g - 1.6, 22.0), (0.0, g, 26.5), (0.8, 0.15, 0.1)))  # car ahead
        return cls(ground_y=g, boxes=boxes)

    def raycast(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance along ``dirs`` [N, 3] (world) to the first hit, and the index hit.

        Returns ``t`` [N] float64 (``inf`` for sky; in units of ``|dir|``) and ``hit`` [N]
        int32 (-1 sky, 0 ground, 1 + i box i).
        """
        o = np.asarray(origin, dtype=np.float64)
        d = np.asarray(dirs, dtype=np.float64)
        t = np.full(d.shape[0], np.inf)
        hit = np.full(d.shape[0], -1, dtype=np.int32)
        with np.errstate(divide='ignore', invalid='ignore'):
            tg = (self.ground_y - o[1]) / d[:, 1]
        ok = (d[:, 1] > 1e-9) & (tg > 0)
        t[ok] = tg[ok]
        hit[ok] = 0
        with np.errstate(divide='ignore', invalid='ignore'):
            inv = 1.0 / d
        for i, box in enumerate(self.boxes):
            t0 = (np.asarray(box.lo) - o) * inv  # [N, 3]
            t1 = (np.asarray(box.hi) - o) * inv
            tmin = np.nanmax(np.minimum(t0, t1), axis=1)
            tmax = np.nanmin(np.maximum(t0, t1), axis=1)
            closer = (tmax >= np.maximum(tmin, 0)) & (tmin > 1e-6) & (tmin < t)
            t[closer] = tmin[closer]
            hit[closer] = i + 1
        return t, hit

    def shade(self, points: np.ndarray, hit: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """RGB float [N, 3] in [0, 1] for hits at world ``points`` (sky where ``hit < 0``)."""
        n = hit.shape[0]
        rgb = np.zeros((n, 3))
        sky = hit < 0
        elev = np.clip(-dirs[sky, 1] / np.linalg.norm(dirs[sky], axis=1), 0, 1)
        rgb[sky] = np.array([0.55, 0.7, 0.95]) * (0.8 + 0.2 * elev[:, None])
        ground = hit == 0
        p = points[ground]
        check = ((np.floor(p[:, 0] * 2) + np.floor(p[:, 2] * 2)) % 2)[:, None]
        lane = (np.abs(np.abs(p[:, 0]) - 1.75) < 0.08) & ((p[:, 2] % 6.0) < 3.0)
        base = 0.32 + 0.06 * check
        rgb[ground] = np.where(lane[:, None], 0.9, base)
        for i, box in enumerate(self.boxes):
            m = hit == i + 1
            if not m.any():
                continue
            q = points[m]
            tex = 0.85 + 0.15 * np.sin(q[:, 1] * 9.0) * np.sin((q[:, 0] + q[:, 2]) * 7.0)
            rgb[m] = np.asarray(box.color) * tex[:, None]
        return np.clip(rgb, 0, 1)


@dataclass(frozen=True)
class RenderedFrame:
    """One camera frame: image and exact depth."""

    rgb: np.ndarray  # [H, W, 3] uint8
    depth: np.ndarray  # [H, W] float32, metres along optical Z; inf = sky
    position: np.ndarray  # [3] float64, camera centre in the world


def render_camera(scene: Scene, camera: PinholeCamera,
                  position: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> RenderedFrame:
    """Render image and exact depth for a camera at ``position`` looking along +z."""
    xr, yr = camera.rays(1)
    dirs = np.stack([xr.ravel(), yr.ravel(), np.ones(xr.size, np.float32)], axis=1)
    origin = np.asarray(position, dtype=np.float64)
    t, hit = scene.raycast(origin, dirs)  # t is the depth: dirs have z = 1
    pts = origin + dirs * np.where(np.isfinite(t), t, 0)[:, None]
    rgb = scene.shade(pts, hit, dirs)
    img = (rgb.reshape(camera.height, camera.width, 3) * 255 + 0.5).astype(np.uint8)
    depth = t.reshape(camera.height, camera.width).astype(np.float32)
    return RenderedFrame(img, depth, origin)


@dataclass(frozen=True)
class LidarModel:
    """Spinning multi-beam LiDAR: beam elevations (deg), azimuth step (deg), range, noise."""

    elevations_deg: tuple[float, ...] = tuple(np.linspace(2.0, -24.8, 64).tolist())
    azimuth_step_deg: float = 0.2
    max_range: float = 120.0
    range_noise: float = 0.0
    dropout: float = 0.0

    def directions(self) -> np.ndarray:
        """Unit beam directions [N, 3] in the LiDAR body frame (x fwd, y left, z up)."""
        el = np.deg2rad(np.asarray(self.elevations_deg))
        az = np.deg2rad(np.arange(-180.0, 180.0, self.azimuth_step_deg))
        e, a = np.meshgrid(el, az, indexing='ij')
        return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)],
                        axis=-1).reshape(-1, 3)


def lidar_sweep(scene: Scene, model: LidarModel, lidar_in_camera: RigidTransform,
                camera_position: tuple[float, float, float] = (0.0, 0.0, 0.0),
                seed: int = 0) -> np.ndarray:
    """One sweep: points [N, 3] float32 in the LiDAR body frame (returns within max range).

    ``lidar_in_camera`` is the LiDAR's pose in the camera optical frame (the extrinsic the node
    is configured with); the camera's axes are aligned with the world's.
    """
    rng = np.random.default_rng(seed)
    dirs_body = model.directions()
    dirs_world = dirs_body @ lidar_in_camera.rotation.T
    origin = np.asarray(camera_position, dtype=np.float64) + lidar_in_camera.translation
    r, _ = scene.raycast(origin, dirs_world)
    keep = np.isfinite(r) & (r <= model.max_range)
    if model.dropout > 0:
        keep &= rng.random(r.shape) >= model.dropout
    r = r[keep]
    if model.range_noise > 0:
        r = r + rng.normal(0.0, model.range_noise, r.shape)
    return (dirs_body[keep] * r[:, None]).astype(np.float32)


def default_extrinsic() -> RigidTransform:
    """LiDAR 0.3 m above and 0.3 m behind the camera, axes as a vehicle body frame."""
    return RigidTransform(BODY_TO_OPTICAL.copy(), np.array([0.0, -0.3, -0.3]))


def default_camera(width: int = 640, height: int = 480) -> PinholeCamera:
    """A KITTI-like rectified camera scaled to ``width`` x ``height`` (about 80° wide)."""
    f = 0.6 * width
    return PinholeCamera(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0)
