"""Legal but odd inputs are used and named; different malformed inputs are each logged.

Unit checks of :mod:`depth_node.messages.oddities` and the zero-size image, then the node on a
real graph: within one throttle period it gets three different malformed images, a zero-size
one, an odd camera_info (focal 1e-300, ROI outside the sensor, ``P[0,3]`` 1e12), a cloud with
a duplicate field and an image without frame_id; every one is named in its log.
"""

import time

import numpy as np
import pytest

from graph import ReliableFeeder, start_node

from depth_node.messages.encodings import MessageError
from depth_node.messages.oddities import camera_info_oddities, pointcloud2_oddities
from depth_node.messages.readers import image_to_rgb8
from depth_node.ros.messages import array_to_image, xyz_to_pointcloud2
from depth_node.ros.player import camera_info_msg, make_header, wait_until
from depth_node.sim.frames import SimRig

from sensor_msgs.msg import Image, PointField  # noqa: I100

RIG = SimRig.default(160, 120)


def _odd_info():
    info = camera_info_msg(RIG.camera, make_header(1.0, 'camera_optical'))
    p = list(info.p)
    p[0], p[3] = 1e-300, 1e12
    info.p = p
    info.roi.x_offset, info.roi.width, info.roi.height = 100, 100, 50
    return info


def test_oddities_name_the_field_and_a_good_message_has_none():
    info = camera_info_msg(RIG.camera, make_header(1.0, 'camera_optical'))
    assert camera_info_oddities(info) == []
    texts = dict(camera_info_oddities(_odd_info()))
    assert 'field of view of 180 deg' in texts['camera_info_fx'], texts
    assert 'reaches outside the 160x120 sensor' in texts['camera_info_roi']
    assert 'stereo baseline' in texts['camera_info_baseline']
    cloud = xyz_to_pointcloud2(np.zeros((4, 3), np.float32), make_header(1.0, ''))
    cloud.fields = list(cloud.fields) + [PointField(name='x', offset=0, datatype=7, count=1)]
    texts = dict(pointcloud2_oddities(cloud))
    assert texts['points_fields'].startswith('PointCloud2.fields name x more than once')
    assert texts['PointCloud2_frame_id'] == 'PointCloud2.header.frame_id is empty'


def test_a_zero_size_image_is_malformed_naming_its_size_field():
    msg = Image(height=480, width=0, encoding='rgb8', step=0, data=b'')
    with pytest.raises(MessageError, match=r'Image.width is 0 \(0x480\)'):
        image_to_rgb8(msg)


def _handled(d):
    """Images the node is done with, by its diagnostics."""
    return sum(int(d.get(c, 0)) for c in ('published', 'published_relative_only',
                                          'malformed_image', 'dropped_error',
                                          'dropped_no_camera_info'))


def test_node_names_each_malformed_and_odd_input(tmp_path):
    params = {'qos.sensor_data': False, 'lidar.wait': 0.0, 'diagnostics.period': 0.2,
              'estimator.input_size': 126}
    proc = start_node(tmp_path, params)
    feed = ReliableFeeder('feeder_odd')
    f = next(iter(RIG.frames(1)))
    good = array_to_image(f.rgb, 'rgb8', make_header(2.0, 'camera_optical'))
    truncated = array_to_image(f.rgb, 'rgb8', make_header(2.1, 'camera_optical'))
    truncated.data = bytes(truncated.data)[:-5]
    float_image = array_to_image(f.rgb[..., 0].astype(np.float32), '32FC1',
                                 make_header(2.2, 'camera_optical'))
    empty = Image(header=make_header(2.3, 'camera_optical'), height=120, width=0,
                  encoding='rgb8', step=0, data=b'')
    no_frame = array_to_image(f.rgb, 'rgb8', make_header(2.4, ''))
    cloud = xyz_to_pointcloud2(f.lidar, make_header(2.0, 'lidar'))
    cloud.fields = list(cloud.fields) + [PointField(name='x', offset=0, datatype=7, count=1)]
    try:
        assert wait_until(feed.connected, 90, proc.alive), proc.output()
        time.sleep(0.5)  # the node's subscriptions match ours a moment after ours see them
        t0 = None
        for k, msg in enumerate((good, truncated, float_image, empty, no_frame)):
            feed.pubs['camera_info'].publish(_odd_info())
            feed.pubs['points'].publish(cloud)
            feed.pubs['image'].publish(msg)
            assert wait_until(lambda: _handled(feed.latest_diagnostics()) > k, 30, proc.alive), \
                (feed.latest_diagnostics(), proc.output())
            if k == 0:
                t0 = time.monotonic()  # the first inference is slow; malformed ones are not
            elif k == 3:
                assert time.monotonic() - t0 < 5.0  # the three within one throttle period
        assert feed.latest_diagnostics()['malformed_image'] == '3', feed.latest_diagnostics()
        time.sleep(0.5)
    finally:
        code = proc.stop()
        feed.close()
    assert code == 0, proc.output()
    log = proc.output()
    for text in ('image dropped: Image.data', 'image dropped: Image.encoding',
                 'image dropped: Image.width is 0', 'field of view of 180 deg',
                 'reaches outside the', 'stereo baseline', 'fields name x more than once',
                 'Image.header.frame_id is empty'):
        assert text in log, (text, log)
