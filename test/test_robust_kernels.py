"""The compiled robust fit (``FitConfig.fit``) against its numpy reference (``fit_reference``).

Same steps and subsets; the compiled loops take medians by quickselect on an order key and the
logarithm by a series, so the two agree to float rounding, not bit for bit: scale, shift,
residual and AbsRel within 1e-9 relative, the inlier count and every refusal exactly.
"""

import math

import numpy as np
import pytest

from depth_node.core.align import OutputKind
from depth_node.core.errors import DepthNodeError
from depth_node.core.lidar import project_points
from depth_node.core.fit_data import draw_pairs, start_hypotheses, strided_subset
from depth_node.core.robust import FitConfig
from depth_node.core.robust_kernels import (_log1p, _percentile, _robust_sigma, _select,
                                            compiled_start_samples as start_samples)
from depth_node.core.see_through import reject_see_through
from depth_node.sim.frames import SimRig

DISP, DEPTH = OutputKind.DISPARITY, OutputKind.DEPTH


def assert_same_fit(cfg, pred, z, space, weights=None):
    got = cfg.fit(pred, z, space, weights)
    want = cfg.fit_reference(pred, z, space, weights)
    assert (got.ok, got.reason, got.points, got.inliers) == \
        (want.ok, want.reason, want.points, want.inliers)
    for name in ('scale', 'shift', 'residual', 'abs_rel'):
        a, b = getattr(got, name), getattr(want, name)
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True), name
    return got


def pairs(space, n, outliers=0.2, noise=0.02, seed=0):
    """Prediction and depth of a known map; ``outliers`` of the returns 1.5-4x behind."""
    rng = np.random.default_rng(seed)
    z = np.exp(rng.uniform(np.log(2.0), np.log(80.0), n))
    seen = z * np.exp(rng.normal(0.0, noise, n))
    pred = (1.0 / seen + 0.01) / 0.4 if space is DISP else (seen - 2.0) / 60.0
    bad = rng.random(n) < outliers
    z[bad] *= rng.uniform(1.5, 4.0, int(bad.sum()))
    return pred, z


CONFIGS = [FitConfig(), FitConfig(loss='huber'), FitConfig(tuning=3.0, max_iter=5),
           FitConfig(coarse_points=512, max_points=1024, tol=1e-6), FitConfig(seed=4)]


@pytest.mark.parametrize('space', [DISP, DEPTH])
@pytest.mark.parametrize('n', [30, 3000, 9000, 30000])
def test_compiled_fit_matches_reference(space, n):
    for seed, (outliers, noise) in enumerate([(0.0, 0.0), (0.2, 0.02), (0.4, 0.08)]):
        pred, z = pairs(space, n, outliers, noise, seed)
        for cfg in CONFIGS:
            assert_same_fit(cfg, pred, z, space)
        weights = np.random.default_rng(seed).uniform(0.0, 2.0, n)
        weights[::7] = 0.0
        assert_same_fit(FitConfig(), pred, z, space, weights)


def test_compiled_fit_input_types_and_bad_values():
    pred, z = pairs(DISP, 5000, seed=3)
    pred[::50] = np.nan
    z[::70] = -1.0
    z[1::90] = np.inf
    cfg = FitConfig()
    want = assert_same_fit(cfg, pred, z, DISP)
    assert want.ok and want.points == (np.isfinite(pred) & np.isfinite(z) & (z > 0)).sum()
    for p, zz in ((pred.astype(np.float32), z.astype(np.float32)), (pred.astype('>f8'), z),
                  (pred.tolist(), z.tolist()), (pred[:, None], z[:, None])):
        assert_same_fit(cfg, p, zz, DISP)
    assert_same_fit(cfg, (np.arange(5000) % 97 + 1).astype(np.int64), z, DISP)
    with pytest.raises(DepthNodeError, match='same length'):
        cfg.fit(pred, z[:-1], DISP)
    with pytest.raises(DepthNodeError, match='weights'):
        cfg.fit(pred, z, DISP, weights=np.ones(3))


def test_compiled_fit_refusals_match():
    pred, z = pairs(DISP, 500)
    rng = np.random.default_rng(0)
    cases = [(pred[:10], z[:10], FitConfig(min_points=20)),
             (np.full(500, np.nan), z, FitConfig()),
             (np.full(500, 0.7), z, FitConfig()),
             (z, z, FitConfig()),  # larger prediction = farther: no positive scale
             (np.exp(rng.normal(0.0, 0.8, 500)) / z, z, FitConfig()),  # residual too large
             (pred, z, FitConfig(max_residual=0.001)),
             (pred, z, FitConfig(min_inlier_fraction=0.99))]
    for p, zz, cfg in cases:
        fit = assert_same_fit(cfg, p, zz, DISP)
        assert not fit.ok and math.isnan(fit.scale)


