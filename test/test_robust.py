"""Robust alignment: see-through rejection, robust fit, temporal filter, local alignment.

Known answers come from the synthetic street (rendered depth is exact) and from synthetic arrays
with a known affine map. Run with ``-s`` to see the measured numbers.
"""

import math
import time

import numpy as np
import pytest

from depth_node.core.align import AffineFit, apply_affine, fit_affine, OutputKind
from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.core.lidar import project_points, SparseDepth
from depth_node.core.local_align import align_local
from depth_node.core.metrics import depth_metrics
from depth_node.core.robust import fit_affine_robust, FitConfig
from depth_node.core.see_through import reject_see_through
from depth_node.core.temporal import AffineFilter, FilterConfig
from depth_node.sim.frames import SimRig
from depth_node.sim.scene import LidarModel

DISP = OutputKind.DISPARITY
DEPTH = OutputKind.DEPTH
W, H = 320, 240


class Street:
    """Frames of the synthetic street at 320x240 and their projected LiDAR."""

    def __init__(self, lidar: LidarModel, count: int = 3) -> None:
        self.rig = SimRig.default(W, H, seed=0, lidar=lidar)
        # 2 frames/s at 8 m/s: 4 m apart, so the frames see different cars and poles.
        self.frames = list(self.rig.frames(count, speed=8.0, rate=2.0))
        self.sparse = [project_points(f.lidar, self.rig.camera, self.rig.lidar_to_camera, 0.5)
                       for f in self.frames]


@pytest.fixture(scope='module')
def exact_street() -> Street:
    return Street(LidarModel(range_noise=0.0, dropout=0.0))


@pytest.fixture(scope='module')
def noisy_street() -> Street:
    return Street(LidarModel(range_noise=0.03, dropout=0.1))


def _relative(depth: np.ndarray, space: OutputKind, field: np.ndarray, noise: float,
              rng: np.random.Generator) -> np.ndarray:
    """A relative prediction: the true disparity (or depth) times ``field`` and noise, under a
    known affine map; sky is disparity 0 (or the far end of the depth range)."""
    n = np.exp(rng.normal(0.0, noise, depth.shape)) if noise > 0 else 1.0
    if space is DISP:
        disp = np.where(np.isfinite(depth), 1.0 / depth, 0.0)
        return (3.0 * disp * field * n + 0.2).astype(np.float32)
    far = np.where(np.isfinite(depth), depth, 100.0)
    return (far * field * n / 100.0 + 0.05).astype(np.float32)


def _sine_field(amplitude: float = 0.15) -> np.ndarray:
    """A smooth distortion across the image: one period over the width."""
    u = np.arange(W, dtype=np.float64)[None, :]
    return np.broadcast_to(1.0 + amplitude * np.sin(2 * np.pi * u / W + 0.5), (H, W))


def _abs_rel(depth: np.ndarray, gt: np.ndarray) -> float:
    return depth_metrics(depth, gt, max_depth=80.0).abs_rel


def _dense_abs_rel(rel: np.ndarray, fit: AffineFit, gt: np.ndarray) -> float:
    return _abs_rel(apply_affine(rel, fit.scale, fit.shift, fit.space), gt)


# --- see-through rejection ------------------------------------------------------------------


