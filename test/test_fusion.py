"""LiDAR-network fusion (core/fusion.py): known answers on scenes where the LiDAR is exact."""

import numpy as np
import pytest

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.core.fusion import (extend_down, fuse, FusionConfig, recursive_filter,
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


def test_the_near_road_below_the_lowest_beam_keeps_the_correction_above_it():
    """Below the lowest returns (the road a roof LiDAR never sees) the field goes on."""
    truth = _plane(160, 160)
    network = truth * np.float32(1.15)  # the network is 15 % too far on the whole road
    lidar = _rows(truth, every=4, first=2)
    lidar = lidar.subset(lidar.v < 100)  # nothing below row 100
    out = fuse(network, lidar)
    err = np.abs(out.depth - truth) / truth
    assert np.median(err[60:100]) < 0.005
    # 10-30 rows below the last beam: most of the 15 % is still removed.
    assert np.median(err[110:130]) < 0.05
    # Here (a far road, gentle disparity) the filters reach down too: the fill agrees.
    off = fuse(network, lidar, FusionConfig(extend_support=1e9))
    err_off = np.abs(off.depth - truth) / truth
    assert np.median(err[110:130]) <= np.median(err_off[110:130]) + 1e-3
    # A near road (2-8 m: steep disparity): the guide stops the filters going down within a
    # few rows, the fill does not.
    near = truth / np.float32(5.0)
    lidar = _rows(near, every=4, first=2)
    lidar = lidar.subset(lidar.v < 100)
    on, off = (fuse(near * np.float32(1.15), lidar, cfg)
               for cfg in (FusionConfig(), FusionConfig(extend_support=1e9)))
    e_on, e_off = (np.median(np.abs(o.depth[104:120] - near[104:120]) / near[104:120])
                   for o in (on, off))
    assert e_on < 0.03 and e_off > 2 * e_on, (e_on, e_off)


def test_downward_fill_fades_and_stops_at_a_depth_edge():
    gh, gw = 12, 3
    rho = np.zeros((gh, gw))
    rho[:5] = 0.2
    support = np.zeros((gh, gw))
    support[:5] = 2.0
    guide = np.tile(np.linspace(0.05, 0.1, gh)[:, None], (1, gw))  # a road: smooth disparity
    guide[8:, 2] *= 2.0  # column 2: a nearer object from row 8 (a depth edge)
    guide[6:, 1] = 0.0  # column 1: no depth from row 6 (sky, or nothing fitted)
    rho[8:, 0] = 0.1  # the filtered field itself, where the fill fades into it
    out = extend_down(rho, support, guide, 0.5, 0.1, reach=4.0)
    np.testing.assert_allclose(out[:5], 0.2)
    rows = np.arange(5, gh)
    np.testing.assert_allclose(out[5:, 0], rho[5:, 0] + (0.2 - rho[5:, 0])
                               * np.exp(-(rows - 4) / 4.0))
    assert out[5, 1] == pytest.approx(0.2 * np.exp(-0.25)) and np.all(out[6:, 1] == 0)
    np.testing.assert_allclose(out[5:8, 2], 0.2 * np.exp(-(rows[:3] - 4) / 4.0))
    assert np.all(out[8:, 2] == 0)
    # No support in a column: untouched.
    support[:, 0] = 0.0
    np.testing.assert_array_equal(extend_down(rho, support, guide, 0.5, 0.1)[:, 0], rho[:, 0])


def _scene():
    """A plane seen by a network with a smooth error, exact LiDAR rows and two outliers."""
    truth = _plane(123, 157)
    h, w = truth.shape
    x = np.linspace(0, 1, w)[None, :]
    y = np.linspace(0, 1, h)[:, None]
    network = truth * (1.0 + 0.15 * np.sin(2 * np.pi * x) * np.cos(np.pi * y)) \
        .astype(np.float32)
    network[:10, :20] = np.nan  # sky
    lidar = _rows(truth, every=5, first=2)
    z = lidar.z.copy()
    z[[7, lidar.count // 2]] *= np.float32(0.2)  # spurious near returns
    return network, SparseDepth(lidar.u, lidar.v, z, w, h)


def test_compiled_fusion_matches_the_numpy_reference():
    from depth_node.core.fusion import fuse_field
    from depth_node.core.fusion_reference import fuse_reference
    from depth_node.core.uncertainty import cell_depth
    network, lidar = _scene()
    for config in (FusionConfig(), FusionConfig(cell=3, coarse_factor=5, iterations=2),
                   FusionConfig(pin_tolerance=0.0)):
        fast, ref = fuse(network, lidar, config), fuse_reference(network, lidar, config)
        assert (fast.returns, fast.pinned) == (ref.returns, ref.pinned)
        assert ref.returns <= lidar.count - 2 and (ref.pinned > 0) == (config.pin_tolerance > 0)
        np.testing.assert_allclose(fast.depth, ref.depth, rtol=1e-6, equal_nan=True)
        for name in ('rho', 'support', 'support_coarse', 'spread'):
            np.testing.assert_allclose(getattr(fast, name), getattr(ref, name), rtol=1e-5,
                                       atol=1e-7, err_msg=name)
        # The grid's centre depth is the fused depth there (pins included).
        field = fuse_field(network, lidar, config)
        np.testing.assert_allclose(field.centre_depth, cell_depth(ref.depth, config.cell),
                                   rtol=1e-6, equal_nan=True)


def test_upsampling_along_rows_then_columns_is_opencvs_bilinear():
    from depth_node.core.cell_grid import along_rows, axis_weights, upsample_reference
    grid = np.random.default_rng(2).random((9, 13)).astype(np.float32)
    for cell, h, w in ((4, 36, 52), (3, 25, 37), (5, 41, 61)):
        rows = along_rows(grid, cell, w)  # [9, w]
        y0, y1, fy = axis_weights(h, 9, cell)
        ours = rows[y0] + fy[:, None] * (rows[y1] - rows[y0])
        np.testing.assert_allclose(ours, upsample_reference(grid, cell, h, w), rtol=1e-6,
                                   atol=1e-7)
