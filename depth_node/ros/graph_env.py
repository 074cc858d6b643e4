"""Environment for a ROS graph that stays on this machine, with the shipped Fast DDS profile.

No rclpy import here: these variables must be set before ``rclpy.init`` (and in the
environment of child processes).
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Optional

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fastdds_profile() -> str:
    """Path of config/fastdds_large_messages.xml (source tree or installed share/)."""
    src = os.path.join(os.path.dirname(_PACKAGE_DIR), 'config', 'fastdds_large_messages.xml')
    if os.path.exists(src):
        return src
    try:
        from ament_index_python.packages import get_package_share_directory
        return os.path.join(get_package_share_directory('depth_node'), 'config',
                            'fastdds_large_messages.xml')
    except Exception:
        raise FileNotFoundError('fastdds_large_messages.xml not found in the source tree or '
                                'the ament index') from None


def private_graph_env(domain: Optional[int] = None,
                      profile: Optional[str] = '') -> dict[str, str]:
    """Variables for a graph that stays on this machine, on a domain of its own.

    ``profile`` '' means the shipped Fast DDS profile; None leaves Fast DDS at its defaults.
    """
    if domain is None:
        domain = 1 + (os.getpid() % 100)  # 1..100: valid with the default port mapping
    env = {
        'ROS_DOMAIN_ID': str(domain),
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
        'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
    }
    major = _rclpy_major()
    if major is None or major < 4:
        env['ROS_LOCALHOST_ONLY'] = '1'  # the Humble spelling (Jazzy warns it is deprecated)
    if profile is not None:
        # Fast DDS 3 (Kilted and newer) reads the first, Fast DDS 2 (Jazzy, Humble) only the
        # second, which Kilted warns is deprecated.
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = profile or fastdds_profile()
        if major is None or major < 9:
            env['FASTRTPS_DEFAULT_PROFILES_FILE'] = env['FASTDDS_DEFAULT_PROFILES_FILE']
    return env


def _rclpy_major() -> Optional[int]:
    """Major version of the installed rclpy, without importing it (None: unknown).

    Humble's is 3, Iron's 4 (ROS_AUTOMATIC_DISCOVERY_RANGE), Jazzy's 7, Kilted's 9 (Fast DDS 3).
    Unknown counts as old: setting every variable works everywhere; newer distros only warn.
    """
    try:
        return int(importlib.metadata.version('rclpy').split('.')[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None
