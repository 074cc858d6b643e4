"""LiDAR-network fusion (core/fusion.py): known answers on scenes where the LiDAR is exact."""

from dataclasses import replace

import numpy as np
import pytest

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.core.beam_fill import beam_fill
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


def _above(truth, row):
    """``truth`` with no depth from ``row`` down (a LiDAR whose lowest beam is above it)."""
    out = truth.copy()
    out[row:] = np.nan
    return out


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


def test_between_beams_the_fusion_is_the_lidars_plane_where_the_network_is_noisy():
    truth = _plane()
    h, w = truth.shape
    rng = np.random.default_rng(3)
    network = (truth * np.exp(rng.normal(0.0, 0.04, truth.shape))).astype(np.float32)
    lidar = _rows(truth, every=7, first=3)
    inside = slice(3, lidar.v.max() + 1)  # from the top beam to the bottom one
    out = fuse(network, lidar)
    rel = np.abs(out.depth[inside] - truth[inside]) / truth[inside]
    # A plane's disparity is linear in the row: exact, but where the noise makes the network
    # look > 20 % nearer than at the two returns (an object in front, for the gate).
    assert np.mean(rel < 1e-4) > 0.98
    # Without the beam fill the network's noise shows between the beams.
    off = fuse(network, lidar, FusionConfig(beam_gap=0.0))
    assert np.median(np.abs(off.depth[inside] - truth[inside]) / truth[inside]) > 0.01


def test_the_beam_fill_stops_at_depth_steps_and_long_gaps():
    h, w = 96, 64
    truth = np.full((h, w), 30.0, np.float32)
    truth[50:] = 10.0  # a wall above, a near object below: a step between rows 47 and 51
    lidar = _rows(truth, every=4, first=3)  # rows 3, 7, ..., 47, 51, ...
    fill = beam_fill(truth, lidar.u, lidar.v, lidar.z, 4, 40.0, 0.1)
    assert fill.shape == (h, 16)
    np.testing.assert_allclose(fill[3:48], 1 / 30.0, rtol=1e-6)
    np.testing.assert_allclose(fill[51:92], 1 / 10.0, rtol=1e-6)
    assert np.isnan(fill[48:51]).all() and np.isnan(fill[:3]).all()  # the step; above the top
    # Beams further apart than the gap are not joined; a gap of 0 turns the fill off.
    far = _rows(truth[:48], every=20, first=3)
    assert np.isnan(beam_fill(truth[:48], far.u, far.v, far.z, 4, 16.0, 0.1)[4:23]).all()
    assert np.isfinite(beam_fill(truth[:48], far.u, far.v, far.z, 4, 24.0, 0.1)[4:23]).all()
    assert np.isnan(beam_fill(truth, lidar.u, lidar.v, lidar.z, 4, 0.0, 0.1)).all()


def test_an_object_between_two_beams_that_the_network_sees_is_kept():
    truth = _plane()  # a road
    h, w = truth.shape
    lidar = _rows(truth, every=16, first=4)  # a sparse LiDAR: rows 4, 20, ..., 116
    network = truth.copy()
    network[58:66, 60:100] = 0.7 * truth[58:66, 60:100]  # a low box on the road, 30 % nearer
    truth_box = network  # the network is right; neither beam hits the box (rows 52 and 68)
    # (the network is exact: the frame's check would keep its shape everywhere; off here)
    fill_on = FusionConfig(beam_check=False)
    out = fuse(network, lidar, fill_on)
    box = (slice(58, 66), slice(62, 98))
    np.testing.assert_allclose(out.depth[box], truth_box[box], rtol=0.05)
    # The road around it is the LiDAR's plane; with the gate off the box is erased.
    np.testing.assert_allclose(out.depth[30:50], truth[30:50], rtol=1e-4)
    erased = fuse(network, lidar, FusionConfig(beam_nearer=np.inf, beam_check=False))
    np.testing.assert_allclose(erased.depth[box], truth[box], rtol=1e-4)


