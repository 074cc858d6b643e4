"""Run depth_node as its console script in a private, local-only ROS graph (no rclpy here).

The demo and the real-graph tests start the node exactly as a user would
(``depth_node --ros-args --params-file FILE``) in a subprocess whose environment keeps all
traffic on this machine (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, a private
``ROS_DOMAIN_ID``) and uses the shipped Fast DDS profile for large messages.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from typing import Any, Optional

import yaml

from depth_node.ros.graph_env import fastdds_profile, private_graph_env

__all__ = ['fastdds_profile', 'NodeProcess', 'node_executable', 'private_graph_env',
           'write_params']


def node_executable() -> str:
    """The installed depth_node console script, next to this interpreter first."""
    here = os.path.join(os.path.dirname(sys.executable), 'depth_node')
    found = here if os.path.exists(here) else shutil.which('depth_node')
    if not found:
        raise FileNotFoundError('the depth_node console script is not installed: run '
                                'scripts/setup.sh (it installs the package into .venv)')
    return found


def write_params(path: str, params: dict[str, Any]) -> str:
    """Write a ROS 2 params file (``/**: ros__parameters:``) from dotted names."""
    tree: dict[str, Any] = {}
    for name, value in params.items():
        node = tree
        parts = name.split('.')
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    with open(path, 'w') as f:
        yaml.safe_dump({'/**': {'ros__parameters': tree}}, f)
    return path


class NodeProcess:
    """The depth_node console script in a subprocess, its output in a log file."""

    def __init__(self, params_file: str, log_path: str, env: dict[str, str],
                 extra_args: tuple[str, ...] = ()) -> None:
        full_env = dict(os.environ)
        full_env.update(env)
        full_env['PYTHONUNBUFFERED'] = '1'
        self.log_path = log_path
        self._log = open(log_path, 'w')
        self.proc = subprocess.Popen(
            [node_executable(), '--ros-args', '--params-file', params_file, *extra_args],
            env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path) as f:
            return f.read()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> Optional[int]:
        """SIGINT, then SIGKILL after 10 s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode
