"""The vehicle's motion for the node's deskew: tf2, an odometry topic, the poses last received.

:class:`VehicleMotion` is the runner's :data:`~depth_node.pipeline.sweep_motion.MotionLookup`
in the node. For each sweep paired with a frame it gives the poses of the base in ``odom``
around the sweep and the image stamp:

1. tf2 ``motion.odom_frame -> motion.base_frame`` when tf2_ros is importable: sampled at the
   window's ends and middle (tf2 interpolates between the transforms it holds) and kept in a
   bounded buffer; when the window runs past tf2's newest transform, that newest one is kept
   too, so the buffer extrapolates from the last transforms at constant velocity;
2. else ``nav_msgs/Odometry`` on ``motion.odometry_topic`` (its poses in a bounded buffer);
3. else nothing: the runner does not deskew and says so.

The LiDAR's pose in the base comes from tf2 (``base_frame -> <cloud frame>``) when it knows
it, else from ``motion.lidar_translation`` / ``motion.lidar_rotation``.

Threads: the odometry callback runs on the executor, :meth:`VehicleMotion.lookup` on the
inference worker; the buffers are shared under the object's own lock. tf2's buffer is
thread-safe.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

import numpy as np
import rclpy.time

from depth_node.core.errors import ConfigError
from depth_node.core.motion import PoseBuffer
from depth_node.core.transforms import quaternion_to_matrix, RigidTransform
from depth_node.messages.readers import frame_id, stamp_ns
from depth_node.pipeline.sweep_motion import SweepMotion


class VehicleMotion:
    """Poses of the vehicle from tf2 or an odometry topic (see the module docstring).

    ``settings`` returns the node's current :class:`~depth_node.ros.params.MotionSettings`
    (read per call: some of them change at run time); ``tf_buffer`` is tf2's buffer, or None.
    """

    def __init__(self, settings: Callable[[], Any], tf_buffer: Optional[Any]) -> None:
        self._settings = settings
        self._tf = tf_buffer
        self._lock = threading.Lock()
        size = settings().buffer_size
        self._tf_poses = PoseBuffer(size)  # sampled from tf2 (one odom frame)
        self._odom_poses = PoseBuffer(size)  # from the odometry topic
        self._odom_frames = ''

    def subscribe(self, topics: Any, qos: Any) -> None:
        """Subscribe to ``motion.odometry_topic`` when set (``topics``: the node's TopicQos).

        Raises ConfigError naming the parameter when nav_msgs is not installed.
        """
        topic = self._settings().odometry_topic
        if not topic:
            return
        try:
            from nav_msgs.msg import Odometry
        except ImportError:
            raise ConfigError('motion.odometry_topic', 'needs nav_msgs (pip install '
                              'ros-nav-msgs, or apt install ros-$ROS_DISTRO-nav-msgs)',
                              topic) from None
        topics.subscription(Odometry, topic, self.on_odometry, qos)

    def on_odometry(self, msg: Any) -> None:
        """Keep an odometry pose (executor thread)."""
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        with self._lock:
            self._odom_poses.add(stamp_ns(msg), np.array([p.x, p.y, p.z]),
                                 np.array([q.x, q.y, q.z, q.w]))
            self._odom_frames = f'{frame_id(msg)} -> {str(msg.child_frame_id).lstrip("/")}'

    def lookup(self, lidar_frame: str, start_ns: int, stop_ns: int,
               image_ns: int) -> SweepMotion:
        """The poses around a sweep, times relative to ``image_ns`` (worker thread)."""
        m = self._settings()
        if self._tf is None and not m.odometry_topic:
            raise LookupError('no motion source: tf2_ros is not importable and '
                              'motion.odometry_topic is empty')
        base_to_lidar, source = m.lidar_in_base, ''
        if self._tf is not None:
            self._sample_tf(m, start_ns, stop_ns)
            source = f'tf2 {m.odom_frame} -> {m.base_frame}'
            found = self._tf_pose(m.base_frame, lidar_frame, 0)
            if found is not None:
                base_to_lidar = RigidTransform(quaternion_to_matrix(found[1]), found[0])
        with self._lock:
            track = self._tf_poses.track(image_ns, start_ns, stop_ns)
            if track is None and m.odometry_topic:
                track = self._odom_poses.track(image_ns, start_ns, stop_ns)
                source = f'{m.odometry_topic} ({self._odom_frames or "no message yet"})'
        return SweepMotion(track, base_to_lidar, source)

    def _sample_tf(self, m: Any, start_ns: int, stop_ns: int) -> None:
        missed = False
        for ns in sorted({start_ns, (start_ns + stop_ns) // 2, stop_ns}):
            missed |= not self._keep_tf_pose(m, ns)
        if missed:
            self._keep_tf_pose(m, 0)  # tf2's newest: extrapolated at constant velocity

    def _keep_tf_pose(self, m: Any, ns: int) -> bool:
        found = self._tf_pose(m.odom_frame, m.base_frame, ns)
        if found is None:
            return False
        with self._lock:
            self._tf_poses.add(found[2], found[0], found[1])
        return True

    def _tf_pose(self, target: str, source: str,
                 ns: int) -> Optional[tuple[np.ndarray, np.ndarray, int]]:
        """(translation, quaternion, stamp ns) of ``source`` in ``target`` at ``ns`` (0:
        newest), or None when tf2 cannot say."""
        try:
            tf = self._tf.lookup_transform(  # type: ignore[union-attr]
                target, source, rclpy.time.Time(nanoseconds=ns))
        except Exception:  # tf2's lookup errors have no common base
            return None
        t, q = tf.transform.translation, tf.transform.rotation
        return (np.array([t.x, t.y, t.z]), np.array([q.x, q.y, q.z, q.w]),
                stamp_ns(tf) or ns)


__all__ = ['VehicleMotion']