def test_below_the_lowest_beam_the_road_plane_goes_on_until_the_network_sees_an_edge():
    truth = _plane(160, 120)  # a road, 40 m at the top row to 10 m at the bottom
    h, w = truth.shape
    lidar = _rows(_above(truth, 100), every=4, first=2)  # 25 beams, the lowest at row 98
    rows = np.arange(h, dtype=np.float32)[:, None]
    network = truth * (1.0 + 0.2 * np.clip((rows - 98) / 20, 0, 1))  # 20 % off near the car
    fill_on = FusionConfig(beam_check=False)  # the network is exact where the beams are
    out = fuse(network, lidar, fill_on)
    np.testing.assert_allclose(out.depth[100:], truth[100:], rtol=1e-4)  # the plane, exact
    off = fuse(network, lidar, FusionConfig(beam_reach=0.0, beam_check=False))
    assert np.median(np.abs(off.depth[130:] - truth[130:]) / truth[130:]) > 0.05
    # A depth edge in the network (a wall from row 130 on) ends the line there.
    wall = network.copy()
    wall[130:] = 9.0
    out = fuse(wall, lidar, fill_on)
    np.testing.assert_allclose(out.depth[100:128], truth[100:128], rtol=1e-4)
    assert np.all(np.abs(out.depth[131:] - truth[131:]) > 0.05 * truth[131:])
    # Returns that are not on one line (a kerb: the lowest beams bend) are not continued.
    bent = truth.copy()
    bent[70:] = truth[70:] * np.linspace(1.0, 0.7, h - 70)[:, None]
    lidar_bent = _rows(_above(bent, 100), every=4, first=2)
    fill = beam_fill(network, lidar_bent.u, lidar_bent.v, lidar_bent.z, 4, 40.0, 0.2, 0.2,
                     96.0)
    assert np.isnan(fill[100:]).all() and np.isfinite(fill[2:98]).all()


def test_the_frame_decides_between_the_lidars_line_and_the_networks_shape():
    from depth_node.core.beam_fill import beam_check
    from depth_node.core.fusion_reference import beam_check_reference
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w], np.float32)[:, None, None]
    truth = (20.0 + 3.0 * np.sin(9.0 * yy) * np.cos(4.0 * xx)).astype(np.float32)  # curved
    lidar = _rows(truth, every=6, first=2)
    rng = np.random.default_rng(5)
    shape = truth * np.exp(0.05 * xx).astype(np.float32)  # knows the surface, up to a tilt
    noisy = (truth * np.exp(rng.normal(0.0, 0.03, truth.shape))).astype(np.float32)
    for network, network_wins in ((shape, True), (noisy, False)):
        lin, net, k = beam_check(network, lidar.u, lidar.v, lidar.z, 4, 40.0, 0.2)
        assert k > 200 and (net < lin) == network_wins, (lin, net)
        assert (lin, net, k) == pytest.approx(
            beam_check_reference(network, lidar.u, lidar.v, lidar.z, 4, 40.0, 0.2), rel=1e-9)
        fill = fuse_field_fill(network, lidar)
        assert np.isnan(fill).all() == network_wins
    # The network that knows the shape: the fusion keeps it between the beams.
    out, off = fuse(shape, lidar), fuse(shape, lidar, FusionConfig(beam_gap=0.0))
    np.testing.assert_array_equal(out.depth, off.depth)


def fuse_field_fill(network, lidar):
    from depth_node.core.fusion import fuse_field
    return fuse_field(network, lidar).fill


