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

Reading for evaluation (:class:`DriveReader`) is one streaming pass with bounded memory and
survives damaged bags: a bag whose MCAP file was truncated (a recording killed mid-write) or
has corrupt chunks is read up to and around the damage, and every problem is reported as a
:class:`BagIssue` naming the bag and the topics that lost messages. :class:`OutputBagWriter`
writes what the node publishes for each frame (the bytes a live node would send) into a new
bag that replays next to the input.

Compression (``compress=True``), zstd: mcap bags use the MCAP format's own chunk compression,
which every MCAP reader (rosbag2, Foxglove, the ``mcap`` CLI) understands; sqlite3 bags use
rosbag2's per-message compression (readable by rosbag2 and rosbags, which read
``metadata.yaml``; not by tools that read the ``.db3`` alone). Per-message compression is not
used for mcap: recent rosbag2 refuses it, and MCAP tools cannot read such files.
"""

from __future__ import annotations

import binascii
import itertools
import os
import struct
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Optional

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.errors import DepthNodeError
from depth_node.core.transforms import matrix_to_quaternion, quaternion_to_matrix, RigidTransform
from depth_node.messages.encodings import FLOAT32, MessageError, NATIVE_BIG
from depth_node.messages.readers import (camera_info_to_camera, depth_image_to_metres,
                                         image_to_rgb8, pointcloud2_to_arrays)
from depth_node.pipeline.published import FrameOutputs
from depth_node.sim.frames import SimFrame
from depth_node.sim.scene import BODY_TO_OPTICAL

CAMERA_FRAME = 'camera_optical'
LIDAR_FRAME = 'lidar'
BASE_FRAME = 'base_link'
ODOM_FRAME = 'odom'
# 2023-11-14T22:13:20Z: stamps of zero would read as "latest" in tf2 lookups.
DEFAULT_START_NS = 1_700_000_000 * 10**9
STORAGES = ('mcap', 'sqlite3')


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
    # Filled by DriveReader (defaults from read_drive): the image's bag (receive) time and what
    # depth/camera_info copies from the input camera_info.
    log_ns: Optional[int] = None
    distortion_model: str = 'plumb_bob'
    distortion_count: int = 5

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
                                      'tf2_msgs/msg/', 'diagnostic_msgs/msg/'))}

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
        fields = [self.t['PointField'](name=name, offset=4 * i, datatype=FLOAT32, count=1)
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


def _qos(depth: int, latched: bool = False, reliable: bool = True) -> list:
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
            try:
                if conn.topic == topics.camera_info:
                    data = camera_info_to_camera(msg)
                elif conn.topic == topics.points:
                    xyz, values = pointcloud2_to_arrays(msg, ('intensity',))
                    data = (xyz, values.get('intensity'))
                elif conn.topic == topics.depth:
                    data = depth_image_to_metres(msg)
                else:
                    data = image_to_rgb8(msg)
            except MessageError as exc:
                raise DepthNodeError(f'{path}: {conn.topic}: {exc}') from None
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


# ----------------------------------------------------------------------------- damaged bags


@dataclass(frozen=True)
class BagIssue:
    """A problem met while reading a bag: what could not be read, and where."""

    bag: str
    topic: Optional[str]  # None: the bag as a whole, or topics unknown
    message: str

    def __str__(self) -> str:
        return f'{self.bag}: {self.topic}: {self.message}' if self.topic \
            else f'{self.bag}: {self.message}'


class BagReadError(DepthNodeError):
    """Nothing of a bag can be read (not a bag, unreadable file, unknown storage)."""


class BagMessage(NamedTuple):
    """One raw message of a bag."""

    topic: str
    msgtype: str  # e.g. 'sensor_msgs/msg/Image'
    log_ns: int  # bag (receive) time, ns since the epoch
    data: bytes  # CDR


_MCAP_MAGIC = b'\x89MCAP0\r\n'
_MCAP_RECORDS = {0x01: 'Header', 0x02: 'Footer', 0x03: 'Schema', 0x04: 'Channel',
                 0x05: 'Message', 0x06: 'Chunk', 0x07: 'MessageIndex', 0x08: 'ChunkIndex',
                 0x09: 'Attachment', 0x0A: 'AttachmentIndex', 0x0B: 'Statistics',
                 0x0C: 'Metadata', 0x0D: 'MetadataIndex', 0x0E: 'SummaryOffset',
                 0x0F: 'DataEnd'}


def _bag_metadata(path: Path) -> dict:
    """``rosbag2_bagfile_information`` of a bag folder's metadata.yaml ({} when unreadable)."""
    meta = path / 'metadata.yaml'
    if not meta.is_file():
        return {}
    try:
        import yaml
        info = yaml.safe_load(meta.read_text())['rosbag2_bagfile_information']
        return info if isinstance(info, dict) else {}
    except Exception:  # a damaged metadata.yaml is one more thing to do without
        return {}


