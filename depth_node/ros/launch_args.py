"""What ``launch/depth.launch.py`` decides from its arguments, without launch or launch_ros.

The launch file performs its arguments and hands them to :func:`launch_plan`, which checks
every one before anything starts - so a wrong ``params_file:=`` or ``rviz:=true`` without rviz2
fails the launch with the reason instead of leaving a node on its defaults, or a started node
running after launch gave up - and says what to start:

* the node's parameters: the params file, then only the overrides that were given
  (``model_path:=``, ``use_sim_time:=``), so a ``use_sim_time`` in the user's YAML holds unless
  the launch argument is set;
* whether rviz2 starts, with its remappings and ``use_sim_time`` (the argument, else the params
  file's, else false).

launch and launch_ros are not on PyPI; these functions are what the tests can run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from depth_node.core.errors import DepthNodeError
from depth_node.ros.param_files import load_params_file

_TRUE, _FALSE = ('true', '1', 'yes', 'on'), ('false', '0', 'no', 'off')

# Topics of config/depth.rviz: (launch argument or None, name in the .rviz file without the
# leading slash, the node's relative name).
RVIZ_TOPICS = (('image', 'image_rect'), ('points', 'points'), (None, 'depth'),
               (None, 'depth/colored'), (None, 'depth/points'), (None, 'depth/relative'),
               (None, 'depth/camera_info'), (None, 'keyframe/depth'),
               (None, 'keyframe/colored'))


class LaunchArgumentError(DepthNodeError):
    """A launch argument that cannot work; the message names it and the value."""

    def __init__(self, name: str, rule: str, value: object) -> None:
        self.name, self.rule, self.value = name, rule, value
        super().__init__(f"launch argument '{name}': {rule} (got {value!r})")


def flag(name: str, text: str) -> Optional[bool]:
    """A boolean launch argument: True / False, None when empty (not given)."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if not value:
        return None
    raise LaunchArgumentError(name, 'must be true or false', text)


@dataclass
class LaunchPlan:
    """What the launch file starts."""

    parameters: list[Any]  # of the node: the params file, then a dict of overrides
    rviz: bool = False
    rviz_remappings: list[tuple[str, str]] = field(default_factory=list)
    rviz_use_sim_time: bool = False


def launch_plan(args: dict[str, str], rviz2_executable: Optional[str] = None,
                node_name: str = 'depth_node') -> LaunchPlan:
    """Check the performed launch arguments and say what to start.

    Parameters
    ----------
    args
        ``params_file``, ``model_path``, ``use_sim_time``, ``rviz``, ``namespace``, ``image``,
        ``points`` as the launch file performed them ('' = not given, for the optional ones).
    rviz2_executable
        Path of the rviz2 executable (None: not installed), as :func:`find_rviz2` gives it.

    Raises
    ------
    LaunchArgumentError
        A params file that does not exist, is not YAML or has no section for the node; a
        flag that is not true/false; ``rviz:=true`` without rviz2.
    """
    path = os.path.expanduser(args.get('params_file', ''))
    if not os.path.isfile(path):
        raise LaunchArgumentError('params_file', 'does not exist or is not a file', path)
    try:
        rclpy_values = load_params_file(path, node_name, keep_rclpy=True)
    except DepthNodeError as exc:
        raise LaunchArgumentError('params_file', str(exc), path) from None
    overrides: dict[str, Any] = {}
    if args.get('model_path'):
        overrides['estimator.model_path'] = args['model_path']
    sim_time = flag('use_sim_time', args.get('use_sim_time', ''))
    if sim_time is not None:
        overrides['use_sim_time'] = sim_time
    rviz = bool(flag('rviz', args.get('rviz', '')))
    if rviz and rviz2_executable is None:
        raise LaunchArgumentError('rviz', 'rviz2 is not installed (apt install '
                                  'ros-$ROS_DISTRO-rviz2), so nothing was started', 'true')
    if sim_time is None:
        sim_time = bool(rclpy_values.get('use_sim_time', False))
    return LaunchPlan(parameters=[path, overrides] if overrides else [path], rviz=rviz,
                      rviz_remappings=rviz_remappings(args.get('namespace', ''),
                                                      args.get('image', 'image_rect'),
                                                      args.get('points', 'points')),
                      rviz_use_sim_time=sim_time)


def rviz_remappings(namespace: str, image: str, points: str) -> list[tuple[str, str]]:
    """config/depth.rviz's topics remapped to where ``namespace``, ``image`` and ``points``
    put the node's topics."""
    namespace = namespace.strip('/')
    given = {'image': image, 'points': points}

    def resolve(name: str) -> str:
        return name if name.startswith('/') else '/' + '/'.join(
            part for part in (namespace, name) if part)
    return [('/' + name, resolve(given[argument] if argument else name))
            for argument, name in RVIZ_TOPICS]


def find_rviz2() -> Optional[str]:
    """The rviz2 executable as ``launch_ros`` finds it (ament index: ``lib/rviz2/rviz2``)."""
    try:
        from ament_index_python.packages import get_package_prefix, PackageNotFoundError
    except ImportError:
        return None
    try:
        prefix = get_package_prefix('rviz2')
    except PackageNotFoundError:
        return None
    exe = os.path.join(prefix, 'lib', 'rviz2', 'rviz2')
    return exe if os.access(exe, os.X_OK) else None


__all__ = ['find_rviz2', 'flag', 'launch_plan', 'LaunchArgumentError', 'LaunchPlan',
           'RVIZ_TOPICS', 'rviz_remappings']
