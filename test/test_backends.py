"""Tests of the deployment backends: ONNX Runtime, TensorRT (what runs without it), selection.

* ONNX Runtime: same output as the torch estimator on the same weights, same pre-processing
  (the very function), metadata -> OutputSpec, fixed-size graphs, errors.
* TensorRT: profiles, engine-cache keys, the cache (with a fake builder), GPU pre-processing
  (run on the CPU), the type check against ``tensorrt-stubs``; building and running an engine
  only where ``tensorrt`` and CUDA are present (skipped otherwise, saying which is missing).
* Selection: ``auto`` order and fallback, the one log line, registry names.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='the backends need torch')
pytest.importorskip('transformers', reason='the backends need transformers')
pytest.importorskip('onnxruntime', reason='pip install onnxruntime')
pytest.importorskip('onnxscript', reason='the export needs onnxscript')
onnx = pytest.importorskip('onnx', reason='pip install onnx')
# torch.export's own deprecation noise while exporting
pytestmark = pytest.mark.filterwarnings('ignore:.*LeafSpec:FutureWarning')

from depth_node.core.align import OutputKind, OutputSpec  # noqa: E402
from depth_node.core.errors import ConfigError, DepthNodeError  # noqa: E402
from depth_node.estimators import backends, build_estimator, EstimatorConfig  # noqa: E402
from depth_node.estimators.depth_anything import DepthAnythingEstimator  # noqa: E402
from depth_node.estimators.onnx_model import (  # noqa: E402
    onnx_digest, OnnxModelInfo, read_onnx_info)
from depth_node.estimators.onnxruntime_backend import (  # noqa: E402
    default_providers, OnnxRuntimeEstimator)
from depth_node.testing.official import scene_image  # noqa: E402
from depth_node.estimators.registry import registered  # noqa: E402
from depth_node.estimators.preprocess import network_input_size, preprocess_on_device  # noqa
from depth_node.estimators.tensorrt_backend import tensorrt_missing, TensorRTEstimator  # noqa
from depth_node.estimators.tensorrt_engine import (  # noqa: E402
    EngineCache, EngineKey, input_profile, InputProfile, load_or_build)

from onnx_models import tiny_folder, tiny_onnx  # noqa: E402  (test/ is on sys.path)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_SIZES = [(480, 640), (518, 518), (300, 700)]


def _max_rel(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / np.abs(expected).max())


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return tiny_folder(tmp_path_factory)


@pytest.fixture(scope='module')
def dynamic_onnx(tmp_path_factory):
    return tiny_onnx(tmp_path_factory, batch=None)


@pytest.fixture(scope='module')
def torch_estimator(folder):
    return DepthAnythingEstimator(folder)


@pytest.fixture(scope='module')
def ort_estimator(dynamic_onnx):
    return OnnxRuntimeEstimator(dynamic_onnx)


# ------------------------------------------------------------------------------------------------
# ONNX Runtime


@pytest.mark.parametrize('size', IMAGE_SIZES, ids=lambda s: f'{s[1]}x{s[0]}')
def test_onnxruntime_predicts_what_torch_predicts(torch_estimator, ort_estimator, size):
    rgb = scene_image(*size, seed=size[0])
    got = ort_estimator.predict(rgb)
    assert got.shape == size and got.dtype == np.float32
    assert _max_rel(got, torch_estimator.predict(rgb)) <= 1e-4


def test_onnxruntime_shares_the_torch_estimators_processing(torch_estimator, ort_estimator):
    # The same functions, not copies: a change to the official pre-processing reaches both.
    assert OnnxRuntimeEstimator.preprocess is DepthAnythingEstimator.preprocess
    assert OnnxRuntimeEstimator.predict is DepthAnythingEstimator.predict
    rgb = scene_image(300, 400)
    assert torch.equal(ort_estimator.preprocess(rgb), torch_estimator.preprocess(rgb))
    assert ort_estimator.output == torch_estimator.output == OutputSpec(OutputKind.DISPARITY)
    assert ort_estimator.providers == ['CPUExecutionProvider']


_WITHOUT_TRANSFORMERS = """
import sys
sys.modules['transformers'] = None  # any 'import transformers' now raises ImportError
import numpy as np
from depth_node.estimators import build_estimator, EstimatorConfig
from depth_node.estimators.onnxruntime_backend import OnnxRuntimeEstimator
import depth_node.estimators.tensorrt_backend  # noqa: F401 - imports without transformers too
rgb = np.load(sys.argv[2])
direct = OnnxRuntimeEstimator(sys.argv[1]).predict(rgb)
built = build_estimator(EstimatorConfig(type='depth_anything_onnxruntime', model_path=sys.argv[1],
                                        input_size=518))
