"""The depth_node ROS 2 node: camera + LiDAR in, metric depth, cloud and diagnostics out.

The node holds only the ROS parts: parameters, subscriptions, the LiDAR buffer and the wait
for a frame's sweep, tf2, publishers and the diagnostics message. What happens to a frame is
:class:`depth_node.pipeline.runner.FrameRunner`'s, the same runner the bag evaluation calls.

Concurrency contract
--------------------
Subscription callbacks and the diagnostics timer run on one single-threaded executor, so
they never run in parallel with each other; they only convert/cache inputs and are cheap.
Inference runs on one dedicated worker thread (the pipeline's LiDAR side, which needs no
depth, on a helper thread of its own while the model runs: ``lidar.overlap``). Images reach it
through a
:class:`~depth_node.core.stamped.NewestSlot` (its own lock): while the worker is busy a newer
image replaces the waiting one (counted as ``dropped_superseded``), so latency cannot grow;
one that waited half a camera period is given up for the next when that is due
(:func:`~depth_node.core.freshness.take_fresh`). Measured torch threads leave the executor a
core (:func:`~depth_node.estimators.autotune.leave_a_core`).
The LiDAR buffer (a :class:`~depth_node.core.stamped.StampedCache` of decoded sweeps) and the
camera model are shared under ``self._lock``, whose condition wakes a worker waiting for them;
the worker publishes from its own thread (rclpy publishers are thread-safe). The vehicle's
poses for the deskew (:class:`~depth_node.ros.motion.VehicleMotion`: odometry callback on the
executor, lookups from the worker) are under that object's own lock.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Optional, Sequence

import numpy as np
import rclpy
import rclpy.duration
import rclpy.time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Float32

from depth_node.core.cloud import PointGrid
from depth_node.core.colormap import colorize_depth
from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.core.freshness import ArrivalPeriod, take_fresh
from depth_node.core.transforms import quaternion_to_matrix, RigidTransform
from depth_node.estimators import build_estimator
from depth_node.estimators.autotune import leave_a_core
from depth_node.core.stamped import NewestSlot, StampedCache
from depth_node.messages.oddities import (camera_info_oddities, frame_id_oddities,
                                          pointcloud2_oddities)
from depth_node.messages.point_time import sweep_times
from depth_node.messages.readers import (camera_info_to_camera, frame_id, image_to_rgb8,
                                         MessageError, pointcloud2_to_xyz, stamp_ns)
from depth_node.pipeline.frame import FitState, FrameInput, FrameResult
from depth_node.pipeline.keyframes import KeyframeResult, KeyframeWorker
from depth_node.pipeline.memory import release_memory
from depth_node.pipeline.published import diagnostic_status, FrameOutputs, OutputBuffers
from depth_node.pipeline.runner import (add_sweep, CameraModel, FrameRunner, FUTURE_S,
                                        ImageFrame, nearest_sweep, Sweep, SweepAdded)
from depth_node.pipeline.sweep_motion import DeskewState
from depth_node.pipeline.teacher_check import StudentView, teacher_scale
from depth_node.ros.messages import (array_to_image, depth_camera_info_msg,
                                     packed_to_pointcloud2, xyz_to_pointcloud2)
from depth_node.ros.declare import declare_parameters, teacher_error
from depth_node.ros.motion import VehicleMotion
from depth_node.ros.param_files import check_params_files
from depth_node.ros.process import run_node
from depth_node.ros.params import build_config, changed_read_only, NodeConfig
from depth_node.ros.qos import (deprecation_warnings, input_qos, output_qos, TopicQos,
                                unmatched_warning)

_THROTTLE_S = 5.0


class DepthNode(Node):
    """Metric depth from a relative depth model aligned to LiDAR. See the module docstring."""

    def __init__(self, params_files: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__('depth_node', **kwargs)
        check_params_files(params_files, self.get_name())  # none filed under another name
        self.config: NodeConfig = build_config(declare_parameters(self))
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # a sweep or camera_info arrived
        self._images: NewestSlot[tuple[Image, float]] = NewestSlot()  # (image, perf_counter)
        self._arrivals = ArrivalPeriod()  # of images, perf_counter s: the camera period
        self._sweeps: StampedCache[Sweep] = StampedCache(self.config.lidar_buffer_size)
        self._camera: Optional[CameraModel] = None
        self._image_stamp: Optional[int] = None  # stamp of the latest image, ns
        self._last_logged: dict[str, float] = {}

        self._tf_buffer = None
        self._tf_extrinsic = self.config.extrinsic_source == 'tf'
        if self._tf_extrinsic:
            self._tf_buffer = self._make_tf_listener()
        self.estimator = build_estimator(leave_a_core(self.config.estimator))
        tuned = getattr(self.estimator, 'autotune', None)
        if tuned is not None:
            self.get_logger().info(f'estimator configuration: {tuned.describe()}')
        self.runner = FrameRunner(self.estimator, self.config.runner)
        self.runner.buffers = OutputBuffers()  # reused: _publish is done before the next frame
        self._stats = self.runner.stats
        spec = self.estimator.output
        self.get_logger().info(
            f"estimator '{getattr(self.estimator, 'name', type(self.estimator).__name__)}' "
            f"({'metric' if spec.metric else 'relative'} {spec.kind.value}); fit in "
            f'{spec.kind.value} space')

        c = self.config
        # QoS: defaults here, qos_overrides.<topic>.<entity>.* parameters change them
        # (ros/qos.py); the qos.* parameters are deprecated.
        for warning in deprecation_warnings(getattr(self, '_parameter_overrides', {}) or {}):
            self.get_logger().warn(warning)
        self._qos = qos = TopicQos(self)
        sub_qos = input_qos(c.qos_sensor_data, c.qos_depth)
        pub_qos = output_qos(c.qos_output_reliable, c.qos_depth)
        self._pub_depth = qos.publisher(Image, 'depth', pub_qos)
        self._pub_info = qos.publisher(CameraInfo, 'depth/camera_info', pub_qos)
        self._pub_sigma = qos.publisher(Image, 'depth/uncertainty', pub_qos)
        self._pub_relative = qos.publisher(Image, 'depth/relative', pub_qos)
        self._pub_colored = qos.publisher(Image, 'depth/colored', pub_qos)
        self._pub_cloud = qos.publisher(PointCloud2, 'depth/points', pub_qos)
        self._pub_diag = qos.publisher(DiagnosticArray, '/diagnostics', output_qos(depth=10))
        # The teacher starts (seconds: a process, a model) before the inputs are subscribed,
        # so no frame arrives at a node that cannot take it yet.
        self._keyframes: Optional[KeyframeWorker] = None
        if c.keyframes is not None:
            self._start_keyframes(c, pub_qos)
        self._start_motion(input_qos(c.qos_sensor_data, max(c.qos_depth, 50)))
        qos.subscription(Image, 'image', self._on_image, sub_qos)
        qos.subscription(CameraInfo, 'camera_info', self._on_camera_info, sub_qos)
        qos.subscription(PointCloud2, 'points', self._on_points, sub_qos)
        unmatched = unmatched_warning(qos)
        if unmatched:
            self.get_logger().warn(unmatched)
        self.create_timer(c.diagnostics_period, self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._worker = threading.Thread(target=self._work, name='depth_node_inference',
                                        daemon=True)
        self._worker.start()

    # ----- parameters -----
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
            self.runner.config = new.runner
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
        pub = self._qos.publisher
        self._pub_kf_depth = pub(Image, 'keyframe/depth', qos)
        self._pub_kf_unc = pub(Image, 'keyframe/uncertainty', qos)
        self._pub_kf_colored = pub(Image, 'keyframe/colored', qos)
        self._pub_kf_points = pub(PointCloud2, 'keyframe/points', qos)
        self._pub_kf_check = pub(Float32, 'keyframe/cross_check', qos)
        self.get_logger().info(f'starting the keyframe teacher (marigold from '
                               f'{kf.teacher.model_path}, {kf.worker.mode} mode) ...')
        try:
            self._keyframes = KeyframeWorker(kf.teacher, self._on_keyframe, kf.worker,
                                             on_error=self._on_keyframe_error)
        except ConfigError as exc:
            raise teacher_error(exc) from None

    def _on_keyframe(self, result: KeyframeResult) -> None:
        """Publish a keyframe (worker thread): depth, uncertainty, preview, cloud, check."""
        header, camera, student = result.tag
        config = self.config
        if result.depth is not None and student is not None:
            # The teacher checks the student's sigma where no LiDAR return is near.
            scale, pixels = teacher_scale(student, result.depth, result.relative_uncertainty,
                                          config.keyframes.worker.cross_check_quantile
                                          if config.keyframes is not None else 0.5,
                                          config.pipeline.max_depth)
            self.runner.pipeline.teacher_check.update(scale, result.stamp, pixels)
        if result.depth is not None:
            self._pub_kf_depth.publish(array_to_image(result.depth, '32FC1', header))
            if result.uncertainty is not None:
                self._pub_kf_unc.publish(array_to_image(result.uncertainty, '32FC1', header))
            self._pub_kf_colored.publish(array_to_image(
                colorize_depth(result.depth, *config.publish.colormap_range), 'rgb8', header))
            if config.keyframes is not None and config.keyframes.points:
                grid = PointGrid(camera, config.pipeline.cloud_stride)
                self._pub_kf_points.publish(xyz_to_pointcloud2(grid.points(result.depth),
                                                               header))
        else:
            self._warn('keyframe_no_fit', f'keyframe without metric depth: {result.fit.reason}')
        if np.isfinite(result.cross_check):
            self._pub_kf_check.publish(Float32(data=float(result.cross_check)))

    def _on_keyframe_error(self, tag: Any, message: str) -> None:
        self._warn('keyframe_error', f'keyframe failed: {message}', error=True)

    def _make_tf_listener(self, required: bool = True) -> Any:
        try:
            import tf2_ros
        except ImportError:
            if not required:  # the deskew's motion: the odometry topic, or none (said once)
                return None
            raise ConfigError('extrinsic.source', "'tf' needs tf2_ros (apt install "
                              'ros-$ROS_DISTRO-tf2-ros); use parameters otherwise', 'tf') from None
        buffer = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(buffer, self)
        return buffer

    def _start_motion(self, qos: QoSProfile) -> None:
        """The deskew's motion sources (ros/motion.py): tf2 when importable, the odometry
        topic (``motion.odometry_topic``), constant velocity past the poses they gave."""
        if self._tf_buffer is None:
            self._tf_buffer = self._make_tf_listener(required=False)
        self._vehicle = VehicleMotion(lambda: self.config.motion, self._tf_buffer)
        self._vehicle.subscribe(self._qos, qos)

    # ----- input callbacks (executor thread) -----
    def _on_image(self, msg: Image) -> None:
        self._stats.count('frames_in')
        self._image_stamp = stamp_ns(msg)  # far-future sweeps are judged against it
        self._odd(frame_id_oddities(msg, 'Image'))
        received = time.perf_counter()
        self._arrivals.record(received)
        if self._images.put((msg, received)):
            self._stats.count('dropped_superseded')

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            camera = CameraModel(camera_info_to_camera(msg), str(msg.distortion_model),
                                 len(msg.d))
        except DepthNodeError as exc:
            self._drop('malformed_camera_info', f'camera_info dropped: {exc}', exc)
            return
        self._odd(camera_info_oddities(msg))
        with self._wake:
            self._camera = camera
            self._wake.notify_all()

    def _on_points(self, msg: PointCloud2) -> None:
        try:
            xyz = pointcloud2_to_xyz(msg, finite=False)  # a view: the projection drops NaN
            times = sweep_times(msg, self.config.motion.time_field, len(xyz), stamp_ns(msg))
        except DepthNodeError as exc:
            self._drop('malformed_points', f'points dropped: {exc}', exc)
            return
        self._odd(pointcloud2_oddities(msg))
        sweep = Sweep(stamp_ns(msg), frame_id(msg), xyz, times)
        with self._wake:
            self._stats.count('sweeps_in')
            added = add_sweep(self._sweeps, sweep.stamp_ns, sweep, self._image_stamp)
            self._wake.notify_all()
        if added == SweepAdded.JUMPED:
            self._stats.count('time_jumps')
            self.get_logger().info('LiDAR time jumped back (a replay restarted?): the sweeps '
                                   'held were forgotten')
        elif added == SweepAdded.FUTURE:
            ahead = (sweep.stamp_ns - (self._image_stamp or 0)) * 1e-9
            self._drop('sweeps_discarded', f'points dropped: stamped {ahead:.1f} s after the '
                       f'latest image (more than {FUTURE_S:g} s: not trusted)')
        elif added == SweepAdded.DUPLICATE:
            self._stats.count('sweeps_discarded')

    def _drop(self, key: str, message: str, exc: Optional[Exception] = None) -> None:
        self._stats.error(key, message)
        self._warn(f"{key}:{getattr(exc, 'field', '')}", message)  # one throttle per field

    def _odd(self, oddities: list[tuple[str, str]]) -> None:
        for kind, text in oddities:  # legal but odd input: used, and said once a period
            self._warn(kind, text)

    def _warn(self, kind: str, message: str, error: bool = False) -> None:
        """Log ``message`` at most once per ``_THROTTLE_S`` for each ``kind``.

        rclpy throttles per call site, and every kind of drop is logged from here: one kind
        would hide the others for the throttle period.
        """
        now = time.monotonic()
        if now - self._last_logged.get(kind, -np.inf) < _THROTTLE_S:
            return
        self._last_logged[kind] = now
        (self.get_logger().error if error else self.get_logger().warn)(message)

    # ----- inference worker -----
    def _work(self) -> None:
        while True:
            item, given_up = take_fresh(self._images, self._arrivals, lambda it: it[1])
            if given_up:
                self._stats.count('dropped_superseded', given_up)
            if item is None:  # closed
                return
            msg, received = item
            try:
                self._process(msg, received)
            except MessageError as exc:
                self._drop('malformed_image', f'image dropped: {exc}', exc)
            except Exception as exc:  # keep serving frames; say what broke
                message = f'frame dropped by an unexpected error: {type(exc).__name__}: {exc}'
                self._stats.error('dropped_error', message)
                self._warn('unexpected', message, error=True)
            del item, msg
            release_memory()  # what a big message left free, or RSS stays at its peak

    def _lookup(self, camera_frame: str, lidar_frame: str, stamp: int) -> RigidTransform:
        """LiDAR -> camera from tf2 at the image stamp (raises tf2's errors)."""
        assert self._tf_buffer is not None  # only passed to the runner when tf is used
        config = self.config
        tf = self._tf_buffer.lookup_transform(
            config.camera_frame or camera_frame, config.lidar_frame or lidar_frame,
            rclpy.time.Time(nanoseconds=stamp),
            rclpy.duration.Duration(seconds=config.tf_timeout))
        t, q = tf.transform.translation, tf.transform.rotation
        return RigidTransform(quaternion_to_matrix((q.x, q.y, q.z, q.w)),
                              np.array([t.x, t.y, t.z]))

    def _process(self, msg: Image, received: float) -> None:
        t0 = time.perf_counter()
        image = ImageFrame(image_to_rgb8(msg), stamp_ns(msg), frame_id(msg))
        convert_ms = (time.perf_counter() - t0) * 1e3
        with self._wake:
            config = self.config
            sweep = nearest_sweep(self._sweeps, image.stamp_ns, config.lidar_max_age)
            # Camera, camera_info and LiDAR arrive on separate topics in no set order: when
            # the camera model or a close-enough sweep is missing, give them a short time.
            deadline = time.perf_counter() + config.lidar_wait
            while (sweep is None or self._camera is None) and not self._images.closed \
                    and time.perf_counter() < deadline:
                self._wake.wait(deadline - time.perf_counter())
                sweep = nearest_sweep(self._sweeps, image.stamp_ns, config.lidar_max_age)
            camera = self._camera
        run = self.runner.run(
            image, camera, None if sweep is None else sweep[1],
            self._lookup if self._tf_buffer is not None and self._tf_extrinsic else None,
            motion=self._vehicle.lookup,
            emit=lambda out, frame, result: self._publish(msg.header, out, frame, result),
            received=received, timings_ms={'convert': convert_ms})
        if run.warning:
            self._warn('frame_warning', run.warning)
        if run.deskew_note:  # said once per change of state, not per frame
            (self.get_logger().warn if run.deskew == DeskewState.NO_MOTION
             else self.get_logger().info)(run.deskew_note)
        if run.dropped:
            self._warn(run.dropped, run.reason, error=run.unexpected)
            return
        if run.extrinsic_error:
            self._warn('frames_without_extrinsic', run.extrinsic_error)
        if run.result is not None and run.result.fit_state == FitState.NONE:
            self._warn('no_fit', f'no metric depth: {run.result.fit.reason}; publishing '
                       'relative outputs only')
        elif run.result is not None and run.result.refused:
            self._warn('refused', f'metric depth refused: {run.result.refused}; publishing '
                       'relative outputs only')

    def _publish(self, header: Any, out: FrameOutputs, frame: FrameInput,
                 result: FrameResult) -> None:
        """Publish one frame's outputs (worker thread) and hand keyframes to the teacher."""
        def wanted(value: Any, pub: Any) -> bool:  # volatile outputs: unmatched, none missed
            return value is not None and pub.get_subscription_count() > 0
        if wanted(out.depth, self._pub_depth):
            self._pub_depth.publish(array_to_image(out.depth, '32FC1', header))
        if wanted(out.uncertainty, self._pub_sigma):
            self._pub_sigma.publish(array_to_image(out.uncertainty, '32FC1', header))
        if wanted(out.camera_info, self._pub_info):
            self._pub_info.publish(depth_camera_info_msg(out.camera_info, header))
        if wanted(out.cloud, self._pub_cloud):
            self._pub_cloud.publish(packed_to_pointcloud2(out.cloud, header))
        if wanted(out.relative, self._pub_relative):
            self._pub_relative.publish(array_to_image(out.relative, '32FC1', header))
        if wanted(out.colored, self._pub_colored):
            self._pub_colored.publish(array_to_image(out.colored, 'rgb8', header))
        if self._keyframes is not None:
            hit, _ = self._kf_policy.should_trigger(frame.stamp, frame.rgb)
            if hit:
                # Arrays handed over are not modified afterwards (a new set every frame).
                view = None if result.depth is None or result.sigma is None \
                    or result.support is None else StudentView(
                        result.depth, result.sigma, result.support,
                        self.config.pipeline.fusion_cell)
                self._keyframes.submit(frame, result.depth, tag=(header, frame.camera, view))

    # ----- diagnostics (executor thread) -----
    def _publish_diagnostics(self) -> None:
        snap = self._stats.snapshot()
        level, message, values = diagnostic_status(snap, self.estimator.output.kind.value,
                                                   self.config.watchdog_timeout)
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
        self._images.close()
        with self._wake:
            self._wake.notify_all()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=5.0)
        if self._keyframes is not None:
            self._keyframes.close()


def main(args: Optional[list[str]] = None) -> int:
    """Console-script entry point: ``ros2 run depth_node depth_node``
    (:func:`~depth_node.ros.process.run_node`: exit 2 on a configuration error)."""
    return run_node(DepthNode, args)


if __name__ == '__main__':
    sys.exit(main())