@pytest.mark.parametrize('which', ['exact_street', 'noisy_street'])
def test_see_through_rejection_against_rendered_depth(which, request):
    street = request.getfixturevalue(which)
    counts = dict(see=0, see_hit=0, gross=0, gross_hit=0, good=0, good_hit=0, bad=0, bad_hit=0,
                  rejected=0)
    base_good_hit = 0
    for frame, sparse in zip(street.frames, street.sparse):
        t0 = time.perf_counter()
        keep = reject_see_through(sparse, focal_px=street.rig.camera.fy)
        ms = (time.perf_counter() - t0) * 1e3
        gt = sparse.sample(frame.depth)
        with np.errstate(invalid='ignore', divide='ignore'):
            ratio = sparse.z / gt  # LiDAR over rendered depth at the pixel (0 where sky)
        good = np.abs(ratio - 1.0) <= 0.05
        bad = ~good  # the brief's outliers: > 5 % off, either way
        see = ~(ratio <= 1.05)  # behind what the camera sees: see-through (or sky)
        gross = ~(ratio <= 1.2)
        for name, mask in (('see', see), ('gross', gross), ('good', good), ('bad', bad)):
            counts[name] += int(mask.sum())
            counts[name + '_hit'] += int((mask & ~keep).sum())
        counts['rejected'] += int((~keep).sum())
        base_good_hit += int((good & ~reject_see_through(sparse)).sum())
    recall_see = counts['see_hit'] / counts['see']
    recall_gross = counts['gross_hit'] / counts['gross']
    recall_bad = counts['bad_hit'] / counts['bad']
    false_reject = counts['good_hit'] / counts['good']
    precision = counts['bad_hit'] / counts['rejected']
    print(f'\n{which}: {sparse.count} px/frame, reject {ms:.2f} ms; see-through recall '
          f'{recall_see:.3f} (>20 %: {recall_gross:.3f}), >5 % recall {recall_bad:.3f}, '
          f'precision {precision:.3f}, false-reject rate {false_reject:.4f} '
          f'(without focal_px {base_good_hit / counts["good"]:.4f})')
    # Most returns behind the rendered surface go, nearly all of the grossly wrong ones ...
    assert recall_see >= 0.75
    assert recall_gross >= 0.93
    # ... the > 5 % set also holds returns *nearer* than the pixel's depth (foreground edges
    # rounded onto background pixels), which no nearer-neighbour test can see ...
    assert recall_bad >= 0.45
    # ... and few good returns are lost (those next to depth edges, on purpose).
    assert false_reject <= 0.08
    # The grazing-surface allowance is what keeps the far road: without it, far more go.
    assert base_good_hit > 1.5 * counts['good_hit']


def test_see_through_rejection_known_layout():
    # Background wall at 20 m; a foreground box at 5 m covering columns 40..59, rows 20..39.
    # Inside the box, every 4th pixel is a see-through return of the wall.
    w, h = 100, 60
    vv, uu = np.mgrid[0:h:2, 0:w:2]
    u, v = uu.ravel(), vv.ravel()
    inside = (u >= 40) & (u < 60) & (v >= 20) & (v < 40)
    z = np.where(inside, 5.0, 20.0)
    see = inside & (u % 4 == 0) & (v % 4 == 0) & (u > 40) & (v > 20)
    z[see] = 20.0
    sparse = SparseDepth(u.astype(np.int32), v.astype(np.int32), z.astype(np.float32), w, h)
    keep = reject_see_through(sparse, window=5, rel_gap=0.1)
    assert not keep[see].any()
    # Wall returns within the window of the box edge go too; the others all stay.
    near_edge = ~inside & (u >= 38) & (u < 62) & (v >= 18) & (v < 42)
    assert keep[~see & ~near_edge].all()
    assert keep[inside & ~see].all()
    assert reject_see_through(sparse.subset(np.zeros(u.size, bool))).shape == (0,)
    with pytest.raises(DepthNodeError, match='window'):
        reject_see_through(sparse, window=4)
    with pytest.raises(DepthNodeError, match='focal_px'):
        reject_see_through(sparse, focal_px=-1.0)


# --- robust fit: synthetic arrays -----------------------------------------------------------


