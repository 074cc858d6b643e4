"""The shipped Fast DDS profile delivers large best-effort messages between processes: 640x480
float images at 20 Hz, 4K images and 2M-point clouds, and the message after a large one."""

import pytest

from depth_node.ros.graph_env import fastdds_profile
from depth_node.ros.transport_check import measure, read_header, summarise

pytestmark = pytest.mark.jazzy  # also run on ROS 2 Jazzy (scripts/test.sh)


def test_profile_delivers_large_best_effort_images():
    r = measure(fastdds_profile(), count=30)
    assert r['received'] >= 29, r


def test_4k_rgba8_images_arrive_and_so_does_the_small_image_after_each():
    # 3840x2160 rgba8: 31.6 MiB, ~500 fragments. With the previous profile (32 MB segment,
    # 512 queued fragments) 8 of 10 arrived at 2 Hz and the 0.9 MB image sent right after a
    # lost one was lost too (0 of 2).
    r = measure(fastdds_profile(), count=6, width=3840, height=2160, encoding='rgba8',
                rate=2.0, then_small=True)
    assert r['received'] >= 5 and r['small_received'] == 6, r


def test_2m_point_clouds_of_32_byte_points_arrive():
    # 61 MiB each: ~1000 fragments, more than the previous profile's segment held.
    r = measure(fastdds_profile(), count=4, payload='cloud', points=2_000_000, point_step=32,
                rate=2.0, then_small=True)
    assert r['received'] >= 3 and r['small_received'] == 4, r


def test_summary_counts_the_small_messages_after_a_lost_large_one():
    got = [('big  :000000', 0.1), ('small:000000', 0.1), ('small:000001', 0.2),
           ('big  :000002', 0.3)]
    r = summarise(got, 3, then_small=True)
    assert r['received'] == 2 and r['small_received'] == 2
    assert r['small_after_loss'] == [1, 1]  # big 1 lost, small 1 arrived
    assert r['median_ms'] == pytest.approx(200.0)


def test_header_read_from_serialized_bytes():
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import PointCloud2
    msg = PointCloud2()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 345
    msg.header.frame_id = 'big  :000042'
    assert read_header(serialize_message(msg)) == (12, 345, 'big  :000042')
