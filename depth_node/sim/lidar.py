"""The simulated spinning LiDAR: beams, culled sweeps, intensity, range noise and dropouts.

A LiDAR mounted apart from the camera casts into the same geometry, so its ranges agree with
the camera's exact depth (up to the noise added on purpose) and it sees past foreground edges as
real rigs do. Sweeps are instantaneous (as if motion-compensated to the sweep stamp) unless
the model's ``sweep`` is ``'rotating'``: then each azimuth column fires at its own time across
the sweep period (:meth:`LidarModel.column_times`), is cast from where the LiDAR is at that
time (a vehicle moving and turning, moving primitives where they are then) and is expressed in
the LiDAR frame at that time, as a driver publishes it (not motion-compensated), with its time
kept (:attr:`LidarScan.times`, s since the sweep start, which is the sweep's stamp as on
Ouster and Velodyne drivers). The LiDAR is mounted rigidly on the camera
(``lidar_in_camera``), so a rotated (pitched) camera rotates the sweep with it; in fog
(:mod:`depth_node.sim.conditions`) returns fade with range and the fog itself returns some
beams.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
import math
from typing import Optional, Sequence

import numpy as np

from depth_node.core.transforms import RigidTransform
from depth_node.sim.conditions import Conditions, fog_clutter, fog_keep, fog_transmission
from depth_node.sim.geometry import BODY_TO_OPTICAL, FOG, SKY
from depth_node.sim.shading import surface_at
from depth_node.sim.street import Scene
from depth_node.sim.sweep import CameraPath, cast_instant, cast_rotating, still_path


SWEEPS = ('instant', 'rotating')


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

    ``sweep``: ``'instant'`` (every column at the sweep stamp) or ``'rotating'`` (column times
    across ``1 / rate_hz`` s, from ``start_azimuth_deg``, clockwise seen from above as
    Velodyne and Ouster sensors spin, or counter-clockwise). The default start, straight
    back, fires the forward sector mid-sweep.
    """

    elevations_deg: tuple[float, ...] = tuple(np.linspace(2.0, -24.8, 64).tolist())
    azimuth_step_deg: float = 0.2
    max_range: float = 120.0
    range_noise: float = 0.02
    dropout: float = 0.03
    rate_hz: float = 10.0
    fov_deg: float = 360.0
    resolution: float = 2.0 ** -9
    sweep: str = 'instant'
    start_azimuth_deg: float = 180.0
    clockwise: bool = True

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
        if self.sweep not in SWEEPS:
            raise ValueError(f'LidarModel.sweep must be one of {SWEEPS}, got {self.sweep!r}')
        if not math.isfinite(self.start_azimuth_deg):
            raise ValueError(f'LidarModel.start_azimuth_deg must be finite, got '
                             f'{self.start_azimuth_deg}')

    @property
    def rotating(self) -> bool:
        return self.sweep == 'rotating'

    def column_times(self) -> np.ndarray:
        """Firing time [A] float64 (s since the sweep start) of each of :attr:`azimuths_deg`.

        Zero for an instantaneous sweep; for a rotating one the fraction of a turn from
        ``start_azimuth_deg`` in the direction of rotation, times the period ``1 / rate_hz``.
        """
        az = self.azimuths_deg
        if not self.rotating:
            return np.zeros(az.size)
        turn = (self.start_azimuth_deg - az) if self.clockwise else (az - self.start_azimuth_deg)
        return np.mod(turn, 360.0) / 360.0 / self.rate_hz

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
    # [N] float64, s since the sweep start (its stamp); None: an instantaneous sweep. Points
    # of a rotating sweep are in the LiDAR frame at their own time, in firing order.
    times: Optional[np.ndarray] = None


def scan_lidar(scene: Scene, model: LidarModel, lidar_in_camera: RigidTransform,
               camera_position: Sequence[float] = (0.0, 0.0, 0.0), seed: int = 0,
               time: float = 0.0, camera_rotation: Optional[np.ndarray] = None,
               conditions: Optional[Conditions] = None,
               camera_path: Optional[CameraPath] = None) -> LidarScan:
    """One sweep: returns within max range, with intensity, ring and labels.

    ``lidar_in_camera`` is the LiDAR's true pose in the camera optical frame; the camera's
    axes map to the world's by ``camera_rotation`` [3, 3] (None: aligned). ``seed`` draws the
    dropouts and the range noise (and, in fog, which returns fade); ``time`` (s of drive time)
    places the moving primitives; ``conditions`` adds fog (None or clear: today's sweep).
    A rotating ``model`` starts its sweep at ``time``; ``camera_path`` gives the camera's pose
    at each column's time (None: still at ``camera_position`` / ``camera_rotation``).
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
    if model.rotating:
        if camera_path is None:
            camera_path = still_path(camera_position, camera_rotation)
        cast = cast_rotating(scene, model, lidar_in_camera, time, camera_path)
    else:
        cast = cast_instant(scene, model, origin, rot, time)
    t, label, dirs_body = cast.t, cast.label, cast.dirs_body
    keep = np.isfinite(t) & (t <= model.max_range)
    if model.dropout > 0:
        keep &= rng.random(t.shape) >= model.dropout
    idx = np.flatnonzero(keep)  # beams with a return, in firing order
    r = t[idx].astype(np.float64)
    label = label[idx]
    if cast.world is None:
        d_world = dirs_body[idx] @ rot.T
        pts_world = origin + d_world * r[:, None]
    else:
        d_world = cast.world[idx]
        pts_world = cast.origins[idx] + d_world * r[:, None]
    shade_at = pts_world
    if cast.times is not None:  # a moving primitive was hit where it was at the hit's time
        hit = np.flatnonzero(label > 0)
        shade_at = pts_world.copy()
        shade_at[hit] -= scene.velocities()[label[hit] - 1] * cast.times[idx[hit], None]
    surf = surface_at(scene.crosswalks, scene.primitives(time), shade_at, label, scene.verge)
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
    times = None if cast.times is None else cast.times[idx].copy()
    return LidarScan(points, intensity, cast.ring[idx].copy(), label, times)


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