def _declared_topics(path: Path) -> dict[str, tuple[str, int]]:
    """Topic -> (type, message count) as a bag folder's metadata.yaml declares them."""
    out = {}
    for t in _bag_metadata(path).get('topics_with_message_count') or []:
        try:
            meta = t['topic_metadata']
            out[str(meta['name'])] = (str(meta['type']), int(t['message_count']))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _mcap_files(path: Path) -> list[Path]:
    """The MCAP files of a bag: the file itself, or those of a bag folder, in order."""
    if path.is_file():
        return [path] if path.suffix == '.mcap' else []
    if not path.is_dir():
        return []
    named = [path / str(r) for r in _bag_metadata(path).get('relative_file_paths') or []]
    named = [f for f in named if f.suffix == '.mcap' and f.is_file()]
    return named or sorted(path.glob('*.mcap'))


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    if compression == '':
        raw = bytes(data)
    elif compression == 'zstd':
        try:
            from compression import zstd  # type: ignore[import-not-found]  # Python >= 3.14
        except ImportError:
            from backports import zstd  # type: ignore[no-redef]  # what rosbags uses
        raw = zstd.decompress(data)
    elif compression == 'lz4':
        import lz4.frame  # a dependency of rosbags
        raw = lz4.frame.decompress(data)
    else:
        raise DepthNodeError(f'unsupported chunk compression {compression!r}')
    if len(raw) != size:
        raise DepthNodeError(f'chunk holds {len(raw)} bytes, its header says {size}')
    return raw


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from('<I', buf, pos)
    if pos + 4 + n > len(buf):
        raise DepthNodeError(f'string of {n} bytes runs past its record')
    return bytes(buf[pos + 4:pos + 4 + n]).decode('utf-8'), pos + 4 + n


