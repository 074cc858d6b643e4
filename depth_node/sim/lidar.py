"""The simulated spinning LiDAR: beams, culled sweeps, intensity, range noise and dropouts.

A LiDAR mounted apart from the camera casts into the same geometry, so its ranges agree with
the camera's exact depth (up to the noise added on purpose) and it sees past foreground edges as
real rigs do. Sweeps are instantaneous (as if motion-compensated to the sweep stamp). The
LiDAR is mounted rigidly on the camera (``lidar_in_camera``), so a rotated (pitched) camera
rotates the sweep with it; in fog (:mod:`depth_node.sim.conditions`) returns fade with range
and the fog itself returns some beams.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

from depth_node.core.transforms import RigidTransform
from depth_node.sim.conditions import Conditions, fog_clutter, fog_keep, fog_transmission
from depth_node.sim.geometry import (BODY_TO_OPTICAL, FOG, GROUND, ground_distance,
                                     make_rays, Primitives, SKY, trace, Window)
from depth_node.sim.shading import surface_at
from depth_node.sim.street import Scene


@dataclass(frozen=True)
class LidarModel:
    """Spinning multi-beam LiDAR (HDL-64E-like defaults; other sensors:
    :data:`depth_node.sim.rigs.LIDAR_MODELS`).

    Beam elevations (deg, +up), azimuth step (deg), sweep rate (Hz), maximum range (m), range
    noise (1-sigma, m, Gaussian along the beam), the fraction of returns randomly dropped, the
    horizontal field of view published (deg, centred on forward; less than 360 crops the sweep
    to a sector as velodyne_pointcloud's ``view_width`` does) and the grid (m) the point
    coordinates are rounded to (1/512 m, about 2 mm like a sensor's range resolution: exact
    in float32 and much more compressible; 0 keeps them unrounded).
    ``exact()`` is the same sensor without noise, dropouts and rounding.
    """

    elevations_deg: tuple[float, ...] = tuple(np.linspace(2.0, -24.8, 64).tolist())
    azimuth_step_deg: float = 0.2
    max_range: float = 120.0
    range_noise: float = 0.02
    dropout: float = 0.03
    rate_hz: float = 10.0
    fov_deg: float = 360.0
    resolution: float = 2.0 ** -9

    def __post_init__(self) -> None:
        if len(self.elevations_deg) == 0:
            raise ValueError('LidarModel.elevations_deg must name at least one beam')
        if not 0 < self.azimuth_step_deg <= 90:
            raise ValueError(f'LidarModel.azimuth_step_deg must be in (0, 90], got '
                             f'{self.azimuth_step_deg}')
        if not self.max_range > 0:
            raise ValueError(f'LidarModel.max_range must be > 0 m, got {self.max_range}')
        if not self.range_noise >= 0:
            raise ValueError(f'LidarModel.range_noise must be >= 0 m, got {self.range_noise}')
        if not 0 <= self.dropout < 1:
            raise ValueError(f'LidarModel.dropout must be in [0, 1), got {self.dropout}')
        if not self.rate_hz > 0:
            raise ValueError(f'LidarModel.rate_hz must be > 0, got {self.rate_hz}')
        if not 0 < self.fov_deg <= 360:
            raise ValueError(f'LidarModel.fov_deg must be in (0, 360], got {self.fov_deg}')
        if not self.resolution >= 0:
            raise ValueError(f'LidarModel.resolution must be >= 0 m, got {self.resolution}')

    def exact(self) -> 'LidarModel':
        """The same LiDAR with exact returns: no range noise, no dropouts, no rounding."""
        return replace(self, range_noise=0.0, dropout=0.0, resolution=0.0)

    @property
    def azimuths_deg(self) -> np.ndarray:
        """Azimuths [A] float64 (deg, counter-clockwise from forward), ascending from -180."""
        az = np.arange(-180.0, 180.0, self.azimuth_step_deg)
        if self.fov_deg < 360:
            az = az[np.abs(az) <= self.fov_deg / 2 + 1e-9]
        return az

    def directions(self) -> np.ndarray:
        """Unit beam directions [B * A, 3] in the LiDAR body frame (x fwd, y left, z up).

        Beam-major: index ``b * A + a`` is beam ``b`` at azimuth ``a``.
        """
        return self._grid().reshape(-1, 3)

    def _grid(self) -> np.ndarray:
        el = np.deg2rad(np.asarray(self.elevations_deg, dtype=np.float64))
        az = np.deg2rad(self.azimuths_deg)
        e, a = np.meshgrid(el, az, indexing='ij')
        return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=-1)


@dataclass(frozen=True)
class LidarScan:
    """One sweep's returns, azimuth-major (as a spinning sensor fires), LiDAR body frame."""

    points: np.ndarray  # [N, 3] float32, metres, LiDAR body frame (x fwd, y left, z up)
    intensity: np.ndarray  # [N] float32, 0..255 (reflectivity x incidence), integral values
    ring: np.ndarray  # [N] uint16, beam index (order of elevations_deg)
    labels: np.ndarray  # [N] int32, GROUND, 1 + primitive index that was hit, or FOG


def lidar_windows(prims: Primitives, origin: np.ndarray, rotation: np.ndarray,
                  model: LidarModel) -> list[Window]:
    """Beam x azimuth blocks that can hit each primitive (conservative bounds)."""
    if prims.count == 0:
        return []
    el = np.deg2rad(np.asarray(model.elevations_deg, dtype=np.float64))
    az = model.azimuths_deg
    step = np.deg2rad(model.azimuth_step_deg)
    a0 = np.deg2rad(az[0])  # azimuth j is a0 + j * step
    n_az = az.size
    margin = 1e-4  # rad
    lo, hi = prims.lo - origin, prims.hi - origin
    corners = np.stack([np.stack([(lo, hi)[i][:, 0], (lo, hi)[j][:, 1], (lo, hi)[k][:, 2]], 1)
                        for i in (0, 1) for j in (0, 1) for k in (0, 1)], axis=1)  # [P, 8, 3]
    body = corners @ rotation  # rows: R^T p
    nearest = np.clip(0.0, lo, hi)  # the box point nearest to the LiDAR
    dmin = np.linalg.norm(nearest, axis=1)
    dmax = np.linalg.norm(corners, axis=2).max(1)
    inside = dmin < 1e-6
    zmin, zmax = body[..., 2].min(1), body[..., 2].max(1)
    dsafe = np.maximum(dmin, 1e-9)
    smax = np.where(zmax >= 0, zmax / dsafe, zmax / dmax)
    smin = np.where(zmin >= 0, zmin / dmax, zmin / dsafe)
    emax = np.arcsin(np.clip(smax, -1, 1)) + margin
    emin = np.arcsin(np.clip(smin, -1, 1)) - margin
    rho = np.hypot(body[..., 0], body[..., 1])
    ang = np.sort(np.arctan2(body[..., 1], body[..., 0]), axis=1)
    gaps = np.diff(ang, axis=1, append=ang[:, :1] + 2 * np.pi)
    k = np.argmax(gaps, axis=1)
    rows = np.arange(prims.count)
    arc_start = ang[rows, (k + 1) % 8]
    arc = 2 * np.pi - gaps[rows, k]
    # An arc of half a turn or more: the LiDAR is above/below the footprint; all azimuths.
    full = inside | (arc >= np.pi - 1e-9) | (rho.min(1) < 1e-6)
    keep = (dmin <= model.max_range) & (emax >= el.min()) & (emin <= el.max())
    out: list[Window] = []
    for p in np.flatnonzero(keep):
        beams = np.flatnonzero((el >= emin[p]) & (el <= emax[p]))
        if beams.size == 0:
            continue
        b0, b1 = int(beams[0]), int(beams[-1]) + 1
        if full[p]:
            out.append((int(p), b0, b1, 0, n_az))
            continue
        a_lo = arc_start[p] - margin
        a_hi = a_lo + arc[p] + 2 * margin
        for turn in (-2 * np.pi, 0.0, 2 * np.pi):  # the arc and its copies a turn away
            j0 = max(int(np.ceil((a_lo + turn - a0) / step)), 0)
            j1 = min(int(np.floor((a_hi + turn - a0) / step)) + 1, n_az)
            if j1 > j0:
                out.append((int(p), b0, b1, j0, j1))
    return out


def scan_lidar(scene: Scene, model: LidarModel, lidar_in_camera: RigidTransform,
               camera_position: Sequence[float] = (0.0, 0.0, 0.0), seed: int = 0,
               time: float = 0.0, camera_rotation: Optional[np.ndarray] = None,
               conditions: Optional[Conditions] = None) -> LidarScan:
    """One sweep: returns within max range, with intensity, ring and labels.

    ``lidar_in_camera`` is the LiDAR's true pose in the camera optical frame; the camera's
    axes map to the world's by ``camera_rotation`` [3, 3] (None: aligned). ``seed`` draws the
    dropouts and the range noise (and, in fog, which returns fade); ``time`` (s of drive time)
    places the moving primitives; ``conditions`` adds fog (None or clear: today's sweep).
    """
    rng = np.random.default_rng(seed)
    rot = np.asarray(lidar_in_camera.rotation, dtype=np.float64)
    origin = np.asarray(camera_position, dtype=np.float64)
    if camera_rotation is None:
        origin = origin + lidar_in_camera.translation
    else:
        cam_rot = np.asarray(camera_rotation, dtype=np.float64)
        origin = origin + cam_rot @ lidar_in_camera.translation
        rot = cam_rot @ rot
    body = model._grid()  # [B, A, 3]
    world = body @ rot.T
    rays = make_rays(world[..., 0], world[..., 1], world[..., 2])
    t = ground_distance(scene.ground_y, origin, rays).copy()
    label = np.where(np.isfinite(t), GROUND, SKY).astype(np.int32)
    prims = scene.primitives(time)
    trace(prims, origin, rays, lidar_windows(prims, origin, rot, model), t, label)
    # Azimuth-major, as the sensor fires: all beams at one azimuth, then the next azimuth.
    t, label = t.T.reshape(-1), label.T.reshape(-1)
    dirs_body = body.transpose(1, 0, 2).reshape(-1, 3)
    ring = np.broadcast_to(np.arange(body.shape[0], dtype=np.uint16)[None, :],
                           body.shape[1::-1]).reshape(-1)
    keep = np.isfinite(t) & (t <= model.max_range)
    if model.dropout > 0:
        keep &= rng.random(t.shape) >= model.dropout
    idx = np.flatnonzero(keep)  # beams with a return, in firing order
    r = t[idx].astype(np.float64)
    label = label[idx]
    d_world = dirs_body[idx] @ rot.T
    pts_world = origin + d_world * r[:, None]
    surf = surface_at(scene.crosswalks, prims, pts_world, label, scene.verge)
    cos = np.abs(np.einsum('ij,ij->i', surf.normal, d_world))
    intensity = 255.0 * surf.reflectivity * cos
    if conditions is not None and conditions.foggy:
        idx, r, label, intensity = _in_fog(idx, r, label, intensity, surf.reflectivity, t.size,
                                           model, conditions, seed)
    intensity = np.rint(intensity).astype(np.float32)
    if model.range_noise > 0:
        r = r + rng.normal(0.0, model.range_noise, r.shape)
    points = dirs_body[idx] * r[:, None]
    if model.resolution > 0:
        points = np.round(points / model.resolution) * model.resolution
    points = points.astype(np.float32)
    return LidarScan(points, intensity, ring[idx].copy(), label)


def _in_fog(idx: np.ndarray, r: np.ndarray, label: np.ndarray, intensity: np.ndarray,
            reflectivity: np.ndarray, beams: int, model: LidarModel, conditions: Conditions,
            seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Returns that survive the fog, plus its backscatter (first return), in firing order."""
    rng = np.random.default_rng([seed, 2])  # apart from the dropout / noise stream
    v = conditions.fog_visibility_m
    ok = fog_keep(r, reflectivity, model.max_range, v, rng)
    idx, r, label = idx[ok], r[ok], label[ok]
    intensity = intensity[ok] * fog_transmission(r, v) ** 2
    clutter = fog_clutter(beams, conditions.fog_backscatter, rng)
    if not np.isfinite(clutter).any():
        return idx, r, label, intensity
    full_r = np.full(beams, np.inf)
    full_r[idx] = r
    fog = np.isfinite(clutter) & (clutter < full_r)
    full_r[fog] = clutter[fog]
    full_label = np.full(beams, SKY, np.int32)
    full_label[idx] = label
    full_label[fog] = FOG
    full_i = np.zeros(beams)
    full_i[idx] = intensity
    full_i[fog] = rng.uniform(1.0, 8.0, int(fog.sum()))  # weak, diffuse
    out = np.flatnonzero(np.isfinite(full_r))
    return out, full_r[out], full_label[out], full_i[out]


def lidar_sweep(scene: Scene, model: LidarModel, lidar_in_camera: RigidTransform,
                camera_position: Sequence[float] = (0.0, 0.0, 0.0), seed: int = 0,
                time: float = 0.0) -> np.ndarray:
    """One sweep's points [N, 3] float32 in the LiDAR body frame (see :func:`scan_lidar`)."""
    return scan_lidar(scene, model, lidar_in_camera, camera_position, seed, time).points


def default_extrinsic() -> RigidTransform:
    """LiDAR 0.3 m above and 0.3 m behind the camera, axes as a vehicle body frame."""
    return RigidTransform(BODY_TO_OPTICAL.copy(), np.array([0.0, -0.3, -0.3]))
