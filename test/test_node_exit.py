"""The node's console entry point ends cleanly when a signal shuts rclpy down mid-spin, and when
a second signal lands during its cleanup."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from depth_node.testing.nodeproc import private_graph_env

pytestmark = pytest.mark.jazzy  # also run on ROS 2 Jazzy (scripts/test.sh)

# rclpy's signal handler shuts the default context down; when that lands between two waits,
# the next wait set (or timer) is refused with RCLError instead of ExternalShutdownException.
# The script spins once, shuts the context down as the handler does, and spins on.
SCRIPT = '''
import sys
import rclpy
from rclpy.executors import SingleThreadedExecutor
import depth_node.ros.node as node

spin_once = SingleThreadedExecutor.spin_once


def spin(self):
    spin_once(self, 0.1)
    rclpy.shutdown()
    while True:
        spin_once(self, 0.1)


SingleThreadedExecutor.spin = spin
sys.exit(node.main([]))
'''


def test_shutdown_between_waits_exits_zero_without_traceback():
    env = dict(os.environ, **private_graph_env())
    out = subprocess.run([sys.executable, '-c', SCRIPT], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'Traceback' not in out.stderr, out.stderr


@pytest.mark.parametrize('gap', [0.0, 0.3])
def test_two_sigints_as_a_terminal_and_launch_send_them_exit_zero(tmp_path, gap):
    """Ctrl-C reaches the node from its terminal, then ``ros2 launch`` sends its own SIGINT:
    the second lands while the node cleans up (here: waiting for a frame in flight)."""
    from graph import client, start_node
    from depth_node.core.camera import PinholeCamera
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ['PYTHONPATH'] = here + os.pathsep + os.environ.get('PYTHONPATH', '')
    proc = start_node(tmp_path, {'estimator.type': 'slow_estimator:SlowEstimator',
                                 'estimator.options': '{"delay": 1.5}', 'lidar.wait': 0.0})
    feed = client(f'feeder_sigint_{int(gap * 10)}')
    try:
        assert feed.wait_connected(60), proc.output()
        feed.send(np.zeros((48, 64, 3), np.uint8), PinholeCamera(64, 48, 50.0, 50.0, 32.0, 24.0),
                  1.0)
        time.sleep(0.5)  # the frame is in the estimator
        proc.proc.send_signal(signal.SIGINT)
        time.sleep(gap)
        proc.proc.send_signal(signal.SIGINT)
        code = proc.proc.wait(timeout=30)
    finally:
        proc.stop()
        feed.close()
    assert code == 0 and 'Traceback' not in proc.output(), (code, proc.output())
