"""Play synthetic frames into a ROS graph and record what depth_node publishes.

A driver-like publisher of camera image, camera_info and LiDAR cloud, with sensor-data QoS,
and a recorder of the node's outputs. It sits in ``ros/`` because it imports rclpy, but it is a
harness: only the demo (:mod:`depth_node.testing.live`), the benchmarks and the real-graph tests
use it, never the node (``test/test_lint.py`` checks this).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from depth_node.core.camera import PinholeCamera
from depth_node.core.transforms import matrix_to_quaternion, RigidTransform
from depth_node.ros.messages import array_to_image, xyz_to_pointcloud2

OUTPUTS = {'depth': Image, 'depth/uncertainty': Image, 'depth/relative': Image,
           'depth/colored': Image, 'depth/camera_info': CameraInfo, 'depth/points': PointCloud2,
           '/diagnostics': DiagnosticArray}


def make_header(stamp: float, frame_id: str) -> Header:
    h = Header()
    h.stamp.sec = int(stamp)
    h.stamp.nanosec = int(round((stamp - int(stamp)) * 1e9)) % 1_000_000_000
    h.frame_id = frame_id
    return h


def stamp_of(msg: Any) -> float:
    """Header stamp in seconds, rounded to the microsecond (for matching)."""
    return round(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, 6)


def camera_info_msg(camera: PinholeCamera, header: Header) -> CameraInfo:
    """CameraInfo of a rectified pinhole camera (no distortion, P = [K | 0])."""
    info = CameraInfo()
    info.header = header
    info.width, info.height = camera.width, camera.height
    info.distortion_model = 'plumb_bob'
    info.d = [0.0] * 5
    info.k = camera.k.reshape(-1).tolist()
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [camera.fx, 0.0, camera.cx, camera.tx, 0.0, camera.fy, camera.cy, camera.ty,
              0.0, 0.0, 1.0, 0.0]
    return info


def extrinsic_parameters(transform: RigidTransform) -> dict[str, list[float]]:
    """``extrinsic.translation`` / ``extrinsic.rotation`` (quaternion) values of a transform."""
    q = matrix_to_quaternion(transform.rotation)
    return {'extrinsic.translation': [float(v) for v in transform.translation],
            'extrinsic.rotation': [float(v) for v in q]}


def encode_rgb(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """An RGB image [H, W, 3] uint8 as the array of another encoding (for driver-like input)."""
    if encoding == 'rgb8':
        return rgb
    if encoding == 'bgr8':
        return np.ascontiguousarray(rgb[..., ::-1])
    if encoding in ('rgba8', 'bgra8'):
        c = rgb if encoding == 'rgba8' else rgb[..., ::-1]
        return np.ascontiguousarray(np.dstack([c, np.full(rgb.shape[:2], 255, np.uint8)]))
    if encoding == 'mono8':
        return np.ascontiguousarray(rgb[..., 1])
    if encoding == 'mono16':
        return rgb[..., 1].astype(np.uint16) * 257
    raise ValueError(f'encode_rgb: unsupported encoding {encoding!r}')


class SpunNode:
    """A node in a context of its own, spun by a thread of its own until :meth:`close`.

    Subclasses create their publishers and subscriptions after ``super().__init__`` and then
    call :meth:`start`.
    """

    def __init__(self, name: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._spin, daemon=True)

    def start(self) -> None:
        """Start spinning (callbacks run on the thread from now on)."""
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # the context was shut down while spinning
                return

    def close(self) -> None:
        """Destroy the node, shut its context down and join the thread."""
        try:
            self.node.destroy_node()
        finally:
            rclpy.try_shutdown(context=self.context)
            if self._thread.is_alive():
                self._thread.join(timeout=5)


class GraphClient(SpunNode):
    """A node of its own context that publishes inputs and records outputs, spun in a thread."""

    def __init__(self, name: str, camera_frame: str = 'camera_optical',
                 lidar_frame: str = 'lidar') -> None:
        super().__init__(name)
        self.camera_frame, self.lidar_frame = camera_frame, lidar_frame
        qos = qos_profile_sensor_data
        self.image_pub = self.node.create_publisher(Image, 'image', qos)
        self.info_pub = self.node.create_publisher(CameraInfo, 'camera_info', qos)
        self.points_pub = self.node.create_publisher(PointCloud2, 'points', qos)
        self.received: dict[str, list[tuple[float, Any]]] = {}
        self.start()

    def record(self, topics: dict[str, Any] = OUTPUTS) -> None:
        """Subscribe (reliable, depth 10) to ``topics`` and keep every message with its time."""
        for topic, msg_type in topics.items():
            self.received[topic] = []

            def cb(msg: Any, topic: str = topic) -> None:
                with self._lock:
                    self.received[topic].append((time.monotonic(), msg))
            self.node.create_subscription(msg_type, topic, cb, 10)

    def messages(self, topic: str) -> list[Any]:
        with self._lock:
            return [m for _, m in self.received[topic]]

    def timed(self, topic: str) -> list[tuple[float, Any]]:
        with self._lock:
            return list(self.received[topic])

    def send(self, rgb: np.ndarray, camera: PinholeCamera, stamp: float,
             lidar: np.ndarray | None = None, encoding: str = 'rgb8') -> None:
        """Publish a LiDAR sweep (if given), camera_info and the image, all at ``stamp``."""
        if lidar is not None:
            self.points_pub.publish(xyz_to_pointcloud2(lidar,
                                                       make_header(stamp, self.lidar_frame)))
        h = make_header(stamp, self.camera_frame)
        self.info_pub.publish(camera_info_msg(camera, h))
        self.image_pub.publish(array_to_image(encode_rgb(rgb, encoding), encoding, h))

    def wait_connected(self, timeout: float, settle: float = 0.5) -> bool:
        """Wait until something subscribes to image, camera_info and LiDAR, then ``settle`` s.

        Discovery is not symmetric: our publisher may see the subscription a moment before the
        subscriber has matched us, and a best-effort message sent in that moment is lost.
        """
        ok = wait_until(lambda: all(p.get_subscription_count() > 0 for p in (
            self.image_pub, self.info_pub, self.points_pub)), timeout)
        if ok:
            time.sleep(settle)
        return ok

    def diagnostics(self) -> dict[str, str]:
        """Key/values of the newest depth_node diagnostics status ({} if none yet)."""
        for arr in reversed(self.messages('/diagnostics')):
            for st in arr.status:
                if 'depth_node' in st.name:
                    return {kv.key: kv.value for kv in st.values}
        return {}


def wait_until(cond: Callable[[], bool], timeout: float,
               alive: Callable[[], bool] = lambda: True) -> bool:
    """Poll ``cond`` every 50 ms until it holds, ``timeout`` passes or ``alive()`` is False."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        if not alive():
            return False
        time.sleep(0.05)
    return cond()
