"""Synthetic drives: per frame a camera image, its exact depth and a LiDAR sweep, with stamps.

The ego vehicle drives along +z at a constant speed, or on an arc at a constant yaw rate
(:class:`depth_node.sim.motion.Trajectory`; :meth:`SimRig.lidar_in_odom` and
:meth:`SimRig.camera_in_odom` are the true poses a deskew can be checked against). Frame ``i``
is exposed at drive time ``tau = i / rate`` (stamp ``start + tau``); its LiDAR sweep is taken
at ``tau + lidar_offset`` (stamp ``lidar_stamp``), from where the vehicle is then: a rotating
sweep (``LidarModel(sweep='rotating')``) starts then, and each point keeps its time since the
sweep start (``SimFrame.lidar_times``). Moving vehicles are placed by drive time, so a drive
renders the same whatever its ``start`` stamp. The ground truth is the camera's exact depth at
its stamp.

:meth:`SimRig.build` makes the rig of a :class:`depth_node.sim.rigs.RigSpec` (lens, camera
height and pitch, LiDAR model and mount, scene kind, calibration error) under
:class:`depth_node.sim.conditions.Conditions` (sun, fog, exposure, sensor noise, mono).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.transforms import RigidTransform
from depth_node.sim.conditions import Conditions, sun_color
from depth_node.sim.lidar import CameraPath
from depth_node.sim.motion import camera_in_base, camera_poses, Trajectory
from depth_node.sim.rigs import RigSpec
from depth_node.sim.scene import (default_camera, default_extrinsic, LidarModel, LidarScan,
                                  render_camera, RenderedFrame, scan_lidar, Scene)


@dataclass(frozen=True)
class SimFrame:
    """One synthetic frame. ``lidar`` is in the LiDAR body frame."""

    index: int
    stamp: float  # s, camera exposure
    rgb: np.ndarray  # [H, W, 3] uint8
    depth: np.ndarray  # [H, W] float32, metres along optical Z, inf = sky
    lidar: np.ndarray  # [N, 3] float32, metres
    lidar_stamp: Optional[float] = None  # s, the sweep's time; None -> the camera stamp
    intensity: Optional[np.ndarray] = None  # [N] float32, 0..255, one per LiDAR point
    position: Optional[np.ndarray] = None  # [3] float64, camera centre in the world at stamp
    labels: Optional[np.ndarray] = None  # [H, W] int32: SKY, GROUND or 1 + primitive index
    # [N] float64, s since lidar_stamp (the sweep start) of each point; None: instantaneous
    lidar_times: Optional[np.ndarray] = None
    ring: Optional[np.ndarray] = None  # [N] uint16, beam index (rotating sweeps)
    base_pose: Optional[RigidTransform] = None  # base_link in odom at stamp (true motion)

    def __post_init__(self) -> None:
        if self.lidar_stamp is None:
            object.__setattr__(self, 'lidar_stamp', float(self.stamp))


@dataclass
class SimRig:
    """Scene, camera, LiDAR model and extrinsic of a synthetic drive.

    ``lidar_to_camera`` is the TRUE extrinsic the sweeps are simulated with;
    ``nominal_lidar_to_camera`` what a user would configure (None: the true one, see
    :attr:`nominal`). ``camera_rotation`` maps the camera's optical axes to the world's (None:
    looking along +z at drive time 0); the LiDAR is mounted on the camera and turns with it.
    ``speed`` (m/s) is the drive's speed where a method is given none; ``yaw_rate_deg_s``
    (+ turns left) bends the drive into an arc.
    """

    scene: Scene
    camera: PinholeCamera
    lidar: LidarModel
    lidar_to_camera: RigidTransform
    camera_rotation: Optional[np.ndarray] = None  # [3, 3] float64, optical -> world
    conditions: Conditions = field(default_factory=Conditions)
    nominal_lidar_to_camera: Optional[RigidTransform] = None
    speed: float = 8.0
    yaw_rate_deg_s: float = 0.0

    @classmethod
    def default(cls, width: int = 640, height: int = 480, seed: int = 0,
                lidar: LidarModel | None = None, length: float = 250.0) -> 'SimRig':
        """KITTI-like camera, 64-beam LiDAR, and a street of ``length`` m (seeded)."""
        return cls(Scene.street(seed, length=length), default_camera(width, height),
                   lidar or LidarModel(), default_extrinsic())

    @classmethod
    def build(cls, spec: RigSpec = RigSpec(), conditions: Conditions = Conditions(),
              seed: int = 0) -> 'SimRig':
        """The rig of ``spec`` under ``conditions``; street and calibration error by ``seed``.

        The defaults give :meth:`default`'s rig, frame for frame, bit for bit.
        """
        scene = Scene.of_kind(spec.scene, seed, spec.length, spec.camera_height_m)
        if conditions.sun_changed:
            scene.sun = conditions.sun()
            scene.sun_color = sun_color(conditions.elevation_deg)
        nominal = spec.nominal_extrinsic(seed) if spec.calibration_error else None
        return cls(scene, spec.camera(), spec.lidar_model(), spec.true_extrinsic(),
                   spec.camera_rotation(), conditions, nominal, spec.speed_mps,
                   spec.yaw_rate_deg_s)

    @property
    def nominal(self) -> RigidTransform:
        """The extrinsic to configure the pipeline with (calibration error included)."""
        return self.nominal_lidar_to_camera or self.lidar_to_camera

    @property
    def camera_height(self) -> float:
        """Height of the camera above the ground (m) at the start of the drive."""
        return float(self.scene.ground_y)

    @staticmethod
    def position(tau: float, speed: float) -> np.ndarray:
        """Camera centre [3] float64 in the world after ``tau`` s at ``speed`` m/s, straight."""
        return np.array([0.0, 0.0, speed * tau])

    def trajectory(self, speed: Optional[float] = None) -> Trajectory:
        """The base's trajectory at ``speed`` m/s (None: the rig's) and the rig's yaw rate."""
        return Trajectory(self.speed if speed is None else float(speed), self.yaw_rate_deg_s)

    def camera_pose(self, tau: float,
                    speed: Optional[float] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Camera centre [3] and optical -> world rotation [3, 3] (None: unrotated) at ``tau``."""
        traj = self.trajectory(speed)
        if traj.straight:  # today's drive, bit for bit
            return self.position(tau, traj.speed), self.camera_rotation
        rot, pos = camera_poses(traj, np.array([tau]), self.camera_height,
                                self.camera_rotation)
        return pos[0], rot[0]

    def camera_path(self, speed: Optional[float] = None) -> CameraPath:
        """Camera poses at drive times [K]: rotations [K, 3, 3] and centres [K, 3]."""
        traj = self.trajectory(speed)
        rot0 = np.eye(3) if self.camera_rotation is None else self.camera_rotation

        def path(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            t = np.atleast_1d(np.asarray(times, np.float64))
            if traj.straight:
                pos = np.zeros((t.size, 3))
                pos[:, 2] = traj.speed * t
                return np.broadcast_to(rot0, (t.size, 3, 3)), pos
            return camera_poses(traj, t, self.camera_height, self.camera_rotation)
        return path

    def camera_in_odom(self, tau: float, speed: Optional[float] = None) -> RigidTransform:
        """True pose of the camera optical frame in ``odom`` at drive time ``tau``."""
        base = self.trajectory(speed).base_pose(tau)
        return base @ camera_in_base(self.camera_height, self.camera_rotation)

    def lidar_in_odom(self, tau: float, speed: Optional[float] = None) -> RigidTransform:
        """True pose of the LiDAR frame in ``odom`` at drive time ``tau``."""
        return self.camera_in_odom(tau, speed) @ self.lidar_to_camera

    def render(self, tau: float, speed: Optional[float] = None, seed: int = 0) -> RenderedFrame:
        """The camera frame at drive time ``tau`` (s); ``seed`` draws the sensor noise."""
        position, rotation = self.camera_pose(tau, speed)
        return render_camera(self.scene, self.camera, position, tau, rotation, self.conditions,
                             seed)

    def sweep(self, tau: float, speed: Optional[float] = None, seed: int = 0) -> LidarScan:
        """The LiDAR sweep at (a rotating one: starting at) drive time ``tau`` (s); ``seed``
        draws noise and dropouts."""
        position, rotation = self.camera_pose(tau, speed)
        path = self.camera_path(speed) if self.lidar.rotating else None
        return scan_lidar(self.scene, self.lidar, self.lidar_to_camera, position, seed, tau,
                          rotation, self.conditions, path)

    def frames(self, count: int, speed: Optional[float] = None, rate: float = 10.0,
               start: float = 0.0, seed: int = 0,
               lidar_offset: float = 0.0) -> Iterator[SimFrame]:
        """``count`` frames driving at ``speed`` m/s (None: the rig's), ``rate`` frames per s.

        Frame ``i`` has stamp ``start + i / rate``; its sweep (noise seed ``seed + i``, as the
        camera's sensor noise) is taken (a rotating one: starts) ``lidar_offset`` s later.
        """
        if not rate > 0:
            raise ValueError(f'rate must be > 0 frames/s, got {rate}')
        for i in range(count):
            tau = i / rate
            cam = self.render(tau, speed, seed + i)
            scan = self.sweep(tau + lidar_offset, speed, seed + i)
            yield SimFrame(i, start + tau, cam.rgb, cam.depth, scan.points,
                           start + tau + lidar_offset, scan.intensity, cam.position,
                           cam.labels, scan.times,
                           None if scan.times is None else scan.ring,
                           self.trajectory(speed).base_pose(tau))


def save_frames(folder: str | Path, frames: Sequence[SimFrame]) -> Path:
    """Write frames as ``frame_NNNN.npz`` (rgb, depth, lidar, stamps...); returns the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for f in frames:
        extra = {k: v for k, v in (('intensity', f.intensity), ('position', f.position),
                                   ('labels', f.labels), ('lidar_times', f.lidar_times),
                                   ('ring', f.ring)) if v is not None}
        if f.base_pose is not None:  # [3, 4]: rotation | translation
            extra['base_pose'] = np.hstack([f.base_pose.rotation,
                                            f.base_pose.translation[:, None]])
        if 'labels' in extra:  # int16 holds every label (primitives number in the hundreds)
            extra['labels'] = extra['labels'].astype(np.int16)
        np.savez(out / f'frame_{f.index:04d}.npz', rgb=f.rgb, depth=f.depth, lidar=f.lidar,
                 stamp=f.stamp, lidar_stamp=f.lidar_stamp, **extra)
    return out


def load_frames(folder: str | Path) -> list[SimFrame]:
    """Read frames written by :func:`save_frames`, in index order."""
    frames = []
    for i, path in enumerate(sorted(Path(folder).glob('frame_*.npz'))):
        with np.load(path) as d:
            frames.append(SimFrame(
                i, float(d['stamp']), d['rgb'], d['depth'], d['lidar'],
                float(d['lidar_stamp']) if 'lidar_stamp' in d else None,
                d['intensity'] if 'intensity' in d else None,
                d['position'] if 'position' in d else None,
                d['labels'].astype(np.int32) if 'labels' in d else None,
                d['lidar_times'] if 'lidar_times' in d else None,
                d['ring'] if 'ring' in d else None,
                RigidTransform(d['base_pose'][:, :3], d['base_pose'][:, 3].copy())
                if 'base_pose' in d else None))
    return frames
