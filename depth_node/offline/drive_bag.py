"""Synthetic drives written as rosbag2 bags (mcap or sqlite3), and the shared writing helpers.

Written with ``rosbags`` (pure Python, no rclpy): the messages are the CDR bytes a ROS 2 driver
publishes, so ``ros2 bag play`` feeds them to the node as from a vehicle.

Topics (defaults of :class:`DriveTopics`; frame ids in brackets):

* ``/camera/image_rect`` ``sensor_msgs/Image`` rgb8 [camera_optical]
* ``/camera/camera_info`` ``sensor_msgs/CameraInfo``, rectified: ``P = [K | 0]``, no distortion
* ``/camera/depth_gt`` ``sensor_msgs/Image`` 32FC1, metres along optical Z, NaN = no return
  (sky), REP 118 [camera_optical]
* ``/lidar/points`` ``sensor_msgs/PointCloud2``: float32 x, y, z, intensity [lidar]; with a
  ``time_field`` convention (:data:`TIME_FIELDS`) also ``ring`` and the per-point time as the
  common drivers write it: Ouster ``t`` (uint32, ns since the header stamp), Velodyne ``time``
  (float32, s since the header stamp) or Hesai ``timestamp`` (float64, absolute s). The
  header stamp of a rotating sweep is its start (Ouster / Velodyne convention); its points
  are in the LiDAR frame at their own time (not motion-compensated)
* ``/tf_static`` ``tf2_msgs/TFMessage``, transient local: ``camera_optical -> lidar`` (the pose
  of the LiDAR in the camera optical frame: the node's ``extrinsic.*`` parameters) and
  ``base_link -> camera_optical``
* ``/tf`` ``tf2_msgs/TFMessage``: ``odom -> base_link`` at every camera stamp, or at the
  stamps of the ``odometry`` samples given (:func:`depth_node.sim.motion.odometry`: e.g. 50 Hz,
  with drift)
* optionally (``odometry_topic``) ``nav_msgs/Odometry`` at the same samples: pose of
  ``base_link`` in ``odom``, twist in ``base_link``

Compression (``compress=True``), zstd: mcap bags use the MCAP format's own chunk compression,
which every MCAP reader (rosbag2, Foxglove, the ``mcap`` CLI) understands; sqlite3 bags use
rosbag2's per-message compression (readable by rosbag2 and rosbags, which read
``metadata.yaml``; not by tools that read the ``.db3`` alone). Per-message compression is not
used for mcap: recent rosbag2 refuses it, and MCAP tools cannot read such files.

:func:`typestore`, :class:`MessageBuilder`, :func:`qos_profiles` and :data:`STORAGES` are what
every bag writer of the package shares (:mod:`depth_node.offline.writer`,
:mod:`depth_node.ros.recorder`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.errors import DepthNodeError
from depth_node.core.transforms import matrix_to_quaternion, RigidTransform
from depth_node.messages.encodings import FLOAT32, NATIVE_BIG
from depth_node.sim.frames import SimFrame
from depth_node.sim.motion import camera_in_base, OdomSample
from depth_node.sim.scene import BODY_TO_OPTICAL

CAMERA_FRAME = 'camera_optical'
LIDAR_FRAME = 'lidar'
BASE_FRAME = 'base_link'
ODOM_FRAME = 'odom'
# 2023-11-14T22:13:20Z: stamps of zero would read as "latest" in tf2 lookups.
DEFAULT_START_NS = 1_700_000_000 * 10**9
STORAGES = ('mcap', 'sqlite3')

# sensor_msgs/PointField datatypes
_TYPES = {'f4': FLOAT32, 'f8': 8, 'u4': 6, 'u2': 4}
#: Cloud layouts: (name, offset, numpy type) per field and point_step; None: today's x, y, z,
#: intensity. Offsets follow each driver (Ouster os_cloud's padding, Velodyne packed,
#: Hesai's PCL-aligned double).
CLOUD_LAYOUTS: dict[Optional[str], tuple[tuple[tuple[str, int, str], ...], int]] = {
    None: ((('x', 0, 'f4'), ('y', 4, 'f4'), ('z', 8, 'f4'), ('intensity', 12, 'f4')), 16),
    'ouster': ((('x', 0, 'f4'), ('y', 4, 'f4'), ('z', 8, 'f4'), ('intensity', 16, 'f4'),
                ('t', 20, 'u4'), ('ring', 26, 'u2')), 32),
    'velodyne': ((('x', 0, 'f4'), ('y', 4, 'f4'), ('z', 8, 'f4'), ('intensity', 12, 'f4'),
                  ('ring', 16, 'u2'), ('time', 18, 'f4')), 22),
    'hesai': ((('x', 0, 'f4'), ('y', 4, 'f4'), ('z', 8, 'f4'), ('intensity', 12, 'f4'),
               ('ring', 16, 'u2'), ('timestamp', 24, 'f8')), 32),
}
#: Per-point time conventions of :func:`write_drive`.
TIME_FIELDS = ('ouster', 'velodyne', 'hesai')


@dataclass(frozen=True)
class DriveTopics:
    """Topic names of a drive bag."""

    image: str = '/camera/image_rect'
    camera_info: str = '/camera/camera_info'
    depth: str = '/camera/depth_gt'
    points: str = '/lidar/points'
    tf_static: str = '/tf_static'
    tf: str = '/tf'


@dataclass(frozen=True)
class BagSummary:
    """What :func:`write_drive` wrote."""

    path: Path
    storage: str  # 'mcap' or 'sqlite3'
    compression: str  # 'none', 'zstd (mcap chunks)' or 'zstd (per message)'
    counts: dict[str, int]  # topic -> message count
    types: dict[str, str]  # topic -> message type
    start_ns: int  # first message stamp, ns since the epoch
    duration_ns: int  # last minus first message stamp
    size_bytes: int  # all files of the bag folder

    def describe(self) -> str:
        """Human-readable, one topic a line."""
        lines = [f'{self.path}: {self.storage}, compression {self.compression}, '
                 f'{self.size_bytes / 1e6:.2f} MB, {self.duration_ns / 1e9:.3f} s']
        lines += [f'  {t}  {self.types[t]}  {n} messages' for t, n in self.counts.items()]
        return '\n'.join(lines)


@lru_cache(maxsize=1)
def typestore() -> Any:
    """The rosbags type store of the newest ROS 2 distribution it knows (Kilted or Jazzy)."""
    from rosbags.typesys import get_typestore, Stores
    for name in ('ROS2_KILTED', 'ROS2_JAZZY'):
        if hasattr(Stores, name):
            return get_typestore(getattr(Stores, name))
    raise DepthNodeError('rosbags knows neither ROS 2 Kilted nor Jazzy: pip install -U rosbags')


def stamp_at(start_ns: int, seconds: float) -> int:
    """``start_ns`` plus a stamp in seconds, rounded to the nanosecond."""
    return int(start_ns) + int(round(float(seconds) * 1e9))


def base_to_camera(camera_height: float,
                   camera_rotation: Optional[np.ndarray] = None) -> RigidTransform:
    """Pose of the camera optical frame in ``base_link`` (on the ground below the camera);
    ``camera_rotation``: the camera's pitch (optical -> world at drive time 0)."""
    return camera_in_base(camera_height, camera_rotation)


