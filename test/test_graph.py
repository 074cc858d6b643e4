"""The node on a real ROS 2 graph: console script, params file, another process feeding it."""

import os
import time

import numpy as np
import pytest

from graph import NodeProcess, Probe, wait_until, write_params

from depth_node.core.metrics import depth_metrics
from depth_node.sim.frames import save_frames, SimRig

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from depth_node.ros.conversions import (array_to_image, image_to_array,  # noqa: E402
                                        xyz_to_pointcloud2)

HERE = os.path.dirname(os.path.abspath(__file__))
CAMERA_FRAME, LIDAR_FRAME = 'camera_optical', 'lidar'


@pytest.fixture(scope='module')
def drive(tmp_path_factory):
    rig = SimRig.default(640, 480)
    frames = list(rig.frames(3, speed=10.0))
    folder = save_frames(tmp_path_factory.mktemp('drive'), frames)
    return rig, frames, folder


def _extrinsic_params(rig):
    r = rig.lidar_to_camera.rotation
    # Quaternion of the body->optical rotation (x, y, z, w).
    w = np.sqrt(1.0 + np.trace(r)) / 2.0
    q = [(r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w),
         (r[1, 0] - r[0, 1]) / (4 * w), w]
    return {'extrinsic.translation': [float(v) for v in rig.lidar_to_camera.translation],
            'extrinsic.rotation': [float(v) for v in q]}


def _header(stamp, frame):
    h = Header()
    h.stamp.sec = int(stamp)
    h.stamp.nanosec = int(round((stamp - int(stamp)) * 1e9))
    h.frame_id = frame
    return h


