"""Marigold estimator (diffusers) on a tiny random checkpoint saved to disk and loaded back."""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip('diffusers', reason='the marigold estimator needs diffusers')
pytest.importorskip('scipy', reason='the Marigold ensemble needs scipy')
torch = pytest.importorskip('torch')

from depth_node.core.align import OutputKind, OutputSpec  # noqa: E402
from depth_node.core.errors import ConfigError  # noqa: E402
from depth_node.estimators import registry  # noqa: E402
from depth_node.estimators.base import EstimatorConfig  # noqa: E402
from depth_node.estimators.marigold import MarigoldEstimator  # noqa: E402
from depth_node.pipeline.frame import FrameInput  # noqa: E402
from depth_node.pipeline.keyframes import KeyframeConfig, KeyframeWorker  # noqa: E402
from depth_node.sim.frames import SimRig  # noqa: E402
from tiny_models import save_tiny_marigold  # noqa: E402

H, W = 120, 160


@pytest.fixture(scope='module', autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine two OpenMP threads wait on each other
    at every small op whenever another process holds a core (100x slower, erratically)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    return save_tiny_marigold(tmp_path_factory.mktemp('marigold'), denoising_steps=2,
                              processing_resolution=64)


@pytest.fixture(scope='module')
def rgb():
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def test_output_shape_dtype_and_depth_space(ckpt, rgb):
    est = MarigoldEstimator(ckpt)
    assert est.output == OutputSpec(OutputKind.DEPTH, metric=False)
    assert all(not m.training for m in (est.pipeline.unet, est.pipeline.vae,
                                        est.pipeline.text_encoder))
    pred = est.predict(rgb)
    assert pred.shape == (H, W) and pred.dtype == np.float32
    assert np.all(np.isfinite(pred)) and pred.min() >= 0 and pred.max() <= 1 and pred.std() > 0
    depth, unc = est.predict_with_uncertainty(rgb)
    assert unc is None  # ensemble_size 1
    np.testing.assert_array_equal(depth, pred)
    other = np.ascontiguousarray(rgb[::-1])
    assert not np.array_equal(est.predict(other), pred)  # image dependent
    assert 'marigold' in est.name and 'steps=2' in est.name


def test_ensemble_gives_uncertainty_and_ensembling_kwargs_reach_diffusers(ckpt, rgb):
    est = MarigoldEstimator(ckpt, ensemble_size=3, batch_size=2)
    depth, unc = est.predict_with_uncertainty(rgb)
    assert depth.shape == unc.shape == (H, W) and unc.dtype == np.float32
    assert np.all(np.isfinite(unc)) and unc.min() >= 0 and unc.max() > 0
    assert unc.mean() < 0.5  # in the prediction's [0, 1] units
    np.testing.assert_array_equal(est.predict(rgb), depth)  # same seed, same noise
    mean = MarigoldEstimator(ckpt, ensemble_size=3, batch_size=2,
                             ensembling_kwargs={'reduction': 'mean', 'max_iter': 1,
                                                'max_res': 32})
    depth_mean, unc_std = mean.predict_with_uncertainty(rgb)
    assert not np.array_equal(depth_mean, depth) and not np.array_equal(unc_std, unc)


def test_seed_determinism(ckpt, rgb):
    a = MarigoldEstimator(ckpt, seed=7).predict(rgb)
    b = MarigoldEstimator(ckpt, seed=7).predict(rgb)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(MarigoldEstimator(ckpt, seed=8).predict(rgb), a)
    free = MarigoldEstimator(ckpt, seed=None)
    assert not np.array_equal(free.predict(rgb), free.predict(rgb))


def _count_unet_calls_and_vae_input(est):
    calls, sizes = [], []
    h1 = est.pipeline.unet.register_forward_hook(lambda m, i, o: calls.append(1))
    h2 = est.pipeline.vae.encoder.register_forward_hook(
        lambda m, i, o: sizes.append(tuple(i[0].shape[-2:])))
    return calls, sizes, (h1, h2)


def test_checkpoint_defaults_are_used_when_options_are_unset(tmp_path, rgb):
    path = save_tiny_marigold(tmp_path / 'ckpt', denoising_steps=3, processing_resolution=48)
    est = MarigoldEstimator(path)
    assert (est.num_inference_steps, est.processing_resolution) == (3, 48)
    calls, sizes, hooks = _count_unet_calls_and_vae_input(est)
    est.predict(rgb)
    assert len(calls) == 3 and max(sizes[0]) == 48  # longer side at 48 (160x120 -> 48x36)
    set_ = MarigoldEstimator(path, num_inference_steps=1, processing_resolution=32)
    calls, sizes, hooks = _count_unet_calls_and_vae_input(set_)
    set_.predict(rgb)
    assert len(calls) == 1 and max(sizes[0]) == 32


def test_lcm_and_disparity_checkpoints(tmp_path, rgb):
    lcm = MarigoldEstimator(save_tiny_marigold(tmp_path / 'lcm', scheduler='lcm',
                                               denoising_steps=1), ensemble_size=3)
    assert type(lcm.pipeline.scheduler).__name__ == 'LCMScheduler'
    depth, unc = lcm.predict_with_uncertainty(rgb)
    assert depth.shape == (H, W) and unc is not None
    disp = MarigoldEstimator(save_tiny_marigold(tmp_path / 'disp', prediction_type='disparity'))
    assert disp.output == OutputSpec(OutputKind.DISPARITY, metric=False)


def test_half_precision_needs_cuda(ckpt):
    if torch.cuda.is_available():
        pytest.skip('CUDA is available: half precision is allowed')
    for precision in ('fp16', 'bf16'):
        with pytest.raises(ConfigError) as info:
            MarigoldEstimator(ckpt, precision=precision)
        assert info.value.name == 'estimator.precision' and 'cuda' in str(info.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('precision, dtype', [('fp16', torch.float16), ('bf16', torch.bfloat16)])
def test_half_precision_on_cuda_gives_float32(ckpt, rgb, precision, dtype):
    est = MarigoldEstimator(ckpt, device='cuda', precision=precision, ensemble_size=3)
    assert est.pipeline.unet.dtype == dtype
    depth, unc = est.predict_with_uncertainty(rgb)
    assert depth.dtype == unc.dtype == np.float32 and depth.shape == (H, W)
    assert np.all(np.isfinite(depth)) and np.all(np.isfinite(unc))


def test_registry_builds_it(ckpt, rgb):
    assert 'marigold' in registry.registered()
    est = registry.build_estimator(EstimatorConfig(
        type='marigold', model_path=str(ckpt), device='cpu', precision='fp32',
        options={'ensemble_size': 3, 'num_inference_steps': 1, 'seed': 3,
                 'ensembling_kwargs': {'reduction': 'median'}}))
    assert isinstance(est, MarigoldEstimator)
    assert (est.ensemble_size, est.num_inference_steps, est.seed) == (3, 1, 3)
    assert est.predict_with_uncertainty(rgb)[1] is not None


@pytest.mark.parametrize('options, name', [
    ({'ensemble_size': 0}, 'estimator.options.ensemble_size'),
    ({'ensemble_size': 2.5}, 'estimator.options.ensemble_size'),
    ({'num_inference_steps': 0}, 'estimator.options.num_inference_steps'),
    ({'processing_resolution': -8}, 'estimator.options.processing_resolution'),
    ({'processing_resolution': 60}, 'estimator.options.processing_resolution'),  # not x 8
    ({'batch_size': True}, 'estimator.options.batch_size'),
    ({'seed': -1}, 'estimator.options.seed'),
    ({'ensembling_kwargs': {'reduction': 'max'}},
     'estimator.options.ensembling_kwargs.reduction'),
    ({'ensembling_kwargs': {'tol': 0}}, 'estimator.options.ensembling_kwargs.tol'),
    ({'ensembling_kwargs': {'max_iter': 0}}, 'estimator.options.ensembling_kwargs.max_iter'),
    ({'ensembling_kwargs': {'bogus': 1}}, 'estimator.options.ensembling_kwargs'),
    ({'ensembling_kwargs': [1]}, 'estimator.options.ensembling_kwargs'),
    ({'resample_method_input': 'lanczos'}, 'estimator.options.resample_method_input'),
    ({'variant': ''}, 'estimator.options.variant'),
    ({'ensemble': 3}, 'estimator.options'),  # unknown option
])
def test_bad_options_name_the_option(ckpt, options, name):
    with pytest.raises(ConfigError) as info:
        MarigoldEstimator.from_config(EstimatorConfig(type='marigold', model_path=str(ckpt),
                                                      options=options))
    assert info.value.name == name
    assert name in str(info.value)


def test_bad_model_path_device_and_precision(ckpt, tmp_path):
    def error(*args, **kwargs):
        with pytest.raises(ConfigError) as info:
            MarigoldEstimator(*args, **kwargs)
        return info.value

    assert error(tmp_path / 'missing').name == 'estimator.model_path'
    assert error('').name == 'estimator.model_path'
    assert 'model_index.json' in str(error(tmp_path))  # a folder, but not a diffusers one
    assert error(ckpt, precision='fp8').name == 'estimator.precision'
    if not torch.cuda.is_available():
        err = error(ckpt, device='cuda')
        assert err.name == 'estimator.device' and 'CUDA' in str(err)
    assert error(ckpt, device='tpu').name == 'estimator.device'
    # a folder whose model_index.json names code from elsewhere is refused before loading
    custom = tmp_path / 'custom'
    shutil.copytree(ckpt, custom)
    index = json.loads((custom / 'model_index.json').read_text())
    index['unet'] = ['my_package', 'EvilUNet']
    (custom / 'model_index.json').write_text(json.dumps(index))
    err = error(custom)
    assert err.name == 'estimator.model_path' and 'unet' in str(err)
    index['_class_name'] = 'MarigoldNormalsPipeline'
    (custom / 'model_index.json').write_text(json.dumps(index))
    assert 'MarigoldDepthPipeline' in str(error(custom))
    # no weights: diffusers' error becomes a ConfigError naming the path
    broken = tmp_path / 'broken'
    shutil.copytree(ckpt, broken)
    (broken / 'unet' / 'diffusion_pytorch_model.safetensors').unlink()
    assert error(broken).name == 'estimator.model_path'


def test_marigold_teacher_through_the_keyframe_worker(ckpt):
    """The real teacher in the worker: depth space, uncertainty in metres = |s| x relative."""
    rig = SimRig.default(W, H)
    frame = next(rig.frames(1))
    teacher = MarigoldEstimator(ckpt, ensemble_size=3)
    results = []
    with KeyframeWorker(teacher, results.append, KeyframeConfig(mode='thread')) as worker:
        worker.submit(FrameInput(frame.rgb, rig.camera, frame.stamp, frame.lidar,
                                 rig.lidar_to_camera), tag='kf')
        assert worker.wait_idle(60.0)
    (res,) = results
    assert res.tag == 'kf' and res.space is OutputKind.DEPTH
    assert res.fit.space is OutputKind.DEPTH and res.lidar_pixels > 0
    assert res.relative.shape == res.relative_uncertainty.shape == (H, W)
    if res.fit.ok:  # random weights: the LiDAR fit may well be refused
        ok = np.isfinite(res.depth)
        np.testing.assert_allclose(res.uncertainty[ok],
                                   abs(res.fit.scale) * res.relative_uncertainty[ok], rtol=1e-5)
    else:
        assert res.depth is None and res.fit.reason
