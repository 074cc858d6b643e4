"""Tests of the Depth Anything estimator: faithfulness to the official code, loading, errors.

The reference is the official implementation (package ``jkp-depth-anything-v2``, module
``depth_anything_v2``), run with random but non-trivial weights: a ViT-S model is saved as an
official ``.pth``, loaded through our converter, and both are run on the same images.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import pathlib
import pickle
import shutil
import types
from unittest import mock

import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='the depth_anything estimator needs torch')
pytest.importorskip('transformers', reason='the depth_anything estimator needs transformers')

from depth_node.core.align import OutputKind, OutputSpec  # noqa: E402
from depth_node.core.errors import ConfigError, DepthNodeError  # noqa: E402
from depth_node.estimators import build_estimator, EstimatorConfig  # noqa: E402
from depth_node.estimators.depth_anything import DepthAnythingEstimator  # noqa: E402
from depth_node.estimators.depth_anything_checkpoint import (  # noqa: E402
    convert_official_state_dict, infer_encoder)
from depth_node.estimators.depth_anything_config import (  # noqa: E402
    depth_anything_config, ENCODERS)
from depth_node.estimators.preprocess import network_input_size  # noqa: E402

from tiny_models import save_tiny_depth_anything  # noqa: E402  (test/ is on sys.path: conftest)

# max |ours - official| / max |official| allowed between two implementations of the same model
FAITHFUL = 1e-4


def _max_rel(ours: np.ndarray, reference: np.ndarray) -> float:
    """Largest absolute difference relative to the reference's largest magnitude."""
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def _import_official() -> types.ModuleType:
    """Import ``depth_anything_v2.dpt`` (torchvision stand-in: see testing/official.py)."""
    from depth_node.testing.official import import_official
    return import_official()


@pytest.fixture(scope='module')
def official():
    """The official ``depth_anything_v2.dpt`` module."""
    if importlib.util.find_spec('depth_anything_v2') is None:
        pytest.skip('the official Depth Anything V2 code is not installed '
                    '(pip install --no-deps jkp-depth-anything-v2)')
    return _import_official()


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Fan-in scaled random weights, so that every layer shapes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2:
                std = param[0].numel() ** -0.5
                param.copy_(torch.randn(param.shape, generator=gen) * std)
            else:
                is_scale = name.endswith('.gamma') or ('norm' in name and name.endswith('weight'))
                param.copy_((1.0 if is_scale else 0.0)
                            + 0.1 * torch.randn(param.shape, generator=gen))


@pytest.fixture(scope='module')
def official_vits(official, tmp_path_factory):
    """Official ViT-S model with random weights and its checkpoint file."""
    model = official.DepthAnythingV2(encoder='vits', features=64,
                                     out_channels=[48, 96, 192, 384]).eval()
    _randomise(model, seed=1)
    with torch.no_grad():
        model.pretrained.pos_embed.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(2))
        # Non-negative input (after a ReLU), positive weights and bias: the final ReLU never
        # clips, so the comparison covers every pixel.
        last = model.depth_head.scratch.output_conv2[2]
        last.weight.abs_()
        last.bias.fill_(0.5)
    path = tmp_path_factory.mktemp('official') / 'depth_anything_v2_vits.pth'
    torch.save(model.state_dict(), path)
    return model, path


@pytest.fixture(scope='module')
def ours_vits(official_vits):
    return DepthAnythingEstimator(official_vits[1])


@pytest.fixture(scope='module')
def tiny_folder(tmp_path_factory):
    return save_tiny_depth_anything(tmp_path_factory.mktemp('tiny') / 'tiny-da')