def _camera_info(cam, header):
    info = CameraInfo()
    info.header = header
    info.width, info.height = cam.width, cam.height
    info.distortion_model = 'plumb_bob'
    info.d = [0.0] * 5
    info.k = cam.k.reshape(-1).tolist()
    info.r = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    info.p = [cam.fx, 0.0, cam.cx, 0.0, 0.0, cam.fy, cam.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def _stamp_of(msg):
    return round(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, 6)


def _diag_values(probe):
    msgs = probe.messages('/diagnostics')
    for arr in reversed(msgs):
        for st in arr.status:
            if st.name.startswith('depth_node'):
                return {kv.key: kv.value for kv in st.values}, st
    return {}, None


class Feeder:
    """Publishes camera, camera_info and LiDAR like a driver, with sensor-data QoS."""

    def __init__(self, probe, rig):
        n = probe.node
        self.rig = rig
        self.image = n.create_publisher(Image, 'image', qos_profile_sensor_data)
        self.info = n.create_publisher(CameraInfo, 'camera_info', qos_profile_sensor_data)
        self.points = n.create_publisher(PointCloud2, 'points', qos_profile_sensor_data)

    def send(self, frame, stamp, encoding='rgb8', lidar=True):
        if lidar:
            self.points.publish(xyz_to_pointcloud2(frame.lidar, _header(stamp, LIDAR_FRAME)))
        h = _header(stamp, CAMERA_FRAME)
        self.info.publish(_camera_info(self.rig.camera, h))
        self.image.publish(array_to_image(_encode(frame.rgb, encoding), encoding, h))


def _encode(rgb, encoding):
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
    raise ValueError(encoding)


def _start(tmp_path, params, probe):
    path = write_params(str(tmp_path / 'params.yaml'), params)
    proc = NodeProcess(path, str(tmp_path / 'node.log'))
    probe.record(Image, 'depth')
    probe.record(Image, 'depth/relative')
    probe.record(Image, 'depth/colored')
    probe.record(CameraInfo, 'depth/camera_info')
    probe.record(PointCloud2, 'depth/points')
    probe.record(DiagnosticArray, '/diagnostics')
    return proc


def test_oracle_metric_depth_and_cloud_match_truth(drive, tmp_path):
    rig, frames, folder = drive
    params = {'estimator.type': 'depth_node.estimators.oracle:DisparityOracle',
              'estimator.options': f'{{"frames_dir": "{folder}", "scale": 0.31, "shift": 0.02}}',
              'cloud.stride': 2, 'cloud.color': True, 'diagnostics.period': 0.5,
              'lidar.wait': 0.3,
              **_extrinsic_params(rig)}
    probe = Probe('feeder_oracle')
    proc = _start(tmp_path, params, probe)
    try:
        feeder = Feeder(probe, rig)
        assert probe.wait_subscribers(feeder.image, 60), proc.output()
        assert probe.wait_for(lambda: feeder.points.get_subscription_count() > 0, 10)
        sent = {}
        base = 1000.0
        for k in range(9):
            # Frames jump between positions: stamps further apart than lidar.max_age, so
            # each frame can only be fitted with its own sweep.
            stamp = round(base + 0.25 * k, 6)
            sent[stamp] = frames[k % len(frames)]
            feeder.send(sent[stamp], stamp)
            time.sleep(0.4)
        assert wait_until(lambda: len(probe.messages('depth')) >= 5, 30, proc), proc.output()

        # A malformed image and a malformed cloud: dropped, counted, the node keeps going.
        bad = array_to_image(frames[0].rgb, 'rgb8', _header(base + 5, CAMERA_FRAME))
        bad.data = bytes(bad.data)[:1000]
        feeder.image.publish(bad)
        bad_cloud = PointCloud2(header=_header(base + 5, LIDAR_FRAME), height=1, width=3,
                                fields=[PointField(name='intensity', offset=0, datatype=7,
                                                   count=1)], point_step=4, row_step=12,
                                data=bytes(12))
        feeder.points.publish(bad_cloud)
        time.sleep(0.5)
        after = round(base + 6.0, 6)
        sent[after] = frames[0]
        feeder.send(frames[0], after)
        assert wait_until(lambda: any(_stamp_of(m) == after for m in probe.messages('depth')),
                          20, proc), proc.output()
        assert wait_until(lambda: int(_diag_values(probe)[0].get('malformed_points', 0)) >= 1
                          and int(_diag_values(probe)[0].get('malformed_image', 0)) >= 1, 10,
                          proc), (_diag_values(probe), proc.output())
    finally:
        code = proc.stop()
        probe.close()
    assert code == 0, proc.output()

    depths = probe.messages('depth')
    clouds = {_stamp_of(m): m for m in probe.messages('depth/points')}
    infos = {_stamp_of(m): m for m in probe.messages('depth/camera_info')}
    for msg in depths:
        stamp = _stamp_of(msg)
        assert stamp in sent and msg.header.frame_id == CAMERA_FRAME
        assert msg.encoding == '32FC1' and (msg.width, msg.height) == (640, 480)
        depth = image_to_array(msg)
        m = depth_metrics(depth, sent[stamp].depth, max_depth=80.0)
        assert m.abs_rel <= 0.01, (stamp, m)
        assert m.valid > 0.5 * depth.size
        # The cloud of the same frame is the depth back-projected (stride 2).
        cloud = clouds[stamp]
        assert cloud.header.frame_id == CAMERA_FRAME and (cloud.height, cloud.width) == (240, 320)
        assert not cloud.is_dense
        assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'rgb']
        xyz = np.frombuffer(bytes(cloud.data), dtype=np.float32).reshape(
            240, 320, cloud.point_step // 4)[..., :3]
        np.testing.assert_allclose(xyz[..., 2], depth[::2, ::2], rtol=1e-6, equal_nan=True)
        cam = rig.camera
        u = np.arange(0, 640, 2)[None, :]
        np.testing.assert_allclose(xyz[..., 0], (u - cam.cx) / cam.fx * depth[::2, ::2],
                                   rtol=1e-5, atol=1e-5, equal_nan=True)
        assert infos[stamp].k[0] == pytest.approx(cam.fx)
    colored = probe.messages('depth/colored')
    assert colored and colored[-1].encoding == 'rgb8'
    values, status = _diag_values(probe)
    assert float(values['scale']) > 0 and int(values['lidar_points_used']) > 1000
    assert values['fit_state'] == 'fresh' and values['fit_space'] == 'disparity'
    assert 'latency_estimate_ms' in values and 'latency_project_ms' in values


def test_real_depth_anything_encodings_stamps_and_rate(drive, tmp_path):
    from tiny_models import save_tiny_depth_anything
    rig, frames, _ = drive
    model = save_tiny_depth_anything(tmp_path / 'tiny_da')
    params = {'estimator.model_path': str(model), 'estimator.input_size': 266,
              'cloud.color': True, 'diagnostics.period': 0.5, **_extrinsic_params(rig)}
    probe = Probe('feeder_da')
    proc = _start(tmp_path, params, probe)
    try:
        feeder = Feeder(probe, rig)
        assert probe.wait_subscribers(feeder.image, 90), proc.output()
        encodings = ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16']
        sent = {}
        for k, enc in enumerate(encodings):
            stamp = round(2000.0 + 0.1 * k, 6)
            sent[stamp] = enc
            feeder.send(frames[0], stamp, encoding=enc)
            assert wait_until(lambda s=stamp: any(_stamp_of(m) == s
                                                  for m in probe.messages('depth/relative')),
                              30, proc), (enc, proc.output())
        rel = {_stamp_of(m): image_to_array(m) for m in probe.messages('depth/relative')}
        # Colour orders decode to the same RGB, so the model sees the same input.
        first = rel[2000.0]
        for stamp in (2000.1, 2000.2, 2000.3):
            np.testing.assert_allclose(rel[stamp], first, rtol=1e-5, atol=1e-6)
        assert np.isfinite(first).all() and first.shape == (480, 640)
        # Rate: feed 10 Hz for 3 s; every output is the newest frame, in order, on time.
        t0 = time.monotonic()
        for k in range(30):
            feeder.send(frames[k % 3], round(3000.0 + 0.1 * k, 6))
            time.sleep(max(0.0, t0 + 0.1 * (k + 1) - time.monotonic()))
        wait_until(lambda: any(_stamp_of(m) >= 3002.9 for m in probe.messages('depth')), 10)
    finally:
        code = proc.stop()
        probe.close()
    assert code == 0, proc.output()
    # Random weights carry no depth, so the LiDAR fit may be refused (then no metric depth is
    # published, by design); the relative outputs come for every processed frame.
    out = [m for m in probe.messages('depth/relative') if _stamp_of(m) >= 3000.0]
    stamps = [_stamp_of(m) for m in out]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert len(out) >= 5, (len(out), _diag_values(probe), proc.output())
    assert out[-1].header.frame_id == CAMERA_FRAME and out[-1].encoding == '32FC1'
    colored = {_stamp_of(m) for m in probe.messages('depth/colored')}
    assert set(stamps) <= colored
    metric = {_stamp_of(m) for m in probe.messages('depth')}
    assert metric <= set(rel) | set(stamps)
    values, _ = _diag_values(probe)
    assert int(values['frames_in']) >= 36 and int(values['malformed_image']) == 0


def test_overload_newest_frame_wins(drive, tmp_path):
    rig, frames, _ = drive
    params = {'estimator.type': 'slow_estimator:SlowEstimator',
              'estimator.options': '{"delay": 0.25}', 'diagnostics.period': 0.5,
              **_extrinsic_params(rig)}
    probe = Probe('feeder_overload')
    os.environ['PYTHONPATH'] = HERE + os.pathsep + os.environ.get('PYTHONPATH', '')
    proc = _start(tmp_path, params, probe)
    try:
        feeder = Feeder(probe, rig)
        assert probe.wait_subscribers(feeder.image, 60), proc.output()
        sent_at = {}
        for k in range(60):  # 20 Hz into a 4 Hz model for 3 s
            stamp = round(4000.0 + 0.05 * k, 6)
            sent_at[stamp] = time.monotonic()
            feeder.send(frames[0], stamp)
            time.sleep(0.05)
        last = round(4000.0 + 0.05 * 59, 6)
        assert wait_until(lambda: any(_stamp_of(m) == last for m in probe.messages('depth')),
                          5, proc), proc.output()
        assert wait_until(lambda: int(_diag_values(probe)[0].get('dropped_superseded', 0)) > 20,
                          5, proc), _diag_values(probe)
    finally:
        code = proc.stop()
        probe.close()
    assert code == 0, proc.output()
    with_t = [(t, m) for t, m in probe.received['depth'] if _stamp_of(m) in sent_at]
    lat = [t - sent_at[_stamp_of(m)] for t, m in with_t]
    assert 8 <= len(lat) <= 20, len(lat)  # ~4 Hz for 3 s: most frames were superseded
    # Latency does not grow: the last outputs are as fresh as the first ones.
    assert max(lat[-3:]) < 2 * 0.25 + 0.3, lat


def test_bad_parameter_fails_at_start_naming_it(tmp_path):
    path = write_params(str(tmp_path / 'bad.yaml'),
                        {'estimator.type': 'depth_node.estimators.oracle:DisparityOracle',
                         'cloud.stride': 0})
    proc = NodeProcess(path, str(tmp_path / 'bad.log'))
    try:
        proc.proc.wait(timeout=60)
    finally:
        proc.stop()
    assert proc.proc.returncode not in (0, None)
    assert 'cloud.stride' in proc.output()
    path = write_params(str(tmp_path / 'typo.yaml'), {'cloud.strid': 3})
    proc = NodeProcess(path, str(tmp_path / 'typo.log'))
    try:
        proc.proc.wait(timeout=60)
    finally:
        proc.stop()
    assert proc.proc.returncode == 2 and "'cloud.strid'" in proc.output()
