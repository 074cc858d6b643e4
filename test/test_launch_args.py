"""The launch file's decisions (``depth_node.ros.launch_args``), checked without launch.

launch / launch_ros are not on PyPI, so ``ros2 launch`` cannot run here; the launch file hands
every argument to :func:`launch_plan` before it starts anything, and these tests run that:
a wrong ``params_file:=`` and ``rviz:=true`` without rviz2 fail before any process starts,
``use_sim_time`` in the user's YAML holds unless the argument is given, rviz2 is found through
a real ament index.
"""

import ast
import os

import pytest

from depth_node.ros.launch_args import (find_rviz2, flag, launch_plan, LaunchArgumentError,
                                        rviz_remappings)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RVIZ = '/opt/ros/kilted/lib/rviz2/rviz2'


def _params(tmp_path, text='/**:\n  ros__parameters:\n    fit:\n      method: lsq\n'):
    path = tmp_path / 'params.yaml'
    path.write_text(text)
    return str(path)


def _args(params_file, **given):
    args = {'namespace': '', 'params_file': params_file, 'model_path': '', 'image': 'image_rect',
            'points': 'points', 'use_sim_time': '', 'rviz': 'false'}
    args.update(given)
    return args


def test_a_wrong_params_file_fails_the_launch_naming_the_path(tmp_path):
    missing = str(tmp_path / 'nope.yaml')
    with pytest.raises(LaunchArgumentError, match="'params_file': does not exist") as err:
        launch_plan(_args(missing), RVIZ)
    assert err.value.value == missing
    other = _params(tmp_path, 'depth_nod:\n  ros__parameters:\n    fit:\n      method: lsq\n')
    with pytest.raises(LaunchArgumentError, match="no section for node 'depth_node'"):
        launch_plan(_args(other), RVIZ)


def test_use_sim_time_and_model_path_override_only_when_given(tmp_path):
    path = _params(tmp_path, '/**:\n  ros__parameters:\n    use_sim_time: true\n')
    plan = launch_plan(_args(path), RVIZ)
    assert plan.parameters == [path]  # the YAML's use_sim_time holds
    assert plan.rviz_use_sim_time is True and not plan.rviz
    plan = launch_plan(_args(path, use_sim_time='False', model_path='/models/da2'), RVIZ)
    assert plan.parameters == [path, {'estimator.model_path': '/models/da2',
                                      'use_sim_time': False}]
    assert plan.rviz_use_sim_time is False
    with pytest.raises(LaunchArgumentError, match="'use_sim_time': must be true or false"):
        launch_plan(_args(path, use_sim_time='maybe'), RVIZ)
    assert [flag('x', v) for v in ('true', '1', 'YES', 'false', '0', ' ')] == \
        [True, True, True, False, False, None]


def test_rviz_without_rviz2_fails_before_anything_starts(tmp_path):
    path = _params(tmp_path)
    with pytest.raises(LaunchArgumentError, match='rviz2 is not installed'):
        launch_plan(_args(path, rviz='true'), None)
    assert launch_plan(_args(path, rviz='true'), RVIZ).rviz
    assert not launch_plan(_args(path), None).rviz  # no rviz asked: rviz2 not needed


def test_rviz2_is_found_through_the_ament_index(tmp_path, monkeypatch):
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))
    assert find_rviz2() is None
    (tmp_path / 'share' / 'ament_index' / 'resource_index' / 'packages').mkdir(parents=True)
    (tmp_path / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'rviz2').touch()
    exe = tmp_path / 'lib' / 'rviz2' / 'rviz2'
    exe.parent.mkdir(parents=True)
    exe.write_text('#!/bin/sh\n')
    assert find_rviz2() is None  # not executable
    exe.chmod(0o755)
    assert find_rviz2() == str(exe)


def test_rviz_remappings_follow_namespace_and_topic_arguments():
    remap = dict(rviz_remappings('/robot/', 'cam/image', '/lidar/points'))
    assert remap['/image_rect'] == '/robot/cam/image'
    assert remap['/points'] == '/lidar/points'
    assert remap['/depth/colored'] == '/robot/depth/colored'
    assert dict(rviz_remappings('', 'image_rect', 'points'))['/depth'] == '/depth'


def test_the_launch_file_starts_everything_from_one_checked_plan():
    """The launch file calls launch_plan before it builds any action, and only there."""
    with open(os.path.join(ROOT, 'launch', 'depth.launch.py')) as f:
        tree = ast.parse(f.read())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    start = functions['_start']
    calls = [n for n in ast.walk(start) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name)]
    names = [c.func.id for c in calls]
    assert names.index('launch_plan') < names.index('Node')
    launch_args = [n for n in ast.walk(functions['generate_launch_description'])
                   if isinstance(n, ast.Call) and getattr(n.func, 'id', '') ==
                   'DeclareLaunchArgument']
    defaults = {c.args[0].value: kw.value for c in launch_args for kw in c.keywords
                if kw.arg == 'default_value' and isinstance(kw.value, ast.Constant)}
    assert defaults['use_sim_time'].value == ''  # not given: the params file decides
