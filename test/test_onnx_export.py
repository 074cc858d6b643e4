"""Tests of the ONNX export: the graph computes what the torch estimator computes, at any shape.

Parity is ONNX Runtime (CPU) vs ``DepthAnythingEstimator.infer`` on the same weights and the
same random network inputs, at several shapes, for a graph exported once with dynamic batch,
height and width - which is what catches the tracing traps (sizes baked into the graph by
``int()``, a position-embedding branch specialised on the example input): a graph with a baked
size fails or differs at every other shape. Models: the tiny random Depth Anything of
``tiny_models`` and a ViT-S with random (fan-in scaled) weights at real sizes.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='the export needs torch')
pytest.importorskip('transformers', reason='the export needs transformers')
onnx = pytest.importorskip('onnx', reason='the export needs onnx (pip install onnx)')
# torch.export's own deprecation noise while exporting
pytestmark = pytest.mark.filterwarnings('ignore:.*LeafSpec:FutureWarning')
pytest.importorskip('onnxscript', reason='the export needs onnxscript (pip install onnxscript)')
pytest.importorskip('onnxruntime', reason='parity runs ONNX Runtime (pip install onnxruntime)')

import torch.nn.functional as F  # noqa: E402

from depth_node.core.errors import ConfigError  # noqa: E402
from depth_node.estimators.depth_anything import DepthAnythingEstimator, load_model  # noqa: E402,E501
from depth_node.estimators.depth_anything_config import depth_anything_config  # noqa: E402
from depth_node.estimators.onnx_export import (  # noqa: E402
    bicubic_matrix, compare_with_torch, export_onnx, ExportableDepthAnything)
from depth_node.estimators.onnx_model import read_onnx_info  # noqa: E402
from depth_node.cli import export_onnx as export_tool  # noqa: E402

from onnx_models import tiny_folder, tiny_onnx  # noqa: E402  (test/ is on sys.path)

#: Largest ``max |onnx - torch| / max |torch|`` accepted (measured: about 1e-5).
PARITY = 1e-3

# [B, 3, H, W]: the stored 37 x 37 grid (no resampling), the 640x480 camera (518x686),
# portrait, batch 2 off-grid, square off-grid, and an extreme aspect ratio with batch 3.
SHAPES = [(1, 3, 518, 518), (1, 3, 518, 686), (1, 3, 686, 518), (2, 3, 364, 532),
          (1, 3, 266, 266), (3, 3, 70, 980)]


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return DepthAnythingEstimator(tiny_folder(tmp_path_factory))


@pytest.fixture(scope='module')
def dynamic_onnx(tmp_path_factory):
    """Tiny model exported with dynamic batch, height and width."""
    return tiny_onnx(tmp_path_factory, batch=None)


def test_dynamic_export_declares_every_size_symbolic(dynamic_onnx):
    info = read_onnx_info(dynamic_onnx)
    assert (info.batch, info.height, info.width) == (None, None, None)
    model = onnx.load(str(dynamic_onnx), load_external_data=False)
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    # The output size is not baked in (transformers' int() on the traced size would make it so).
    assert [d.HasField('dim_param') for d in out_dims] == [True, True, True]
    assert model.opset_import[0].version >= 17


@pytest.mark.parametrize('shape', SHAPES, ids=lambda s: 'x'.join(map(str, s)))
def test_dynamic_export_matches_torch(tiny, dynamic_onnx, shape):
    (result,) = compare_with_torch(dynamic_onnx, tiny, [shape])
    assert result.max_rel <= PARITY, result


def test_metadata_states_what_the_model_predicts(tmp_path_factory, dynamic_onnx):
    relative = read_onnx_info(dynamic_onnx)
    assert relative.output.kind.value == 'disparity' and not relative.output.metric
    assert relative.metadata['depth_node.pos_embed_interpolation'] == 'official'
    metric = read_onnx_info(tiny_onnx(tmp_path_factory, 'metric', height=266, width=350))
    assert metric.output.kind.value == 'depth' and metric.output.metric
    assert metric.metadata['depth_node.max_depth'] == '20'


@pytest.mark.parametrize('interpolation, sizes', [
    ('official', [(37, 37), (37, 49), (49, 37), (19, 19), (2, 5)]),
    ('transformers', [(37, 37), (19, 26)]),
])
def test_traceable_embeddings_equal_the_estimator_in_eager_mode(tmp_path_factory, interpolation,
                                                                sizes):
    """The wrapper (before any export) computes what the estimator computes, grid sizes incl."""
    folder = tiny_folder(tmp_path_factory)
    reference = DepthAnythingEstimator(folder, pos_embed_interpolation=interpolation)
    wrapper = ExportableDepthAnything(load_model(folder), interpolation)
    gen = torch.Generator().manual_seed(1)
    for rows, cols in sizes:
        pixels = torch.randn(1, 3, rows * 14, cols * 14, generator=gen)
        expected = reference.infer(pixels)
        with torch.inference_mode():
            got = wrapper(pixels)
        assert got.shape == expected.shape
        rel = float((got - expected).abs().max() / expected.abs().max())
        assert rel <= 1e-5, (rows, cols, rel)


@pytest.mark.parametrize('size, scale', [(49, 49.1 / 37), (19, 19.1 / 37), (37, 1.0),
                                         (74, 2.0)])
def test_bicubic_matrix_is_torch_bicubic(size, scale):
    grid = torch.randn(1, 1, 37, 37, generator=torch.Generator().manual_seed(2))
    expected = F.interpolate(grid, scale_factor=(scale, scale), mode='bicubic',
                             align_corners=False)[0, 0]
    m = bicubic_matrix(size, 37, torch.tensor(1 / scale, dtype=torch.float32))
    assert m.shape == (size, 37)
    got = m @ grid[0, 0] @ m.T
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)
    if scale == 1.0:
        assert torch.equal(m, torch.eye(37))


@pytest.mark.parametrize('kwargs, name', [
    (dict(height=500, width=518), 'height'), (dict(height=518), 'height/width'),
    (dict(height=14, width=518), 'height'), (dict(opset=16), 'opset'), (dict(batch=0), 'batch'),
])
def test_export_refuses_bad_settings(tmp_path_factory, tmp_path, kwargs, name):
    model = load_model(tiny_folder(tmp_path_factory))
    with pytest.raises(ConfigError) as err:
        export_onnx(model, tmp_path / 'x.onnx', **kwargs)
    assert err.value.name == name
    assert not (tmp_path / 'x.onnx').exists()


def test_vits_export_matches_torch_at_real_sizes(tmp_path_factory):
    """ViT-S architecture, random fan-in scaled weights, dynamic export, 3 real shapes."""
    from tiny_models import random_depth_anything

    model = random_depth_anything(depth_anything_config('vits'), seed=3)
    folder = tmp_path_factory.mktemp('vits') / 'vits-hf'
    model.save_pretrained(folder, safe_serialization=True)
    estimator = DepthAnythingEstimator(folder)
    path = folder.parent / 'vits.onnx'
    export_onnx(model, path, batch=None)
    shapes = [(1, 3, 518, 518), (1, 3, 518, 686), (1, 3, 392, 518)]
    results = compare_with_torch(path, estimator, shapes)
    assert [r.shape for r in results] == shapes
    assert max(r.max_rel for r in results) <= PARITY, results


def test_export_tool_fixes_the_graph_for_a_camera(tmp_path_factory, tmp_path, tiny, capsys):
    """A fixed-size export (here through the CLI): parity at its size, refusal at others."""
    out = tmp_path / 'camera.onnx'
    code = export_tool.main([str(tiny_folder(tmp_path_factory)), str(out), '--image-size',
                             '640x480', '--verify'])
    text = capsys.readouterr().out
    assert code == 0, text
    info = read_onnx_info(out)
    assert (info.batch, info.height, info.width) == (1, 518, 686)  # a 640x480 camera's input
    assert 'verify: ok' in text and '1x3x518x686' in text
    with pytest.raises(Exception, match='(?i)dimension|shape'):
        compare_with_torch(out, tiny, [(1, 3, 518, 518)])


def test_export_tool_reports_bad_input(tmp_path, capsys):
    code = export_tool.main([str(tmp_path / 'missing'), str(tmp_path / 'x.onnx')])
    assert code == 2
    assert 'estimator.model_path' in capsys.readouterr().err


def test_verify_shapes_cover_dynamic_and_fixed_dims():
    assert export_tool.verify_shapes(518, 686, 1) == [(1, 3, 518, 686)]
    dynamic = export_tool.verify_shapes(None, None, None)
    assert (2, 3, 686, 518) in dynamic and (1, 3, 518, 518) in dynamic
    assert len({s[2:] for s in dynamic}) == 3
    assert np.all([s[0] == 4 for s in export_tool.verify_shapes(None, None, 4)])
