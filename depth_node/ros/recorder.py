"""Record topics of a live graph into a rosbag2 bag, for machines without ``ros2 bag``.

``record --out BAG /camera/image_rect /keyframe/depth /keyframe/uncertainty`` records what the
node's keyframe teacher labels, for ``train --bag BAG``. Messages are taken serialized (the CDR
bytes on the wire, never decoded) and written with ``rosbags`` (MCAP by default), the message's
receive time as log time, as ``ros2 bag record`` does. A topic is subscribed once it has a
publisher: its type comes from the graph unless given (``TOPIC:TYPE``), and its QoS adapts to
the publishers' (reliable and transient-local only when all of them offer it). Callbacks only
queue; one writer thread writes. Large images need the same Fast DDS profile as the node (see
``config/fastdds_large_messages.xml``). Needs rclpy with ``MessageInfo`` (Jazzy or newer).
"""

from __future__ import annotations

import argparse
import importlib
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from depth_node.core.errors import DepthNodeError
from depth_node.offline.drive_bag import qos_profiles, STORAGES, typestore


def message_class(type_name: str) -> Any:
    """The rclpy message class of a type name such as ``sensor_msgs/msg/Image``."""
    package, kind, name = type_name.split('/')
    return getattr(importlib.import_module(f'{package}.{kind}'), name)