def _pairs(space: OutputKind, n: int = 4000, outliers: float = 0.2, noise: float = 0.02,
           seed: int = 0) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Prediction and LiDAR depth with a known map; ``outliers`` of the returns lie 1.5-4x
    behind (see-through-like)."""
    rng = np.random.default_rng(seed)
    z = np.exp(rng.uniform(np.log(2.0), np.log(80.0), n))
    z_seen = z * np.exp(rng.normal(0.0, noise, n))  # what the model saw: `noise` in log depth
    if space is DISP:
        s, t = 0.4, -0.01  # 1/z = s·d + t
        pred = (1.0 / z_seen - t) / s
    else:
        s, t = 60.0, 2.0  # z = s·m + t
        pred = (z_seen - t) / s
    z_obs = z.copy()
    bad = rng.random(n) < outliers
    z_obs[bad] *= rng.uniform(1.5, 4.0, int(bad.sum()))
    return pred, z_obs, s, t


@pytest.mark.parametrize('space', [DISP, DEPTH])
def test_robust_fit_recovers_known_map_with_gross_outliers(space):
    pred, z, s, t = _pairs(space)
    plain = fit_affine(pred, z, space)
    robust = fit_affine_robust(pred, z, space)
    ref = 0.1 if space is DISP else 20.0  # compare shifts at a typical target value
    print(f'\n{space.value}: scale error LS {plain.scale / s - 1:+.4f}, robust '
          f'{robust.scale / s - 1:+.4f}; residual {robust.residual:.4f}, inliers '
          f'{robust.inliers}/{robust.points}, abs_rel {robust.abs_rel:.4f}')
    assert robust.ok and robust.space is space
    assert robust.scale == pytest.approx(s, rel=0.01)
    assert abs(robust.shift - t) < 0.01 * ref
    assert abs(plain.scale / s - 1) > 0.05  # least squares is visibly off
    assert 0.7 * 4000 < robust.inliers < 0.85 * 4000  # ~80 % are inliers
    assert robust.residual == pytest.approx(0.02, rel=0.25)  # the 2 % noise, robustly
    assert robust.abs_rel < 0.03
    for options in (dict(loss='huber'), dict(method='ransac')):
        other = fit_affine_robust(pred, z, space, **options)
        # Huber's influence never vanishes: 20 % one-sided outliers bias it a little.
        assert other.ok and other.scale == pytest.approx(s, rel=0.03), options


def test_robust_fit_exact_data_and_weights():
    pred, z, s, t = _pairs(DISP, outliers=0.0, noise=0.0)
    fit = fit_affine_robust(pred, z, DISP)
    assert fit.scale == pytest.approx(s, rel=1e-6) and fit.shift == pytest.approx(t, abs=1e-7)
    assert fit.inliers == fit.points == pred.size and fit.abs_rel < 1e-6
    # Zero weights remove points: weighting out the outliers is as good as not having them.
    pred, z, s, t = _pairs(DISP, outliers=0.3, noise=0.0, seed=1)
    clean = np.isclose(z, 1.0 / (s * pred + t), rtol=1e-9)
    fit = fit_affine_robust(pred, z, DISP, weights=clean.astype(float), loss='huber')
    assert fit.points == int(clean.sum()) and fit.scale == pytest.approx(s, rel=1e-6)
    # Deterministic: the same input gives the same fit.
    assert fit_affine_robust(pred, z, DISP) == fit_affine_robust(pred, z, DISP)


def test_robust_fit_refusals():
    pred, z, _, _ = _pairs(DISP, n=500)
    few = fit_affine_robust(pred[:10], z[:10], DISP, min_points=20)
    assert not few.ok and 'too few' in few.reason and few.points == 10
    nan = fit_affine_robust(np.full(500, np.nan), z, DISP)
    assert not nan.ok and 'too few' in nan.reason
    flat = fit_affine_robust(np.full(500, 0.7), z, DISP)
    assert not flat.ok and 'constant' in flat.reason
    # Larger prediction = farther: not a disparity (a depth model declared as disparity).
    anti = fit_affine_robust(z, z, DISP)
    assert not anti.ok and 'non-positive scale' in anti.reason
    # A prediction that follows depth only loosely (80 % log noise): the residual is too large.
    rng = np.random.default_rng(0)
    loose = fit_affine_robust(np.exp(rng.normal(0.0, 0.8, z.size)) / z, z, DISP)
    assert not loose.ok and 'max_residual' in loose.reason
    assert math.isnan(loose.scale)
    # The same data pass with a looser limit, and the limit is what decides.
    loose = fit_affine_robust(pred, z, DISP, max_residual=1.0)
    tight = fit_affine_robust(pred, z, DISP, max_residual=0.001)
    assert loose.ok and not tight.ok and 'residual' in tight.reason
    with pytest.raises(DepthNodeError, match='same length'):
        fit_affine_robust(pred, z[:-1], DISP)


@pytest.mark.parametrize('field, value, rule', [
    ('method', 'lsq', 'irls'), ('loss', 'cauchy', 'tukey'), ('min_points', 1, '>= 2'),
    ('max_residual', 0.0, '> 0'), ('tuning', -1.0, 'positive'),
    ('min_inlier_fraction', 1.5, '[0, 1]'), ('hypotheses', 0, '>= 1')])
def test_fit_config_validation_names_the_field(field, value, rule):
    with pytest.raises(ConfigError) as err:
        FitConfig(**{field: value})
    assert err.value.name == f'fit.{field}' and rule in err.value.rule
    assert err.value.value == value


# --- robust fit: the street -----------------------------------------------------------------


@pytest.mark.parametrize('space', [DISP, DEPTH])
def test_robust_fit_on_street_exact_relative_input(exact_street, space):
    rng = np.random.default_rng(0)
    for frame, sparse in zip(exact_street.frames, exact_street.sparse):
        rel = _relative(frame.depth, space, np.ones((H, W)), 0.0, rng)
        keep = reject_see_through(sparse, focal_px=exact_street.rig.camera.fy)
        robust = fit_affine_robust(sparse.sample(rel)[keep], sparse.z[keep], space)
        plain = fit_affine(sparse.sample(rel), sparse.z, space)
        a_rob = _dense_abs_rel(rel, robust, frame.depth)
        a_ls = _dense_abs_rel(rel, plain, frame.depth)
        print(f'\n{space.value} exact input: AbsRel robust {a_rob:.5f}, least squares {a_ls:.5f}')
        assert a_rob <= 0.002
        # Plain least squares is as good in disparity space here (see-through returns have
        # small disparities) and far off in depth space (they are large depths).
        assert a_rob <= max(a_ls, 0.001)


@pytest.mark.parametrize('space', [DISP, DEPTH])
def test_robust_fit_on_street_matches_dense_oracle(noisy_street, space):
    """Distorted, noisy relative input; the LiDAR's natural see-through returns."""
    rng = np.random.default_rng(1)
    ratios = []
    for frame, sparse in zip(noisy_street.frames, noisy_street.sparse):
        rel = _relative(frame.depth, space, _sine_field(), 0.05, rng)
        keep = reject_see_through(sparse, focal_px=noisy_street.rig.camera.fy)
        robust = fit_affine_robust(sparse.sample(rel)[keep], sparse.z[keep], space)
        plain = fit_affine(sparse.sample(rel), sparse.z, space)
        # Oracle: the same robust fit on every pixel with exact depth (no LiDAR needed).
        valid = np.isfinite(frame.depth) & (frame.depth <= 80.0)
        oracle = fit_affine_robust(rel[valid], frame.depth[valid], space)
        a_rob, a_ls, a_or = (_dense_abs_rel(rel, f, frame.depth) for f in (robust, plain, oracle))
        print(f'\n{space.value} distorted: AbsRel robust {a_rob:.4f}, oracle {a_or:.4f}, '
              f'least squares {a_ls:.4f}')
        ratios.append(a_rob / a_or)
        assert a_rob < a_ls
    assert max(ratios) <= 1.05


