"""The node's console entry point ends cleanly when a signal shuts rclpy down mid-spin."""

import os
import subprocess
import sys

from depth_node.testing.nodeproc import private_graph_env

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
