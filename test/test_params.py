"""Parameter table, validation gate and config/depth.yaml."""

import os

import pytest
import yaml

from depth_node.core.errors import ConfigError
from depth_node.ros.param_files import params_yaml
from depth_node.ros.params import build_config, changed_read_only, PARAMETERS

pytestmark = pytest.mark.jazzy  # also run on ROS 2 Jazzy (scripts/test.sh)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORACLE = {'estimator.type': 'depth_node.testing.oracle:DisparityOracle'}


def _flatten(tree, prefix=''):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + k + '.'))
        else:
            out[prefix + k] = v
    return out


def test_yaml_lists_every_parameter_with_its_default():
    with open(os.path.join(ROOT, 'config', 'depth.yaml')) as f:
        text = f.read()
    values = _flatten(yaml.safe_load(text)['/**']['ros__parameters'])
    # deprecated ones are accepted but not shipped (the file would trigger their warning)
    assert values == {p.name: p.default for p in PARAMETERS if not p.deprecated}
    assert text == params_yaml(), 'regenerate: python -m depth_node.ros.params > config/depth.yaml'


def test_defaults_are_valid_and_leave_model_and_input_size_to_the_estimator():
    cfg = build_config({})
    # '' = the shipped student, 0 = the model's own input size (estimators.registry)
    assert cfg.estimator.model_path == '' and cfg.estimator.input_size == 0
    assert cfg.pipeline.cloud_stride == 2
    assert cfg.extrinsic.rotation.shape == (3, 3)
    assert build_config({'estimator.model_path': '/models/da2'}).estimator.model_path \
        == '/models/da2'


@pytest.mark.parametrize('name, value, rule', [
    ('estimator.input_size', 7, "must be 0 .the model's own. or >= 14"),
    ('estimator.precision', 'fp8', 'one of'),
    ('estimator.device', 'gpu', "'cpu', 'cuda'"),
    ('estimator.options', '[1]', 'JSON object'),
    ('estimator.options', '{bad', 'JSON object'),
    ('lidar.max_age', -1.0, r'in \[0.0'),
    ('lidar.max_age', 'x', 'type float'),
    ('cloud.stride', 0, r'in \[1'),
    ('cloud.stride', 2.5, 'type int'),
    ('extrinsic.rotation', [0.0, 0.0], 'rotation must be'),
    ('extrinsic.translation', [0.0], 'translation must be'),
    ('output.colormap_max', 0.5, 'colormap_min'),
    ('lidar.max_depth', 0.3, 'lidar.min_depth'),
    ('fit.method', 'ransac', 'one of'),
    ('fit.see_through_window', 4, 'odd'),
    ('filter.gate', 0.0, r'in \[0.1'),
    ('no.such_param', 1, 'not a parameter'),
])
def test_bad_values_name_the_parameter(name, value, rule):
    values = {'estimator.model_path': '/m'}
    values[name] = value
    with pytest.raises(ConfigError, match=rule) as info:
        build_config(values)
    assert info.value.name == name
    assert name in str(info.value)


def test_custom_estimator_needs_no_model_path_and_rpy_accepted():
    cfg = build_config({**ORACLE, 'extrinsic.rotation': [0.0, 0.1, 0.2]})
    assert cfg.estimator.type.endswith('DisparityOracle')


def test_read_only_detection():
    assert changed_read_only(['fit.min_points', 'estimator.device']) == 'estimator.device'
    assert changed_read_only(['fit.min_points']) is None
