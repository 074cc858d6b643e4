"""The shipped Fast DDS profile delivers large best-effort images between processes."""

import pytest

from depth_node.ros.transport_check import measure
from depth_node.ros.graph_env import fastdds_profile

pytestmark = pytest.mark.jazzy  # also run on ROS 2 Jazzy (scripts/test.sh)


def test_profile_delivers_large_best_effort_images():
    r = measure(fastdds_profile(), count=30)
    assert r['received'] >= 29, r
