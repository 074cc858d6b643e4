"""Drives as rosbag2: bytes checked by hand and by rclpy, round trips, the CLI, the sample bag."""

import os

import numpy as np
import pytest
from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader
from rosbags.typesys import get_typestore, Stores

from bag_messages import bag_messages, bag_ns  # noqa: I100
from depth_node.core.errors import DepthNodeError
from depth_node.core.lidar import project_points
from depth_node.core.transforms import matrix_to_quaternion, quaternion_to_matrix, rpy_to_matrix
from depth_node.offline.drive_bag import (BASE_FRAME, CAMERA_FRAME, DEFAULT_START_NS,
                                          LIDAR_FRAME, write_drive)
from depth_node.offline.reader import read_drive
from depth_node.sim.frames import SimRig
from depth_node.sim.scene import LidarModel
from depth_node.cli import make_bag

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, 'data', 'sample_drive')
TOPICS = {'/camera/image_rect': 'sensor_msgs/msg/Image',
          '/camera/camera_info': 'sensor_msgs/msg/CameraInfo',
          '/camera/depth_gt': 'sensor_msgs/msg/Image',
          '/lidar/points': 'sensor_msgs/msg/PointCloud2',
          '/tf_static': 'tf2_msgs/msg/TFMessage', '/tf': 'tf2_msgs/msg/TFMessage'}
TS = get_typestore(Stores.ROS2_JAZZY)  # an independent store: same definitions as Kilted


@pytest.fixture(scope='module')
def drive():
    rig = SimRig.default(96, 64, lidar=LidarModel(azimuth_step_deg=2.0))
    return rig, list(rig.frames(3, speed=6.0, rate=5.0, start=0.5))


@pytest.mark.parametrize('storage, compress', [('mcap', False), ('mcap', True),
                                               ('sqlite3', False), ('sqlite3', True)])