# --- temporal filter ------------------------------------------------------------------------


def _fit_sequence(space: OutputKind, scales: list[float], jitter: float = 0.02,
                  seed: int = 3) -> list[AffineFit]:
    """Robust fits of frames whose model output jitters by ``jitter`` (log scale) per frame;
    ``scales`` [K] are the true scales."""
    rng = np.random.default_rng(seed)
    fits = []
    for s in scales:
        z = np.exp(rng.uniform(np.log(3.0), np.log(60.0), 3000))
        gain = np.exp(rng.normal(0.0, jitter)) / s
        noise = np.exp(rng.normal(0.0, 0.05, z.size))
        pred = gain * (1.0 / z if space is DISP else z) * noise + 0.2
        z_obs = z.copy()
        bad = rng.random(z.size) < 0.1
        z_obs[bad] *= rng.uniform(1.5, 3.0, int(bad.sum()))
        fits.append(fit_affine_robust(pred, z_obs, space))
    return fits


@pytest.mark.parametrize('space', [DISP, DEPTH])
def test_filter_reduces_jitter_and_follows_a_step(space):
    true = [0.3] * 40 + [0.3 * 1.4] * 20
    fits = _fit_sequence(space, true)
    filt = AffineFilter()
    out, events = [], []
    for k, fit in enumerate(fits):
        out.append(filt.update(fit, 0.1 * k).scale)
        events.append(filt.last_event)
    raw = np.log([f.scale for f in fits])
    smooth = np.log(out)
    steady = slice(10, 40)
    ratio = np.std(np.diff(raw[steady])) / np.std(np.diff(smooth[steady]))
    err = np.exp(smooth - np.log(true)) - 1
    print(f'\n{space.value}: jitter ratio {ratio:.2f}; after the step {np.round(err[39:44], 3)}; '
          f'events {"".join(e[0] for e in events)}')
    assert ratio >= 3.0
    assert events[:40].count('reset') == 0
    # The step (+40 %) at frame 40: within 2 frames the output is on the new scale.
    assert events[41] == 'reset'
    assert abs(err[41]) < 0.05 and np.all(np.abs(err[42:]) < 0.05)
    assert np.sqrt(np.mean(err[10:40] ** 2)) < 0.02  # and steady, near the truth


