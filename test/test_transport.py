"""The shipped Fast DDS profile delivers large best-effort images between processes."""

from depth_node.ros.transport_check import measure
from depth_node.ros.graph_env import fastdds_profile


def test_profile_delivers_large_best_effort_images():
    r = measure(fastdds_profile(), count=30)
    assert r['received'] >= 29, r