def test_bag_bytes_decode_by_hand(drive, tmp_path, storage, compress):
    rig, frames = drive
    path = tmp_path / 'bag'
    summary = write_drive(path, frames, rig.camera, rig.lidar_to_camera, storage=storage,
                          compress=compress)
    assert summary.counts == {t: (1 if t == '/tf_static' else 3) for t in TOPICS}
    assert summary.duration_ns == int(0.4e9) and summary.start_ns == bag_ns(0.5)
    with Reader(path) as reader:
        assert {t: (i.msgtype, i.msgcount) for t, i in reader.topics.items()} == \
            {t: (m, 1 if t == '/tf_static' else 3) for t, m in TOPICS.items()}
        assert reader.duration == int(0.4e9) + 1  # rosbags counts the end inclusively
        assert (reader.compression_mode or None) == ('message' if compress and storage == 'sqlite3'
                                                     else None)
        static = [c for c in reader.connections if c.topic == '/tf_static'][0]
        assert static.ext.offered_qos_profiles[0].durability == QosDurability.TRANSIENT_LOCAL
    if compress and storage == 'mcap':  # MCAP's own zstd chunks
        assert b'zstd' in (path / 'bag.mcap').read_bytes()[:4096]
    msgs = bag_messages(path)

    for k, f in enumerate(frames):
        t, img = msgs['/camera/image_rect'][k]
        assert t == bag_ns(f.stamp) == img.header.stamp.sec * 10**9 + img.header.stamp.nanosec
        assert img.header.frame_id == CAMERA_FRAME and img.encoding == 'rgb8'
        assert (img.height, img.width, img.step, img.is_bigendian) == (64, 96, 96 * 3, 0)
        np.testing.assert_array_equal(img.data.reshape(64, 96, 3), f.rgb)

        _, dep = msgs['/camera/depth_gt'][k]
        assert dep.encoding == '32FC1' and dep.step == 96 * 4 and dep.is_bigendian == 0
        gt = np.frombuffer(dep.data.tobytes(), '<f4').reshape(64, 96)
        np.testing.assert_array_equal(gt, np.where(np.isinf(f.depth), np.nan, f.depth))
        assert np.isnan(gt).any() and not np.isinf(gt).any()  # sky: NaN (REP 118)

        t, cloud = msgs['/lidar/points'][k]
        assert t == bag_ns(f.lidar_stamp) and cloud.header.frame_id == LIDAR_FRAME
        assert [(p.name, p.offset, p.datatype, p.count) for p in cloud.fields] == \
            [('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1), ('intensity', 12, 7, 1)]
        n = f.lidar.shape[0]
        assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (1, n, 16, 16 * n)
        assert cloud.is_bigendian is False and cloud.is_dense is True
        raw = np.frombuffer(cloud.data.tobytes(), '<f4').reshape(n, 4)
        np.testing.assert_array_equal(raw[:, :3], f.lidar)
        np.testing.assert_array_equal(raw[:, 3], f.intensity)

        _, info = msgs['/camera/camera_info'][k]
        assert (info.width, info.height, info.distortion_model) == (96, 64, 'plumb_bob')
        np.testing.assert_array_equal(info.k, rig.camera.k.reshape(-1))
        np.testing.assert_array_equal(info.p.reshape(3, 4)[:, :3], rig.camera.k)

        _, tf = msgs['/tf'][k]
        [odom] = tf.transforms
        assert (odom.header.frame_id, odom.child_frame_id) == ('odom', BASE_FRAME)
        assert odom.transform.translation.x == pytest.approx(6.0 * (f.stamp - 0.5))

    [(t, static)] = msgs['/tf_static']
    assert t == bag_ns(0.5)
    tfs = {(s.header.frame_id, s.child_frame_id): s.transform for s in static.transforms}
    assert set(tfs) == {(BASE_FRAME, CAMERA_FRAME), (CAMERA_FRAME, LIDAR_FRAME)}
    lidar = tfs[CAMERA_FRAME, LIDAR_FRAME]  # the pose of the LiDAR in the camera frame
    q = lidar.rotation
    np.testing.assert_allclose(quaternion_to_matrix([q.x, q.y, q.z, q.w]),
                               rig.lidar_to_camera.rotation, atol=1e-12)
    tr = lidar.translation
    np.testing.assert_allclose([tr.x, tr.y, tr.z], rig.lidar_to_camera.translation)
    cam = tfs[BASE_FRAME, CAMERA_FRAME]
    assert cam.translation.z == pytest.approx(rig.camera_height)


def test_rclpy_reads_the_same_bytes(drive, tmp_path):
    serialization = pytest.importorskip('rclpy.serialization', reason='needs rclpy')
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    rig, frames = drive
    write_drive(tmp_path / 'bag', frames[:1], rig.camera, rig.lidar_to_camera)
    classes = {'sensor_msgs/msg/Image': Image, 'sensor_msgs/msg/CameraInfo': CameraInfo,
               'sensor_msgs/msg/PointCloud2': PointCloud2}
    seen = set()
    with Reader(tmp_path / 'bag') as reader:
        for conn, _, raw in reader.messages():
            if conn.msgtype not in classes:
                continue
            msg = serialization.deserialize_message(bytes(raw), classes[conn.msgtype])
            seen.add(conn.topic)
            if conn.topic == '/camera/image_rect':
                np.testing.assert_array_equal(
                    np.frombuffer(bytes(msg.data), np.uint8).reshape(64, 96, 3), frames[0].rgb)
            elif conn.topic == '/lidar/points':
                xyz = np.frombuffer(bytes(msg.data), np.float32).reshape(-1, 4)[:, :3]
                np.testing.assert_array_equal(xyz, frames[0].lidar)
            elif conn.topic == '/camera/camera_info':
                assert list(msg.p)[:3] == [rig.camera.fx, 0.0, rig.camera.cx]
    assert seen == {'/camera/image_rect', '/camera/camera_info', '/camera/depth_gt',
                    '/lidar/points'}


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_read_drive_round_trip(drive, tmp_path, storage):
    rig, frames = drive
    write_drive(tmp_path / 'bag', frames, rig.camera, rig.lidar_to_camera, storage=storage,
                compress=True)
    back = list(read_drive(tmp_path / 'bag'))
    assert len(back) == len(frames)
    for f, b in zip(frames, back):
        assert b.stamp_ns == bag_ns(f.stamp) and b.lidar_stamp_ns == bag_ns(f.lidar_stamp)
        assert b.frame_id == CAMERA_FRAME and b.lidar_frame_id == LIDAR_FRAME
        assert b.camera == rig.camera
        np.testing.assert_array_equal(b.rgb, f.rgb)
        np.testing.assert_array_equal(b.depth, np.where(np.isinf(f.depth), np.nan, f.depth))
        np.testing.assert_array_equal(b.lidar, f.lidar)
        np.testing.assert_array_equal(b.intensity, f.intensity)
        np.testing.assert_allclose(b.lidar_to_camera.rotation, rig.lidar_to_camera.rotation,
                                   atol=1e-12)
        np.testing.assert_allclose(b.lidar_to_camera.translation,
                                   rig.lidar_to_camera.translation, atol=1e-12)


def test_sweeps_pair_with_the_nearest_frame(drive, tmp_path):
    rig, _ = drive
    frames = list(rig.frames(3, rate=10.0, lidar_offset=0.03))
    write_drive(tmp_path / 'bag', frames, rig.camera, rig.lidar_to_camera, ground_truth=False)
    back = list(read_drive(tmp_path / 'bag'))
    assert [b.lidar_stamp_ns - b.stamp_ns for b in back] == [30_000_000] * 3
    for f, b in zip(frames, back):
        np.testing.assert_array_equal(b.lidar, f.lidar)
        assert b.depth is None
    assert all(b.lidar is None for b in read_drive(tmp_path / 'bag', lidar_tolerance=0.02))


def test_quaternions_and_refusals(drive, tmp_path):
    rig, frames = drive
    for rpy in ([0.1, -0.2, 0.3], [np.pi, 0.0, 0.0], [0.0, np.pi, 0.1], [0.0, 0.0, -np.pi]):
        r = rpy_to_matrix(*rpy)
        np.testing.assert_allclose(quaternion_to_matrix(matrix_to_quaternion(r)), r, atol=1e-12)
    (tmp_path / 'there').mkdir()
    with pytest.raises(DepthNodeError, match='exists'):
        write_drive(tmp_path / 'there', frames, rig.camera, rig.lidar_to_camera)
    with pytest.raises(DepthNodeError, match='storage'):
        write_drive(tmp_path / 'new', frames, rig.camera, rig.lidar_to_camera, storage='db')


def test_make_bag_cli(tmp_path, capsys):
    out = tmp_path / 'cli'
    args = [str(out), '--storage', 'sqlite3', '--seconds', '0.4', '--rate', '5', '--width',
            '64', '--height', '48', '--lidar-azimuth-step', '3', '--seed', '2', '--no-gt']
    assert make_bag.main(args) == 0
    text = capsys.readouterr().out
    assert '/lidar/points' in text and 'MB' in text and '/camera/depth_gt' not in text
    with Reader(out) as reader:
        assert reader.topics['/camera/image_rect'].msgcount == 2
        assert '/camera/depth_gt' not in reader.topics
    assert list(out.glob('*.db3'))
    with pytest.raises(SystemExit) as exc:
        make_bag.main(args)
    assert exc.value.code == 2 and 'exists already' in capsys.readouterr().err


def test_sample_bag_is_a_small_consistent_drive():
    assert os.path.isfile(os.path.join(SAMPLE, 'metadata.yaml')), \
        'the sample bag is missing: make_bag data/sample_drive --seconds 4 --rate 5 ' \
        '--lidar-fov 90 --compress'
    size = sum(os.path.getsize(os.path.join(SAMPLE, f)) for f in os.listdir(SAMPLE))
    assert size < 9e6
    with Reader(SAMPLE) as reader:
        counts = {t: (i.msgtype, i.msgcount) for t, i in reader.topics.items()}
        assert counts == {t: (m, 1 if t == '/tf_static' else 20) for t, m in TOPICS.items()}
        assert reader.start_time == DEFAULT_START_NS
        assert reader.duration == int(3.8e9) + 1
    frames = list(read_drive(SAMPLE))
    assert len(frames) == 20
    assert [f.stamp_ns - DEFAULT_START_NS for f in frames] == [k * 200_000_000 for k in range(20)]
    cam = frames[0].camera
    assert (cam.width, cam.height) == (640, 480) and cam.fx == pytest.approx(721.5377 * 640 / 1242)
    rel = []
    for f in frames:
        assert f.lidar_stamp_ns == f.stamp_ns and f.lidar.shape[0] > 20000
        sp = project_points(f.lidar, f.camera, f.lidar_to_camera, 0.5)
        gt = sp.sample(f.depth)
        ok = np.isfinite(gt)
        assert ok.sum() > 15000
        rel.append(np.median(np.abs(sp.z[ok] - gt[ok]) / gt[ok]))
    assert max(rel) < 0.01, rel