# ----------------------------------------------------------------------------- writing


class MessageBuilder:
    """Builds messages with the classes of :func:`typestore` and serializes them (CDR)."""

    def __init__(self) -> None:
        ts = typestore()
        self.ts = ts
        self.t = {name.rsplit('/', 1)[-1]: cls for name, cls in ts.types.items()
                  if name.startswith(('std_msgs/msg/', 'builtin_interfaces/msg/',
                                      'sensor_msgs/msg/', 'geometry_msgs/msg/',
                                      'tf2_msgs/msg/', 'diagnostic_msgs/msg/',
                                      'nav_msgs/msg/'))}

    def header(self, ns: int, frame_id: str) -> Any:
        """``std_msgs/Header`` at ``ns`` nanoseconds."""
        sec, nsec = divmod(int(ns), 10**9)
        return self.t['Header'](stamp=self.t['Time'](sec=sec, nanosec=nsec), frame_id=frame_id)

    def image(self, ns: int, frame_id: str, array: np.ndarray, encoding: str) -> Any:
        """``sensor_msgs/Image`` of an [H, W] or [H, W, C] array (its byte order flagged)."""
        a = np.ascontiguousarray(array)
        h, w = a.shape[:2]
        big = a.dtype.byteorder == '>' or (a.dtype.byteorder == '=' and NATIVE_BIG)
        return self.t['Image'](header=self.header(ns, frame_id), height=h, width=w,
                               encoding=encoding, is_bigendian=int(big), step=int(a.strides[0]),
                               data=a.reshape(-1).view(np.uint8))

    def camera_info(self, ns: int, frame_id: str, camera: PinholeCamera) -> Any:
        p = np.array([camera.fx, 0.0, camera.cx, camera.tx, 0.0, camera.fy, camera.cy,
                      camera.ty, 0.0, 0.0, 1.0, 0.0])
        roi = self.t['RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                         do_rectify=False)
        return self.t['CameraInfo'](header=self.header(ns, frame_id), height=camera.height,
                                    width=camera.width, distortion_model='plumb_bob',
                                    d=np.zeros(5), k=camera.k.reshape(-1).copy(),
                                    r=np.eye(3).reshape(-1), p=p, binning_x=0, binning_y=0,
                                    roi=roi)

    def cloud(self, ns: int, frame_id: str, xyz: np.ndarray,
              intensity: Optional[np.ndarray], times: Optional[np.ndarray] = None,
              ring: Optional[np.ndarray] = None, time_field: Optional[str] = None) -> Any:
        """``sensor_msgs/PointCloud2`` of points [N, 3]; ``time_field`` (:data:`TIME_FIELDS`)
        adds ``ring`` and the per-point ``times`` [N] (s since the header stamp ``ns``) in
        that driver's field, type and unit (None: x, y, z, intensity only)."""
        if time_field not in CLOUD_LAYOUTS:
            raise DepthNodeError(f'time_field must be one of {TIME_FIELDS} or None, got '
                                 f'{time_field!r}')
        layout, step = CLOUD_LAYOUTS[time_field]
        n = xyz.shape[0]
        rec = np.zeros(n, dtype=np.dtype({'names': [f[0] for f in layout],
                                          'formats': ['<' + f[2] for f in layout],
                                          'offsets': [f[1] for f in layout],
                                          'itemsize': step}))
        rec['x'], rec['y'], rec['z'] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        if intensity is not None:
            rec['intensity'] = intensity
        if time_field is not None:
            rel = np.zeros(n) if times is None else np.asarray(times, np.float64)
            if ring is not None:
                rec['ring'] = ring
            if time_field == 'ouster':
                rec['t'] = np.rint(rel * 1e9).astype(np.uint32)
            elif time_field == 'velodyne':
                rec['time'] = rel.astype(np.float32)
            else:  # hesai: absolute seconds
                rec['timestamp'] = int(ns) / 1e9 + rel
        fields = [self.t['PointField'](name=name, offset=off, datatype=_TYPES[kind], count=1)
                  for name, off, kind in layout]
        dense = bool(np.isfinite(xyz).all())
        return self.t['PointCloud2'](header=self.header(ns, frame_id), height=1, width=n,
                                     fields=fields, is_bigendian=False, point_step=step,
                                     row_step=step * n, data=rec.view(np.uint8).reshape(-1),
                                     is_dense=dense)

    def odometry(self, ns: int, parent: str, child: str, sample: OdomSample) -> Any:
        """``nav_msgs/Odometry``: pose of ``child`` in ``parent``, twist in ``child``."""
        t = [float(v) for v in sample.pose.translation]
        q = matrix_to_quaternion(sample.pose.rotation)
        pose = self.t['Pose'](position=self.t['Point'](x=t[0], y=t[1], z=t[2]),
                              orientation=self.t['Quaternion'](x=q[0], y=q[1], z=q[2], w=q[3]))
        lin, ang = (self.t['Vector3'](x=float(v[0]), y=float(v[1]), z=float(v[2]))
                    for v in (sample.linear, sample.angular))
        return self.t['Odometry'](
            header=self.header(ns, parent), child_frame_id=child,
            pose=self.t['PoseWithCovariance'](pose=pose, covariance=np.zeros(36)),
            twist=self.t['TwistWithCovariance'](twist=self.t['Twist'](linear=lin, angular=ang),
                                                covariance=np.zeros(36)))

    def transform(self, ns: int, parent: str, child: str, pose: RigidTransform) -> Any:
        t = [float(v) for v in pose.translation]
        q = matrix_to_quaternion(pose.rotation)
        tf = self.t['Transform'](translation=self.t['Vector3'](x=t[0], y=t[1], z=t[2]),
                                 rotation=self.t['Quaternion'](x=q[0], y=q[1], z=q[2], w=q[3]))
        return self.t['TransformStamped'](header=self.header(ns, parent), child_frame_id=child,
                                          transform=tf)

    def tf(self, transforms: list) -> Any:
        return self.t['TFMessage'](transforms=transforms)

    def serialize(self, msg: Any) -> bytes:
        return self.ts.serialize_cdr(msg, msg.__msgtype__)


def qos_profiles(depth: int, latched: bool = False, reliable: bool = True) -> list:
    """rosbags offered-QoS list of a connection: keep-last ``depth``, reliable or best effort,
    transient local when ``latched`` (as rosbag2 records ``/tf_static``)."""
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)
    infinite = QosTime(9223372036, 854775807)  # RMW_DURATION_INFINITE, as rosbag2 writes it
    return [Qos(QosHistory.KEEP_LAST, depth,
                QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
                QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
                infinite, infinite, QosLiveliness.AUTOMATIC, infinite, False)]