def test_compiled_beam_fill_matches_the_numpy_reference():
    from depth_node.core.fusion_reference import beam_fill_reference
    rng = np.random.default_rng(4)
    h, w = 77, 93
    u = rng.integers(0, w, 900).astype(np.int32)
    v = rng.integers(0, h, 900).astype(np.int32)
    z = rng.uniform(9.0, 11.0, 900).astype(np.float32)
    network = rng.uniform(8.0, 12.0, (h, w)).astype(np.float32)
    for cell, gap, step, nearer in ((4, 40.0, 0.1, 0.2), (3, 10.0, 0.05, np.inf),
                                    (5, 100.0, 1.0, 0.05)):
        fast = beam_fill(network, u, v, z, cell, gap, step, nearer)
        ref = beam_fill_reference(network, u, v, z, cell, gap, step, nearer)
        assert 0.2 < np.isfinite(ref).mean() < 1.0
        np.testing.assert_allclose(fast, ref, rtol=1e-6, equal_nan=True)
    # The line below the lowest beams: a road with noisy returns on rows 2..98 of 160, a
    # noisy network (some rows look nearer, some bands step).
    truth = _plane(160, 96)
    lidar = _rows(_above(truth, 100), every=4, first=2)
    z = lidar.z * np.exp(rng.normal(0.0, 0.002, lidar.count)).astype(np.float32)
    network = (truth * np.exp(rng.normal(0.0, 0.04, truth.shape))).astype(np.float32)
    for reach, tolerance_step in ((96.0, 0.1), (30.0, 0.05)):
        fast = beam_fill(network, lidar.u, lidar.v, z, 4, 40.0, 0.2, 0.2, reach, tolerance_step)
        ref = beam_fill_reference(network, lidar.u, lidar.v, z, 4, 40.0, 0.2, 0.2, reach,
                                  tolerance_step)
        assert np.isfinite(ref[100:]).sum() > 20
        np.testing.assert_allclose(fast, ref, rtol=1e-6, equal_nan=True)


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
                         ('coarse_factor', 1.5), ('beam_gap', -1.0), ('beam_step', -0.1)):
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
    # (the beam line below the lowest beam is off: it would make the plane exact, 0 and 0)
    no_line = FusionConfig(beam_reach=0.0)
    on, off = (fuse(near * np.float32(1.15), lidar, cfg)
               for cfg in (no_line, FusionConfig(beam_reach=0.0, extend_support=1e9)))
    e_on, e_off = (np.median(np.abs(o.depth[104:120] - near[104:120]) / near[104:120])
                   for o in (on, off))
    assert e_on < 0.03 and e_off > 2 * e_on, (e_on, e_off)
    line = np.abs(fuse(near * np.float32(1.15), lidar, FusionConfig(beam_check=False))
                  .depth[104:120] - near[104:120])
    assert np.median(line / near[104:120]) < 1e-4  # with the line (default): exact


def test_the_correction_goes_on_down_a_long_near_road_below_the_lowest_beam():
    """The defect (fog with a 120 deg lens, ``benchmark accuracy --combined``): the global fit
    was 29 % off on the near road, the lowest returns (70-90 px above its bottom rows)
    corrected 13 % of it, and the downward fill faded over 16 cells into the filtered field
    (0 there: the global fit), so the rows at the bottom were published at the global fit's
    error (1.29x the truth) with a sigma / z of 0.02. The fill now fades into the median of
    the columns' lowest corrections (here all the same: the fit is off on the whole road)."""
    truth = _plane(480, 64) / np.float32(5.0)  # a near road, 2-8 m: steep disparity
    network = truth * np.float32(1.2)  # the global fit 20 % too far on the whole road
    lidar = _rows(truth, every=4, first=2)
    lidar = lidar.subset(lidar.v < 200)  # the lowest beam at row 198: 70 cells above the bottom
    out = fuse(network, lidar, FusionConfig(beam_reach=0.0))  # the fill alone, no beam line
    err = np.abs(out.depth - truth) / truth
    assert np.median(err[100:190]) < 0.005
    for rows in (slice(240, 280), slice(400, 480)):  # 10-20 and 50-70 cells below
        assert np.median(err[rows]) < 0.03, (rows, np.median(err[rows]))


def test_downward_fill_fades_into_the_median_and_stops_at_a_depth_edge():
    gh, gw = 12, 3
    rho = np.zeros((gh, gw))
    rho[:5] = [0.3, 0.1, 0.2]  # the columns' lowest supported values: median 0.2
    support = np.zeros((gh, gw))
    support[:5] = 2.0
    guide = np.tile(np.linspace(0.05, 0.1, gh)[:, None], (1, gw))  # a road: smooth disparity
    guide[8:, 2] *= 2.0  # column 2: a nearer object from row 8 (a depth edge)
    guide[6:, 1] = 0.0  # column 1: no depth from row 6 (sky, or nothing fitted)
    rho[8:, 0] = 0.05  # the filtered field, which the fill replaces
    out = extend_down(rho, support, guide, 0.5, 0.1, reach=4.0)
    np.testing.assert_allclose(out[:5], rho[:5])
    rows = np.arange(5, gh)
    fade = np.exp(-(rows - 4) / 4.0)
    np.testing.assert_allclose(out[5:, 0], 0.2 + 0.1 * fade)  # from 0.3 into the median
    assert out[-1, 0] == pytest.approx(0.2, abs=0.02)
    assert out[5, 1] == pytest.approx(0.2 - 0.1 * np.exp(-0.25)) and np.all(out[6:, 1] == 0)
    np.testing.assert_allclose(out[5:8, 2], 0.2)  # at the median already
    assert np.all(out[8:, 2] == 0)  # beyond the depth edge: the field's own
    # No support in a column: untouched, and the median is the other columns' (0.15).
    support[:, 0] = 0.0
    out = extend_down(rho, support, guide, 0.5, 0.1, reach=4.0)
    np.testing.assert_array_equal(out[:, 0], rho[:, 0])
    assert out[5, 1] == pytest.approx(0.15 - 0.05 * np.exp(-0.25))
    # No support anywhere: nothing changes.
    np.testing.assert_array_equal(extend_down(rho, np.zeros_like(support), guide, 0.5, 0.1),
                                  rho)