class Recorder(Node):
    """Writes every message of ``topics`` (name -> type name, or None: from the graph) to a bag.

    Subscription callbacks may run on any executor thread: they only queue the bytes; the
    writer thread is the only one that touches the bag. :meth:`close` finishes the bag.
    """

    def __init__(self, path: str | Path, topics: dict[str, Optional[str]], *,
                 storage: str = 'mcap', poll: float = 0.2, depth: int = 100,
                 name: str = 'depth_node_recorder', context: Any = None) -> None:
        from rosbags.rosbag2 import Writer
        from rosbags.rosbag2.enums import StoragePlugin

        super().__init__(name, context=context)
        if storage not in STORAGES:
            raise DepthNodeError(f'storage must be one of {STORAGES}, got {storage!r}')
        self.path = Path(path)
        if self.path.exists():
            raise DepthNodeError(f'{self.path} exists already; rosbag2 bags are never overwritten')
        self._wanted = {self.resolve_topic_name(t): ty for t, ty in topics.items()}
        for topic, msgtype in self._wanted.items():
            if msgtype is not None and msgtype not in typestore().types:
                raise DepthNodeError(f'{topic}: unknown message type {msgtype!r} (expected '
                                     "e.g. 'sensor_msgs/msg/Image')")
        self.counts = {t: 0 for t in self._wanted}  # messages written per topic
        self.types: dict[str, str] = {}  # topic -> type name, once subscribed
        self.skipped: dict[str, str] = {}  # topic -> why it cannot be recorded
        self._depth = int(depth)
        self._queue: queue.Queue[Optional[tuple]] = queue.Queue()
        self._error: Optional[BaseException] = None
        self._closed = False
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST,
                              storage_plugin=StoragePlugin[storage.upper()])
        self._writer.open()
        self._thread = threading.Thread(target=self._write_loop, name='recorder_writer',
                                        daemon=True)
        self._thread.start()
        self.create_timer(poll, self._discover)

    @property
    def subscribed(self) -> bool:
        """Whether every topic has been subscribed."""
        return set(self.types) == set(self._wanted)

    def _discover(self) -> None:
        """Subscribe to each waiting topic that has publishers now (timer, executor thread)."""
        for topic, given in self._wanted.items():
            if self._closed or topic in self.types or topic in self.skipped:
                continue
            infos = self.get_publishers_info_by_topic(topic)
            if not infos:
                continue
            offered = sorted({i.topic_type for i in infos})
            msgtype = given or offered[0]
            if offered != [msgtype]:
                self.get_logger().warn(f'{topic}: publishers offer {offered}; recording '
                                       f'{msgtype}')
            try:
                if msgtype not in typestore().types:
                    raise LookupError('rosbags does not know it')
                cls = message_class(msgtype)
            except (LookupError, ImportError, AttributeError, ValueError) as exc:
                self.skipped[topic] = f'{msgtype}: {exc}'
                self.get_logger().error(f'{topic} not recorded: {self.skipped[topic]}')
                continue
            reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                           for i in infos)
            latched = all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                          for i in infos)
            qos = QoSProfile(depth=self._depth, reliability=ReliabilityPolicy.RELIABLE
                             if reliable else ReliabilityPolicy.BEST_EFFORT,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL
                             if latched else DurabilityPolicy.VOLATILE)
            self._queue.put(('connect', topic, msgtype,
                             qos_profiles(self._depth, latched, reliable)))
            self.create_subscription(cls, topic, self._callback(topic), qos, raw=True)
            self.types[topic] = msgtype
            self.get_logger().info(f'recording {topic} ({msgtype}, '
                                   f"{'reliable' if reliable else 'best effort'}"
                                   f"{', transient local' if latched else ''})")

    def _callback(self, topic: str) -> Any:
        def on_message(data: bytes, info: Any) -> None:
            if not self._closed:
                log_ns = int(info['received_timestamp']) or time.time_ns()
                self._queue.put(('write', topic, log_ns, data))
        return on_message

    def _write_loop(self) -> None:
        conns: dict[str, Any] = {}
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue
            try:
                if item[0] == 'connect':
                    _, topic, msgtype, qos = item
                    conns[topic] = self._writer.add_connection(
                        topic, msgtype, typestore=typestore(), offered_qos_profiles=qos)
                else:
                    _, topic, log_ns, data = item
                    self._writer.write(conns[topic], log_ns, data)
                    self.counts[topic] += 1
            except Exception as exc:  # the bag is broken (disk full, ...): stop writing
                self._error = exc

    def close(self) -> None:
        """Stop recording and finish the bag (metadata.yaml); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        self._writer.close()
        if self._error is not None:
            raise DepthNodeError(f'{self.path}: writing failed: {self._error}') from self._error

    def destroy_node(self) -> None:
        try:
            self.close()
        finally:
            super().destroy_node()


def main(args: Optional[list[str]] = None) -> int:
    """Console-script entry point: ``record --out BAG TOPIC[:TYPE] ... [--duration S]``.

    ``args`` are the arguments after the program name (``--ros-args`` allowed), as for
    ``train``; None reads ``sys.argv``.
    """
    p = argparse.ArgumentParser(prog='record', description=__doc__.split('\n\n')[0])
    p.add_argument('topics', nargs='+', metavar='TOPIC[:TYPE]',
                   help='e.g. /keyframe/depth or /keyframe/depth:sensor_msgs/msg/Image')
    p.add_argument('--out', required=True, help='bag folder to create')
    p.add_argument('--storage', default='mcap', choices=STORAGES)
    p.add_argument('--duration', type=float, default=0.0, help='seconds (0: until Ctrl-C)')
    argv = list(sys.argv) if args is None else ['record', *args]
    parsed = p.parse_args(rclpy.utilities.remove_ros_args(argv)[1:])
    rclpy.init(args=argv)
    topics = {t.split(':')[0]: (t.split(':', 1)[1] if ':' in t else None)
              for t in parsed.topics}
    recorder = None
    try:
        recorder = Recorder(parsed.out, topics, storage=parsed.storage)
        executor = SingleThreadedExecutor()
        executor.add_node(recorder)
        end = time.monotonic() + parsed.duration if parsed.duration > 0 else float('inf')
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=min(0.1, max(0.0, end - time.monotonic())))
    except DepthNodeError as exc:
        print(f'record: error: {exc}', file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if recorder is not None:
            recorder.destroy_node()
            print('\n'.join(f'{t}: {n} messages' for t, n in recorder.counts.items()))
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