def folder_size(path: str | Path) -> int:
    """Bytes of all files under ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob('*') if f.is_file())


def write_drive(path: str | Path, frames: Iterable[SimFrame], camera: PinholeCamera,
                lidar_to_camera: RigidTransform, *, storage: str = 'mcap',
                compress: bool = False, ground_truth: bool = True,
                camera_height: float = 1.65, start_ns: int = DEFAULT_START_NS,
                topics: DriveTopics = DriveTopics(), time_field: Optional[str] = None,
                odometry: Optional[Iterable[OdomSample]] = None,
                odometry_topic: Optional[str] = None,
                camera_rotation: Optional[np.ndarray] = None) -> BagSummary:
    """Write synthetic frames as a rosbag2 folder at ``path`` (which must not exist).

    Header stamps are ``start_ns`` plus the frames' stamps (seconds); bag timestamps equal
    the header stamps. Depth ground truth goes out as 32FC1 with NaN for sky (REP 118); skip
    it with ``ground_truth=False``. ``camera_height`` (and ``camera_rotation``, a pitch)
    places ``base_link`` on the ground below the camera. ``time_field`` writes each point's
    time (``SimFrame.lidar_times``; 0 for an instantaneous sweep) in a driver's convention
    (:data:`TIME_FIELDS`). ``odometry`` samples (stamps on the frames' clock) replace the
    one ``odom -> base_link`` per camera frame on ``/tf``; ``odometry_topic`` also writes
    them as ``nav_msgs/Odometry``.
    """
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin

    if storage not in STORAGES:
        raise DepthNodeError(f'storage must be one of {STORAGES}, got {storage!r}')
    if time_field is not None and time_field not in TIME_FIELDS:
        raise DepthNodeError(f'time_field must be one of {TIME_FIELDS} or None, got '
                             f'{time_field!r}')
    odom = None if odometry is None else sorted(odometry, key=lambda o: o.stamp)
    if odometry_topic is not None and odom is None:
        raise DepthNodeError('odometry_topic needs odometry samples to write')
    out = Path(path)
    if out.exists():
        raise DepthNodeError(f'{out} exists already; rosbag2 bags are never overwritten')
    m = MessageBuilder()
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    writer = Writer(out, version=Writer.VERSION_LATEST, storage_plugin=plugin)
    compression = 'none'
    if compress:
        if storage == 'mcap':
            writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
            compression = 'zstd (mcap chunks)'
        else:
            writer.set_compression(CompressionMode.MESSAGE, CompressionFormat.ZSTD)
            compression = 'zstd (per message)'
    ts = m.ts
    it = iter(frames)
    head = next(it, None)
    if head is None:
        raise DepthNodeError('write_drive needs at least one frame')
    spec = [(topics.tf_static, 'tf2_msgs/msg/TFMessage', qos_profiles(1, latched=True))]
    if head.position is not None or odom:  # ego poses: odom -> base_link
        spec.append((topics.tf, 'tf2_msgs/msg/TFMessage', qos_profiles(100)))
    if odometry_topic is not None:
        spec.append((odometry_topic, 'nav_msgs/msg/Odometry', qos_profiles(100)))
    spec += [(topics.image, 'sensor_msgs/msg/Image', qos_profiles(10)),
             (topics.camera_info, 'sensor_msgs/msg/CameraInfo', qos_profiles(10))]
    if ground_truth:
        spec.append((topics.depth, 'sensor_msgs/msg/Image', qos_profiles(10)))
    spec.append((topics.points, 'sensor_msgs/msg/PointCloud2', qos_profiles(10)))
    counts = {name: 0 for name, _, _ in spec}
    types = {name: msgtype for name, msgtype, _ in spec}
    first = last = None
    with writer:
        conns = {name: writer.add_connection(name, msgtype, typestore=ts,
                                             offered_qos_profiles=qos)
                 for name, msgtype, qos in spec}

        def put(topic: str, ns: int, msg: Any) -> None:
            nonlocal first, last
            writer.write(conns[topic], ns, m.serialize(msg))
            counts[topic] += 1
            first = ns if first is None else min(first, ns)
            last = ns if last is None else max(last, ns)

        pending = list(odom or [])[::-1]  # odometry samples not yet written, next last

        def put_odometry(until_ns: Optional[int]) -> None:
            """The odometry samples stamped up to ``until_ns`` (None: all), in order."""
            while pending and (until_ns is None
                               or stamp_at(start_ns, pending[-1].stamp) <= until_ns):
                o = pending.pop()
                ns = stamp_at(start_ns, o.stamp)
                put(topics.tf, ns, m.tf([m.transform(ns, ODOM_FRAME, BASE_FRAME, o.pose)]))
                if odometry_topic is not None:
                    put(odometry_topic, ns, m.odometry(ns, ODOM_FRAME, BASE_FRAME, o))

        for i, f in enumerate(itertools.chain([head], it)):
            cam_ns = stamp_at(start_ns, f.stamp)
            lid_ns = stamp_at(start_ns, f.lidar_stamp if f.lidar_stamp is not None else f.stamp)
            if i == 0:
                first_ns = min(cam_ns, lid_ns, *(stamp_at(start_ns, o.stamp) for o in odom or []))
                put(topics.tf_static, first_ns, m.tf([
                    m.transform(cam_ns, BASE_FRAME, CAMERA_FRAME,
                                base_to_camera(camera_height, camera_rotation)),
                    m.transform(cam_ns, CAMERA_FRAME, LIDAR_FRAME, lidar_to_camera)]))
            if odom is not None:
                put_odometry(max(cam_ns, lid_ns))
            elif f.position is not None and topics.tf in conns:
                pose = f.base_pose if f.base_pose is not None else RigidTransform(
                    np.eye(3), BODY_TO_OPTICAL.T @ np.asarray(f.position, dtype=np.float64))
                put(topics.tf, cam_ns, m.tf([m.transform(cam_ns, ODOM_FRAME, BASE_FRAME,
                                                         pose)]))
            put(topics.image, cam_ns, m.image(cam_ns, CAMERA_FRAME, f.rgb, 'rgb8'))
            put(topics.camera_info, cam_ns, m.camera_info(cam_ns, CAMERA_FRAME, camera))
            if ground_truth:
                depth = np.where(np.isfinite(f.depth), f.depth, np.nan).astype('<f4')
                put(topics.depth, cam_ns, m.image(cam_ns, CAMERA_FRAME, depth, '32FC1'))
            put(topics.points, lid_ns, m.cloud(lid_ns, LIDAR_FRAME,
                                               np.asarray(f.lidar, np.float32), f.intensity,
                                               f.lidar_times, f.ring, time_field))
        put_odometry(None)
    return BagSummary(out, storage, compression, counts, types,
                      first or 0, (last or 0) - (first or 0), folder_size(out))


__all__ = ['BASE_FRAME', 'BagSummary', 'base_to_camera', 'CAMERA_FRAME', 'DEFAULT_START_NS',
           'CLOUD_LAYOUTS', 'DriveTopics', 'folder_size', 'LIDAR_FRAME', 'MessageBuilder',
           'ODOM_FRAME', 'qos_profiles', 'stamp_at', 'STORAGES', 'TIME_FIELDS', 'typestore',
           'write_drive']