def test_compiled_fit_on_street_sweeps():
    rig = SimRig.default(320, 240, seed=5)
    for frame in rig.frames(2, rate=2.0):
        sparse = project_points(frame.lidar, rig.camera, rig.lidar_to_camera, 0.5)
        used = sparse.subset(reject_see_through(sparse, focal_px=rig.camera.fy))
        depth = np.where(np.isfinite(frame.depth), frame.depth, 80.0)
        rng = np.random.default_rng(frame.index)
        disparity = (0.7 / depth + 0.01) * rng.normal(1.0, 0.03, depth.shape)
        assert_same_fit(FitConfig(), used.sample(disparity.astype(np.float32)), used.z, DISP)
        assert_same_fit(FitConfig(), used.sample(depth * 0.5 + 1.0), used.z, DEPTH)


def test_kernel_helpers_against_numpy():
    rng = np.random.default_rng(2)
    for n in (1, 2, 3, 10, 257, 4096):
        for values in (rng.normal(size=n), np.round(rng.normal(size=n) * 3),
                       np.full(n, 1.5), np.where(rng.random(n) < 0.3, np.inf, rng.random(n))):
            for k in sorted({0, n // 2, n - 1}):
                assert _select(values.copy(), n, k) == np.partition(values, k)[k]
    r = np.concatenate([rng.uniform(-0.1, 0.1, 10000), [0.0, 1e-12, -1e-300, 0.0999, 0.5, -0.5]])
    got = np.array([_log1p(v) for v in r])
    np.testing.assert_allclose(got, np.log1p(r), rtol=1e-15, atol=0)
    # The scale from the order keys equals the reference's two medians of |log1p(r)|.
    r = np.concatenate([rng.normal(0.0, 0.03, 3000), rng.uniform(0.5, 3.0, 1000)])
    rho = np.abs(np.log1p(r))
    first = max(1.4826 * np.partition(rho, rho.size // 2)[rho.size // 2], 1e-5)
    inner = rho[rho <= 4.685 * first]
    want = max(1.4826 * np.partition(inner, inner.size // 2)[inner.size // 2], 1e-5)
    keys = np.where(r >= 0, r, -r / (1.0 + r))
    assert _robust_sigma(keys, keys.size) == pytest.approx(want, rel=1e-12)


def test_start_samples_are_start_hypotheses_bit_for_bit():
    """The compiled start (``start_samples`` on ``draw_pairs``) keeps the reference's samples
    exactly, ties in the prediction (zero slopes' divisions) and few points included; its
    percentile is numpy's to the last bit."""
    rng = np.random.default_rng(5)
    for trial in range(400):
        n = int(rng.integers(2, 3000))
        x = rng.random(n) * rng.choice([1e-3, 1.0, 100.0])
        if trial % 4 == 0:
            x = np.round(x, 2)  # equal predictions: dx = 0 for some pairs
        y = rng.random(n) + 0.1
        seed, count, points = int(rng.integers(0, 4)), int(rng.integers(1, 80)), \
            int(rng.integers(1, 400))
        for inverse in (True, False):
            want = start_hypotheses(x, y, None, seed, count, points, inverse=inverse)
            i, j = draw_pairs(n, None, seed, count)
            sub = strided_subset(n, points)
            s, t = np.empty(count), np.empty(count)
            kept = start_samples(x, y, i, j, sub, inverse, s, t)
            if want is None:
                assert kept == 0
            else:
                np.testing.assert_array_equal(s[:kept], want[0])
                np.testing.assert_array_equal(t[:kept], want[1])
                np.testing.assert_array_equal(sub, want[2])
        for p in (1.0, 10.0, 50.0, 90.0, 99.0):
            assert _percentile(x[sub].copy(), sub.size, p) == np.percentile(x[sub], p)
            assert _percentile(x.copy(), n // 2 + 1, p) == np.percentile(x[:n // 2 + 1], p)


def test_draw_pairs_are_freshly_seeded_every_time():
    a = draw_pairs(1000, None, 3, 64)
    draw_pairs(500, None, 3, 10)  # the same generator, used in between
    b = draw_pairs(1000, None, 3, 64)
    want = np.random.default_rng(3).integers(0, 1000, (2, 64))
    for got in (a, b):
        np.testing.assert_array_equal(np.stack(got), want)
    prior = np.linspace(0.1, 1.0, 200)
    np.testing.assert_array_equal(
        np.stack(draw_pairs(200, prior, 0, 16)),
        np.random.default_rng(0).choice(200, (2, 16), p=prior / prior.sum()))
