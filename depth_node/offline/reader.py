"""The one bag reader: camera frames of a rosbag2 bag with what goes with them.

Messages come from ``rosbags.highlevel.AnyReader`` (a rosbag2 folder, mcap or sqlite3, or a
bare ``.mcap`` file), decoded with the types of the bag's own message definitions, or with the
default type store (:func:`~depth_node.offline.drive_bag.typestore`) for bags recorded without
them. A damaged MCAP bag - truncated by a killed recording, or with corrupt chunks - is read on
with :class:`~depth_node.offline.recovery.McapRecovery` from where ``rosbags`` stopped, and every
problem is a :class:`~depth_node.offline.records.BagIssue` naming the bag and the topics that
lost messages. Pairing by stamp uses :class:`~depth_node.core.stamped.StampedCache`, the
node's own LiDAR buffer; decoding uses :mod:`depth_node.messages.readers`, the node's decoders.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.errors import DepthNodeError
from depth_node.core.motion import PoseBuffer
from depth_node.core.stamped import StampedCache
from depth_node.messages.encodings import MessageError
from depth_node.messages.point_time import sweep_times, TimeFieldSettings
from depth_node.messages.readers import (camera_info_to_camera, depth_image_to_metres, frame_id,
                                         image_to_rgb8, pointcloud2_to_arrays, stamp_ns)
from depth_node.offline.drive_bag import BASE_FRAME, DriveTopics, ODOM_FRAME, typestore
from depth_node.offline.records import BagIssue, BagMessage, BagReadError, DriveFrame
from depth_node.offline.recovery import declared_topics, mcap_files, McapRecovery
from depth_node.offline.tf_tree import add_poses, StaticTree
from depth_node.pipeline.runner import add_sweep, nearest_sweep


#: Poses of the vehicle held (odom -> base on /tf; pruned behind the frames): 1000 s at 100 Hz.
_MAX_POSES = 100_000


@dataclass(frozen=True)
class ReadWindow:
    """A time chunk of a bag (bag log times, ns): the camera frames of images logged in
    ``[start_ns - warmup_ns, stop_ns)`` (``stop_ns`` None: to the end), the first numbered
    ``first_index`` (its index in the whole bag).

    The context those frames need is read too, as a whole pass would have it: messages from
    ``context_ns`` before that (sweeps, ground truth, camera_info; the images there are
    skipped, not decoded) up to the reader's ``lookahead`` after ``stop_ns``, the camera_infos
    logged in the ``info_context_ns`` before that, and ``/tf_static`` of the whole bag. Frames
    logged before ``start_ns`` are the *warm-up* of a caller whose per-frame state (a held fit)
    needs them; images that do not decode there are not counted nor reported (another chunk's).
    """

    start_ns: int
    stop_ns: Optional[int]
    first_index: int = 0
    context_ns: int = 3_000_000_000
    info_context_ns: int = 10_000_000_000
    warmup_ns: int = 0


@dataclass
class _Held:
    """A deserialised message waiting in a cache until a frame asks for it."""

    message: BagMessage
    msg: Any


@dataclass(frozen=True)
class _Info:
    frame_id: str
    camera: PinholeCamera
    distortion_model: str
    distortion_count: int


class DriveReader:
    """Camera frames of a bag with what goes with them, in one streaming pass.

    Bounded memory on long bags, configurable matching, Image or CompressedImage cameras, and
    damaged bags are read as far as they can be, with every problem in :attr:`issues`.

    Matching, per camera frame (header stamps), by the node's rules: the camera_info is the
    latest at or before the image, else the first after it within ``lidar_tolerance`` (the
    node drops a frame that comes before any camera_info); the LiDAR sweep is the one nearest
    in stamp within ``lidar_tolerance`` s (the node's ``lidar.max_age``,
    :func:`~depth_node.pipeline.runner.nearest_sweep`) among the sweeps that decode (a
    malformed cloud is reported and never chosen, as the node drops it on arrival; a jump back
    in time clears the sweeps held, :func:`~depth_node.pipeline.runner.add_sweep`);
    ground-truth depth the one within
    ``depth_tolerance`` s. A frame is assembled once the bag has moved ``lookahead`` s (bag
    time) past its image, so sweeps and ground truth recorded a little later still match; at
    most ``max_buffered`` sweeps / depth images / camera_infos wait. ``lidar_to_camera`` comes
    from ``/tf_static`` (the pose of the cloud's frame in the image's frame), None when it does
    not connect them. ``window`` reads one time chunk of the bag (:class:`ReadWindow`).
    """

    def __init__(self, path: str | Path, topics: DriveTopics = DriveTopics(),
                 lidar_tolerance: float = 0.05, depth_tolerance: float = 1e-3,
                 lookahead: float = 1.0, max_buffered: int = 64,
                 window: Optional[ReadWindow] = None,
                 time_field: TimeFieldSettings = TimeFieldSettings(),
                 motion_frames: tuple[str, str] = (ODOM_FRAME, BASE_FRAME)) -> None:
        self.path = Path(path)
        self.window = window
        self.bag = str(path)
        self.topics = topics
        self.tol_ns = int(round(lidar_tolerance * 1e9))
        self.depth_tol_ns = int(round(depth_tolerance * 1e9))
        self.lookahead_ns = int(round(lookahead * 1e9))
        self.max_buffered = int(max_buffered)
        self.issues: list[BagIssue] = []
        self.read: Counter[str] = Counter()  # messages read per topic
        self.skipped_images = 0  # camera messages that could not be decoded
        self.static_transforms: list[BagMessage] = []  # raw /tf_static messages seen
        self._tree = StaticTree()
        self.connections: dict[str, str] = {}  # topic -> type of every topic in the bag
        self._types: Any = None  # the bag's type store, once reading has started
        self._held: Any = None  # an open AnyReader handed from the pre-pass to the main pass
        self._infos: StampedCache[_Info] = StampedCache(self.max_buffered)
        self._sweeps: StampedCache[tuple[str, np.ndarray, Optional[np.ndarray],
                                         Optional[np.ndarray]]] = StampedCache(self.max_buffered)
        self.time_field = time_field  # the node's lidar.time_* (per-point time of the sweeps)
        self.motion_frames = motion_frames  # (odom, base) of the vehicle's motion on /tf
        self._poses = PoseBuffer(_MAX_POSES)
        #: Inputs dropped because they do not decode (the node's diagnostics counter names).
        self.malformed: Counter[str] = Counter()
        self._depths: StampedCache[_Held] = StampedCache(self.max_buffered)
        self._once: set[str] = set()

    # ----- what the bag declares
    def topics_in_bag(self) -> dict[str, tuple[str, int]]:
        """Topic -> (type, message count) as declared by the bag ({} when unknown)."""
        return declared_topics(self.path) if self.path.is_dir() else {}

    def _issue(self, topic: Optional[str], message: str, once: Optional[str] = None) -> None:
        if once is not None:
            if once in self._once:
                return
            self._once.add(once)
        self.issues.append(BagIssue(self.bag, topic, message))

    # ----- raw messages
    def _open(self) -> Any:
        """An open AnyReader: the one the /tf_static pre-pass left open, else a new one."""
        reader, self._held = self._held, None
        if reader is None:
            from rosbags.highlevel import AnyReader
            reader = AnyReader([self.path], default_typestore=typestore())
            reader.open()
        return reader

    def messages(self, wanted: Optional[set[str]] = None, start: Optional[int] = None,
                 stop: Optional[int] = None) -> Iterator[BagMessage]:
        """Raw messages of the wanted topics (None: all), in bag-time order, surviving damage;
        with ``start`` / ``stop`` only those logged in ``[start, stop)`` (ns)."""
        if not self.path.exists():
            raise BagReadError(f'{self.bag}: no such bag (file or folder)')
        if self.path.is_file() and self.path.suffix != '.mcap':
            raise BagReadError(f'{self.bag}: a bag is a rosbag2 folder or an .mcap file')
        try:
            reader = self._open()
        except Exception as exc:  # AnyReaderError, storage plugins' own errors
            files = mcap_files(self.path)
            if not files:
                raise BagReadError(f'{self.bag}: cannot be read as a rosbag2 bag: {exc}') from exc
            self._issue(None, f'cannot be opened as a rosbag2 bag ({exc}); reading what is '
                              f"readable of {', '.join(f.name for f in files)}")
            recovery = McapRecovery(self.bag, self.issues, wanted)
            self._types = recovery.typestore
            for f in files:
                yield from (m for m in recovery.messages(f) if _within(m.log_ns, start, stop))
            self.connections.update(recovery.channels.values())
            return
        self._types = reader.typestore  # close() replaces it, this object stays usable
        self.connections.update((c.topic, c.msgtype) for c in reader.connections)
        last, at_last = -1, Counter()  # what was read at the last log time
        try:
            conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
            for conn, log_ns, raw in reader.messages(connections=conns, start=start,
                                                     stop=stop) if conns else ():
                if log_ns != last:
                    last, at_last = log_ns, Counter()
                at_last[conn.topic] += 1
                yield BagMessage(conn.topic, conn.msgtype, int(log_ns), raw)
        except Exception as exc:  # storage plugins and decompressors raise their own types
            where = f'at log time {last * 1e-9:.3f} s' if last >= 0 else 'at the start'
            files = mcap_files(self.path)
            if not files:
                self._issue(None, f'reading stopped {where}: {type(exc).__name__}: {exc}')
                return
            self._issue(None, f'reading stopped {where} ({type(exc).__name__}: {exc}); '
                              'skipping the damaged part with the mcap stream reader')
            recovery = McapRecovery(self.bag, self.issues, wanted)
            for f in files:
                for m in recovery.messages(f):
                    if m.log_ns < last or not _within(m.log_ns, start, stop):
                        continue  # read already, or outside the window
                    if m.log_ns == last and at_last[m.topic] > 0:
                        at_last[m.topic] -= 1
                        continue
                    yield m
        finally:
            reader.close()

    def decode(self, m: BagMessage) -> Any:
        """The message object of a raw message, or None (and an issue naming topic and log
        time) when its bytes do not decode as its type."""
        store = self._types
        if store is None or m.msgtype not in store.types:
            store = typestore()
        try:
            return store.deserialize_cdr(m.data, m.msgtype)
        except Exception as exc:  # rosbags raises assorted types on bad bytes
            self._issue(m.topic, f'message at log time {m.log_ns * 1e-9:.3f} s cannot be '
                                 f'decoded as {m.msgtype} ({type(exc).__name__}: {exc}); '
                                 'skipped')
            return None

    def _static_prepass(self) -> None:
        """Read /tf_static first (cheap: one topic), so that early frames have it; the reader
        stays open for the main pass (opening a bag costs as much as reading a short one)."""
        if not self.path.exists():
            return
        try:
            reader = self._open()
        except Exception:  # damage is reported by the main pass
            return
        self._types = reader.typestore
        try:
            conns = [c for c in reader.connections if c.topic == self.topics.tf_static]
            for conn, log_ns, raw in reader.messages(connections=conns) if conns else ():
                self._add_static(BagMessage(conn.topic, conn.msgtype, int(log_ns), raw))
        except Exception:  # damage is reported by the main pass
            reader.close()
            return
        self._held = reader

    # ----- frames
    def frames(self) -> Iterator[DriveFrame]:
        """Camera frames in bag order (see the class docstring)."""
        t = self.topics
        self._static_prepass()
        wanted = {t.image, t.camera_info, t.depth, t.points, t.tf_static, t.tf}
        pending: deque[tuple[BagMessage, Any]] = deque()
        w = self.window
        index = 0 if w is None else w.first_index
        start = stop = first = None
        if w is not None:
            first = w.start_ns - w.warmup_ns
            start = first - w.context_ns
            self._info_prepass(start, w.info_context_ns)
            stop = None if w.stop_ns is None else w.stop_ns + self.lookahead_ns + 1
        for m in self.messages(wanted, start, stop):
            if w is not None and m.topic == t.image and not (
                    first <= m.log_ns and (w.stop_ns is None or m.log_ns < w.stop_ns)):
                continue  # context only: another chunk's frame
            self.read[m.topic] += 1
            msg = self.decode(m)
            if msg is None:
                if m.topic == t.image and self._counts(m.log_ns):
                    self.skipped_images += 1
            elif m.topic == t.image:
                pending.append((m, msg))
            elif m.topic == t.camera_info:
                self._add_info(m, msg)
            elif m.topic == t.points:
                self._add_sweep(m, msg)
            elif m.topic == t.depth:
                self._depths.add(stamp_ns(msg), _Held(m, msg))
            elif m.topic == t.tf_static:
                self._add_static(m, msg)
            elif m.topic == t.tf:
                add_poses(self._poses, msg, *self.motion_frames)
            while pending and pending[0][0].log_ns + self.lookahead_ns < m.log_ns:
                frame = self._assemble(*pending.popleft(), index)
                index += 1
                if frame is not None:
                    yield frame
        while pending:
            frame = self._assemble(*pending.popleft(), index)
            index += 1
            if frame is not None:
                yield frame
        if self.issues and w is None:  # say which topics came up short
            for topic, (_, declared) in self.topics_in_bag().items():
                if topic in wanted and self.read[topic] < declared:
                    self._issue(topic, f'only {self.read[topic]} of its {declared} messages '
                                       'could be read')

    def _counts(self, log_ns: int) -> bool:
        """Whether an image is this reader's to count (not a window's warm-up)."""
        return self.window is None or log_ns >= self.window.start_ns

    def _info_prepass(self, before: int, span: int) -> None:
        """The camera_infos logged in the ``span`` ns before ``before`` (a window's context):
        the one that applies to its first frames. Problems there are another chunk's."""
        if not self.path.exists():
            return
        issues, malformed = list(self.issues), Counter(self.malformed)
        try:
            for m in self.messages({self.topics.camera_info}, max(0, before - span), before):
                msg = self.decode(m)
                if msg is not None:
                    self._add_info(m, msg)
        except BagReadError:
            pass  # the main pass reports it
        self.issues[:], self.malformed = issues, malformed

    def _add_static(self, m: BagMessage, msg: Any = None) -> None:
        msg = self.decode(m) if msg is None else msg
        if msg is not None:
            self._tree.add(msg)
            if not any(bytes(s.data) == bytes(m.data) for s in self.static_transforms):
                self.static_transforms.append(BagMessage(m.topic, m.msgtype, m.log_ns,
                                                         bytes(m.data)))

    def _add_info(self, m: BagMessage, msg: Any) -> None:
        try:
            camera = camera_info_to_camera(msg)
        except MessageError as exc:
            self.malformed['malformed_camera_info'] += 1
            self._issue(m.topic, f'camera_info at log time {m.log_ns * 1e-9:.3f} s is '
                                 f'invalid ({exc}); skipped')
            return
        self._infos.add(stamp_ns(msg), _Info(frame_id(msg), camera, str(msg.distortion_model),
                                             len(msg.d)))

    def _add_sweep(self, m: BagMessage, msg: Any) -> None:
        """Decode a sweep on arrival (as the node does) and cache it; report a bad one."""
        try:
            xyz, values = pointcloud2_to_arrays(msg, ('intensity',))
            times = sweep_times(msg, self.time_field, len(xyz), stamp_ns(msg))
        except MessageError as exc:
            self.malformed['malformed_points'] += 1
            self._issue(m.topic, f'cloud at log time {m.log_ns * 1e-9:.3f} s: {exc}; skipped')
            return
        add_sweep(self._sweeps, stamp_ns(msg),
                  (frame_id(msg), xyz, values.get('intensity'), times))

    def _sweep(self, s: int) -> Optional[tuple[int, str, np.ndarray, Optional[np.ndarray],
                                               Optional[np.ndarray]]]:
        got = nearest_sweep(self._sweeps, s, self.tol_ns * 1e-9)
        return None if got is None else (got[0], *got[1])

    def _depth(self, s: int) -> Optional[np.ndarray]:
        got = self._depths.nearest(s, self.depth_tol_ns)
        if got is None:
            return None
        try:
            return depth_image_to_metres(got[1].msg)
        except MessageError as exc:
            self._issue(got[1].message.topic, f'{exc}; ground truth skipped',
                        once=f'depth:{exc}')
            return None

    def _assemble(self, m: BagMessage, msg: Any, index: int) -> Optional[DriveFrame]:
        try:
            rgb = image_to_rgb8(msg, m.msgtype)
        except MessageError as exc:
            if self._counts(m.log_ns):
                self._issue(m.topic, f'image at log time {m.log_ns * 1e-9:.3f} s: {exc}; '
                                     'skipped')
                self.skipped_images += 1
            return None
        s = stamp_ns(msg)
        camera_frame = frame_id(msg)
        got = self._infos.before(s)
        if got is None:  # a camera_info stamped just after the image, as the node would wait
            got = self._infos.after(s)
            if got is not None and got[0] - s > self.tol_ns:
                got = None
        info = None if got is None else got[1]
        sweep = self._sweep(s)
        depth = self._depth(s)
        extrinsic = None if sweep is None else self._tree.lookup(camera_frame, sweep[1])
        poses = in_base = None
        if sweep is not None:  # the vehicle's motion from the sweep's start to the image
            times = sweep[4]
            start = sweep[0] + (int(np.floor(times.min() * 1e9)) if times is not None
                                and times.size else 0)
            stop = sweep[0] + (int(np.ceil(times.max() * 1e9)) if times is not None
                               and times.size else 0)
            poses = self._poses.track(s, min(start, s), max(stop, s))
            in_base = self._tree.lookup(self.motion_frames[1], sweep[1])
        self._prune(s)
        return DriveFrame(
            index=index, stamp_ns=s, frame_id=camera_frame, rgb=rgb,
            camera=None if info is None else info.camera, depth=depth,
            lidar=None if sweep is None else sweep[2],
            intensity=None if sweep is None else sweep[3],
            lidar_stamp_ns=None if sweep is None else sweep[0],
            lidar_frame_id=None if sweep is None else sweep[1], lidar_to_camera=extrinsic,
            log_ns=m.log_ns, distortion_model='' if info is None else info.distortion_model,
            distortion_count=0 if info is None else info.distortion_count,
            lidar_times=None if sweep is None else sweep[4], vehicle_poses=poses,
            lidar_in_base=in_base)

    def _prune(self, s: int) -> None:
        """Forget what no later frame can use (stamps far enough behind this one)."""
        self._sweeps.prune_before(s - self.tol_ns - self.lookahead_ns)
        self._depths.prune_before(s - self.lookahead_ns)
        self._poses.prune_before(s - self.tol_ns - self.lookahead_ns - 10**9)
        older = self._infos.before(s - self.lookahead_ns - 1)
        if older is not None:  # keep the newest older one: it still applies to what follows
            self._infos.prune_before(older[0])


def _within(log_ns: int, start: Optional[int], stop: Optional[int]) -> bool:
    return (start is None or log_ns >= start) and (stop is None or log_ns < stop)


def read_drive(path: str | Path, topics: DriveTopics = DriveTopics(),
               lidar_tolerance: float = 0.05) -> Iterator[DriveFrame]:
    """Camera frames of a healthy drive bag (e.g. one of :func:`write_drive`), each with its data.

    :class:`DriveReader` with ground truth matched by exact header stamp; frames come in bag
    order (stamp order for bags whose log times are the header stamps). Strict where the reader
    is lenient: the first problem it meets (a damaged bag, a message that does not decode)
    raises :class:`~depth_node.core.errors.DepthNodeError`, and so does a bag without camera
    images.
    """
    reader = DriveReader(path, topics, lidar_tolerance=lidar_tolerance, depth_tolerance=0.0)
    count = 0
    for frame in reader.frames():
        if reader.issues:
            break
        count += 1
        yield frame
    if reader.issues:
        raise DepthNodeError(str(reader.issues[0]))
    if count == 0:
        raise DepthNodeError(f'{path}: no {topics.image} messages (topics: '
                             f'{sorted(reader.connections)})')


__all__ = ['DriveReader', 'ReadWindow', 'read_drive']
