"""QoS the ROS way on the real graph: ``qos_overrides`` per topic, the old ``qos.*`` still
accepted with a deprecation warning, a bad override stops the node naming it."""

import os
import subprocess
import time

import numpy as np
import pytest
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from graph import ENV

from depth_node.core.errors import ConfigError
from depth_node.ros.messages import array_to_image
from depth_node.ros.player import make_header, SpunNode, wait_until
from depth_node.ros.qos import check_override, deprecation_warnings
from depth_node.testing.nodeproc import node_executable, NodeProcess, write_params

from diagnostic_msgs.msg import DiagnosticArray  # noqa: I100
from sensor_msgs.msg import Image

pytestmark = pytest.mark.jazzy  # also run on ROS 2 Jazzy (scripts/test.sh)

HERE = os.path.dirname(os.path.abspath(__file__))
SLOW = {'estimator.type': 'slow_estimator:SlowEstimator', 'estimator.options': '{"delay": 0.0}',
        'diagnostics.period': 0.2, 'lidar.wait': 0.0}
NODE_ENV = dict(ENV, PYTHONPATH=os.pathsep.join([HERE, os.environ.get('PYTHONPATH', '')]))


class Probe(SpunNode):
    """Looks at the node's endpoints on the graph; publishes images with a given QoS."""

    def endpoint(self, topic: str, kind: str):
        """QoS profile of depth_node's ``kind`` ('subscription' / 'publisher') on ``topic``."""
        info = (self.node.get_subscriptions_info_by_topic if kind == 'subscription'
                else self.node.get_publishers_info_by_topic)(topic)
        mine = [i for i in info if i.node_name == 'depth_node']
        return mine[0].qos_profile if mine else None


def _endpoints(probe, proc, wanted):
    got = {}

    def all_seen():
        for key in wanted:
            if got.get(key) is None:
                got[key] = probe.endpoint(*key)
        return all(v is not None for v in got.values()) and len(got) == len(wanted)
    assert wait_until(all_seen, 90, proc.alive), (got, proc.output())
    return got


def test_qos_overrides_set_each_topic_and_reliable_input_loses_nothing(tmp_path):
    params = {**SLOW,
              'qos_overrides./image.subscription.reliability': 'reliable',
              'qos_overrides./image.subscription.depth': 50,
              'qos_overrides./depth.publisher.reliability': 'best_effort',
              'qos_overrides./imgae.subscription.reliability': 'reliable'}  # a typo
    path = write_params(str(tmp_path / 'params.yaml'), params)
    proc = NodeProcess(path, str(tmp_path / 'node.log'), NODE_ENV)
    probe = Probe('qos_probe')
    probe.start()
    try:
        got = _endpoints(probe, proc, [('/image', 'subscription'),
                                       ('/camera_info', 'subscription'),
                                       ('/depth', 'publisher'),
                                       ('/depth/points', 'publisher')])
        assert got[('/image', 'subscription')].reliability == ReliabilityPolicy.RELIABLE
        # the defaults where nothing is overridden: sensor-data inputs, reliable outputs
        assert got[('/camera_info', 'subscription')].reliability == \
            ReliabilityPolicy.BEST_EFFORT
        assert got[('/depth', 'publisher')].reliability == ReliabilityPolicy.BEST_EFFORT
        assert got[('/depth/points', 'publisher')].reliability == ReliabilityPolicy.RELIABLE
        # A reliable publisher bursts 30 images faster than the node takes them: with the
        # reliable, deep subscription every one arrives (frames_in counts them all).
        pub = probe.node.create_publisher(Image, 'image', QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE))
        assert wait_until(lambda: pub.get_subscription_count() > 0, 30, proc.alive)
        frame = np.zeros((48, 64, 3), np.uint8)
        for i in range(30):
            pub.publish(array_to_image(frame, 'rgb8', make_header(1.0 + 0.05 * i, 'cam')))
        diag = _frames_in(probe, proc, 30)
        assert diag == 30, proc.output()
        log = proc.output()
        assert 'qos_overrides./imgae.subscription.reliability' in log and 'ignored' in log, log
        # no deprecated parameter given, and graph_env sets no variable this distro deprecates
        # (ROS_LOCALHOST_ONLY on Jazzy, FASTRTPS_DEFAULT_PROFILES_FILE on Kilted)
        assert 'deprecated' not in log, log
    finally:
        probe.close()
        proc.stop()


def _frames_in(probe, proc, want):
    """The node's ``frames_in`` diagnostics value once it reaches ``want`` (or after 30 s)."""
    seen = []

    def on_diag(arr):
        for st in arr.status:
            for kv in st.values:
                if kv.key == 'frames_in':
                    seen.append(int(kv.value))
    probe.node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    wait_until(lambda: bool(seen) and seen[-1] >= want, 30, proc.alive)
    time.sleep(0.5)
    return seen[-1] if seen else None


def test_deprecated_qos_parameters_still_work_with_a_warning(tmp_path):
    params = {**SLOW, 'qos.sensor_data': False, 'qos.output_reliable': False}
    path = write_params(str(tmp_path / 'params.yaml'), params)
    proc = NodeProcess(path, str(tmp_path / 'node.log'), NODE_ENV)
    probe = Probe('qos_probe_old')
    probe.start()
    try:
        got = _endpoints(probe, proc, [('/points', 'subscription'), ('/depth', 'publisher')])
        assert got[('/points', 'subscription')].reliability == ReliabilityPolicy.RELIABLE
        assert got[('/depth', 'publisher')].reliability == ReliabilityPolicy.BEST_EFFORT
        log = proc.output()
        for name in ('qos.sensor_data', 'qos.output_reliable'):
            assert f"parameter '{name}' is deprecated" in log, log
        assert 'qos.depth' not in log, log  # only what was given is warned about
    finally:
        probe.close()
        proc.stop()


def test_bad_qos_override_stops_the_node_naming_it(tmp_path):
    path = write_params(str(tmp_path / 'params.yaml'),
                        {**SLOW, 'qos_overrides./depth.publisher.reliability': 'sometimes'})
    out = subprocess.run([node_executable(), '--ros-args', '--params-file', path],
                         env={**os.environ, **NODE_ENV}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    assert ("configuration error: parameter 'qos_overrides./depth.publisher.reliability': "
            "must be one of reliable, best_effort, system_default (got 'sometimes')"
            in out.stderr), out.stderr
    assert 'Traceback' not in out.stderr


@pytest.mark.parametrize('name, value, rule', [
    ('qos_overrides./image.subscription.reliability', 'sometimes', 'one of'),
    ('qos_overrides./image.subscription.history', 3, 'one of'),
    ('qos_overrides./image.subscription.depth', 0, r'\[1, '),
    ('qos_overrides./image.subscription.depth', True, 'integer'),
    ('qos_overrides./image.subscription.durability', 'volatile', 'not a QoS policy'),
])
def test_override_values_are_checked(name, value, rule):
    with pytest.raises(ConfigError, match=rule) as info:
        check_override(name, value)
    assert info.value.name == name
    check_override('qos_overrides./x.publisher.reliability', 'BEST_EFFORT')  # rclpy: any case
    check_override('qos_overrides./x.publisher.depth', 1)


def test_deprecation_warnings_name_only_the_old_parameters():
    warnings = deprecation_warnings(['qos.depth', 'fit.method', 'qos_overrides./a.b.depth'])
    assert len(warnings) == 1 and "'qos.depth' is deprecated" in warnings[0]