class _McapScanner:
    """Sequential MCAP reader that needs neither the summary section nor the footer.

    It reads records front to back, so a file cut off mid-write yields everything before the
    cut, and a chunk that cannot be decompressed or parsed is skipped (its message index
    records, which follow it, tell which topics lost how many messages) while later chunks are
    still read. Problems go to ``issues``.
    """

    def __init__(self, bag: str, issues: list[BagIssue], wanted: Optional[set[str]],
                 channels: Optional[dict[int, tuple[str, str]]] = None) -> None:
        self.bag = bag
        self.issues = issues
        self.wanted = wanted
        self.channels: dict[int, tuple[str, str]] = dict(channels or {})  # id -> topic, type
        self.schemas: dict[int, str] = {}

    def _issue(self, topic: Optional[str], message: str) -> None:
        self.issues.append(BagIssue(self.bag, topic, message))

    def scan(self, file: Path) -> Iterator[BagMessage]:
        """Messages of one MCAP file in file order (time order within each chunk)."""
        import mmap
        with open(file, 'rb') as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < len(_MCAP_MAGIC):
                self._issue(None, f'{file.name} is empty or shorter than the MCAP magic '
                                  f'({size} bytes)')
                return
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                yield from self._records(buf, size, file.name)
            finally:
                buf.close()

    def _records(self, buf: Any, size: int, name: str) -> Iterator[BagMessage]:
        if buf[:8] != _MCAP_MAGIC:
            self._issue(None, f'{name} is not an MCAP file (bad magic)')
            return
        pos, ended = 8, False
        lost: Optional[dict] = None  # the chunk being skipped, until its message index ends
        while pos < size:
            if pos + 9 > size:
                self._issue(None, f'{name} ends inside a record header at byte {size}: the '
                                  'file was truncated')
                break
            op = buf[pos]
            (length,) = struct.unpack_from('<Q', buf, pos + 1)
            start, end = pos + 9, pos + 9 + length
            kind = _MCAP_RECORDS.get(op, f'0x{op:02x}')
            if end > size:
                self._issue(None, f'{name} ends inside a {kind} record at byte {pos} '
                                  f'({size - start} of its {length} bytes present): the file '
                                  'was truncated; later messages are missing')
                break
            if lost is not None and op != 0x07:
                self._report_lost(lost)
                lost = None
            if op in (0x02, 0x0F):  # Footer, DataEnd: the summary section follows
                ended = True
                break
            body = bytes(buf[start:end])
            if op == 0x06:
                messages, error = self._chunk(body)
                yield from messages
                if error is not None:
                    t0, t1 = struct.unpack_from('<QQ', body, 0) if len(body) >= 16 else (0, 0)
                    lost = {'where': f'chunk at byte {pos} of {name} (log time '
                                     f'{t0 * 1e-9:.3f}-{t1 * 1e-9:.3f} s)',
                            'error': error, 'read': Counter(m.topic for m in messages),
                            'indexed': Counter()}
            elif op == 0x07 and lost is not None and len(body) >= 6:
                cid, nbytes = struct.unpack_from('<HI', body, 0)
                lost['indexed'][self.channels.get(cid, (f'<channel {cid}>', ''))[0]] += \
                    nbytes // 16
            else:
                try:
                    message = self._record(op, body)
                except (struct.error, DepthNodeError, UnicodeDecodeError) as exc:
                    self._issue(None, f'{kind} record at byte {pos} of {name} is unreadable '
                                      f'({exc}); skipped')
                    message = None
                if message is not None:
                    yield message
            pos = end
        if lost is not None:
            self._report_lost(lost)
        if not ended and pos >= size:
            self._issue(None, f'{name} ends at byte {size} without an MCAP footer: the '
                              'recording was cut off (read what was there)')

    def _record(self, op: int, body: bytes) -> Optional[BagMessage]:
        """Schema and channel records update the tables; a wanted message comes back."""
        if op == 0x03:
            (sid,) = struct.unpack_from('<H', body, 0)
            self.schemas[sid], _ = _string(body, 2)
        elif op == 0x04:
            cid, sid = struct.unpack_from('<HH', body, 0)
            topic, _ = _string(body, 4)
            self.channels[cid] = (topic, self.schemas.get(sid, ''))
        elif op == 0x05:
            cid, _, log_ns, _ = struct.unpack_from('<HIQQ', body, 0)
            if cid not in self.channels:
                raise DepthNodeError(f'message on channel {cid}, which was never defined')
            topic, msgtype = self.channels[cid]
            if self.wanted is None or topic in self.wanted:
                return BagMessage(topic, msgtype, int(log_ns), body[22:])
        return None

    def _chunk(self, body: bytes) -> tuple[list[BagMessage], Optional[str]]:
        """Wanted messages of a chunk in time order, and what went wrong (None: nothing)."""
        messages: list[BagMessage] = []
        try:
            _, _, usize, crc = struct.unpack_from('<QQQI', body, 0)
            compression, pos = _string(body, 28)
            (csize,) = struct.unpack_from('<Q', body, pos)
            pos += 8
            if pos + csize > len(body):
                raise DepthNodeError('compressed data runs past the chunk record')
            raw = _decompress(body[pos:pos + csize], compression, usize)
            if crc and binascii.crc32(raw) != crc:
                raise DepthNodeError('checksum mismatch')
            pos = 0
            while pos < len(raw):
                op = raw[pos]
                (length,) = struct.unpack_from('<Q', raw, pos + 1)
                if pos + 9 + length > len(raw):
                    raise DepthNodeError(f'record at byte {pos} of the chunk runs past it')
                message = self._record(op, raw[pos + 9:pos + 9 + length])
                if message is not None:
                    messages.append(message)
                pos += 9 + length
        except Exception as exc:  # zstd/lz4 raise their own types: report any of them
            messages.sort(key=lambda m: m.log_ns)
            return messages, f'{type(exc).__name__}: {exc}'
        messages.sort(key=lambda m: m.log_ns)
        return messages, None

    def _report_lost(self, lost: dict) -> None:
        missing = {t: n - lost['read'].get(t, 0) for t, n in lost['indexed'].items()}
        missing = {t: n for t, n in missing.items() if n > 0
                   and (self.wanted is None or t in self.wanted or t.startswith('<'))}
        if not lost['indexed']:
            self._issue(None, f"{lost['where']} is unreadable ({lost['error']}); its "
                              'messages are lost')
        for topic, n in sorted(missing.items()):
            self._issue(topic, f"{n} messages lost: {lost['where']} is unreadable "
                               f"({lost['error']})")


