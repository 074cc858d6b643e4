"""LiDAR-network fusion (core/fusion.py): known answers on scenes where the LiDAR is exact."""

import numpy as np
import pytest

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.core.fusion import (fuse, FusionConfig, recursive_filter,
                                    recursive_filter_reference)
from depth_node.core.lidar import SparseDepth


def _rows(truth, every=8, first=0, cols=slice(None)):
    """Exact LiDAR returns on every ``every``-th row of ``truth`` (all columns of ``cols``)."""
    h, w = truth.shape
    vv, uu = np.mgrid[first:h:every, 0:w][:, :, cols]
    v, u = vv.ravel().astype(np.int32), uu.ravel().astype(np.int32)
    z = truth[v, u]
    ok = np.isfinite(z)
    return SparseDepth(u[ok], v[ok], z[ok].astype(np.float32), w, h)


def _plane(h=120, w=160):
    """A road-like plane: inverse depth linear in the row (10 m at the bottom, 40 m at top)."""
    inv = np.linspace(1 / 40, 1 / 10, h)[:, None] * np.ones((1, w))
    return (1.0 / inv).astype(np.float32)


def test_compiled_filter_matches_the_numpy_reference():
    rng = np.random.default_rng(0)
    grids = rng.normal(size=(3, 23, 31))
    guide = rng.random((23, 31)) * 0.05
    for sigma_s, sigma_r, it in ((1.0, 0.005, 3), (6.0, 0.05, 2), (0.5, 1.0, 1)):
        fast = recursive_filter(grids, guide, sigma_s, sigma_r, it)
        ref = recursive_filter_reference(grids, guide, sigma_s, sigma_r, it)
        np.testing.assert_allclose(fast, ref, rtol=1e-12, atol=1e-12)
    # Unit gain: a constant stays constant, whatever the guide.
    const = np.full((1, 23, 31), 3.0)
    np.testing.assert_allclose(recursive_filter(const, guide, 4.0, 0.01, 3), const, rtol=1e-12)


def test_fused_equals_lidar_at_returns_and_the_smooth_field_between():
    truth = _plane()
    h, w = truth.shape
    x = np.linspace(0, 1, w)[None, :]
    y = np.linspace(0, 1, h)[:, None]
    field = (1.0 + 0.15 * np.sin(2 * np.pi * x) * np.cos(np.pi * y)).astype(np.float32)
    network = truth * field  # the network's shape is wrong by a smooth factor
    lidar = _rows(truth, every=6)
    out = fuse(network, lidar)
    # At the returns: the LiDAR (pinned, exact here).
    np.testing.assert_allclose(out.depth[lidar.v, lidar.u], lidar.z, rtol=1e-6)
    assert out.pinned == lidar.count
    # Between the rows: the known field is removed to well under its 15 % amplitude.
    rel = np.abs(out.depth - truth) / truth
    assert np.median(rel) < 0.01 and np.percentile(rel, 99) < 0.03
    assert np.median(np.abs(network - truth) / truth) > 0.05


def test_far_from_lidar_the_fusion_tends_to_the_global_fit():
    truth = _plane(160, 160)
    network = truth * np.float32(1.2)  # 20 % too far everywhere
    lidar = _rows(truth, every=4, first=120)  # LiDAR only in the bottom quarter
    out = fuse(network, lidar)
    bottom = np.abs(out.depth[120:] - truth[120:]) / truth[120:]
    assert np.median(bottom) < 0.005
    # The correction fades with distance from the returns: far rows keep more of the global.
    err = np.abs(out.depth - truth) / truth
    assert err[100].mean() < err[40].mean() < err[5].mean() + 1e-6
    assert err[5].mean() > 0.1  # 20 % error, mostly kept where nothing supports a change
    assert np.all(out.support[:5] < out.support[-5:].min())


def test_no_lidar_leaves_the_global_fit_and_edges_stop_the_field():
    truth = np.full((96, 128), 30.0, np.float32)
    truth[:, 48:80] = 8.0  # a pole in front of a wall
    none = SparseDepth(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32),
                       128, 96)
    np.testing.assert_array_equal(fuse(truth, none).depth, truth)
    network = truth.copy()
    network[:, 48:80] *= 1.25  # the network is 25 % off on the pole only
    lidar = _rows(truth, every=8)
    out = fuse(network, lidar)
    wall = np.r_[0:46, 82:128]  # wall columns, 2 px away from the pole's edges
    np.testing.assert_allclose(out.depth[:, wall], truth[:, wall], rtol=0.01)
    np.testing.assert_allclose(out.depth[:, 50:78], truth[:, 50:78], rtol=0.01)


def test_a_spurious_return_does_not_move_its_neighbours():
    truth = _plane()
    lidar = _rows(truth, every=6)
    z = lidar.z.copy()
    k = lidar.count // 2
    z[k] = z[k] * 0.2  # a fog backscatter return at a fifth of the range
    bad = SparseDepth(lidar.u, lidar.v, z, lidar.width, lidar.height)
    out = fuse(truth, bad)
    assert out.returns == lidar.count - 1
    near = (slice(max(0, lidar.v[k] - 6), lidar.v[k] + 7),
            slice(max(0, lidar.u[k] - 6), lidar.u[k] + 7))
    np.testing.assert_allclose(out.depth[near], truth[near], rtol=1e-3)


def test_fusion_rejects_mismatched_inputs_and_bad_options():
    truth = _plane()
    with pytest.raises(DepthNodeError, match='160x120'):
        fuse(truth[:, :100], _rows(truth))
    with pytest.raises(DepthNodeError, match=r'\[H, W\]'):
        fuse(truth[None], _rows(truth))
    for field, value in (('cell', 0), ('fine_sigma', -1.0), ('prior', 0.0),
                         ('edge_sigma', float('nan')), ('iterations', 0),
                         ('coarse_factor', 1.5)):
        with pytest.raises(ConfigError, match=f'fusion.{field}'):
            FusionConfig(**{field: value}).validate()
