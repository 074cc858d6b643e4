"""The depth_node ROS 2 node: camera + LiDAR in, metric depth, cloud and diagnostics out.

Concurrency contract
--------------------
Subscription callbacks and the diagnostics timer run on one single-threaded executor, so
they never run in parallel with each other; they only convert/cache inputs and are cheap.
Inference runs on one dedicated worker thread. The two share the newest-image slot, the LiDAR
buffer and the camera model under ``self._lock``; the worker reads a snapshot and publishes
from its own thread (rclpy publishers are thread-safe). While the worker is busy a newer
image replaces the waiting one (counted as ``dropped_superseded``), so latency cannot grow.
"""

from __future__ import annotations

import bisect
import sys
import threading
import time
from typing import Any, Optional

import numpy as np
import rclpy
import rclpy.duration
import rclpy.time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (HistoryPolicy, qos_profile_sensor_data, QoSProfile, ReliabilityPolicy)
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Float32

from depth_node.core.cloud import PointGrid
from depth_node.core.colormap import colorize_depth
from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.core.transforms import quaternion_to_matrix, RigidTransform
from depth_node.estimators import build_estimator
from depth_node.pipeline.frame import DepthPipeline, FrameInput
from depth_node.pipeline.keyframes import KeyframeResult, KeyframeWorker
from depth_node.pipeline.published import diagnostic_status, frame_outputs, PublishSettings
from depth_node.pipeline.stats import FrameStats
from depth_node.messages.readers import (camera_info_to_camera, image_to_rgb8, MessageError,
                                         pointcloud2_to_xyz)
from depth_node.ros.messages import (array_to_image, depth_camera_info_msg,
                                     packed_to_pointcloud2, xyz_to_pointcloud2)
from depth_node.ros.params import build_config, changed_read_only, NodeConfig, PARAMETERS

# rclpy's own parameters, which a params file may set besides ours.
_RCLPY_PARAMS = ('use_sim_time', 'start_type_description_service', 'qos_overrides.')
_THROTTLE_S = 5.0


def _stamp(msg: Any) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def _descriptor(p: Any) -> ParameterDescriptor:
    d = ParameterDescriptor(description=p.description, read_only=p.read_only)
    if p.choices is not None:
        d.additional_constraints = 'one of: ' + ', '.join(repr(c) for c in p.choices)
    if p.range is not None and not isinstance(p.default, bool):
        if isinstance(p.default, int):
            d.integer_range = [IntegerRange(from_value=int(p.range[0]),
                                            to_value=int(p.range[1]), step=1)]
        elif isinstance(p.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]),
                                                         to_value=float(p.range[1]), step=0.0)]
    return d