class DriveReader:
    """Camera frames of a bag with what goes with them, in one streaming pass.

    Like :func:`read_drive`, but for evaluating real recordings: bounded memory on long bags,
    configurable matching, Image or CompressedImage cameras, and damaged bags are read as far
    as they can be (see :class:`_McapScanner`), with every problem in :attr:`issues`.

    Matching, per camera frame (header stamps): the camera_info is the latest at or before the
    image (else the first after it); the LiDAR sweep is the one nearest in stamp within
    ``lidar_tolerance`` s (the node's ``lidar.max_age``); ground-truth depth the one within
    ``depth_tolerance`` s. A frame is assembled once the bag has moved ``lookahead`` s (bag
    time) past its image, so sweeps and ground truth recorded a little later still match.
    ``lidar_to_camera`` comes from ``/tf_static`` (the pose of the cloud's frame in the image's
    frame), None when it does not connect them.
    """

    def __init__(self, path: str | Path, topics: DriveTopics = DriveTopics(),
                 lidar_tolerance: float = 0.05, depth_tolerance: float = 1e-3,
                 lookahead: float = 1.0, max_buffered: int = 64) -> None:
        self.path = Path(path)
        self.bag = str(path)
        self.topics = topics
        self.tol_ns = int(round(lidar_tolerance * 1e9))
        self.depth_tol_ns = int(round(depth_tolerance * 1e9))
        self.lookahead_ns = int(round(lookahead * 1e9))
        self.max_buffered = int(max_buffered)
        self.issues: list[BagIssue] = []
        self.read: Counter[str] = Counter()  # messages read per topic
        self.skipped_images = 0  # camera messages that could not be decoded
        self._tree = _StaticTree()
        self.static_transforms: list[BagMessage] = []  # raw /tf_static messages seen
        self._infos: list[tuple[int, str, PinholeCamera, str, int]] = []
        self._sweeps: dict[int, BagMessage] = {}
        self._decoded: dict[int, Optional[tuple[str, np.ndarray, Optional[np.ndarray]]]] = {}
        self._depths: dict[int, BagMessage] = {}
        self._once: set[str] = set()

    # ----- what the bag declares
    def topics_in_bag(self) -> dict[str, tuple[str, int]]:
        """Topic -> (type, message count) as declared by the bag ({} when unknown)."""
        if self.path.is_dir():
            declared = _declared_topics(self.path)
            if declared:
                return declared
        return {}

    def _issue(self, topic: Optional[str], message: str, once: Optional[str] = None) -> None:
        if once is not None:
            if once in self._once:
                return
            self._once.add(once)
        self.issues.append(BagIssue(self.bag, topic, message))

    # ----- raw messages
    def messages(self, wanted: Optional[set[str]] = None) -> Iterator[BagMessage]:
        """Raw messages of the wanted topics, in bag-time order, surviving damage."""
        if not self.path.exists():
            raise BagReadError(f'{self.bag}: no such bag (file or folder)')
        if self.path.is_file():
            if self.path.suffix != '.mcap':
                raise BagReadError(f'{self.bag}: a bag is a rosbag2 folder or an .mcap file')
            yield from _McapScanner(self.bag, self.issues, wanted).scan(self.path)
            return
        from rosbags.rosbag2 import Reader
        try:
            reader = Reader(self.path)
            reader.open()
        except Exception as exc:
            files = _mcap_files(self.path)
            if not files:
                raise BagReadError(f'{self.bag}: cannot be read as a rosbag2 bag: {exc}') from exc
            self._issue(None, f'cannot be opened as a rosbag2 bag ({exc}); reading what is '
                              f"readable by scanning {', '.join(f.name for f in files)}")
            scanner = _McapScanner(self.bag, self.issues, wanted)
            for f in files:
                yield from scanner.scan(f)
            return
        try:
            conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
            last, at_last = -1, Counter()
            try:
                for conn, log_ns, raw in reader.messages(connections=conns):
                    if log_ns != last:
                        last, at_last = log_ns, Counter()
                    at_last[conn.topic] += 1
                    yield BagMessage(conn.topic, conn.msgtype, int(log_ns), raw)
            except Exception as exc:  # storage plugins raise their own types
                where = f'at log time {last * 1e-9:.3f} s' if last >= 0 else 'at the start'
                files = _mcap_files(self.path)
                if not files:
                    self._issue(None, f'reading stopped {where}: {type(exc).__name__}: {exc}')
                    return
                self._issue(None, f'reading stopped {where} ({type(exc).__name__}: {exc}); '
                                  'skipping the damaged part by scanning the MCAP file')
                channels = {c.id: (c.topic, c.msgtype) for c in reader.connections}
                scanner = _McapScanner(self.bag, self.issues, wanted, channels)
                for f in files:
                    for m in scanner.scan(f):
                        if m.log_ns < last:
                            continue
                        if m.log_ns == last and at_last[m.topic] > 0:
                            at_last[m.topic] -= 1
                            continue
                        yield m
        finally:
            reader.close()

    def _static_prepass(self) -> None:
        """Read /tf_static first (cheap: one topic), so that early frames have it."""
        if not self.path.is_dir():
            return
        try:
            from rosbags.rosbag2 import Reader
            with Reader(self.path) as reader:
                conns = [c for c in reader.connections if c.topic == self.topics.tf_static]
                for conn, log_ns, raw in reader.messages(connections=conns):
                    self._add_static(BagMessage(conn.topic, conn.msgtype, int(log_ns), raw))
        except Exception:  # damage is reported by the main pass
            return

    # ----- frames
    def frames(self) -> Iterator[DriveFrame]:
        """Camera frames in bag order (see the class docstring)."""
        t = self.topics
        self._static_prepass()
        wanted = {t.image, t.camera_info, t.depth, t.points, t.tf_static}
        pending: deque[BagMessage] = deque()
        index = 0
        for m in self.messages(wanted):
            self.read[m.topic] += 1
            if m.topic == t.image:
                pending.append(m)
            elif m.topic == t.camera_info:
                self._add_info(m)
            elif m.topic == t.points:
                self._add_stamped(self._sweeps, m)
            elif m.topic == t.depth:
                self._add_stamped(self._depths, m)
            elif m.topic == t.tf_static:
                self._add_static(m)
            while pending and pending[0].log_ns + self.lookahead_ns < m.log_ns:
                frame = self._assemble(pending.popleft(), index)
                index += 1
                if frame is not None:
                    yield frame
        while pending:
            frame = self._assemble(pending.popleft(), index)
            index += 1
            if frame is not None:
                yield frame
        if self.issues:  # say which topics came up short
            for topic, (_, declared) in self.topics_in_bag().items():
                if topic in wanted and self.read[topic] < declared:
                    self._issue(topic, f'only {self.read[topic]} of its {declared} messages '
                                       'could be read')

    def _stamp(self, m: BagMessage) -> Optional[int]:
        try:
            return _header_stamp(m.data)
        except (struct.error, IndexError) as exc:
            self._issue(m.topic, f'message at log time {m.log_ns * 1e-9:.3f} s has no '
                                 f'readable header ({exc}); skipped')
            return None

    def _decode(self, m: BagMessage) -> Any:
        try:
            return typestore().deserialize_cdr(m.data, m.msgtype)
        except Exception as exc:  # rosbags raises assorted types on bad bytes
            self._issue(m.topic, f'message at log time {m.log_ns * 1e-9:.3f} s cannot be '
                                 f'decoded as {m.msgtype} ({type(exc).__name__}: {exc}); '
                                 'skipped')
            return None

    def _add_static(self, m: BagMessage) -> None:
        msg = self._decode(m)
        if msg is not None:
            self._tree.add(msg)
            if not any(bytes(s.data) == bytes(m.data) for s in self.static_transforms):
                self.static_transforms.append(BagMessage(m.topic, m.msgtype, m.log_ns,
                                                         bytes(m.data)))

    def _add_info(self, m: BagMessage) -> None:
        msg = self._decode(m)
        if msg is None:
            return
        try:
            camera = camera_info_to_camera(msg)
        except MessageError as exc:
            self._issue(m.topic, f'camera_info at log time {m.log_ns * 1e-9:.3f} s is '
                                 f'invalid ({exc}); skipped')
            return
        s = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        self._infos.append((s, _frame(msg.header.frame_id), camera, str(msg.distortion_model),
                            len(msg.d)))
        self._infos.sort(key=lambda i: i[0])
        del self._infos[:-self.max_buffered]

    def _add_stamped(self, store: dict[int, BagMessage], m: BagMessage) -> None:
        s = self._stamp(m)
        if s is not None and s not in store:
            store[s] = m
            while len(store) > self.max_buffered:
                oldest = min(store)
                del store[oldest]
                self._decoded.pop(oldest, None)

    @staticmethod
    def _nearest(stamps: Iterable[int], s: int, tol: int) -> Optional[int]:
        best = min(stamps, key=lambda c: abs(c - s), default=None)
        return best if best is not None and abs(best - s) <= tol else None

    def _sweep(self, s: int) -> Optional[tuple[int, str, np.ndarray, Optional[np.ndarray]]]:
        key = self._nearest(self._sweeps, s, self.tol_ns)
        if key is None:
            return None
        if key not in self._decoded:
            m = self._sweeps[key]
            msg = self._decode(m)
            got = None
            if msg is not None:
                try:
                    xyz, values = pointcloud2_to_arrays(msg, ('intensity',))
                    got = (_frame(msg.header.frame_id), xyz, values.get('intensity'))
                except MessageError as exc:
                    self._issue(m.topic, f'cloud at log time {m.log_ns * 1e-9:.3f} s: {exc}; '
                                         'skipped')
            self._decoded[key] = got
        got = self._decoded[key]
        return None if got is None else (key, *got)

    def _depth(self, s: int) -> Optional[np.ndarray]:
        key = self._nearest(self._depths, s, self.depth_tol_ns)
        if key is None:
            return None
        m = self._depths[key]
        msg = self._decode(m)
        if msg is None:
            return None
        try:
            return depth_image_to_metres(msg)
        except MessageError as exc:
            self._issue(m.topic, f'{exc}; ground truth skipped', once=f'depth:{exc}')
            return None

    def _camera(self, s: int) -> Optional[tuple[int, str, PinholeCamera, str, int]]:
        before = [i for i in self._infos if i[0] <= s]
        if before:
            return before[-1]
        return self._infos[0] if self._infos else None

    def _assemble(self, m: BagMessage, index: int) -> Optional[DriveFrame]:
        s = self._stamp(m)
        msg = self._decode(m) if s is not None else None
        rgb = None
        if msg is not None:
            try:
                rgb = image_to_rgb8(msg, m.msgtype)
            except MessageError as exc:
                self._issue(m.topic, f'image at log time {m.log_ns * 1e-9:.3f} s: {exc}; '
                                     'skipped')
        if rgb is None or s is None:
            self.skipped_images += 1
            return None
        frame_id = _frame(msg.header.frame_id)
        info = self._camera(s)
        sweep = self._sweep(s)
        depth = self._depth(s)
        extrinsic = None
        if sweep is not None:
            extrinsic = self._tree.lookup(frame_id, sweep[1])
        self._prune(s)
        return DriveFrame(
            index=index, stamp_ns=s, frame_id=frame_id, rgb=rgb,
            camera=None if info is None else info[2], depth=depth,
            lidar=None if sweep is None else sweep[2],
            intensity=None if sweep is None else sweep[3],
            lidar_stamp_ns=None if sweep is None else sweep[0],
            lidar_frame_id=None if sweep is None else sweep[1], lidar_to_camera=extrinsic,
            log_ns=m.log_ns, distortion_model='' if info is None else info[3],
            distortion_count=0 if info is None else info[4])

    def _prune(self, s: int) -> None:
        """Forget what no later frame can use (stamps far enough behind this one)."""
        horizon = s - self.tol_ns - self.lookahead_ns
        for key in [k for k in self._sweeps if k < horizon]:
            del self._sweeps[key]
            self._decoded.pop(key, None)
        for key in [k for k in self._depths if k < s - self.lookahead_ns]:
            del self._depths[key]
        keep = [i for i in self._infos if i[0] >= s - self.lookahead_ns]
        older = [i for i in self._infos if i[0] < s - self.lookahead_ns]
        self._infos = older[-1:] + keep


