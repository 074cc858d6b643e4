"""The fusion's edge fill (core/edge_fill.py): the LiDAR's own interpolation at silhouettes."""

from dataclasses import replace

import numpy as np
import pytest

from depth_node.core.edge_fill import apply, by_column, edge_fill_reference
from depth_node.core.errors import ConfigError
from depth_node.core.fusion import fuse, FusionConfig
from depth_node.core.lidar import SparseDepth

H, W = 60, 80
BOX_ROWS = (20, 41)  # the box's true rows: 8 m in front of a 20 m wall
BEAMS = np.arange(0, H, 3)  # a return on every third row, every column


def _box_scene(shift: int = 2) -> tuple[np.ndarray, np.ndarray, SparseDepth]:
    """Truth, the network (the box ``shift`` rows too low: a soft, misplaced silhouette),
    and exact LiDAR returns on every third row."""
    truth = np.full((H, W), 20.0, np.float32)
    truth[BOX_ROWS[0]:BOX_ROWS[1], 20:60] = 8.0
    network = np.full((H, W), 20.0, np.float32)
    network[BOX_ROWS[0] + shift:BOX_ROWS[1] + shift, 20:60] = 8.0
    vv, uu = np.meshgrid(BEAMS, np.arange(W), indexing='ij')
    u, v = uu.ravel().astype(np.int32), vv.ravel().astype(np.int32)
    return truth, network, SparseDepth(u, v, truth[v, u].copy(), W, H)


def _interpolated(truth: np.ndarray, y: int, x: int) -> float:
    """Depth linear in disparity between the returns of column ``x`` above and below ``y``."""
    up, dn = BEAMS[BEAMS <= y].max(), BEAMS[BEAMS >= y].min()
    if up == dn:
        return float(truth[y, x])
    t = (y - up) / (dn - up)
    d = 1.0 / truth[up, x] + t * (1.0 / truth[dn, x] - 1.0 / truth[up, x])
    return float(1.0 / d)


def test_at_a_misplaced_silhouette_the_returns_interpolation_replaces_the_network():
    truth, network, lidar = _box_scene()
    depth = network.copy()
    changed = apply(depth, by_column(lidar.u, lidar.v, lidar.z, W, H), 0.1, 2, 40.0)
    assert changed > 0
    # Every pixel of a column inside the box within one pixel of the network's steps (rows
    # 21-23 and 42-44) has the LiDAR's interpolation; far from them the network stays.
    for y in (21, 22, 23, 42, 43, 44):
        for x in (30, 45):
            assert depth[y, x] == pytest.approx(_interpolated(truth, y, x), rel=1e-5), (y, x)
    assert depth[30, 40] == network[30, 40] and depth[5, 40] == network[5, 40]
    # At the true silhouette the error falls: rows 20-21 are the box, the network says wall.
    rows = slice(BOX_ROWS[0] - 1, BOX_ROWS[0] + 3)
    before = np.abs(network[rows, 25:55] - truth[rows, 25:55]) / truth[rows, 25:55]
    after = np.abs(depth[rows, 25:55] - truth[rows, 25:55]) / truth[rows, 25:55]
    assert after.mean() < 0.5 * before.mean()


def test_the_fusion_runs_it_and_can_be_told_not_to():
    truth, network, lidar = _box_scene()
    on = fuse(network, lidar, FusionConfig(beam_check=False))
    off = fuse(network, lidar, FusionConfig(beam_check=False, edge_step=0.0))
    no_gap = fuse(network, lidar, FusionConfig(beam_check=False, beam_gap=0.0))
    rows = slice(BOX_ROWS[0] - 1, BOX_ROWS[0] + 4)
    err = {k: float(np.mean(np.abs(f.depth[rows, 25:55] - truth[rows, 25:55])
                            / truth[rows, 25:55]))
           for k, f in (('on', on), ('off', off))}
    assert err['on'] < 0.6 * err['off'], err
    # The grid (what sigma reads) is the depth before the edge fill, on or off.
    np.testing.assert_array_equal(on.centre_depth, off.centre_depth)
    # beam_gap 0 (no interpolation between returns) turns it off too.
    ref = fuse(network, lidar, FusionConfig(beam_check=False, beam_gap=0.0, edge_step=0.0))
    np.testing.assert_array_equal(no_gap.depth, ref.depth)