def test_compiled_downward_fill_matches_the_numpy_reference():
    from depth_node.core.fusion_reference import extend_down_reference
    rng = np.random.default_rng(5)
    for trial in range(20):
        gh, gw = rng.integers(1, 30, size=2)
        rho = rng.normal(0.0, 0.2, (gh, gw))
        support = np.where(rng.random((gh, gw)) < 0.3, rng.random((gh, gw)) * 3, 0.0)
        support[gh // 2:] *= trial % 2  # half the trials: support only in the upper half
        guide = np.cumsum(rng.normal(0.0, 0.03, (gh, gw)), axis=0) + 0.1
        guide[rng.random((gh, gw)) < 0.05] = 0.0  # no depth
        guide[rng.random((gh, gw)) < 0.03] = np.nan
        step, reach = float(rng.uniform(0.0, 0.5)), [np.inf, 0.5, 4.0, 16.0][trial % 4]
        np.testing.assert_allclose(extend_down(rho, support, guide, 0.5, step, reach),
                                   extend_down_reference(rho, support, guide, 0.5, step, reach),
                                   rtol=1e-12, atol=1e-15, err_msg=f'trial {trial}')


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
        # The grid's centre depth is the fused depth there (pins included) before the edge
        # fill, which changes only pixels next to a step.
        field = fuse_field(network, lidar, config)
        np.testing.assert_allclose(field.centre_depth, ref.centre_depth, rtol=1e-6,
                                   equal_nan=True)
        np.testing.assert_allclose(fast.centre_depth, ref.centre_depth, rtol=1e-6,
                                   equal_nan=True)
        no_edge = fuse_reference(network, lidar, replace(config, edge_step=0.0))
        np.testing.assert_allclose(ref.centre_depth, cell_depth(no_edge.depth, config.cell),
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


@pytest.mark.parametrize('seed', range(4))
def test_beam_fill_of_a_row_is_fill_value_at_every_pixel(seed):
    """fill_row decides per pair of bands what fill_value decides per pixel: the same row
    (linear between close bands, the nearer band across a step, half way next to a lone
    band, untouched without depth or fill)."""
    from depth_node.core.beam_kernels import fill_row, fill_value
    from depth_node.core.cell_grid import axis_weights

    rng = np.random.default_rng(seed)
    cell, w = 4, 90
    gw = -(-w // cell)
    bands = (1.0 / rng.uniform(3, 30, gw)).astype(np.float32)
    bands[rng.random(gw) < 0.3] = np.nan
    bands[rng.random(gw) < 0.2] *= np.float32(3.0)  # vertical edges between bands
    row = rng.uniform(3, 30, w).astype(np.float32)
    row[rng.random(w) < 0.1] = np.nan
    x0, x1, fx = axis_weights(w, gw, cell)
    ratio = float(np.exp(0.2))
    expected = row.copy()
    for x in range(w):
        d = fill_value(bands[x0[x]], bands[x1[x]], fx[x], row[x], ratio)
        if d > 0 and row[x] == row[x]:
            expected[x] = np.float32(1.0) / np.float32(d)
    fast = row.copy()
    fill_row(fast, bands, x0, x1, fx, ratio)
    assert np.sum(fast != row) > 0
    np.testing.assert_array_equal(fast, expected)
