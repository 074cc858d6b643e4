"""The deskew's parameters (lidar.deskew, lidar.time_*, motion.*): defaults, and bad values
that fail at start-up naming the parameter."""

import os
import subprocess

import numpy as np
import pytest

from graph import ENV

from depth_node.core.errors import ConfigError
from depth_node.ros.params import build_config
from depth_node.testing.nodeproc import node_executable, write_params


def test_defaults_deskew_with_detected_time_fields():
    c = build_config({})
    assert c.runner.deskew.enable and c.runner.deskew.max_extrapolation == 0.25
    m = c.motion
    assert (m.odom_frame, m.base_frame, m.odometry_topic) == ('odom', 'base_link', '')
    assert (m.time_field.field, m.time_field.unit, m.time_field.reference) == ('', '', '')
    c = build_config({'lidar.deskew': False, 'lidar.time_field': 'stamp_us',
                      'lidar.time_unit': 'us', 'motion.lidar_translation': [1.0, 0.0, 1.8],
                      'motion.lidar_rotation': [0.0, 0.0, np.pi / 2]})
    assert not c.runner.deskew.enable and c.motion.time_field.unit == 'us'
    np.testing.assert_allclose(c.motion.lidar_in_base.rotation @ [1, 0, 0], [0, 1, 0],
                               atol=1e-12)


@pytest.mark.parametrize('name, value, rule', [
    ('lidar.time_unit', 'ms', "must be one of '', 'ns', 'us', 's'"),
    ('lidar.time_reference', 'gps', "must be one of '', 'sweep', 'absolute'"),
    ('lidar.time_field', 't ', 'without spaces'),
    ('motion.max_extrapolation', -0.1, 'must be in [0.0, 10.0]'),
    ('motion.lidar_rotation', [0.0, 1.0], 'rotation must be'),
    ('motion.lidar_translation', [0.0, 1.0], 'translation must be'),
    ('motion.base_frame', '/', 'must name a tf2 frame'),
    ('lidar.deskew', 'yes', 'must be of type bool'),
])
def test_bad_values_name_the_parameter(name, value, rule):
    with pytest.raises(ConfigError, match=f"parameter '{name}'") as info:
        build_config({name: value})
    assert rule in str(info.value)


def test_node_exits_2_naming_a_bad_time_unit(tmp_path):
    params = write_params(str(tmp_path / 'p.yaml'), {'lidar.time_unit': 'ms'})
    out = subprocess.run([node_executable(), '--ros-args', '--params-file', params],
                         env=dict(os.environ, **ENV), capture_output=True, text=True,
                         timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 2 and 'Traceback' not in text, text
    assert "depth_node: configuration error: parameter 'lidar.time_unit'" in text, text