def test_an_object_nearer_than_both_returns_is_kept():
    truth, _, lidar = _box_scene()
    network = truth.copy()
    network[49:51, 30:40] = 3.0  # a low obstacle between the beams of rows 48 and 51
    depth = network.copy()
    apply(depth, by_column(lidar.u, lidar.v, lidar.z, W, H), 0.1, 2, 40.0, max_nearer=0.2)
    np.testing.assert_array_equal(depth[49:51, 30:40], 3.0)
    without = network.copy()
    apply(without, by_column(lidar.u, lidar.v, lidar.z, W, H), 0.1, 2, 40.0)
    assert np.all(without[49:51, 31:39] > 10.0)  # without the test it would vanish


def test_pixels_without_depth_stay_without_and_far_returns_do_not_join():
    truth, network, lidar = _box_scene()
    network[:, :5] = np.nan
    depth = network.copy()
    apply(depth, by_column(lidar.u, lidar.v, lidar.z, W, H), 0.1, 2, 2.0)  # beams 3 rows apart
    assert np.isnan(depth[:, :5]).all()
    on_beams = np.isin(np.arange(H), BEAMS)
    changed = depth != network
    assert changed[on_beams].any() and not changed[~on_beams][:, 5:].any()


@pytest.mark.parametrize('seed', range(6))
def test_compiled_edge_fill_matches_the_numpy_reference(seed):
    rng = np.random.default_rng(seed)
    h, w = 50, 70
    depth = np.full((h, w), 12.0, np.float32)
    depth[10:25, 15:45] = 4.0
    depth[rng.random((h, w)) < 0.05] = np.nan
    depth *= np.exp(rng.normal(0, 0.04, (h, w))).astype(np.float32)
    n = 250
    idx = rng.integers(0, h * w, n)  # duplicates: the later return on a pixel counts
    v, u = (idx // w).astype(np.int32), (idx % w).astype(np.int32)
    z = rng.uniform(2, 20, n).astype(np.float32)
    z[:3] = (np.nan, 0.0, -1.0)  # not returns
    window, gap, nearer = (0, 1, 2, 3, 2, 2)[seed], (40.0, 40.0, 40.0, 10.0, 5.0, 40.0)[seed], \
        (np.inf, 0.2, 0.2, 0.5, np.inf, 0.0)[seed]
    good = np.isfinite(z) & (z > 0)
    ref = edge_fill_reference(depth, u[good], v[good], z[good], 0.1, window, gap, nearer)
    fast = depth.copy()
    changed = apply(fast, by_column(u, v, z, w, h), 0.1, window, gap, nearer)
    assert changed == int(np.sum(ref != depth) - np.isnan(depth).sum()) and changed > 0
    np.testing.assert_allclose(fast, ref, rtol=1e-6, equal_nan=True)


def test_composed_images_follow_the_filled_depth():
    _, network, lidar = _box_scene()
    depth = network.copy()
    rel = np.full((H, W), 0.1, np.float32)
    rel[:, 40:] = 0.5  # refused there
    published = np.where(rel <= 0.2, depth, np.nan).astype(np.float32)
    sigma = (published * rel).astype(np.float32)
    apply(depth, by_column(lidar.u, lidar.v, lidar.z, W, H), 0.1, 2, 40.0, np.inf, published,
          sigma, rel)
    keep = rel <= 0.2
    np.testing.assert_array_equal(published[keep], depth[keep])
    np.testing.assert_allclose(sigma[keep], depth[keep] * 0.1, rtol=1e-6)
    assert np.isnan(published[~keep]).all() and np.isnan(sigma[~keep]).all()


@pytest.mark.parametrize('name,kw', [('fusion.edge_step', {'edge_step': -0.1}),
                                     ('fusion.edge_window', {'edge_window': 1.5}),
                                     ('fusion.edge_window', {'edge_window': -1})])
def test_bad_options_are_named(name, kw):
    with pytest.raises(ConfigError, match=name):
        replace(FusionConfig(), **kw).validate()


def test_a_network_that_predicts_the_beams_better_keeps_its_edges():
    # A curved wall (no plane between beams) and an exact network: the beam fill's frame check
    # finds the network the better predictor, and the edge fill stays off with the beam fill.
    truth, _, _ = _box_scene()
    rows = np.arange(H, dtype=np.float32)[:, None]
    wall = (20.0 + 4.0 * np.sin(rows / 4.0)) * np.ones((1, W), np.float32)
    truth = np.where(truth < 10, truth, wall).astype(np.float32)
    vv, uu = np.meshgrid(BEAMS, np.arange(W), indexing='ij')
    u, v = uu.ravel().astype(np.int32), vv.ravel().astype(np.int32)
    lidar = SparseDepth(u, v, truth[v, u].copy(), W, H)
    checked = fuse(truth, lidar, FusionConfig())
    np.testing.assert_allclose(checked.depth, truth, rtol=1e-5)
    unchecked = fuse(truth, lidar, FusionConfig(beam_check=False))
    assert np.sum(np.abs(unchecked.depth - truth) > 1e-3 * truth) > 50  # both fills change it


def test_a_lone_near_return_does_not_anchor_the_edge_fill():
    # Fog backscatter 3 m out on the beam just above the box's top: nothing near it agrees
    # with it, so the silhouette below is interpolated from the wall's returns, not from it.
    truth, network, lidar = _box_scene()
    k = np.flatnonzero((lidar.v == 18) & (lidar.u == 30))[0]
    z = lidar.z.copy()
    z[k] = 3.0
    fog = SparseDepth(lidar.u, lidar.v, z, W, H)
    out = fuse(network, fog, FusionConfig(beam_check=False)).depth
    assert np.all(out[19:22, 28:33] >= 7.9), out[19:22, 28:33]  # never nearer than the box
    # The same return with neighbours that agree (a real surface at 3 m) does anchor it.
    near = np.flatnonzero((lidar.v == 18) & (lidar.u >= 26) & (lidar.u <= 34))
    z[near] = 3.0
    net = network.copy()
    net[17:19, 26:35] = 3.0  # the network sees it too
    solid = fuse(net, SparseDepth(lidar.u, lidar.v, z, W, H), FusionConfig(beam_check=False))
    assert np.any(solid.depth[19:21, 28:33] < 7.9)


@pytest.mark.parametrize('seed', range(4))
def test_anchored_returns_match_a_direct_3x3_test(seed):
    """The compiled test (own cell first, then its neighbours until one agrees) keeps
    exactly the returns a plain 3 x 3 look at the cell centres keeps."""
    from depth_node.core.cell_grid import cell_of
    from depth_node.core.edge_fill import anchored

    rng = np.random.default_rng(seed)
    cell, h, w = 4, 48, 64
    gh, gw = h // cell, w // cell
    centre = rng.uniform(2, 20, (gh, gw)).astype(np.float32)
    centre[rng.random((gh, gw)) < 0.1] = np.nan
    n = 400
    v, u = rng.integers(0, h, n).astype(np.int32), rng.integers(0, w, n).astype(np.int32)
    z = rng.uniform(2, 20, n).astype(np.float32)
    ratio = 1.25
    keep = anchored(u, v, z, centre, cell, ratio, h, w)
    rows, cols = cell_of(h, cell)[v], cell_of(w, cell)[u]
    expected = np.zeros(n, bool)
    for i in range(n):
        near = centre[max(rows[i] - 1, 0):rows[i] + 2, max(cols[i] - 1, 0):cols[i] + 2]
        with np.errstate(invalid='ignore'):
            agree = (z[i] < ratio * near) & (near < ratio * z[i])
        expected[i] = bool(np.any(np.isnan(near) | agree))
    assert 0 < expected.sum() < n
    np.testing.assert_array_equal(keep, expected)