def test_filter_ignores_single_outlier_and_refused_fits():
    fits = _fit_sequence(DISP, [0.3] * 12)
    filt = AffineFilter()
    for k in range(10):
        filt.update(fits[k], 0.1 * k)
    before = filt.update(fits[10], 1.0)
    glitch = AffineFit(before.scale * 1.5, before.shift, DISP, 3000, 0.02, 0.02, inliers=2800)
    held = filt.update(glitch, 1.1)
    assert filt.last_event == 'gated' and held.scale == pytest.approx(before.scale, rel=1e-9)
    assert filt.update(fits[11], 1.2).scale == pytest.approx(before.scale, rel=0.03)
    assert filt.last_event == 'update'
    # A refused fit: the prediction is returned and only ages.
    refused = AffineFit.refused(DISP, 3, 'too few points')
    aged = filt.update(refused, 1.3)
    assert aged.ok and filt.last_event == 'predict' and filt.age == pytest.approx(0.1)
    # Past max_age without an accepted fit, the state is dropped.
    stale = filt.update(refused, 1.2 + filt.config.max_age + 0.05)
    assert not stale.ok and filt.last_event == 'stale' and 'max_age' in stale.reason
    assert not filt.initialized
    # With no state, a refused fit passes through unchanged.
    assert filt.update(refused, 3.0) is refused and filt.last_event == 'none'


def test_filter_never_holds_a_fit_older_than_max_age_while_fits_are_gated():
    """Gated fits that never agree with each other (two alternating scales) kept the last
    accepted state alive for ever: a 10 s old fit was applied with hold_time 1 s."""
    fits = _fit_sequence(DISP, [0.3] * 5)
    filt = AffineFilter(FilterConfig(max_age=1.0))
    for k in range(5):
        filt.update(fits[k], 0.1 * k)
    base = filt.update(fits[4], 0.5)
    ages = []
    for k in range(100):  # 10 s of fits alternating x1.6 / x0.6 around the state
        f = 1.6 if k % 2 else 0.6
        glitch = AffineFit(base.scale * f, base.shift, DISP, 3000, 0.02, 0.02, inliers=2800)
        filt.update(glitch, 0.6 + 0.1 * k)
        ages.append(filt.age)
    assert max(ages) <= filt.config.max_age + 1e-9, max(ages)
    assert filt.last_event in ('gated', 'reset')


def test_filter_resets_when_time_goes_backwards_or_space_changes():
    fits = _fit_sequence(DISP, [0.3] * 5 + [0.5] * 1)
    filt = AffineFilter()
    for k in range(5):
        filt.update(fits[k], 10.0 + 0.1 * k)
    out = filt.update(fits[5], 2.0)  # a replay restarted
    assert filt.last_event == 'reset'
    assert out.scale == pytest.approx(fits[5].scale, rel=1e-12)
    assert out.shift == pytest.approx(fits[5].shift, rel=1e-12)
    depth_fit = AffineFit(50.0, 1.0, DEPTH, 100, 0.02, 0.02, inliers=90)
    out = filt.update(depth_fit, 2.1)
    assert filt.last_event == 'reset' and out.space is DEPTH
    assert out.scale == pytest.approx(50.0) and out.shift == pytest.approx(1.0)
    # A least-squares fit (inliers == -1) is accepted too: its noise comes from abs_rel.
    ls = AffineFit(50.5, 1.0, DEPTH, 100, 0.5, 0.02)
    assert filt.update(ls, 2.2).ok and filt.last_event == 'update'


@pytest.mark.parametrize('field, value', [
    ('process_noise', -1.0), ('gate', 0.0), ('reset_after', 0), ('max_age', 0.0),
    ('reference_depth', float('inf'))])
