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

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fastdds_profile() -> str:
    """Path of config/fastdds_large_messages.xml (source tree or installed share/)."""
    src = os.path.join(os.path.dirname(PACKAGE_DIR), 'config', 'fastdds_large_messages.xml')
    if os.path.exists(src):
        return src
    try:
        from ament_index_python.packages import get_package_share_directory
        return os.path.join(get_package_share_directory('depth_node'), 'config',
                            'fastdds_large_messages.xml')
    except Exception:
        raise FileNotFoundError('fastdds_large_messages.xml not found in the source tree or '
                                'the ament index') from None


def private_graph_env(domain: Optional[int] = None) -> dict[str, str]:
    """Variables for a graph that stays on this machine, on a domain of its own."""
    if domain is None:
        domain = 1 + (os.getpid() % 100)  # 1..100: valid with the default port mapping
    return {
        'ROS_DOMAIN_ID': str(domain),
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
        'ROS_LOCALHOST_ONLY': '1',  # the Humble spelling of the same thing
        'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
        'FASTDDS_DEFAULT_PROFILES_FILE': fastdds_profile(),
    }


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