@pytest.fixture(scope='module')
def tiny(tiny_folder):
    return DepthAnythingEstimator(tiny_folder)


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB scene with texture: [H, W, 3] uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([np.sin(6 * xx + 1), np.cos(5 * yy), np.sin(4 * (xx + yy))], axis=-1)
    img = 127.5 + 90 * base + rng.normal(0, 20, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _official_infer(model, rgb: np.ndarray, input_size: int = 518) -> np.ndarray:
    """The official ``infer_image``, which takes BGR."""
    return model.infer_image(np.ascontiguousarray(rgb[..., ::-1]), input_size)


# ------------------------------------------------------------------------------------------------
# Faithfulness to the official implementation


def test_preprocessing_matches_official(official_vits, ours_vits):
    model, _ = official_vits
    for shape in [(518, 518), (300, 400), (481, 137)]:
        rgb = _image(*shape)
        expected, _ = model.image2tensor(np.ascontiguousarray(rgb[..., ::-1]), 518)
        got = ours_vits.preprocess(rgb)
        assert got.dtype == torch.float32 and got.shape == expected.shape
        assert torch.equal(got, expected.cpu())


def test_network_matches_official_at_518(official_vits, ours_vits):
    model, _ = official_vits
    pixels = ours_vits.preprocess(_image(518, 518))  # [1, 3, 518, 518]
    with torch.no_grad():
        expected = model(pixels).numpy()  # [1, 518, 518]
    got = ours_vits.infer(pixels).cpu().numpy()
    assert got.shape == expected.shape == (1, 518, 518)
    assert (expected > 0).all(), 'the random model should not be clipped to 0 by ReLU'
    assert _max_rel(got, expected) <= FAITHFUL


def test_predict_matches_official_infer_image_at_518(official_vits, ours_vits):
    model, _ = official_vits
    rgb = _image(518, 518, seed=3)
    got = ours_vits.predict(rgb)
    assert got.dtype == np.float32 and got.shape == (518, 518)
    assert _max_rel(got, _official_infer(model, rgb)) <= FAITHFUL


@pytest.mark.parametrize('shape, input_size', [((300, 400), 518), ((200, 200), 266)])
def test_position_embeddings_follow_official_at_other_sizes(official_vits, ours_vits, shape,
                                                            input_size):
    """Non-square network inputs, and square ones other than 518, resample the embeddings.

    Ours follows the official code; transformers' own resampling (kept as an option) differs.
    """
    model, path = official_vits
    rgb = _image(*shape, seed=4)
    expected = _official_infer(model, rgb, input_size)
    ours = ours_vits if input_size == 518 else DepthAnythingEstimator(path, input_size=input_size)
    got = ours.predict(rgb)
    assert got.shape == shape
    assert _max_rel(got, expected) <= FAITHFUL
    if input_size != 518:  # one case is enough to show the difference (and saves a forward)
        hf = DepthAnythingEstimator(path, input_size=input_size,
                                    pos_embed_interpolation='transformers')
        assert _max_rel(hf.predict(rgb), expected) > 1e-3


def test_interpolation_modes_agree_at_518(official_vits, ours_vits):
    hf = DepthAnythingEstimator(official_vits[1], pos_embed_interpolation='transformers')
    pixels = ours_vits.preprocess(_image(518, 518, seed=5))
    assert torch.equal(hf.infer(pixels), ours_vits.infer(pixels))


@pytest.mark.parametrize('encoder', sorted(ENCODERS))
def test_rename_table_covers_every_encoder(official, encoder):
    """Converted official names and shapes equal the transformers model's, for all sizes.

    Both models are built on the meta device (no memory, no time). The official DINOv2 calls
    ``.item()`` on a ``linspace`` while building, so that one tensor is made on the CPU.
    """
    spec = ENCODERS[encoder]
    linspace = torch.linspace
    cpu_linspace = functools.partial(linspace, device='cpu')
    with torch.device('meta'), mock.patch('torch.linspace', cpu_linspace):
        reference = official.DepthAnythingV2(encoder=encoder, features=spec['features'],
                                             out_channels=list(spec['neck']))
        from transformers import DepthAnythingForDepthEstimation
        ours = DepthAnythingForDepthEstimation(depth_anything_config(encoder))
    assert reference.intermediate_layer_idx[encoder] == list(spec['taps'])
    converted = {k: tuple(v.shape)
                 for k, v in convert_official_state_dict(reference.state_dict()).items()}
    expected = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert converted == expected


def test_swiglu_block_matches_official(official):
    """ViT-g's fused SwiGLU input ``w12`` and the fused ``qkv`` split onto transformers."""
    from depth_anything_v2.dinov2_layers import MemEffAttention, NestedTensorBlock, \
        SwiGLUFFNFused
    from transformers import Dinov2Config
    from transformers.models.dinov2.modeling_dinov2 import Dinov2Layer

    dim, heads = 48, 3
    block = NestedTensorBlock(dim=dim, num_heads=heads, mlp_ratio=4, qkv_bias=True,
                              init_values=1.0, ffn_layer=SwiGLUFFNFused,
                              attn_class=MemEffAttention,
                              norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6)).eval()
    _randomise(block, seed=6)
    prefix = 'backbone.encoder.layer.7.'
    converted = convert_official_state_dict(
        {f'pretrained.blocks.7.{k}': v for k, v in block.state_dict().items()})
    assert all(k.startswith(prefix) for k in converted)
    layer = Dinov2Layer(Dinov2Config(hidden_size=dim, num_attention_heads=heads, mlp_ratio=4,
                                     use_swiglu_ffn=True, layer_norm_eps=1e-6)).eval()
    layer.load_state_dict({k[len(prefix):]: v for k, v in converted.items()}, strict=True)
    x = torch.randn(2, 17, dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = block(x).numpy()
        got = layer(x)
    got = (got[0] if isinstance(got, tuple) else got).numpy()
    assert _max_rel(got, expected) <= FAITHFUL


@pytest.mark.parametrize('height, width', [(518, 518), (300, 400), (481, 137), (1, 1),
                                           (700, 700), (375, 1242), (100, 93)])
def test_network_input_size_matches_official_resize(official, height, width):
    from depth_anything_v2.util.transform import Resize
    import cv2
    resize = Resize(width=518, height=518, resize_target=False, keep_aspect_ratio=True,
                    ensure_multiple_of=14, resize_method='lower_bound',
                    image_interpolation_method=cv2.INTER_CUBIC)
    ref_w, ref_h = resize.get_size(width, height)
    assert network_input_size(height, width, 518) == (ref_h, ref_w)
    h, w = network_input_size(height, width, 518)
    assert h % 14 == 0 and w % 14 == 0 and min(h, w) >= 518


# ------------------------------------------------------------------------------------------------
# Hugging Face folders


def test_tiny_folder_predicts_disparity(tiny, tiny_folder):
    assert tiny.output == OutputSpec(OutputKind.DISPARITY, metric=False)
    for shape in [(480, 640), (37, 53), (518, 518)]:
        pred = tiny.predict(_image(*shape))
        assert pred.shape == shape and pred.dtype == np.float32
        assert np.isfinite(pred).all() and (pred >= 0).all()
    pred = tiny.predict(_image(120, 160, seed=1))
    assert pred.std() > 1e-3, 'the tiny model should give an image-dependent prediction'
    # The registry builds the same model from the node's estimator.* parameters.
    est = build_estimator(EstimatorConfig(type='depth_anything', model_path=str(tiny_folder),
                                          precision='fp32', threads=1))
    assert isinstance(est, DepthAnythingEstimator)
    np.testing.assert_array_equal(est.predict(_image(64, 80)), tiny.predict(_image(64, 80)))
    # With precision 'auto' (the default) it may pick bf16 where that is faster, within parity.
    auto = build_estimator(EstimatorConfig(type='depth_anything', model_path=str(tiny_folder)))
    np.testing.assert_allclose(auto.predict(_image(64, 80)), tiny.predict(_image(64, 80)),
                               rtol=0.05, atol=0.01)


def test_tiny_folder_matches_plain_transformers(tiny, tiny_folder):
    from transformers import DepthAnythingForDepthEstimation
    model = DepthAnythingForDepthEstimation.from_pretrained(tiny_folder).eval()
    pixels = tiny.preprocess(_image(518, 518))
    with torch.no_grad():
        expected = model(pixel_values=pixels).predicted_depth.numpy()
    np.testing.assert_array_equal(tiny.infer(pixels).numpy(), expected)


def test_metric_folder_predicts_metric_depth(tmp_path):
    folder = save_tiny_depth_anything(tmp_path / 'metric', depth_estimation_type='metric',
                                      max_depth=20)
    est = DepthAnythingEstimator(folder)
    assert est.output == OutputSpec(OutputKind.DEPTH, metric=True)
    pred = est.predict(_image(60, 80))
    assert pred.shape == (60, 80) and pred.dtype == np.float32
    assert (pred >= 0).all() and (pred <= 20.0).all()


def test_both_weight_naming_schemes_load(tiny, tiny_folder, tmp_path):
    """Folders with either the transformers-4 or the transformers-5 weight names load.

    Hub folders use the transformers-4 names (``attention.attention.query``), and so does
    ``save_pretrained`` of transformers 5; its modules are named ``attention.q_proj``.
    """
    from safetensors.torch import load_file, save_file
    renames = {'attention.attention.query.': 'attention.q_proj.',
               'attention.attention.key.': 'attention.k_proj.',
               'attention.attention.value.': 'attention.v_proj.',
               'attention.output.dense.': 'attention.o_proj.'}
    state = load_file(tiny_folder / 'model.safetensors')
    assert any('attention.attention.query.' in key for key in state)
    modern = tmp_path / 'modern'
    shutil.copytree(tiny_folder, modern)
    renamed = {}
    for key, value in state.items():
        for old, new in renames.items():
            key = key.replace(old, new)
        renamed[key] = value
    assert any('attention.q_proj.' in key for key in renamed)
    save_file(renamed, modern / 'model.safetensors', metadata={'format': 'pt'})
    rgb = _image(90, 120)
    np.testing.assert_array_equal(DepthAnythingEstimator(modern).predict(rgb), tiny.predict(rgb))


def test_folder_with_missing_weights_is_refused(tiny_folder, tmp_path):
    from safetensors.torch import load_file, save_file
    broken = tmp_path / 'broken'
    shutil.copytree(tiny_folder, broken)
    state = load_file(broken / 'model.safetensors')
    del state['head.conv3.weight']
    save_file(state, broken / 'model.safetensors', metadata={'format': 'pt'})
    with pytest.raises(ConfigError, match=r'missing.*head\.conv3\.weight') as err:
        DepthAnythingEstimator(broken)
    assert err.value.name == 'estimator.model_path'


def test_folder_of_another_model_is_refused(tmp_path):
    (tmp_path / 'config.json').write_text('{"model_type": "dpt"}')
    with pytest.raises(ConfigError, match="model_type 'depth_anything'"):
        DepthAnythingEstimator(tmp_path)
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(ConfigError, match='config.json'):
        DepthAnythingEstimator(empty)


# ------------------------------------------------------------------------------------------------
# Official checkpoints: encoder, metric heads, safety


@pytest.mark.parametrize('name, encoder', [
    ('depth_anything_v2_vits.pth', 'vits'),
    ('depth_anything_v2_vitb.pth', 'vitb'),
    ('/models/Depth_Anything_V2_ViTL.pth', 'vitl'),
    ('depth_anything_v2_metric_hypersim_vitg.pth', 'vitg'),
    ('vitl-finetuned.pth', 'vitl'),
    ('depth_anything_v2.pth', ''),
    ('vits_or_vitb.pth', ''),
    ('my_vitsmall.pth', ''),
])
def test_infer_encoder(name, encoder):
    assert infer_encoder(name) == encoder


def test_encoder_from_config_when_the_name_says_nothing(official_vits, ours_vits, tmp_path):
    anonymous = tmp_path / 'weights.pth'
    shutil.copy(official_vits[1], anonymous)
    with pytest.raises(ConfigError, match='must be set') as err:
        DepthAnythingEstimator(anonymous)
    assert err.value.name == 'estimator.encoder'
    est = DepthAnythingEstimator(anonymous, encoder='vits')
    for (name, a), b in zip(est.model.state_dict().items(), ours_vits.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_wrong_or_unknown_encoder_is_refused(official_vits, tmp_path):
    with pytest.raises(ConfigError, match=r"embedding width 384 is that of \['vits'\]") as err:
        DepthAnythingEstimator(official_vits[1], encoder='vitb')
    assert err.value.name == 'estimator.encoder'
    misnamed = tmp_path / 'depth_anything_v2_vitl.pth'
    shutil.copy(official_vits[1], misnamed)
    with pytest.raises(ConfigError, match=r'vitl \(taken from the file name\) does not match'):
        DepthAnythingEstimator(misnamed)
    with pytest.raises(ConfigError, match='must be one of vits, vitb, vitl, vitg') as err:
        DepthAnythingEstimator(official_vits[1], encoder='vitx')
    assert err.value.name == 'estimator.encoder'


def test_checkpoint_with_foreign_weights_is_refused(official_vits, tmp_path):
    state = torch.load(official_vits[1], weights_only=True)
    state['depth_head.extra.weight'] = torch.zeros(3)
    del state['pretrained.norm.bias']
    path = tmp_path / 'depth_anything_v2_vits.pth'
    torch.save(state, path)
    with pytest.raises(ConfigError, match=r'1 weights missing \[backbone\.layernorm\.bias\], '
                                          r'1 unexpected \[depth_head\.extra\.weight\]'):
        DepthAnythingEstimator(path)
    state = torch.load(official_vits[1], weights_only=True)
    state['depth_head.scratch.output_conv1.weight'] = torch.zeros(16, 64, 3, 3)
    torch.save(state, path)
    with pytest.raises(ConfigError, match=r'head\.conv1\.weight.*torch.Size\(\[16, 64, 3, 3\]\)'):
        DepthAnythingEstimator(path)


def test_metric_checkpoint(official_vits, tmp_path):
    metric = tmp_path / 'depth_anything_v2_metric_hypersim_vits.pth'
    shutil.copy(official_vits[1], metric)
    est = DepthAnythingEstimator(metric)
    assert est.output == OutputSpec(OutputKind.DEPTH, metric=True)
    assert est.model.config.max_depth == 20.0
    unnamed = tmp_path / 'depth_anything_v2_metric_vits.pth'
    shutil.copy(official_vits[1], unnamed)
    with pytest.raises(ConfigError, match='hypersim or vkitti'):
        DepthAnythingEstimator(unnamed)


class _Exploit:
    """Pickles to a call of ``os.mkdir``: loading it must not run that call."""

    def __init__(self, target: pathlib.Path) -> None:
        self.target = target

    def __reduce__(self):
        return os.mkdir, (str(self.target),)


def test_checkpoint_code_is_never_executed(tmp_path):
    target = tmp_path / 'pwned'
    path = tmp_path / 'depth_anything_v2_vits.pth'
    with open(path, 'wb') as stream:
        pickle.dump({'pretrained.pos_embed': _Exploit(target)}, stream, protocol=2)
    with pytest.raises(ConfigError, match='weights-only') as err:
        DepthAnythingEstimator(path)
    assert err.value.name == 'estimator.model_path'
    assert not target.exists()


# ------------------------------------------------------------------------------------------------
# Configuration and input errors


def test_missing_model_path(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as err:
        build_estimator(EstimatorConfig(model_path='/nonexistent/depth_anything_v2_vits.pth'))
    assert err.value.name == 'estimator.model_path'
    assert 'estimator.model_path' in str(err.value)
    # '' is the shipped student; without it (a broken install) the error says so
    from depth_node.estimators import registry
    monkeypatch.setattr(registry, 'SHIPPED_STUDENT', tmp_path / 'gone')
    with pytest.raises(ConfigError, match='shipped student is missing') as err:
        build_estimator(EstimatorConfig(model_path=''))
    assert err.value.name == 'estimator.model_path'


@pytest.mark.parametrize('kwargs, name', [
    ({'precision': 'fp8'}, 'estimator.precision'),
    ({'device': 'tpu'}, 'estimator.device'),
    ({'input_size': 0}, 'estimator.input_size'),
    ({'input_size': 518.0}, 'estimator.input_size'),
    ({'pos_embed_interpolation': 'nearest'}, 'pos_embed_interpolation'),
])
def test_bad_options(tiny_folder, kwargs, name):
    with pytest.raises(ConfigError) as err:
        DepthAnythingEstimator(tiny_folder, **kwargs)
    assert err.value.name == name


@pytest.mark.skipif(torch.cuda.is_available(), reason='tests the error when CUDA is missing')
def test_cuda_requested_without_cuda(tiny_folder):
    with pytest.raises(ConfigError, match='CUDA was requested') as err:
        DepthAnythingEstimator(tiny_folder, device='cuda')
    assert err.value.name == 'estimator.device'


@pytest.mark.parametrize('bad', [
    np.zeros((32, 32, 3), np.float32),
    np.zeros((32, 32), np.uint8),
    np.zeros((32, 32, 4), np.uint8),
    [[0, 0, 0]],
])
def test_wrong_input_is_refused(tiny, bad):
    with pytest.raises(DepthNodeError, match=r'\[H, W, 3\] uint8'):
        tiny.predict(bad)


@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_reduced_precision_gives_float32(tiny_folder, tiny, precision):
    est = DepthAnythingEstimator(tiny_folder, precision=precision)
    assert next(est.model.parameters()).dtype == {'bf16': torch.bfloat16,
                                                  'fp16': torch.float16}[precision]
    rgb = _image(70, 90)
    pred = est.predict(rgb)
    assert pred.dtype == np.float32 and pred.shape == (70, 90)
    assert _max_rel(pred, tiny.predict(rgb)) < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_cuda_matches_cpu(tiny_folder, tiny):
    est = DepthAnythingEstimator(tiny_folder, device='cuda')
    rgb = _image(96, 128)
    assert _max_rel(est.predict(rgb), tiny.predict(rgb)) < 1e-3


def test_tiny_model_is_quick_to_make(tmp_path):
    import time
    save_tiny_depth_anything(tmp_path / 'warm-up')  # first call pays transformers' lazy imports
    start = time.perf_counter()
    save_tiny_depth_anything(tmp_path / 'quick', seed=3)
    assert time.perf_counter() - start < 2.0
