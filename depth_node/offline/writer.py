"""The output bag of an offline run: what the node publishes, frame by frame, as rosbag2.

:class:`OutputBagWriter` writes the bytes a live node would send for each frame (layouts from
:mod:`depth_node.pipeline.published`) into a new bag that replays next to the input bag.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from depth_node.core.errors import DepthNodeError
from depth_node.messages.encodings import FLOAT32
from depth_node.offline.drive_bag import MessageBuilder, qos_profiles, STORAGES
from depth_node.offline.records import BagMessage
from depth_node.pipeline.published import FrameOutputs


class OutputBagWriter:
    """Writes what the node publishes, frame by frame, into a new rosbag2 bag.

    Topics (``namespace`` prefixes them, as the node's namespace would): ``depth`` (32FC1),
    ``depth/uncertainty`` (32FC1), ``depth/camera_info``, ``depth/points`` (packed XYZ or
    XYZRGB), ``depth/relative``, ``depth/colored`` (rgb8) and ``/diagnostics``, with the
    node's publisher QoS, plus a copy of the input's ``/tf_static`` so the bag also plays alone.
    Messages carry the input image's header and are stored at the input image's bag time, so
    that playing both bags together keeps them in step. The bytes are those the live node
    publishes (the layouts come from :mod:`depth_node.pipeline.published`).
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
        self.m = MessageBuilder()
        self.namespace = '/' + namespace.strip('/') if namespace.strip('/') else ''
        self.status_name = f'{node_name}: metric depth'
        self.hardware_id = self.namespace or '/'
        plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=plugin)
        self._writer.open()
        self.counts: Counter[str] = Counter()
        qos = qos_profiles(qos_depth, reliable=reliable)
        self._conns: dict[str, Any] = {}
        for name, msgtype in (('depth', 'sensor_msgs/msg/Image'),
                              ('depth/uncertainty', 'sensor_msgs/msg/Image'),
                              ('depth/camera_info', 'sensor_msgs/msg/CameraInfo'),
                              ('depth/points', 'sensor_msgs/msg/PointCloud2'),
                              ('depth/relative', 'sensor_msgs/msg/Image'),
                              ('depth/colored', 'sensor_msgs/msg/Image')):
            self._conns[name] = self._writer.add_connection(
                self.topic(name), msgtype, typestore=self.m.ts, offered_qos_profiles=qos)
        self._conns['/diagnostics'] = self._writer.add_connection(
            '/diagnostics', 'diagnostic_msgs/msg/DiagnosticArray', typestore=self.m.ts,
            offered_qos_profiles=qos_profiles(10))
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
                    offered_qos_profiles=qos_profiles(1, latched=True))
            self._static_seen.append(bytes(m.data))
            self._writer.write(self._static, int(m.log_ns), bytes(m.data))
            self.counts[m.topic] += 1

    def write_frame(self, log_ns: int, stamp_ns: int, frame_id: str,
                    outputs: FrameOutputs) -> None:
        """The messages of one frame, in the node's publishing order."""
        t = self.m.t
        if outputs.depth is not None:
            self._put('depth', log_ns, self.m.image(
                stamp_ns, frame_id, outputs.depth.astype(np.float32, copy=False), '32FC1'))
        if outputs.uncertainty is not None:
            self._put('depth/uncertainty', log_ns, self.m.image(
                stamp_ns, frame_id, outputs.uncertainty.astype(np.float32, copy=False),
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
            self._put('depth/relative', log_ns, self.m.image(
                stamp_ns, frame_id, outputs.relative.astype(np.float32, copy=False), '32FC1'))
        if outputs.colored is not None:
            self._put('depth/colored', log_ns,
                      self.m.image(stamp_ns, frame_id, outputs.colored, 'rgb8'))

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


__all__ = ['OutputBagWriter']