class DepthNode(Node):
    """Metric depth from a relative depth model aligned to LiDAR. See the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('depth_node', **kwargs)
        self._check_unknown_overrides()
        values = self._declare()
        self.config: NodeConfig = build_config(values)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stats = FrameStats()
        self._pending: Optional[tuple[Image, float]] = None
        self._sweeps: list[tuple[float, str, np.ndarray]] = []  # (stamp, frame, [N, 3])
        self._camera_info: Optional[CameraInfo] = None
        self._running = True

        self._tf_buffer = None
        if self.config.extrinsic_source == 'tf':
            self._tf_buffer = self._make_tf_listener()
        self.estimator = build_estimator(self.config.estimator)
        self.pipeline = DepthPipeline(self.estimator, self.config.pipeline)
        spec = self.estimator.output
        self.get_logger().info(
            f"estimator '{getattr(self.estimator, 'name', type(self.estimator).__name__)}' "
            f"({'metric' if spec.metric else 'relative'} {spec.kind.value}); fit in "
            f'{spec.kind.value} space')

        c = self.config
        if c.qos_sensor_data:
            sub_qos = QoSProfile(**{k: getattr(qos_profile_sensor_data, k) for k in (
                'reliability', 'durability', 'history')}, depth=c.qos_depth)
        else:
            sub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=c.qos_depth,
                                 reliability=ReliabilityPolicy.RELIABLE)
        pub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=c.qos_depth,
                             reliability=(ReliabilityPolicy.RELIABLE if c.qos_output_reliable
                                          else ReliabilityPolicy.BEST_EFFORT))
        self._pub_depth = self.create_publisher(Image, 'depth', pub_qos)
        self._pub_info = self.create_publisher(CameraInfo, 'depth/camera_info', pub_qos)
        self._pub_relative = self.create_publisher(Image, 'depth/relative', pub_qos)
        self._pub_colored = self.create_publisher(Image, 'depth/colored', pub_qos)
        self._pub_cloud = self.create_publisher(PointCloud2, 'depth/points', pub_qos)
        self._pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        # The teacher starts (seconds: a process, a model) before the inputs are subscribed,
        # so no frame arrives at a node that cannot take it yet.
        self._keyframes: Optional[KeyframeWorker] = None
        if c.keyframes is not None:
            self._start_keyframes(c, pub_qos)
        self.create_subscription(Image, 'image', self._on_image, sub_qos)
        self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info, sub_qos)
        self.create_subscription(PointCloud2, 'points', self._on_points, sub_qos)
        self.create_timer(c.diagnostics_period, self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._worker = threading.Thread(target=self._work, name='depth_node_inference',
                                        daemon=True)
        self._worker.start()

    # ----- parameters -----
    def _check_unknown_overrides(self) -> None:
        overrides = getattr(self, '_parameter_overrides', {}) or {}
        known = {p.name for p in PARAMETERS}
        for name in sorted(overrides):
            if name not in known and not name.startswith(_RCLPY_PARAMS):
                raise ConfigError(name, 'is not a parameter of depth_node (typo?)',
                                  overrides[name].value)

    def _declare(self) -> dict[str, Any]:
        values = {}
        for p in PARAMETERS:
            try:
                param = self.declare_parameter(p.name, p.default, _descriptor(p))
            except Exception as exc:  # rclpy's range/type exceptions have no common base
                overrides = getattr(self, '_parameter_overrides', {}) or {}
                given = overrides[p.name].value if p.name in overrides else p.default
                raise ConfigError(p.name, str(exc).strip(), given) from None
            values[p.name] = param.value
        return values

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        names = [p.name for p in params]
        ro = changed_read_only(names)
        if ro is not None:
            return SetParametersResult(successful=False, reason=f"'{ro}' is read-only: restart "
                                       'the node to change it')
        values = dict(self.config.raw)
        values.update({p.name: p.value for p in params if p.name in values})
        try:
            new = build_config(values)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        with self._lock:
            self.config = new
            self.pipeline.config = new.pipeline
            if self._keyframes is not None and new.keyframes is not None:
                policy = new.keyframes.policy  # thresholds change; the policy's state stays
                self._kf_policy.every_n = policy.every_n
                self._kf_policy.every_t = policy.every_t
                self._kf_policy.scene_change = policy.scene_change
        return SetParametersResult(successful=True)

    def _start_keyframes(self, c: NodeConfig, qos: QoSProfile) -> None:
        """Marigold on keyframes, on its own worker: never blocks the real-time path."""
        kf = c.keyframes
        if kf is None:
            return
        self._kf_policy = kf.policy
        self._pub_kf_depth = self.create_publisher(Image, 'keyframe/depth', qos)
        self._pub_kf_unc = self.create_publisher(Image, 'keyframe/uncertainty', qos)
        self._pub_kf_colored = self.create_publisher(Image, 'keyframe/colored', qos)
        self._pub_kf_points = self.create_publisher(PointCloud2, 'keyframe/points', qos)
        self._pub_kf_check = self.create_publisher(Float32, 'keyframe/cross_check', qos)
        self.get_logger().info(f'starting the keyframe teacher (marigold from '
                               f'{kf.teacher.model_path}, {kf.worker.mode} mode) ...')
        self._keyframes = KeyframeWorker(kf.teacher, self._on_keyframe, kf.worker,
                                         on_error=self._on_keyframe_error)

    def _on_keyframe(self, result: KeyframeResult) -> None:
        """Publish a keyframe (worker thread): depth, uncertainty, preview, cloud, check."""
        header, camera = result.tag
        config = self.config
        if result.depth is not None:
            self._pub_kf_depth.publish(array_to_image(result.depth, '32FC1', header))
            if result.uncertainty is not None:
                self._pub_kf_unc.publish(array_to_image(result.uncertainty, '32FC1', header))
            self._pub_kf_colored.publish(array_to_image(
                colorize_depth(result.depth, *config.colormap_range), 'rgb8', header))
            if config.keyframes is not None and config.keyframes.points:
                grid = PointGrid(camera, config.pipeline.cloud_stride)
                self._pub_kf_points.publish(xyz_to_pointcloud2(grid.points(result.depth),
                                                               header))
        else:
            self.get_logger().warn(f'keyframe without metric depth: {result.fit.reason}',
                                   throttle_duration_sec=_THROTTLE_S)
        if np.isfinite(result.cross_check):
            self._pub_kf_check.publish(Float32(data=float(result.cross_check)))

    def _on_keyframe_error(self, tag: Any, message: str) -> None:
        self.get_logger().error(f'keyframe failed: {message}', throttle_duration_sec=_THROTTLE_S)

    def _make_tf_listener(self) -> Any:
        try:
            import tf2_ros
        except ImportError:
            raise ConfigError('extrinsic.source', "'tf' needs tf2_ros (apt install "
                              'ros-$ROS_DISTRO-tf2-ros); use parameters otherwise', 'tf') from None
        buffer = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(buffer, self)
        return buffer

    # ----- input callbacks (executor thread) -----
    def _on_image(self, msg: Image) -> None:
        received = time.perf_counter()
        with self._wake:
            self._stats.count('frames_in')
            if self._pending is not None:
                self._stats.count('dropped_superseded')
            self._pending = (msg, received)
            self._wake.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            camera_info_to_camera(msg)
        except DepthNodeError as exc:
            self._drop('malformed_camera_info', f'camera_info dropped: {exc}')
            return
        with self._wake:
            self._camera_info = msg
            self._wake.notify_all()

    def _on_points(self, msg: PointCloud2) -> None:
        try:
            xyz = pointcloud2_to_xyz(msg)
        except DepthNodeError as exc:
            self._drop('malformed_points', f'points dropped: {exc}')
            return
        stamp = _stamp(msg)
        with self._wake:
            self._stats.count('sweeps_in')
            keys = [s[0] for s in self._sweeps]
            self._sweeps.insert(bisect.bisect(keys, stamp), (stamp, msg.header.frame_id, xyz))
            del self._sweeps[:-self.config.lidar_buffer_size]
            self._wake.notify_all()

    def _drop(self, key: str, message: str) -> None:
        self._stats.error(key, message)
        self.get_logger().warn(message, throttle_duration_sec=_THROTTLE_S)

    # ----- inference worker -----
    def _work(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and self._running:
                    self._wake.wait()
                if not self._running:
                    return
                msg, received = self._pending
                self._pending = None
            try:
                self._process(msg, received)
            except MessageError as exc:
                self._drop('malformed_image', f'image dropped: {exc}')
            except DepthNodeError as exc:
                self._drop('dropped_error', f'frame dropped: {exc}')
            except Exception as exc:  # keep serving frames; say what broke
                self._stats.error('dropped_error', f'{type(exc).__name__}: {exc}')
                self.get_logger().error(f'frame dropped by an unexpected error: '
                                        f'{type(exc).__name__}: {exc}',
                                        throttle_duration_sec=_THROTTLE_S)

    def _nearest_sweep(self, stamp: float,
                       max_age: float) -> Optional[tuple[float, str, np.ndarray]]:
        best = None
        for sweep in self._sweeps:
            dt = abs(sweep[0] - stamp)
            if dt <= max_age and (best is None or dt < abs(best[0] - stamp)):
                best = sweep
        return best

    def _extrinsic(self, image: Image, lidar_frame: str) -> RigidTransform:
        if self._tf_buffer is None:
            return self.config.extrinsic
        target = self.config.camera_frame or image.header.frame_id
        source = self.config.lidar_frame or lidar_frame
        tf = self._tf_buffer.lookup_transform(
            target, source, rclpy.time.Time.from_msg(image.header.stamp),
            rclpy.duration.Duration(seconds=self.config.tf_timeout))
        t, q = tf.transform.translation, tf.transform.rotation
        return RigidTransform(quaternion_to_matrix((q.x, q.y, q.z, q.w)),
                              np.array([t.x, t.y, t.z]))

    def _process(self, msg: Image, received: float) -> None:
        t0 = time.perf_counter()
        rgb = image_to_rgb8(msg)
        convert_ms = (time.perf_counter() - t0) * 1e3
        stamp = _stamp(msg)
        with self._wake:
            config = self.config
            sweep = self._nearest_sweep(stamp, config.lidar_max_age)
            # Camera, camera_info and LiDAR arrive on separate topics in no set order: when
            # the camera model or a close-enough sweep is missing, give them a short time.
            deadline = time.perf_counter() + config.lidar_wait
            while (sweep is None or self._camera_info is None) and self._running \
                    and time.perf_counter() < deadline:
                self._wake.wait(deadline - time.perf_counter())
                sweep = self._nearest_sweep(stamp, config.lidar_max_age)
            info = self._camera_info
        if info is None:
            self._drop('dropped_no_camera_info', 'frame dropped: no camera_info received yet')
            return
        camera = camera_info_to_camera(info)
        if (camera.width, camera.height) != (rgb.shape[1], rgb.shape[0]):
            camera = camera.resized(rgb.shape[1], rgb.shape[0])
        lidar, extrinsic = None, config.extrinsic
        if sweep is None:
            self._stats.count('frames_without_lidar')
        else:
            try:
                extrinsic = self._extrinsic(msg, sweep[1])
                lidar = sweep[2]
            except Exception as exc:  # tf2 lookup errors: treat as no LiDAR for this frame
                self._drop('frames_without_extrinsic', f'no LiDAR->camera transform: {exc}')
        result = self.pipeline.process(FrameInput(rgb, camera, stamp, lidar, extrinsic),
                                       want_points=config.cloud_enable)

        t1 = time.perf_counter()
        header = msg.header
        out = frame_outputs(result.depth, result.points, result.relative, rgb, camera,
                            info.distortion_model, len(info.d), PublishSettings(
                                relative=config.publish_relative, colored=config.publish_colored,
                                colormap_range=config.colormap_range,
                                cloud=config.cloud_enable, cloud_color=config.cloud_color,
                                cloud_stride=config.pipeline.cloud_stride))
        if out.depth is not None:
            self._pub_depth.publish(array_to_image(out.depth, '32FC1', header))
        if out.camera_info is not None:
            self._pub_info.publish(depth_camera_info_msg(out.camera_info, header))
        if out.cloud is not None:
            self._pub_cloud.publish(packed_to_pointcloud2(out.cloud, header))
        if out.relative is not None:
            self._pub_relative.publish(array_to_image(out.relative, '32FC1', header))
        if out.colored is not None:
            self._pub_colored.publish(array_to_image(out.colored, 'rgb8', header))
        if self._keyframes is not None:
            hit, _ = self._kf_policy.should_trigger(stamp, rgb)
            if hit:
                frame = FrameInput(rgb, camera, stamp, lidar, extrinsic)
                # Arrays handed over are not modified afterwards (a new set every frame).
                self._keyframes.submit(frame, result.depth, tag=(header, camera))
        t2 = time.perf_counter()
        timings = dict(result.timings_ms)
        timings['convert'] = convert_ms
        timings['publish'] = (t2 - t1) * 1e3
        timings['total'] = (t2 - received) * 1e3
        rejected = 0 if result.kept is None else int(result.kept.size - result.kept.sum())
        self._stats.record_frame(timings, result.fit, result.fit_state, result.fit_age,
                                 result.applied, rejected, result.filter_event)
        self._stats.count('published' if result.depth is not None else 'published_relative_only')
        if result.fit_state == 'none':
            self.get_logger().warn(f'no metric depth: {result.fit.reason}; publishing relative '
                                   'outputs only', throttle_duration_sec=_THROTTLE_S)

    # ----- diagnostics (executor thread) -----
    def _publish_diagnostics(self) -> None:
        snap = self._stats.snapshot()
        level, message, values = diagnostic_status(snap, self.estimator.output.kind.value)
        status = DiagnosticStatus()
        status.name = f'{self.get_name()}: metric depth'
        status.hardware_id = self.get_namespace()
        status.level = bytes([level])  # a `byte` field: rclpy wants bytes
        status.message = message
        status.values = [KeyValue(key=k, value=v) for k, v in values]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        if self._keyframes is not None:
            arr.status.append(self._keyframe_status())
        self._pub_diag.publish(arr)

    def _keyframe_status(self) -> DiagnosticStatus:
        stats = self._keyframes.stats()  # type: ignore[union-attr]  # only called when set
        st = DiagnosticStatus()
        st.name = f'{self.get_name()}: keyframes'
        st.hardware_id = self.get_namespace()
        problem = (not stats.alive) or stats.failed > 0
        st.level = bytes([1 if problem else 0])  # WARN / OK
        st.message = ('teacher not running' if not stats.alive else
                      f'{stats.run} keyframes, {stats.failed} failed' if stats.failed else
                      f'{stats.run} keyframes')
        st.values = [KeyValue(key=k, value=str(v)) for k, v in stats.as_dict().items()]
        return st

    def shutdown(self) -> None:
        """Stop the worker thread (idempotent)."""
        with self._wake:
            self._running = False
            self._wake.notify_all()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=5.0)
        if self._keyframes is not None:
            self._keyframes.close()


def main(args: Optional[list[str]] = None) -> int:
    """Console-script entry point: ``ros2 run depth_node depth_node``."""
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = DepthNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except ConfigError as exc:
        print(f'depth_node: configuration error: {exc}', file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
