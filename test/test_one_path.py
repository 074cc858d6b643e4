"""One runtime path: the running node and ``evaluate`` give the same bytes for the same input.

Every frame of the shipped sample bag is played, lock-step, through the node started as its
console script (the shipped student, the default model) and through ``evaluate --output-bag``
with the same params file: ``depth``, ``depth/camera_info`` and ``depth/points`` are equal
field by field and byte by byte, frame by frame.
"""

import os

import pytest
from rosbags.rosbag2 import Reader

from graph import ENV, RELIABLE_INPUTS, ReliableFeeder, start_node

from depth_node.cli.evaluate import main as evaluate_main
from depth_node.messages.readers import stamp_ns as _stamp_ns
from depth_node.offline.drive_bag import typestore
from depth_node.offline.reader import DriveReader
from depth_node.ros.player import extrinsic_parameters, wait_until

from rclpy.serialization import deserialize_message  # noqa: I100
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, 'data', 'sample_drive')
TOPICS = {'/camera/image_rect': Image, '/camera/camera_info': CameraInfo,
          '/lidar/points': PointCloud2}
assert ENV  # the private graph is set up before rclpy is used


def _sample_messages():
    """The sample bag's camera, camera_info and LiDAR messages as rclpy objects, by stamp."""
    by_stamp = {}
    with Reader(SAMPLE) as reader:
        conns = [c for c in reader.connections if c.topic in TOPICS]
        for conn, _, raw in reader.messages(connections=conns):
            msg = deserialize_message(bytes(raw), TOPICS[conn.topic])
            by_stamp.setdefault(_stamp_ns(msg), {})[conn.topic] = msg
    return dict(sorted(by_stamp.items()))


def _image_fields(m):
    return (m.header.frame_id, m.height, m.width, m.encoding, int(m.is_bigendian), m.step,
            bytes(m.data))


def _cloud_fields(m):
    fields = [(f.name, f.offset, f.datatype, f.count) for f in m.fields]
    return (m.header.frame_id, m.height, m.width, fields, bool(m.is_bigendian), m.point_step,
            m.row_step, bool(m.is_dense), bytes(m.data))


def _info_fields(m):
    return (m.header.frame_id, m.height, m.width, m.distortion_model, list(m.d), list(m.k),
            list(m.r), list(m.p))


@pytest.mark.timeout(600)
def test_node_and_evaluate_publish_the_same_bytes_for_every_sample_frame(tmp_path):
    first = next(DriveReader(SAMPLE).frames())
    assert first.lidar_to_camera is not None
    # Same params file for both: the default model (shipped student), the sample bag's
    # extrinsic as parameters, reliable inputs so that lock-step loses nothing.
    params = {'lidar.wait': 1.0, **RELIABLE_INPUTS, 'diagnostics.period': 0.5,
              **extrinsic_parameters(first.lidar_to_camera)}
    proc = start_node(tmp_path, params)
    params_file = str(tmp_path / 'params.yaml')
    messages = _sample_messages()
    images = [s for s, m in messages.items() if '/camera/image_rect' in m]
    assert len(images) == 20
    feed = ReliableFeeder('one_path_feeder')
    try:
        assert wait_until(feed.connected, 120, proc.alive), proc.output()
        for stamp in images:
            group = messages[stamp]
            feed.pubs['camera_info'].publish(group['/camera/camera_info'])
            feed.pubs['points'].publish(group['/lidar/points'])
            feed.pubs['image'].publish(group['/camera/image_rect'])
            assert wait_until(lambda: feed.has('depth/colored', stamp), 60, proc.alive), \
                proc.output()
        assert wait_until(lambda: all(feed.has(t, s) for t in ('depth', 'depth/points')
                                      for s in images), 10, proc.alive), proc.output()
    finally:
        code = proc.stop()
        feed.close()
    assert code == 0, proc.output()

    out_bag = tmp_path / 'eval_bag'
    assert evaluate_main([SAMPLE, '--params-file', params_file, '--out', str(tmp_path / 'eval'),
                          '--output-bag', str(out_bag), '--extrinsic', 'parameters',
                          '-q']) == 0
    ts = typestore()
    written = {'/depth': {}, '/depth/points': {}, '/depth/camera_info': {}}
    with Reader(out_bag) as reader:
        conns = [c for c in reader.connections if c.topic in written]
        for conn, _, raw in reader.messages(connections=conns):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            written[conn.topic][_stamp_ns(msg)] = msg
    assert sorted(written['/depth']) == images
    assert sorted(written['/depth/points']) == images
    for stamp in images:
        assert _image_fields(feed.got['depth'][stamp]) == \
            _image_fields(written['/depth'][stamp]), stamp
        assert _cloud_fields(feed.got['depth/points'][stamp]) == \
            _cloud_fields(written['/depth/points'][stamp]), stamp
        assert _info_fields(feed.got['depth/camera_info'][stamp]) == \
            _info_fields(written['/depth/camera_info'][stamp]), stamp