def test_filter_config_validation_names_the_field(field, value):
    with pytest.raises(ConfigError) as err:
        FilterConfig(**{field: value})
    assert err.value.name == f'filter.{field}'


# --- local alignment ------------------------------------------------------------------------


@pytest.mark.parametrize('space', [DISP, DEPTH])
def test_local_alignment_removes_low_frequency_distortion(noisy_street, space):
    rng = np.random.default_rng(2)
    for frame, sparse in zip(noisy_street.frames[:2], noisy_street.sparse[:2]):
        keep = reject_see_through(sparse, focal_px=noisy_street.rig.camera.fy)
        results = {}
        for name, field in (('distorted', _sine_field()), ('clean', np.ones((H, W)))):
            rel = _relative(frame.depth, space, field, 0.05, rng)
            fit = fit_affine_robust(sparse.sample(rel)[keep], sparse.z[keep], space)
            t0 = time.perf_counter()
            local = align_local(rel, sparse, keep, fit, max_depth=80.0)
            ms = (time.perf_counter() - t0) * 1e3
            assert local.dtype == np.float32 and local.shape == (H, W)
            assert np.nanmax(local) <= 80.0
            results[name] = (_dense_abs_rel(rel, fit, frame.depth),
                             _abs_rel(local, frame.depth))
        print(f'\n{space.value}: AbsRel global/local distorted {results["distorted"][0]:.4f}/'
              f'{results["distorted"][1]:.4f}, clean {results["clean"][0]:.4f}/'
              f'{results["clean"][1]:.4f} ({ms:.2f} ms at {W}x{H})')
        glob, loc = results['distorted']
        assert loc <= 0.75 * glob
        glob, loc = results['clean']
        assert loc <= 1.05 * glob


def test_local_alignment_exact_input_and_edge_cases(exact_street):
    frame, sparse = exact_street.frames[0], exact_street.sparse[0]
    rel = _relative(frame.depth, DISP, np.ones((H, W)), 0.0, np.random.default_rng(0))
    keep = reject_see_through(sparse, focal_px=exact_street.rig.camera.fy)
    fit = fit_affine_robust(sparse.sample(rel)[keep], sparse.z[keep], DISP)
    local = align_local(rel, sparse, keep, fit, max_depth=80.0)
    assert _abs_rel(local, frame.depth) <= 0.002
    assert np.isnan(local[~np.isfinite(frame.depth)]).all()  # sky stays invalid
    refused = AffineFit.refused(DISP, 0, 'x')
    assert np.isnan(align_local(rel, sparse, None, refused)).all()
    # No LiDAR at all: the global map, unchanged.
    empty = sparse.subset(np.zeros(sparse.count, bool))
    np.testing.assert_array_equal(align_local(rel, empty, None, fit),
                                  apply_affine(rel, fit.scale, fit.shift, DISP))
    with pytest.raises(DepthNodeError, match='keep_mask'):
        align_local(rel, sparse, keep[:-1], fit)
    with pytest.raises(DepthNodeError, match='prediction is'):
        align_local(rel[:, :-1], sparse, keep, fit)
    with pytest.raises(DepthNodeError, match='sigma'):
        align_local(rel, sparse, keep, fit, sigma=0.0)


def test_start_hypotheses_of_equal_predictions_raise_no_numpy_warning():
    # Two points of one prediction 0 (a disparity of 0) with different targets have dx = 0
    # and an infinite slope, and inf * 0 is NaN: such a sample is dropped, and that must not
    # print a RuntimeWarning (seen in the accuracy table's output: "invalid value encountered
    # in multiply").
    import warnings
    from depth_node.core.fit_data import start_hypotheses
    x = np.concatenate([np.zeros(6), np.linspace(0.1, 1.0, 6)])
    y = 2.0 * x + 0.5
    y[:6] += np.linspace(0.0, 0.05, 6)  # noise on the prediction-0 points
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        s, t, _ = start_hypotheses(x, y, None, seed=0, hypotheses=64, score_points=12)
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(t)) and np.all(s > 0)
    # Pairs of the points on the line give the line itself.
    assert np.any(np.isclose(s, 2.0) & np.isclose(t, 0.5))
