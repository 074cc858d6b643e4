"""Sensor rigs of the synthetic world: LiDAR and lens presets, camera pose, calibration error.

:class:`RigSpec` names everything about a rig that is not weather or light (those are
:class:`depth_node.sim.conditions.Conditions`): image size, lens, camera height and pitch, the
LiDAR (a preset of :data:`LIDAR_MODELS` or a :class:`LidarModel`), its mount offset, the scene
kind and the extrinsic calibration error. :meth:`depth_node.sim.frames.SimRig.build` turns a
spec into a rig; the defaults give :meth:`SimRig.default`'s rig exactly.

Beam elevations are from the data sheets (VLP-16: 16 beams +15..-15 deg, 100 m; HDL-32E: 32
beams +10.67..-30.67 deg, 100 m; OS1-128: 128 beams +22.5..-22.5 deg, 1024 columns, 120 m);
``hdl64`` is today's default (64 beams +2..-24.8 deg, 0.2 deg steps, 120 m). Beams are listed
top first, as today's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional, Sequence, Union

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.transforms import RigidTransform
from depth_node.sim.camera import default_camera, KITTI_FOCAL, KITTI_SIZE
from depth_node.sim.geometry import BODY_TO_OPTICAL
from depth_node.sim.lidar import LidarModel
from depth_node.sim.street import SCENE_KINDS


def _beams(top: float, bottom: float, count: int) -> tuple[float, ...]:
    return tuple(np.linspace(top, bottom, count).tolist())


#: Named LiDAR models (beam elevations deg top first, azimuth step deg, max range m).
LIDAR_MODELS: dict[str, LidarModel] = {
    'vlp16': LidarModel(_beams(15.0, -15.0, 16), azimuth_step_deg=0.2, max_range=100.0),
    'hdl32': LidarModel(_beams(10.67, -30.67, 32), azimuth_step_deg=0.16, max_range=100.0),
    'hdl64': LidarModel(),
    'os1_128': LidarModel(_beams(22.5, -22.5, 128), azimuth_step_deg=360.0 / 1024,
                          max_range=120.0),
}

#: Named lenses: horizontal field of view (deg) of a rectified camera.
LENSES: dict[str, float] = {
    'kitti': math.degrees(2 * math.atan(KITTI_SIZE[0] / 2 / KITTI_FOCAL)),  # 81.4
    'wide': 120.0,
    'tele': 30.0,
}

#: Today's LiDAR mount: 0.3 m above and 0.3 m behind the camera (camera optical frame).
DEFAULT_LIDAR_OFFSET = (0.0, -0.3, -0.3)

Vector = Union[float, Sequence[float]]


@dataclass(frozen=True)
class RigSpec:
    """Everything about a synthetic rig but light and weather; defaults: today's rig.

    ``focal_px`` (fx = fy, px) overrides ``lens``. ``camera_pitch_deg`` > 0 looks down.
    ``lidar_offset_m`` is the LiDAR's position in the camera optical frame (x right, y down,
    z forward). ``extrinsic_error_deg`` rotates the nominal (configured) extrinsic away from
    the true one about ``extrinsic_error_axis`` (3 numbers, any length; None: a random axis
    drawn from the build seed); ``extrinsic_error_m`` shifts it: a 3-vector (m, camera frame)
    or a length in a random direction. ``speed_mps`` and ``yaw_rate_deg_s`` (+ turns left)
    are the ego motion (:class:`depth_node.sim.motion.Trajectory`); a rotating sweep is the
    LiDAR model's (``with_lidar(sweep='rotating')``).
    """

    width: int = 640
    height: int = 480
    lens: str = 'kitti'
    focal_px: Optional[float] = None
    camera_height_m: float = 1.65
    camera_pitch_deg: float = 0.0
    lidar: Union[str, LidarModel] = 'hdl64'
    lidar_offset_m: tuple[float, float, float] = DEFAULT_LIDAR_OFFSET
    extrinsic_error_deg: float = 0.0
    extrinsic_error_axis: Optional[tuple[float, float, float]] = None
    extrinsic_error_m: Vector = 0.0
    scene: str = 'street'
    length: float = 250.0
    speed_mps: float = 8.0
    yaw_rate_deg_s: float = 0.0

    def __post_init__(self) -> None:
        if not (self.width >= 2 and self.height >= 2):
            raise ValueError(f'RigSpec width and height must be >= 2 px, got '
                             f'{self.width}x{self.height}')
        if self.lens not in LENSES:
            raise ValueError(f'RigSpec.lens must be one of {tuple(LENSES)}, got {self.lens!r}')
        if self.focal_px is not None and not self.focal_px > 0:
            raise ValueError(f'RigSpec.focal_px must be > 0 px, got {self.focal_px}')
        if not self.camera_height_m > 0:
            raise ValueError(f'RigSpec.camera_height_m must be > 0 m, got '
                             f'{self.camera_height_m}')
        if not -60 <= self.camera_pitch_deg <= 60:
            raise ValueError(f'RigSpec.camera_pitch_deg must be in [-60, 60], got '
                             f'{self.camera_pitch_deg}')
        if isinstance(self.lidar, str) and self.lidar not in LIDAR_MODELS:
            raise ValueError(f'RigSpec.lidar must be one of {tuple(LIDAR_MODELS)} or a '
                             f'LidarModel, got {self.lidar!r}')
        if len(self.lidar_offset_m) != 3 or not np.all(np.isfinite(self.lidar_offset_m)):
            raise ValueError(f'RigSpec.lidar_offset_m must be 3 finite numbers (m), got '
                             f'{self.lidar_offset_m}')
        if not (np.isfinite(self.extrinsic_error_deg) and 0 <= self.extrinsic_error_deg <= 180):
            raise ValueError(f'RigSpec.extrinsic_error_deg must be in [0, 180], got '
                             f'{self.extrinsic_error_deg}')
        axis = self.extrinsic_error_axis
        if axis is not None and (len(axis) != 3 or not np.linalg.norm(axis) > 0):
            raise ValueError(f'RigSpec.extrinsic_error_axis must be 3 numbers, not all zero, '
                             f'got {axis}')
        m = np.atleast_1d(np.asarray(self.extrinsic_error_m, dtype=np.float64))
        if m.shape not in ((1,), (3,)) or not np.all(np.isfinite(m)) or \
                (m.shape == (1,) and m[0] < 0):
            raise ValueError(f'RigSpec.extrinsic_error_m must be a length >= 0 or 3 numbers '
                             f'(m), got {self.extrinsic_error_m}')
        if not (math.isfinite(self.speed_mps) and self.speed_mps >= 0):
            raise ValueError(f'RigSpec.speed_mps must be >= 0 m/s, got {self.speed_mps}')
        if not (math.isfinite(self.yaw_rate_deg_s) and abs(self.yaw_rate_deg_s) <= 180):
            raise ValueError(f'RigSpec.yaw_rate_deg_s must be in [-180, 180] deg/s, got '
                             f'{self.yaw_rate_deg_s}')
        if self.scene not in SCENE_KINDS:
            raise ValueError(f'RigSpec.scene must be one of {tuple(SCENE_KINDS)}, got '
                             f'{self.scene!r}')

    def lidar_model(self) -> LidarModel:
        return LIDAR_MODELS[self.lidar] if isinstance(self.lidar, str) else self.lidar

    def camera(self) -> PinholeCamera:
        """The rectified camera: today's KITTI-like one for ``lens='kitti'``."""
        w, h = self.width, self.height
        if self.focal_px is None and self.lens == 'kitti':
            return default_camera(w, h)
        f = self.focal_px or (w / 2) / math.tan(math.radians(LENSES[self.lens]) / 2)
        return PinholeCamera(w, h, f, f, (w - 1) / 2.0, (h - 1) / 2.0)

    def camera_rotation(self) -> Optional[np.ndarray]:
        """Camera optical axes -> world [3, 3] (None without pitch); + pitch looks down."""
        if self.camera_pitch_deg == 0:
            return None
        return pitch_rotation(self.camera_pitch_deg)

    def true_extrinsic(self) -> RigidTransform:
        """The LiDAR's true pose in the camera optical frame."""
        return RigidTransform(BODY_TO_OPTICAL.copy(), np.asarray(self.lidar_offset_m, float))

    @property
    def calibration_error(self) -> bool:
        """Whether the nominal extrinsic differs from the true one."""
        return bool(self.extrinsic_error_deg != 0 or np.any(self.extrinsic_error_m))

    def nominal_extrinsic(self, seed: int = 0) -> RigidTransform:
        """The extrinsic a user would configure: the true one off by the calibration error."""
        true = self.true_extrinsic()
        if not self.calibration_error:
            return true
        rng = np.random.default_rng([seed, 99])
        axis = self.extrinsic_error_axis
        axis = rng.normal(size=3) if axis is None else np.asarray(axis, np.float64)
        err = axis_angle(axis, math.radians(self.extrinsic_error_deg))
        m = np.atleast_1d(np.asarray(self.extrinsic_error_m, dtype=np.float64))
        if m.shape == (1,):
            d = rng.normal(size=3)
            m = m[0] * d / np.linalg.norm(d)
        return RigidTransform(err @ true.rotation, true.translation + m)

    def with_lidar(self, **changes) -> 'RigSpec':
        """This spec with the LiDAR model's fields changed (e.g. ``fov_deg``, ``dropout``)."""
        return replace(self, lidar=replace(self.lidar_model(), **changes))


def pitch_rotation(pitch_deg: float) -> np.ndarray:
    """Camera optical axes -> world [3, 3] of a camera pitched down by ``pitch_deg``."""
    p = math.radians(pitch_deg)
    c, s = math.cos(p), math.sin(p)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])


def axis_angle(axis: Sequence[float], angle: float) -> np.ndarray:
    """Rotation [3, 3] by ``angle`` (rad) about ``axis`` (Rodrigues)."""
    k = np.asarray(axis, np.float64)
    k = k / np.linalg.norm(k)
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (deg) of the rotation between two rotation matrices."""
    c = (np.trace(np.asarray(a) @ np.asarray(b).T) - 1.0) / 2.0
    return math.degrees(math.acos(float(np.clip(c, -1.0, 1.0))))
