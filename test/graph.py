"""Helpers for tests on a real ROS 2 graph, kept on this machine.

Every graph test gets a private ``ROS_DOMAIN_ID``, ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``
and the shipped Fast DDS profile; the node runs as its console script in its own process and
is always stopped in ``finally``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROFILE = os.path.join(ROOT, 'config', 'fastdds_large_messages.xml')


def graph_env() -> dict[str, str]:
    """Environment for a private, local-only graph (set in os.environ before rclpy.init)."""
    domain = str(1 + (os.getpid() % 100))  # 1..100: valid with the default port mapping
    return {
        'ROS_DOMAIN_ID': os.environ.get('DEPTH_NODE_TEST_DOMAIN', domain),
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
        'ROS_LOCALHOST_ONLY': '1',  # Humble/Jazzy spelling of the same thing
        'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
        'FASTDDS_DEFAULT_PROFILES_FILE': PROFILE,
    }


def node_executable() -> str:
    """The installed console script, next to this interpreter first."""
    here = os.path.join(os.path.dirname(sys.executable), 'depth_node')
    found = here if os.path.exists(here) else shutil.which('depth_node')
    if not found:
        raise RuntimeError('the depth_node console script is not installed: run '
                           'scripts/setup.sh (pip install -e .)')
    return found


def write_params(path: str, params: dict[str, Any]) -> str:
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
    """The depth_node console script in a subprocess, with its output captured."""

    def __init__(self, params_file: str, log_path: str, extra_args: tuple[str, ...] = ()):
        env = dict(os.environ)
        env.update(graph_env())
        env['PYTHONUNBUFFERED'] = '1'
        self.log_path = log_path
        self._log = open(log_path, 'w')
        self.proc = subprocess.Popen(
            [node_executable(), '--ros-args', '--params-file', params_file, *extra_args],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path) as f:
            return f.read()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode


class Probe:
    """A test-side node that publishes inputs and records outputs, spinning in a thread."""

    def __init__(self, name: str = 'probe') -> None:
        os.environ.update(graph_env())
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list[tuple[float, Any]]] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # context shut down mid-spin
                return

    def record(self, msg_type: Any, topic: str, qos: Any = 10) -> None:
        self.received[topic] = []

        def cb(msg: Any, topic: str = topic) -> None:
            with self._lock:
                self.received[topic].append((time.monotonic(), msg))
        self.node.create_subscription(msg_type, topic, cb, qos)

    def messages(self, topic: str) -> list[Any]:
        with self._lock:
            return [m for _, m in self.received[topic]]

    def wait_for(self, cond: Callable[[], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            time.sleep(0.05)
        return cond()

    def wait_subscribers(self, publisher: Any, timeout: float = 20.0) -> bool:
        return self.wait_for(lambda: publisher.get_subscription_count() > 0, timeout)

    def close(self) -> None:
        try:
            self.node.destroy_node()
        finally:
            self.rclpy.try_shutdown(context=self.context)
            self._thread.join(timeout=5)


def wait_until(cond: Callable[[], bool], timeout: float,
               proc: Optional[NodeProcess] = None) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        if proc is not None and not proc.alive():
            return False
        time.sleep(0.05)
    return cond()
