"""Synthetic drives as rosbag2 (mcap or sqlite3), and drives read back from such bags.

Written and read with ``rosbags`` (pure Python, no rclpy): the messages are the CDR bytes a
ROS 2 driver publishes, so ``ros2 bag play`` feeds them to the node as from a vehicle.

Topics (defaults of :class:`DriveTopics`; frame ids in brackets):

* ``/camera/image_rect`` ``sensor_msgs/Image`` rgb8 [camera_optical]
* ``/camera/camera_info`` ``sensor_msgs/CameraInfo``, rectified: ``P = [K | 0]``, no distortion
* ``/camera/depth_gt`` ``sensor_msgs/Image`` 32FC1, metres along optical Z, NaN = no return
  (sky), REP 118 [camera_optical]
* ``/lidar/points`` ``sensor_msgs/PointCloud2``: float32 x, y, z, intensity [lidar]
* ``/tf_static`` ``tf2_msgs/TFMessage``, transient local: ``camera_optical -> lidar`` (the pose
  of the LiDAR in the camera optical frame: the node's ``extrinsic.*`` parameters) and
  ``base_link -> camera_optical``
* ``/tf`` ``tf2_msgs/TFMessage``: ``odom -> base_link`` at every camera stamp

Compression (``compress=True``), zstd: mcap bags use the MCAP format's own chunk compression,
which every MCAP reader (rosbag2, Foxglove, the ``mcap`` CLI) understands; sqlite3 bags use
rosbag2's per-message compression (readable by rosbag2 and rosbags, which read
``metadata.yaml``; not by tools that read the ``.db3`` alone). Per-message compression is not
used for mcap: recent rosbag2 refuses it, and MCAP tools cannot read such files.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.errors import DepthNodeError
from depth_node.core.transforms import quaternion_to_matrix, RigidTransform
from depth_node.sim.frames import SimFrame
from depth_node.sim.scene import BODY_TO_OPTICAL

CAMERA_FRAME = 'camera_optical'
LIDAR_FRAME = 'lidar'
BASE_FRAME = 'base_link'
ODOM_FRAME = 'odom'
# 2023-11-14T22:13:20Z: stamps of zero would read as "latest" in tf2 lookups.
DEFAULT_START_NS = 1_700_000_000 * 10**9
STORAGES = ('mcap', 'sqlite3')

_FLOAT32 = 7  # sensor_msgs/PointField datatypes
_FLOAT64 = 8
_POINT_DTYPES = {1: 'i1', 2: 'u1', 3: 'i2', 4: 'u2', 5: 'i4', 6: 'u4', 7: 'f4', 8: 'f8'}


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


@dataclass(frozen=True)
class DriveFrame:
    """One camera frame read back from a drive bag, with what goes with it.

    ``lidar`` is the sweep nearest in time (within the reader's tolerance), in its own frame;
    ``lidar_to_camera`` is the pose of that frame in the camera frame, from ``/tf_static``.
    Absent parts are None.
    """

    index: int
    stamp_ns: int  # camera header stamp
    frame_id: str
    rgb: np.ndarray  # [H, W, 3] uint8
    camera: Optional[PinholeCamera]
    depth: Optional[np.ndarray]  # [H, W] float32, metres along optical Z, NaN = no data
    lidar: Optional[np.ndarray]  # [N, 3] float32, metres, LiDAR frame
    intensity: Optional[np.ndarray]  # [N] float32, or None when the cloud has none
    lidar_stamp_ns: Optional[int]
    lidar_frame_id: Optional[str]
    lidar_to_camera: Optional[RigidTransform]

    @property
    def stamp(self) -> float:
        """Camera stamp in seconds (float64: sub-microsecond near today's epoch)."""
        return self.stamp_ns * 1e-9

    @property
    def lidar_stamp(self) -> Optional[float]:
        return None if self.lidar_stamp_ns is None else self.lidar_stamp_ns * 1e-9


@lru_cache(maxsize=1)
def typestore() -> Any:
    """The rosbags type store of the newest ROS 2 distribution it knows (Kilted or Jazzy)."""
    from rosbags.typesys import get_typestore, Stores
    for name in ('ROS2_KILTED', 'ROS2_JAZZY'):
        if hasattr(Stores, name):
            return get_typestore(getattr(Stores, name))
    raise DepthNodeError('rosbags knows neither ROS 2 Kilted nor Jazzy: pip install -U rosbags')


def matrix_to_quaternion(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """Quaternion ``(x, y, z, w)`` of a rotation matrix [3, 3] (Shepperd's method, w >= 0)."""
    r = np.asarray(rotation, dtype=np.float64)
    tr = np.trace(r)
    if tr > 0:
        s = 2.0 * np.sqrt(1.0 + tr)
        q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        q = [0.0, 0.0, 0.0, (r[k, j] - r[j, k]) / s]
        q[i] = s / 4
        q[j] = (r[j, i] + r[i, j]) / s
        q[k] = (r[k, i] + r[i, k]) / s
    q = np.asarray(q) / np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    return tuple(float(v) for v in q)  # type: ignore[return-value]


def stamp_ns(start_ns: int, seconds: float) -> int:
    """``start_ns`` plus a stamp in seconds, rounded to the nanosecond."""
    return int(start_ns) + int(round(float(seconds) * 1e9))


def base_to_camera(camera_height: float) -> RigidTransform:
    """Pose of the camera optical frame in ``base_link`` (on the ground below the camera)."""
    return RigidTransform(BODY_TO_OPTICAL.T.copy(), np.array([0.0, 0.0, float(camera_height)]))


# ----------------------------------------------------------------------------- writing


class _Messages:
    """Builds the messages of a drive with the type store's classes."""

    def __init__(self) -> None:
        ts = typestore()
        self.ts = ts
        self.t = {name.rsplit('/', 1)[-1]: cls for name, cls in ts.types.items()
                  if name.startswith(('std_msgs/msg/', 'builtin_interfaces/msg/',
                                      'sensor_msgs/msg/', 'geometry_msgs/msg/',
                                      'tf2_msgs/msg/'))}

    def header(self, ns: int, frame_id: str) -> Any:
        sec, nsec = divmod(int(ns), 10**9)
        return self.t['Header'](stamp=self.t['Time'](sec=sec, nanosec=nsec), frame_id=frame_id)

    def image(self, ns: int, frame_id: str, array: np.ndarray, encoding: str) -> Any:
        a = np.ascontiguousarray(array)
        h, w = a.shape[:2]
        step = a.strides[0]
        return self.t['Image'](header=self.header(ns, frame_id), height=h, width=w,
                               encoding=encoding, is_bigendian=0, step=step,
                               data=np.frombuffer(a.tobytes(), np.uint8))

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
              intensity: Optional[np.ndarray]) -> Any:
        n = xyz.shape[0]
        rec = np.zeros(n, dtype=np.dtype({'names': ['x', 'y', 'z', 'intensity'],
                                          'formats': ['<f4'] * 4, 'offsets': [0, 4, 8, 12],
                                          'itemsize': 16}))
        rec['x'], rec['y'], rec['z'] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        if intensity is not None:
            rec['intensity'] = intensity
        fields = [self.t['PointField'](name=name, offset=4 * i, datatype=_FLOAT32, count=1)
                  for i, name in enumerate(('x', 'y', 'z', 'intensity'))]
        dense = bool(np.isfinite(xyz).all())
        return self.t['PointCloud2'](header=self.header(ns, frame_id), height=1, width=n,
                                     fields=fields, is_bigendian=False, point_step=16,
                                     row_step=16 * n, data=rec.view(np.uint8).reshape(-1),
                                     is_dense=dense)

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


def _qos(depth: int, latched: bool = False) -> list:
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)
    infinite = QosTime(9223372036, 854775807)  # RMW_DURATION_INFINITE, as rosbag2 writes it
    return [Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE,
                QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
                infinite, infinite, QosLiveliness.AUTOMATIC, infinite, False)]


