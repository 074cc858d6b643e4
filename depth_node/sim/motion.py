"""The ego vehicle's motion: a constant-speed, constant-yaw-rate trajectory and its odometry.

Frames (the bags' tf tree, :mod:`depth_node.offline.drive_bag`):

* ``odom`` has ROS body axes (REP 103: x forward, y left, z up) and its origin on the ground
  below the camera at drive time 0; ``base_link`` starts there, heading along x.
* ``base_link`` follows :meth:`Trajectory.base_pose`: an arc of radius ``speed / yaw_rate``
  (a left turn for a positive yaw rate), the straight drive of today when the yaw rate is 0.
* The sim world (:mod:`depth_node.sim.geometry`: x right, y down, z forward, origin at the
  camera centre at time 0) is the pose :func:`odom_in_world` of ``odom``; the camera optical
  frame sits on ``base_link`` at :func:`camera_in_base`.

So the camera's pose in the world at drive time ``t`` is
``odom_in_world(h) @ base_pose(t) @ camera_in_base(h, rotation)``, and the LiDAR's is that times
the LiDAR -> camera extrinsic. :func:`odometry` samples the base pose as a wheel/IMU odometry
would publish it on ``/tf`` (``odom -> base_link``), optionally with a random-walk drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from depth_node.core.transforms import RigidTransform
from depth_node.sim.geometry import BODY_TO_OPTICAL


@dataclass(frozen=True)
class Trajectory:
    """Constant speed (m/s) along the heading and constant yaw rate (deg/s, + turns left)."""

    speed: float = 8.0
    yaw_rate_deg_s: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed >= 0):
            raise ValueError(f'Trajectory.speed must be a finite speed >= 0 m/s, got '
                             f'{self.speed}')
        if not (math.isfinite(self.yaw_rate_deg_s) and abs(self.yaw_rate_deg_s) <= 180):
            raise ValueError(f'Trajectory.yaw_rate_deg_s must be in [-180, 180] deg/s, got '
                             f'{self.yaw_rate_deg_s}')

    @property
    def yaw_rate(self) -> float:
        """Yaw rate in rad/s."""
        return math.radians(self.yaw_rate_deg_s)

    @property
    def straight(self) -> bool:
        return self.yaw_rate_deg_s == 0

    def base_poses(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Poses of ``base_link`` in ``odom`` at drive times [K] (s).

        Returns rotations [K, 3, 3] float64 and translations [K, 3] float64 (metres).
        """
        t = np.atleast_1d(np.asarray(times, dtype=np.float64))
        w, v = self.yaw_rate, float(self.speed)
        yaw = w * t
        if w == 0:
            x, y = v * t, np.zeros_like(t)
        else:
            x, y = v * np.sin(yaw) / w, v * (1.0 - np.cos(yaw)) / w
        c, s = np.cos(yaw), np.sin(yaw)
        rot = np.zeros((t.size, 3, 3))
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = c, -s, s, c
        rot[:, 2, 2] = 1.0
        return rot, np.stack([x, y, np.zeros_like(t)], axis=1)

    def base_pose(self, t: float) -> RigidTransform:
        """Pose of ``base_link`` in ``odom`` at drive time ``t`` (s)."""
        rot, trans = self.base_poses(np.array([t]))
        return RigidTransform(rot[0], trans[0])

    def base_twist(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Linear (m/s) and angular (rad/s) velocity [3] of ``base_link``, in ``base_link``."""
        return np.array([float(self.speed), 0.0, 0.0]), np.array([0.0, 0.0, self.yaw_rate])


def odom_in_world(camera_height: float) -> RigidTransform:
    """Pose of ``odom`` in the sim world (ground below the camera's start, body axes)."""
    return RigidTransform(BODY_TO_OPTICAL.copy(), np.array([0.0, float(camera_height), 0.0]))


def camera_in_base(camera_height: float,
                   camera_rotation: Optional[np.ndarray] = None) -> RigidTransform:
    """Pose of the camera optical frame in ``base_link``: ``camera_height`` m above it.

    ``camera_rotation`` [3, 3] is the camera's optical -> world rotation at time 0 (a pitch;
    None: level, looking forward).
    """
    rot = BODY_TO_OPTICAL.T if camera_rotation is None \
        else BODY_TO_OPTICAL.T @ np.asarray(camera_rotation, np.float64)
    return RigidTransform(np.array(rot), np.array([0.0, 0.0, float(camera_height)]))


def camera_poses(trajectory: Trajectory, times: np.ndarray, camera_height: float,
                 camera_rotation: Optional[np.ndarray] = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Camera poses in the sim world at drive times [K]: rotations [K, 3, 3] (optical ->
    world) and centres [K, 3] (metres), both float64."""
    rot_b, trans_b = trajectory.base_poses(times)
    w = odom_in_world(camera_height)
    k = camera_in_base(camera_height, camera_rotation)
    rot_wb = w.rotation @ rot_b  # [K, 3, 3]
    centre = (rot_wb @ k.translation) + trans_b @ w.rotation.T + w.translation
    return rot_wb @ k.rotation, centre


class OdomSample(NamedTuple):
    """One odometry message: ``base_link`` in ``odom`` at ``stamp`` (s, the frames' clock:
    ``start`` + drive time)."""

    stamp: float
    pose: RigidTransform
    linear: np.ndarray  # [3] float64, m/s in base_link
    angular: np.ndarray  # [3] float64, rad/s in base_link


@dataclass(frozen=True)
class OdometryNoise:
    """Drift of the odometry: random walks of position (m) and yaw (deg) per sqrt(second)."""

    position_walk_m: float = 0.0
    yaw_walk_deg: float = 0.0

    def __post_init__(self) -> None:
        for name in ('position_walk_m', 'yaw_walk_deg'):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f'OdometryNoise.{name} must be >= 0, got {v}')


def odometry(trajectory: Trajectory, t0: float, t1: float, rate_hz: float = 50.0,
             noise: Optional[OdometryNoise] = None, seed: int = 0,
             start: float = 0.0) -> list[OdomSample]:
    """Odometry samples every ``1 / rate_hz`` s from drive time ``t0`` to ``t1`` (inclusive),
    stamped ``start`` + drive time (the clock of :class:`depth_node.sim.frames.SimFrame`).

    Exact poses without ``noise``; with it, the published pose drifts from the truth by a
    random walk in the ground plane (x, y) and in yaw, applied in ``odom`` (as wheel odometry
    drifts), drawn from ``seed``.
    """
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(f'odometry rate must be > 0 Hz, got {rate_hz}')
    if not t1 >= t0:
        raise ValueError(f'odometry needs t1 >= t0, got {t0} and {t1}')
    n = int(math.floor((t1 - t0) * rate_hz + 1e-9)) + 1
    times = t0 + np.arange(n) / rate_hz
    rot, trans = trajectory.base_poses(times)
    if noise is not None and (noise.position_walk_m > 0 or noise.yaw_walk_deg > 0):
        rng = np.random.default_rng([seed, 15])
        step = math.sqrt(1.0 / rate_hz)
        walk_xy = np.cumsum(rng.normal(0.0, noise.position_walk_m * step, (n, 2)), axis=0)
        walk_yaw = np.cumsum(rng.normal(0.0, math.radians(noise.yaw_walk_deg) * step, n))
        walk_xy[0], walk_yaw[0] = 0.0, 0.0  # the drift starts at the first sample
        c, s = np.cos(walk_yaw), np.sin(walk_yaw)
        drift = np.zeros((n, 3, 3))
        drift[:, 0, 0], drift[:, 0, 1], drift[:, 1, 0], drift[:, 1, 1] = c, -s, s, c
        drift[:, 2, 2] = 1.0
        rot = drift @ rot
        trans = np.einsum('kij,kj->ki', drift, trans)
        trans[:, :2] += walk_xy
    lin, ang = trajectory.base_twist(0.0)
    return [OdomSample(float(start + times[i]), RigidTransform(rot[i], trans[i]), lin, ang)
            for i in range(n)]


__all__ = ['camera_in_base', 'camera_poses', 'odom_in_world', 'odometry', 'OdometryNoise',
           'OdomSample', 'Trajectory']