# ----------------------------------------------------------------------------- output bags


class OutputBagWriter:
    """Writes what the node publishes, frame by frame, into a new rosbag2 bag.

    Topics (``namespace`` prefixes them, as the node's namespace would): ``depth`` (32FC1),
    ``depth/camera_info``, ``depth/points`` (packed XYZ or XYZRGB), ``depth/relative``,
    ``depth/colored`` (rgb8) and ``/diagnostics``, with the node's publisher QoS, plus a copy of
    the input's ``/tf_static`` so the bag also plays alone. Messages carry the input image's
    header and are stored at the input image's bag time, so that playing both bags together
    keeps them in step. The bytes are those the live node publishes (the layouts come from
    :mod:`depth_node.pipeline.published`).
    """

    def __init__(self, path: str | Path, *, storage: str = 'mcap', namespace: str = '',
                 node_name: str = 'depth_node', qos_depth: int = 5,
                 reliable: bool = True) -> None:
        from rosbags.rosbag2 import Writer
        from rosbags.rosbag2.enums import StoragePlugin

        if storage not in STORAGES:
            raise DepthNodeError(f'storage must be one of {STORAGES}, got {storage!r}')
        self.path = Path(path)
        if self.path.exists():
            raise DepthNodeError(f'{self.path} exists already; rosbag2 bags are never '
                                 'overwritten')
        self.m = _Messages()
        self.namespace = '/' + namespace.strip('/') if namespace.strip('/') else ''
        self.status_name = f'{node_name}: metric depth'
        self.hardware_id = self.namespace or '/'
        plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=plugin)
        self._writer.open()
        self.counts: Counter[str] = Counter()
        qos = _qos(qos_depth, reliable=reliable)
        self._conns: dict[str, Any] = {}
        for name, msgtype in (('depth', 'sensor_msgs/msg/Image'),
                              ('depth/camera_info', 'sensor_msgs/msg/CameraInfo'),
                              ('depth/points', 'sensor_msgs/msg/PointCloud2'),
                              ('depth/relative', 'sensor_msgs/msg/Image'),
                              ('depth/colored', 'sensor_msgs/msg/Image')):
            self._conns[name] = self._writer.add_connection(
                self.topic(name), msgtype, typestore=self.m.ts, offered_qos_profiles=qos)
        self._conns['/diagnostics'] = self._writer.add_connection(
            '/diagnostics', 'diagnostic_msgs/msg/DiagnosticArray', typestore=self.m.ts,
            offered_qos_profiles=_qos(10))
        self._static: Optional[Any] = None
        self._static_seen: list[bytes] = []

    def topic(self, name: str) -> str:
        """Fully qualified name of one of the node's relative topics."""
        return name if name.startswith('/') else f'{self.namespace}/{name}'

    def __enter__(self) -> 'OutputBagWriter':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Finish the bag (metadata.yaml); idempotent."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _put(self, name: str, log_ns: int, msg: Any) -> None:
        self._writer.write(self._conns[name], int(log_ns), self.m.serialize(msg))
        self.counts[self.topic(name)] += 1

    def copy_static(self, messages: Iterable[BagMessage]) -> None:
        """Copy ``/tf_static`` messages of the input (each distinct message once)."""
        for m in messages:
            if bytes(m.data) in self._static_seen:
                continue
            if self._static is None:
                self._static = self._writer.add_connection(
                    m.topic, m.msgtype, typestore=self.m.ts,
                    offered_qos_profiles=_qos(1, latched=True))
            self._static_seen.append(bytes(m.data))
            self._writer.write(self._static, int(m.log_ns), bytes(m.data))
            self.counts[m.topic] += 1

    def _image(self, stamp: int, frame_id: str, array: np.ndarray, encoding: str) -> Any:
        a = np.ascontiguousarray(array)
        h, w = a.shape[:2]
        return self.m.t['Image'](header=self.m.header(stamp, frame_id), height=h, width=w,
                                 encoding=encoding, is_bigendian=int(NATIVE_BIG),
                                 step=int(a.strides[0]), data=a.reshape(-1).view(np.uint8))

    def write_frame(self, log_ns: int, stamp_ns: int, frame_id: str,
                    outputs: FrameOutputs) -> None:
        """The messages of one frame, in the node's publishing order."""
        t = self.m.t
        if outputs.depth is not None:
            self._put('depth', log_ns, self._image(stamp_ns, frame_id,
                                                   outputs.depth.astype(np.float32, copy=False),
                                                   '32FC1'))
        if outputs.camera_info is not None:
            ci = outputs.camera_info
            roi = t['RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                        do_rectify=False)
            self._put('depth/camera_info', log_ns, t['CameraInfo'](
                header=self.m.header(stamp_ns, frame_id), height=ci.height, width=ci.width,
                distortion_model=ci.distortion_model, d=np.asarray(ci.d, np.float64),
                k=np.asarray(ci.k, np.float64), r=np.asarray(ci.r, np.float64),
                p=np.asarray(ci.p, np.float64), binning_x=0, binning_y=0, roi=roi))
        if outputs.cloud is not None:
            c = outputs.cloud
            fields = [t['PointField'](name=name, offset=offset, datatype=FLOAT32, count=1)
                      for name, offset in c.fields]
            self._put('depth/points', log_ns, t['PointCloud2'](
                header=self.m.header(stamp_ns, frame_id), height=c.height, width=c.width,
                fields=fields, is_bigendian=c.is_bigendian, point_step=c.point_step,
                row_step=c.row_step, data=c.data, is_dense=c.is_dense))
        if outputs.relative is not None:
            self._put('depth/relative', log_ns, self._image(
                stamp_ns, frame_id, outputs.relative.astype(np.float32, copy=False), '32FC1'))
        if outputs.colored is not None:
            self._put('depth/colored', log_ns,
                      self._image(stamp_ns, frame_id, outputs.colored, 'rgb8'))

    def write_diagnostics(self, log_ns: int, stamp_ns: int,
                          status: tuple[int, str, list[tuple[str, str]]]) -> None:
        """One ``/diagnostics`` message (level, message, key/values of
        :func:`~depth_node.pipeline.published.diagnostic_status`)."""
        t = self.m.t
        level, message, values = status
        st = t['DiagnosticStatus'](level=int(level), name=self.status_name, message=message,
                                   hardware_id=self.hardware_id,
                                   values=[t['KeyValue'](key=k, value=v) for k, v in values])
        self._put('/diagnostics', log_ns,
                  t['DiagnosticArray'](header=self.m.header(stamp_ns, ''), status=[st]))
