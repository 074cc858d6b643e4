"""Every bad configuration is a named error: exit 2, ``configuration error: ...``, no traceback.

Corrupt model files (safetensors with random bytes, truncated, a 2^60 header length; a
``pytorch_model.bin`` holding a pickle payload), parameters filed under another node name,
options the built-in estimator would ignore, and errors that used to name the wrong parameter
(a missing ``keyframes.model_path``, an ``.onnx`` given to the torch estimator).
"""

import os
import pickle
import shutil
import struct
import subprocess

import numpy as np
import pytest

from graph import ENV

from depth_node.core.errors import ConfigError
from depth_node.estimators import build_estimator
from depth_node.estimators.base import EstimatorConfig, SHIPPED_STUDENT
from depth_node.ros.param_files import check_params_files
from depth_node.ros.declare import teacher_error
from depth_node.testing.nodeproc import node_executable, write_params


class _Payload:
    """Pickles to a call of ``os.system``: what a malicious ``pytorch_model.bin`` holds."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def _student_with(tmp_path, name, payload, weights='model.safetensors'):
    folder = tmp_path / name
    shutil.copytree(SHIPPED_STUDENT, folder)
    os.remove(folder / 'model.safetensors')
    (folder / weights).write_bytes(payload)
    return str(folder)


@pytest.mark.parametrize('name, payload', [
    ('random', bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))),
    ('truncated', (SHIPPED_STUDENT / 'model.safetensors').read_bytes()[:100_000]),
    ('header_2_60', struct.pack('<Q', 2 ** 60) + b'{}'),
])
def test_corrupt_safetensors_is_a_config_error_naming_model_path(tmp_path, name, payload):
    path = _student_with(tmp_path, name, payload)
    with pytest.raises(ConfigError, match='SafetensorError') as err:
        build_estimator(EstimatorConfig(model_path=path))
    assert err.value.name == 'estimator.model_path' and err.value.value == path


def test_pickle_payload_is_refused_unrun_and_named(tmp_path):
    marker = tmp_path / 'ran'
    path = _student_with(tmp_path, 'pickled', pickle.dumps(_Payload(marker)),
                         weights='pytorch_model.bin')
    with pytest.raises(ConfigError, match='holds more than tensors') as err:
        build_estimator(EstimatorConfig(model_path=path))
    assert err.value.name == 'estimator.model_path' and not marker.exists()
    assert 'weights_only` set to `False' not in str(err.value)  # no advice to run it


def test_onnx_file_for_the_torch_estimator_names_model_path_and_the_type(tmp_path):
    onnx = tmp_path / 'model.onnx'
    onnx.write_bytes(b'not a model')
    with pytest.raises(ConfigError, match='depth_anything_onnxruntime') as err:
        build_estimator(EstimatorConfig(model_path=str(onnx)))
    assert err.value.name == 'estimator.model_path'
    garbage = tmp_path / 'weights.pth'  # no encoder in the name: the file is named first
    # Random bytes, and bytes that make the unpickler fetch a memo entry it never stored
    # (BINGET 223: a KeyError inside torch, which random bytes hit now and then).
    for content in (os.urandom(256), b'h\xdf' + bytes(254)):
        garbage.write_bytes(content)
        with pytest.raises(ConfigError, match='weights-only PyTorch checkpoint') as err:
            build_estimator(EstimatorConfig(model_path=str(garbage)))
        assert err.value.name == 'estimator.model_path'


def test_options_of_the_torch_estimator_are_refused_by_name():
    with pytest.raises(ConfigError, match='torch takes no options; got bogus, threads') as err:
        build_estimator(EstimatorConfig(options={'threads': 2, 'bogus': 1}))
    assert err.value.name == 'estimator.options'


def test_params_filed_under_another_node_name(tmp_path):
    other = tmp_path / 'other.yaml'
    other.write_text('depth_nod:\n  ros__parameters:\n    fit:\n      method: lsq\n')
    with pytest.raises(ConfigError, match=r"no section for node 'depth_node' \(sections: "
                                          r'depth_nod;') as err:
        check_params_files([str(other)], 'depth_node')
    assert err.value.value == str(other)
    check_params_files([str(other)], 'depth_nod')
    shared = tmp_path / 'shared.yaml'
    shared.write_text('/**:\n  ros__parameters:\n    use_sim_time: true\n')
    check_params_files([str(shared)], 'depth_node')


def test_teacher_errors_name_the_keyframes_parameter():
    for given, named in (('estimator.model_path', 'keyframes.model_path'),
                         ('estimator.precision', 'keyframes.precision'),
                         ('estimator.options.ensemble_size', 'keyframes.ensemble_size'),
                         ('estimator.options.ensembling_kwargs.max_res', 'keyframes.options'),
                         ('fit.method', 'fit.method')):
        exc = teacher_error(ConfigError(given, 'must exist', 'x'))
        assert exc.name == named and exc.rule == 'must exist' and exc.value == 'x'


def _run_node(tmp_path, params=None, args=()):
    if params is not None:
        args = ('--params-file', write_params(str(tmp_path / 'params.yaml'), params), *args)
    out = subprocess.run([node_executable(), '--ros-args', *args], env=dict(os.environ, **ENV),
                         capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout + out.stderr


@pytest.mark.parametrize('case', ['corrupt model', 'other node name', 'keyframes path',
                                  'range', 'yaml syntax', 'missing params file'])
def test_node_exits_2_naming_the_parameter(tmp_path, case):
    if case == 'corrupt model':
        path = _student_with(tmp_path, 'corrupt', struct.pack('<Q', 2 ** 60) + b'{}')
        code, text = _run_node(tmp_path, {'estimator.model_path': path})
        name = "parameter 'estimator.model_path': cannot be loaded by transformers"
    elif case == 'other node name':
        other = tmp_path / 'other.yaml'
        other.write_text('depth_nod:\n  ros__parameters:\n    fit:\n      method: lsq\n')
        code, text = _run_node(tmp_path, args=('--params-file', str(other)))
        name = "parameter '--params-file': has no section for node 'depth_node'"
    elif case == 'keyframes path':
        code, text = _run_node(tmp_path, {'keyframes.enable': True,
                                          'keyframes.model_path': str(tmp_path / 'none')})
        name = "parameter 'keyframes.model_path'"
    elif case == 'yaml syntax':
        bad = tmp_path / 'bad.yaml'
        bad.write_text('/**:\n  ros__parameters:\n    fit: {method: [\n')
        code, text = _run_node(tmp_path, args=('--params-file', str(bad)))
        name = f"failed to initialize rcl: Couldn't parse params file: '--params-file {bad}'"
    elif case == 'missing params file':
        missing = tmp_path / 'missing.yaml'
        code, text = _run_node(tmp_path, args=('--params-file', str(missing)))
        name = f"failed to initialize rcl: Couldn't parse params file: '--params-file {missing}'"
    else:  # the README's example, word for word (rclpy's own text used to be wrapped in it)
        code, text = _run_node(tmp_path, {'cloud.stride': 0})
        name = "parameter 'cloud.stride': must be in [1, 64] (got 0)\n"
    assert code == 2 and 'Traceback' not in text, text
    assert f'depth_node: configuration error: {name}' in text, text