def folder_size(path: str | Path) -> int:
    """Bytes of all files under ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob('*') if f.is_file())


def write_drive(path: str | Path, frames: Iterable[SimFrame], camera: PinholeCamera,
                lidar_to_camera: RigidTransform, *, storage: str = 'mcap',
                compress: bool = False, ground_truth: bool = True,
                camera_height: float = 1.65, start_ns: int = DEFAULT_START_NS,
                topics: DriveTopics = DriveTopics()) -> BagSummary:
    """Write synthetic frames as a rosbag2 folder at ``path`` (which must not exist).

    Header stamps are ``start_ns`` plus the frames' stamps (seconds); bag timestamps equal
    the header stamps. Depth ground truth goes out as 32FC1 with NaN for sky (REP 118); skip
    it with ``ground_truth=False``. ``camera_height`` places ``base_link`` on the ground.
    """
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin

    if storage not in STORAGES:
        raise DepthNodeError(f'storage must be one of {STORAGES}, got {storage!r}')
    out = Path(path)
    if out.exists():
        raise DepthNodeError(f'{out} exists already; rosbag2 bags are never overwritten')
    m = _Messages()
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
    spec = [(topics.tf_static, 'tf2_msgs/msg/TFMessage', _qos(1, latched=True))]
    if head.position is not None:  # ego poses: odom -> base_link
        spec.append((topics.tf, 'tf2_msgs/msg/TFMessage', _qos(100)))
    spec += [(topics.image, 'sensor_msgs/msg/Image', _qos(10)),
             (topics.camera_info, 'sensor_msgs/msg/CameraInfo', _qos(10))]
    if ground_truth:
        spec.append((topics.depth, 'sensor_msgs/msg/Image', _qos(10)))
    spec.append((topics.points, 'sensor_msgs/msg/PointCloud2', _qos(10)))
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

        for i, f in enumerate(itertools.chain([head], it)):
            cam_ns = stamp_ns(start_ns, f.stamp)
            lid_ns = stamp_ns(start_ns, f.lidar_stamp if f.lidar_stamp is not None else f.stamp)
            if i == 0:
                put(topics.tf_static, min(cam_ns, lid_ns), m.tf([
                    m.transform(cam_ns, BASE_FRAME, CAMERA_FRAME, base_to_camera(camera_height)),
                    m.transform(cam_ns, CAMERA_FRAME, LIDAR_FRAME, lidar_to_camera)]))
            if f.position is not None and topics.tf in conns:
                pos = BODY_TO_OPTICAL.T @ np.asarray(f.position, dtype=np.float64)
                put(topics.tf, cam_ns, m.tf([m.transform(
                    cam_ns, ODOM_FRAME, BASE_FRAME, RigidTransform(np.eye(3), pos))]))
            put(topics.image, cam_ns, m.image(cam_ns, CAMERA_FRAME, f.rgb, 'rgb8'))
            put(topics.camera_info, cam_ns, m.camera_info(cam_ns, CAMERA_FRAME, camera))
            if ground_truth:
                depth = np.where(np.isfinite(f.depth), f.depth, np.nan).astype('<f4')
                put(topics.depth, cam_ns, m.image(cam_ns, CAMERA_FRAME, depth, '32FC1'))
            put(topics.points, lid_ns, m.cloud(lid_ns, LIDAR_FRAME,
                                               np.asarray(f.lidar, np.float32), f.intensity))
    return BagSummary(out, storage, compression, counts, types,
                      first or 0, (last or 0) - (first or 0), folder_size(out))


# ----------------------------------------------------------------------------- reading


def image_to_array(msg: Any, topic: str = 'image') -> np.ndarray:
    """Array of a ``sensor_msgs/Image``: rgb8/bgr8 -> [H, W, 3] uint8 RGB, 32FC1 -> [H, W]."""
    enc = str(msg.encoding)
    channels = {'rgb8': (3, 'u1'), 'bgr8': (3, 'u1'), 'mono8': (1, 'u1'), '32FC1': (1, 'f4')}
    if enc not in channels:
        raise DepthNodeError(f'{topic}: encoding {enc!r} is not supported '
                             f'(one of {sorted(channels)})')
    nch, kind = channels[enc]
    dt = np.dtype(kind).newbyteorder('>' if msg.is_bigendian else '<')
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row = w * nch * dt.itemsize
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if step < row or data.size < h * step:
        raise DepthNodeError(f'{topic}: image {w}x{h} {enc} needs step >= {row} and '
                             f'{h} * step bytes, got step={step} and {data.size} bytes')
    rows = data[:h * step].reshape(h, step)[:, :row]
    arr = np.ascontiguousarray(rows).view(dt).reshape(h, w, nch).astype(dt.newbyteorder('='))
    if enc == 'bgr8':
        arr = arr[..., ::-1].copy()
    return arr[..., 0] if nch == 1 else arr


def cloud_to_arrays(msg: Any, topic: str = 'points') -> tuple[np.ndarray, Optional[np.ndarray]]:
    """``x, y, z`` [N, 3] float32 and ``intensity`` [N] float32 (or None) of a PointCloud2.

    Honours field offsets, ``point_step``, ``row_step`` and endianness; drops non-finite
    points.
    """
    fields = {f.name: f for f in msg.fields}
    for name in ('x', 'y', 'z'):
        if name not in fields:
            raise DepthNodeError(f'{topic}: PointCloud2 has no field {name!r} '
                                 f'(fields: {sorted(fields)})')
        if fields[name].datatype not in (_FLOAT32, _FLOAT64):
            raise DepthNodeError(f'{topic}: field {name!r} has datatype '
                                 f'{fields[name].datatype}, expected FLOAT32 (7) or FLOAT64 (8)')
    names = ['x', 'y', 'z'] + (['intensity'] if 'intensity' in fields else [])
    endian = '>' if msg.is_bigendian else '<'
    for n in names:
        if fields[n].datatype not in _POINT_DTYPES:
            raise DepthNodeError(f'{topic}: field {n!r} has unknown datatype '
                                 f'{fields[n].datatype}')
    dt = np.dtype({'names': names,
                   'formats': [endian + _POINT_DTYPES[fields[n].datatype] for n in names],
                   'offsets': [int(fields[n].offset) for n in names],
                   'itemsize': int(msg.point_step)})
    h, w, step = int(msg.height), int(msg.width), int(msg.row_step)
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if int(msg.point_step) <= 0 or step < w * msg.point_step or data.size < h * step:
        raise DepthNodeError(f'{topic}: PointCloud2 {w}x{h} needs point_step > 0, '
                             f'row_step >= width * point_step and height * row_step bytes, got '
                             f'point_step={msg.point_step} row_step={step} {data.size} bytes')
    rows = np.ascontiguousarray(data[:h * step].reshape(h, step)[:, :w * msg.point_step])
    rec = rows.reshape(-1).view(dt)
    xyz = np.stack([rec['x'], rec['y'], rec['z']], axis=1).astype(np.float32)
    inten = rec['intensity'].astype(np.float32) if 'intensity' in names else None
    good = np.isfinite(xyz).all(axis=1)
    if not good.all():
        xyz = xyz[good]
        inten = None if inten is None else inten[good]
    return xyz, inten


def camera_from_info(msg: Any) -> PinholeCamera:
    """Pinhole model of a ``sensor_msgs/CameraInfo`` (binning and ROI applied)."""
    roi = (int(msg.roi.x_offset), int(msg.roi.y_offset), int(msg.roi.width),
           int(msg.roi.height))
    return PinholeCamera.from_camera_info(int(msg.width), int(msg.height), list(msg.k),
                                          list(msg.p), int(msg.binning_x), int(msg.binning_y),
                                          roi)


def _header_stamp(raw: bytes | memoryview) -> int:
    """Header stamp (ns) of a CDR message whose first field is a std_msgs/Header."""
    little = bytes(raw[1:2]) == b'\x01'
    sec, nsec = struct.unpack('<iI' if little else '>iI', bytes(raw[4:12]))
    return sec * 10**9 + nsec


def _frame(name: str) -> str:
    return name.lstrip('/')


@dataclass
class _StaticTree:
    """Static transforms (child -> parent pose) and lookups between two frames."""

    parents: dict[str, tuple[str, RigidTransform]] = field(default_factory=dict)

    def add(self, msg: Any) -> None:
        for t in msg.transforms:
            tr = t.transform
            pose = RigidTransform(
                quaternion_to_matrix([tr.rotation.x, tr.rotation.y, tr.rotation.z,
                                      tr.rotation.w]),
                np.array([tr.translation.x, tr.translation.y, tr.translation.z]))
            self.parents[_frame(t.child_frame_id)] = (_frame(t.header.frame_id), pose)

    def _to_root(self, frame: str) -> tuple[str, RigidTransform]:
        pose = RigidTransform.identity()
        seen = {frame}
        while frame in self.parents:
            parent, p = self.parents[frame]
            pose = p @ pose
            frame = parent
            if frame in seen:
                raise DepthNodeError(f'/tf_static has a loop through {frame!r}')
            seen.add(frame)
        return frame, pose

    def lookup(self, target: str, source: str) -> Optional[RigidTransform]:
        """Pose of ``source`` in ``target``, or None when they are not connected."""
        rt, t_pose = self._to_root(_frame(target))
        rs, s_pose = self._to_root(_frame(source))
        if rt != rs:
            return None
        return t_pose.inverse() @ s_pose


def read_drive(path: str | Path, topics: DriveTopics = DriveTopics(),
               lidar_tolerance: float = 0.05) -> Iterator[DriveFrame]:
    """Camera frames of a drive bag, in stamp order, each with its data.

    Camera info and ground-truth depth are matched by header stamp (camera info falls back to
    the latest earlier one); the LiDAR sweep is the one nearest in header stamp within
    ``lidar_tolerance`` seconds. Two passes: the first reads the stamps only, the second
    decodes what each frame needs and drops it once used, so memory stays bounded.
    """
    from rosbags.rosbag2 import Reader

    ts = typestore()
    tol_ns = int(round(lidar_tolerance * 1e9))
    with Reader(Path(path)) as reader:
        by_topic = {c.topic: c for c in reader.connections}
        if topics.image not in by_topic:
            raise DepthNodeError(f'{path}: no {topics.image} topic (topics: '
                                 f'{sorted(by_topic)})')
        wanted = [by_topic[t] for t in (topics.image, topics.camera_info, topics.depth,
                                        topics.points) if t in by_topic]
        tree = _StaticTree()
        stamps: dict[str, list[int]] = {c.topic: [] for c in wanted}
        for conn, _, raw in reader.messages(connections=wanted):
            stamps[conn.topic].append(_header_stamp(raw))
        if topics.tf_static in by_topic:
            conns = [c for c in reader.connections if c.topic == topics.tf_static]
            for conn, _, raw in reader.messages(connections=conns):
                tree.add(ts.deserialize_cdr(raw, conn.msgtype))

        # The plan: what each camera frame needs, by (topic, stamp).
        images = sorted(set(stamps[topics.image]))
        infos = np.array(sorted(set(stamps.get(topics.camera_info, []))), dtype=np.int64)
        depths = set(stamps.get(topics.depth, []))
        sweeps = np.array(sorted(set(stamps.get(topics.points, []))), dtype=np.int64)
        plan: list[dict[str, Optional[int]]] = []
        for s in images:
            need: dict[str, Optional[int]] = {topics.image: s, topics.camera_info: None,
                                              topics.depth: s if s in depths else None,
                                              topics.points: None}
            k = int(np.searchsorted(infos, s, side='right')) - 1
            if k >= 0:
                need[topics.camera_info] = int(infos[k])
            if sweeps.size:
                j = int(np.searchsorted(sweeps, s))
                cands = [int(sweeps[c]) for c in (j - 1, j) if 0 <= c < sweeps.size]
                best = min(cands, key=lambda c: abs(c - s))
                if abs(best - s) <= tol_ns:
                    need[topics.points] = best
            plan.append(need)
        users: dict[tuple[str, int], int] = {}
        for need in plan:
            for key in need.items():
                if key[1] is not None:
                    users[key] = users.get(key, 0) + 1  # type: ignore[index]

        cache: dict[tuple[str, int], tuple[str, Any]] = {}  # -> (frame id, decoded)
        nxt = 0
        for conn, _, raw in reader.messages(connections=wanted):
            key = (conn.topic, _header_stamp(raw))
            if key not in users or key in cache:
                continue
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == topics.camera_info:
                data = camera_from_info(msg)
            elif conn.topic == topics.points:
                data = cloud_to_arrays(msg, conn.topic)
            else:
                data = image_to_array(msg, conn.topic)
            cache[key] = (_frame(msg.header.frame_id), data)
            while nxt < len(plan) and all(v is None or (t, v) in cache
                                          for t, v in plan[nxt].items()):
                yield _assemble(nxt, plan[nxt], cache, users, tree, topics)
                nxt += 1
        if nxt < len(plan):
            raise DepthNodeError(f'{path}: {len(plan) - nxt} camera frames could not be '
                                 'assembled (messages missing in the second pass)')


def _assemble(index: int, need: dict[str, Optional[int]], cache: dict, users: dict,
              tree: _StaticTree, topics: DriveTopics) -> DriveFrame:
    got: dict[str, Any] = {}
    for topic, s in need.items():
        if s is None:
            got[topic] = (None, None)
            continue
        got[topic] = cache[(topic, s)]
        users[(topic, s)] -= 1
        if users[(topic, s)] == 0:
            del cache[(topic, s)]
    cam_frame, rgb = got[topics.image]
    lidar_frame, cloud = got[topics.points]
    extrinsic = tree.lookup(cam_frame, lidar_frame) if lidar_frame is not None else None
    return DriveFrame(index=index, stamp_ns=int(need[topics.image]),  # type: ignore[arg-type]
                      frame_id=cam_frame, rgb=rgb, camera=got[topics.camera_info][1],
                      depth=got[topics.depth][1], lidar=None if cloud is None else cloud[0],
                      intensity=None if cloud is None else cloud[1],
                      lidar_stamp_ns=need[topics.points], lidar_frame_id=lidar_frame,
                      lidar_to_camera=extrinsic)