np.save(sys.argv[3], np.stack([direct, built.predict(rgb)]))
loaded = sorted(m for m, mod in sys.modules.items() if mod is not None
                and m.split('.')[0] in ('transformers', 'diffusers'))
print('LOADED', loaded)
"""


def test_onnxruntime_backend_runs_without_transformers(dynamic_onnx, ort_estimator, tmp_path):
    """An ONNX deployment needs no transformers: the ONNX Runtime backend imports and predicts
    (and the TensorRT backend imports) in a fresh interpreter where importing transformers
    fails, with the same numbers as in this one."""
    rgb = scene_image(300, 400, seed=7)
    np.save(tmp_path / 'rgb.npy', rgb)
    out = subprocess.run([sys.executable, '-c', _WITHOUT_TRANSFORMERS, str(dynamic_onnx),
                          str(tmp_path / 'rgb.npy'), str(tmp_path / 'pred.npy')],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'LOADED []' in out.stdout
    direct, built = np.load(tmp_path / 'pred.npy')
    np.testing.assert_array_equal(direct, ort_estimator.predict(rgb))
    np.testing.assert_array_equal(built, direct)


def test_onnxruntime_metric_model_predicts_metric_depth(tmp_path_factory):
    path = tiny_onnx(tmp_path_factory, 'metric', height=266, width=350)
    est = OnnxRuntimeEstimator(path, input_size=266)
    assert est.output == OutputSpec(OutputKind.DEPTH, metric=True)
    reference = DepthAnythingEstimator(tiny_folder(tmp_path_factory, 'metric'), input_size=266)
    rgb = scene_image(300, 400)  # -> network 266 x 350
    got = est.predict(rgb)
    assert _max_rel(got, reference.predict(rgb)) <= 1e-4
    assert (got > 0).all() and (got < 20).all()


def test_onnxruntime_fixed_graph_names_the_size_it_needs(tmp_path_factory):
    est = OnnxRuntimeEstimator(tiny_onnx(tmp_path_factory, 'metric', height=266, width=350),
                               input_size=266)
    assert est.info.fixed_size == (266, 350)
    assert est.predict(scene_image(300, 400)).shape == (300, 400)
    with pytest.raises(DepthNodeError, match='--network-size 266x266'):
        est.predict(scene_image(300, 300))


@pytest.mark.parametrize('kwargs, name', [
    (dict(optimization='max'), 'estimator.options.optimization'),
    (dict(threads=-1), 'estimator.options.threads'),
    (dict(precision='fp8'), 'estimator.precision'),
    (dict(device='gpu'), 'estimator.device'),
])
def test_onnxruntime_refuses_bad_settings(dynamic_onnx, kwargs, name):
    with pytest.raises(ConfigError) as err:
        OnnxRuntimeEstimator(dynamic_onnx, **kwargs)
    assert err.value.name == name


def test_onnxruntime_refuses_what_is_not_an_onnx_file(folder, tmp_path):
    with pytest.raises(ConfigError, match='export_onnx'):
        OnnxRuntimeEstimator(folder)
    with pytest.raises(ConfigError, match='does not exist'):
        OnnxRuntimeEstimator(tmp_path / 'missing.onnx')
    (tmp_path / 'bad.onnx').write_bytes(b'not a model')
    with pytest.raises(ConfigError, match='cannot load'):
        OnnxRuntimeEstimator(tmp_path / 'bad.onnx')


def test_providers_prefer_tensorrt_then_cuda_then_cpu():
    everything = ['TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider']
    assert default_providers('cpu', available=everything) == ['CPUExecutionProvider']
    chosen = default_providers('cuda:1', 'fp16', '/tmp/engines', available=everything)
    assert [p if isinstance(p, str) else p[0] for p in chosen] == everything
    assert chosen[0][1] == {'device_id': 1, 'trt_fp16_enable': True,
                            'trt_engine_cache_enable': True,
                            'trt_engine_cache_path': '/tmp/engines'}
    assert default_providers('cuda', available=['CPUExecutionProvider']) == \
        ['CPUExecutionProvider']


def test_model_info_from_graph(caplog):
    with caplog.at_level(logging.WARNING):
        info = OnnxModelInfo.from_graph({}, 'x', ['N', 3, 518, 686], 'y', 'foreign.onnx')
    assert info.output == OutputSpec(OutputKind.DISPARITY) and 'no depth_node metadata' in \
        caplog.text
    assert (info.batch, info.fixed_size) == (None, (518, 686))
    metric = OnnxModelInfo.from_graph({'depth_node.output_kind': 'depth',
                                       'depth_node.metric': 'true'}, 'x', [1, 3, 'h', 'w'], 'y')
    assert metric.output == OutputSpec(OutputKind.DEPTH, True) and metric.fixed_size is None
    with pytest.raises(ConfigError, match=r'\[B, 3, H, W\]'):
        OnnxModelInfo.from_graph({}, 'x', [1, 518, 518, 3], 'y')
    with pytest.raises(ConfigError, match='metric'):
        OnnxModelInfo.from_graph({'depth_node.output_kind': 'depth',
                                  'depth_node.metric': 'yes'}, 'x', [1, 3, 2, 2], 'y')


def test_onnx_digest_covers_external_weights(dynamic_onnx, tmp_path):
    model = onnx.load(str(dynamic_onnx))
    path = tmp_path / 'external.onnx'
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location='external.onnx.data', size_threshold=0)
    before = onnx_digest(path)
    assert before == onnx_digest(path) != onnx_digest(dynamic_onnx)
    data = bytearray((tmp_path / 'external.onnx.data').read_bytes())
    data[-1] ^= 0xFF  # one weight changes, the graph file does not
    (tmp_path / 'external.onnx.data').write_bytes(bytes(data))
    assert onnx_digest(path) != before
    assert read_onnx_info(path).output == OutputSpec(OutputKind.DISPARITY)


# ------------------------------------------------------------------------------------------------
# TensorRT, without the library


def test_profile_for_one_camera_is_one_shape():
    profile = input_profile([(480, 640)])
    assert profile.min == profile.opt == profile.max == (1, 3, 518, 686)


def test_profile_spans_several_cameras_tuned_for_the_first():
    profile = input_profile([(480, 640), (720, 1280), (640, 480)], max_batch=2)
    assert profile.opt == (1, 3, 518, 686)
    assert profile.min == (1, 3, 518, 518)
    assert profile.max == (2, 3, 686, 924)
    assert profile.contains((2, 3, 518, 924)) and not profile.contains((1, 3, 504, 686))
    assert profile.describe() == '1x3x518x518 .. 1x3x518x686 .. 2x3x686x924'


def test_default_profile_covers_square_to_two_to_one():
    profile = input_profile([])
    assert profile.opt == (1, 3, 518, 686)
    assert profile.min == (1, 3, 518, 518) and profile.max == (1, 3, 1036, 1036)
    for height, width in [(480, 640), (640, 480), (1080, 1920), (500, 500)]:
        assert profile.contains((1, 3) + network_input_size(height, width))


def test_profile_of_a_fixed_graph():
    assert input_profile([], fixed=(518, 686)).max == (1, 3, 518, 686)
    assert input_profile([(480, 640)], fixed=(518, 686)).opt == (1, 3, 518, 686)
    with pytest.raises(ConfigError, match='fixed input size 518x686'):
        input_profile([(480, 640), (720, 1280)], fixed=(518, 686))


@pytest.mark.parametrize('sizes, batch', [([(480,)], 1), ([(480, 0)], 1), ([(True, 3)], 1),
                                          ([(480, 640)], 0)])
def test_profile_refuses_bad_settings(sizes, batch):
    with pytest.raises(ConfigError, match='image_sizes|max_batch'):
        input_profile(sizes, max_batch=batch)


def test_profile_must_be_ordered():
    with pytest.raises(DepthNodeError, match='min <= opt <= max'):
        InputProfile((1, 3, 518, 700), (1, 3, 518, 686), (1, 3, 518, 686))


def _key(**changes) -> EngineKey:
    key = EngineKey('ab' * 32, '10.13.0.35', 'Orin sm_87', 'fp16', input_profile([(480, 640)]),
                    1024)
    return dataclasses.replace(key, **changes)


@pytest.mark.parametrize('field, value', [
    ('onnx_sha256', 'cd' * 32), ('tensorrt_version', '10.14.1'), ('gpu', 'RTX 4090 sm_89'),
    ('precision', 'fp32'), ('profile', input_profile([(720, 1280)])), ('workspace_mb', 2048),
    ('calibration_sha256', 'ef' * 32),
])
def test_every_part_of_the_engine_key_changes_its_file(field, value):
    assert _key().digest() == _key().digest()
    assert _key(**{field: value}).file_name('da') != _key().file_name('da')


def test_engine_file_name():
    assert re.fullmatch(r'da2_vits\.fp16\.[0-9a-f]{16}\.engine', _key().file_name('da2_vits'))


class _FakeTensorRT:
    """Stands in for building (counts builds) and deserialising (None = refused)."""

    def __init__(self):
        self.builds = 0
        self.refuse = set()

    def build(self) -> bytes:
        self.builds += 1
        return b'engine %d' % self.builds

    def deserialize(self, blob: bytes):
        return None if blob in self.refuse else ('engine', blob)


def test_cache_builds_once_then_loads(tmp_path):
    cache, fake, key = EngineCache(tmp_path / 'engines'), _FakeTensorRT(), _key()
    engine, built = load_or_build(cache, key, 'da', fake.build, fake.deserialize)
    assert built and engine == ('engine', b'engine 1')
    engine, built = load_or_build(cache, key, 'da', fake.build, fake.deserialize)
    assert not built and engine == ('engine', b'engine 1') and fake.builds == 1
    files = sorted(p.name for p in (tmp_path / 'engines').iterdir())
    assert files == [key.file_name('da'), key.file_name('da')[:-len('.engine')] + '.json']
    assert '"precision": "fp16"' in cache.path(key, 'da').with_suffix('.json').read_text()


def test_cache_rebuilds_when_the_key_changes_or_the_file_is_refused(tmp_path):
    cache, fake = EngineCache(tmp_path), _FakeTensorRT()
    load_or_build(cache, _key(), 'da', fake.build, fake.deserialize)
    _, built = load_or_build(cache, _key(tensorrt_version='10.14'), 'da', fake.build,
                             fake.deserialize)
    assert built and fake.builds == 2
    fake.refuse.add(b'engine 1')  # e.g. a file written by another TensorRT build
    engine, built = load_or_build(cache, _key(), 'da', fake.build, fake.deserialize)
    assert built and engine == ('engine', b'engine 3')
    assert cache.load(_key(), 'da') == b'engine 3'
    assert not list(tmp_path.glob('*.tmp'))


def test_cache_raises_when_a_fresh_engine_does_not_load(tmp_path):
    fake = _FakeTensorRT()
    fake.refuse.add(b'engine 1')
    with pytest.raises(RuntimeError, match='just built'):
        load_or_build(EngineCache(tmp_path), _key(), 'da', fake.build, fake.deserialize)


@pytest.mark.parametrize('size', [(480, 640), (1080, 1920), (300, 200), (518, 518)],
                         ids=lambda s: f'{s[1]}x{s[0]}')
def test_gpu_preprocessing_matches_the_official_one(torch_estimator, size):
    """Run on the CPU here: torch's bicubic vs OpenCV's, float32 vs float64."""
    rgb = scene_image(*size, seed=1)
    expected = torch_estimator.preprocess(rgb)  # [1, 3, h, w]
    got = preprocess_on_device(rgb, 518, 'cpu')
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert float((got - expected).abs().max()) < 2e-3  # of a range of about 4.6


def test_tensorrt_estimator_needs_cuda(dynamic_onnx, folder, tmp_path):
    with pytest.raises(ConfigError, match="cuda"):
        TensorRTEstimator(dynamic_onnx, device='cpu', engine_cache=str(tmp_path))
    with pytest.raises(ConfigError, match='export_onnx'):
        TensorRTEstimator(folder, engine_cache=str(tmp_path))
    with pytest.raises(ConfigError, match='calibration_images'):
        TensorRTEstimator(dynamic_onnx, precision='int8', engine_cache=str(tmp_path))
    with pytest.raises(ConfigError, match='workspace_mb'):
        TensorRTEstimator(dynamic_onnx, workspace_mb=0, engine_cache=str(tmp_path))


def _tensorrt_missing() -> str:
    """Why TensorRT cannot run here ('' when it can)."""
    return tensorrt_missing() or ('' if torch.cuda.is_available() else 'torch sees no CUDA device')


@pytest.mark.skipif(bool(_tensorrt_missing()), reason=_tensorrt_missing())
@pytest.mark.parametrize('precision, tolerance', [('fp32', 1e-2), ('fp16', 5e-2)])
def test_tensorrt_engine_predicts_what_torch_predicts(dynamic_onnx, torch_estimator, tmp_path,
                                                      precision, tolerance):
    kwargs = dict(precision=precision, engine_cache=str(tmp_path), image_sizes=IMAGE_SIZES)
    est = TensorRTEstimator(dynamic_onnx, **kwargs)
    assert est.built and est.engine_path.is_file()
    assert est.output == OutputSpec(OutputKind.DISPARITY)
    for size in IMAGE_SIZES:
        rgb = scene_image(*size)
        assert _max_rel(est.predict(rgb), torch_estimator.predict(rgb)) <= tolerance
    again = TensorRTEstimator(dynamic_onnx, **kwargs)
    assert not again.built and again.engine_path == est.engine_path


def _repaired_tensorrt_stubs(folder) -> str:
    """Copy tensorrt-stubs where mypy can use them, repairing what does not parse.

    tensorrt-stubs 10.13.0.35.1 ships ``tensorrt/__init__.pyi`` without ``py.typed`` (so mypy
    ignores it where it is installed), parameters named ``in`` (a keyword: a syntax error) and
    a non-default parameter after default ones (``add_scale_nd``).
    """
    dist = importlib.metadata.distribution('tensorrt-stubs')
    for entry in dist.files or ():
        if entry.suffix == '.pyi' and entry.parts[0] in ('tensorrt', 'tensorrt_bindings'):
            text = entry.locate().read_text(encoding='utf-8')
            text = re.sub(r'(def \w+\([^)]*?)\bin: ', r'\1in_: ', text)
            text = text.replace(', channel_axis: int)', ', channel_axis: int = ...)')
            target = folder / entry.parts[0] / entry.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding='utf-8')
    return str(folder)


_MYPY_CONFIG = """\
[mypy]
follow_imports = silent
warn_unused_ignores = True
# The stubs' own inconsistencies (a module attribute `bool` shadowing the builtin, ...).
[mypy-tensorrt.*,tensorrt_bindings.*]
ignore_errors = True
[mypy-tensorrt_libs]
ignore_missing_imports = True
# Not followed, to keep this test fast (about 3 s instead of 35): the point is the TensorRT API.
[mypy-torch.*,transformers.*,cv2.*,onnx.*,onnxruntime.*,depth_node.estimators.depth_anything]
follow_imports = skip
"""


@pytest.mark.skipif(importlib.util.find_spec('mypy') is None, reason='mypy is not installed')
def test_tensorrt_backend_type_checks_against_the_stubs(tmp_path):
    try:
        importlib.metadata.distribution('tensorrt-stubs')
    except importlib.metadata.PackageNotFoundError:
        pytest.skip('tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)')
    config = tmp_path / 'mypy.ini'
    config.write_text(_MYPY_CONFIG)
    env = dict(os.environ, MYPYPATH=_repaired_tensorrt_stubs(tmp_path / 'stubs'))
    out = subprocess.run(
        [sys.executable, '-m', 'mypy', '--strict', '--config-file', str(config),
         '--cache-dir', str(tmp_path / 'cache'), 'depth_node/estimators/tensorrt_backend.py'],
        cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# ------------------------------------------------------------------------------------------------
# Selection


def _config(model_path, **options) -> EstimatorConfig:
    return EstimatorConfig(type='depth_anything_auto', model_path=str(model_path),
                           options=options)


def test_auto_runs_an_onnx_file_on_onnxruntime_without_tensorrt(dynamic_onnx, caplog):
    with caplog.at_level(logging.INFO, logger='depth_node.estimators.backends'):
        est = build_estimator(_config(dynamic_onnx))
    assert isinstance(est, OnnxRuntimeEstimator)
    (line,) = [r.getMessage() for r in caplog.records]
    # its intra-op threads left open: measured (test_autotune.py)
    assert line.startswith('estimator backend: onnxruntime (auto, by measurement; skipped '
                           'tensorrt: ')
    assert str(dynamic_onnx) in line


def test_auto_runs_a_checkpoint_on_torch(folder, caplog):
    with caplog.at_level(logging.INFO, logger='depth_node.estimators.backends'):
        est = build_estimator(_config(folder))
    assert isinstance(est, DepthAnythingEstimator)
    assert 'estimator backend: torch' in caplog.text and 'needs an .onnx file' in caplog.text


def test_auto_with_an_onnx_option_keeps_the_faster_by_measurement(folder, dynamic_onnx):
    est = build_estimator(_config(folder, onnx=str(dynamic_onnx)))
    assert isinstance(est, OnnxRuntimeEstimator) == (est.autotune.backend == 'onnxruntime')
    assert {k.split('/')[0] for k in est.autotune.figures_ms} == {'torch', 'onnxruntime'}


def test_auto_order_and_reasons(monkeypatch, dynamic_onnx, folder):
    monkeypatch.setattr(backends, '_cuda_available', lambda: True)
    monkeypatch.setattr(backends, '_importable', lambda module: '')
    config = dataclasses.replace(_config(dynamic_onnx, checkpoint=str(folder)), device='cuda')
    found = backends.candidates(config)
    assert [(c.backend, c.available) for c in found] == [
        ('tensorrt', True), ('onnxruntime', True), ('torch', True)]
    assert found[0].model_path == str(dynamic_onnx) and found[2].model_path == str(folder)
    cpu = backends.candidates(dataclasses.replace(config, device='cpu'))
    assert cpu[0].reason == "estimator.device is 'cpu', not cuda"
    monkeypatch.setattr(backends, '_cuda_available', lambda: False)
    assert backends.candidates(config)[0].reason == 'torch sees no CUDA device'


def test_auto_falls_back_when_an_available_backend_fails_to_start(monkeypatch, dynamic_onnx,
                                                                  folder, caplog):
    monkeypatch.setattr(backends, '_cuda_available', lambda: True)
    monkeypatch.setattr(backends, '_importable', lambda module: '')
    built = []

    def construct(backend, path, config):
        built.append(backend)
        if backend == 'tensorrt':
            raise RuntimeError('TensorRT could not build an engine')
        return f'{backend} estimator'

    monkeypatch.setattr(backends, '_construct', construct)
    config = dataclasses.replace(_config(dynamic_onnx), device='cuda')
    with caplog.at_level(logging.INFO, logger='depth_node.estimators.backends'):
        assert backends.build_depth_anything(config) == 'onnxruntime estimator'
    assert built == ['tensorrt', 'onnxruntime']
    assert 'failed to start' in caplog.text and 'could not build' in caplog.text
    with pytest.raises(RuntimeError, match='could not build'):  # named: no fallback
        backends.build_depth_anything(config, 'tensorrt')


def test_a_named_backend_that_cannot_run_says_why(dynamic_onnx, folder):
    with pytest.raises(ConfigError, match="tensorrt: estimator.device is 'cpu'"):
        build_estimator(dataclasses.replace(_config(dynamic_onnx),
                                            type='depth_anything_tensorrt'))
    with pytest.raises(ConfigError, match='onnxruntime: needs an .onnx file'):
        build_estimator(dataclasses.replace(_config(folder), type='depth_anything_onnxruntime'))


def test_unknown_options_are_refused(dynamic_onnx):
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['engine_cach'\]"):
        build_estimator(_config(dynamic_onnx, engine_cach='/tmp'))


def test_backend_options_reach_the_backend(dynamic_onnx):
    est = build_estimator(dataclasses.replace(
        _config(dynamic_onnx, threads=1, optimization='basic', image_sizes=[[480, 640]]),
        type='depth_anything_onnxruntime'))
    assert est.session.get_session_options().intra_op_num_threads == 1


def test_registry_names():
    assert {'depth_anything', 'depth_anything_auto', 'depth_anything_onnxruntime',
            'depth_anything_tensorrt'} <= set(registered())
