"""The held-out check of sigma against the frame's own LiDAR, and the band's bias rule."""

from dataclasses import replace

import numpy as np
import pytest

from depth_node.core.align import AffineFit, OutputKind
from depth_node.core.errors import ConfigError
from depth_node.core.fusion import FusionConfig
from depth_node.core.lidar import SparseDepth
from depth_node.core.uncertainty import FEATURES, UncertaintyModel
from depth_node.pipeline.config import PipelineConfig
from depth_node.pipeline.frame import DepthPipeline, FrameInput
from depth_node.pipeline.self_check import (heldout_samples, raw_scale, raw_scale_of,
                                            SCALE_RANGE, SelfCheck, split_halves)
from depth_node.pipeline.trust import trusted_depth
from depth_node.sim.world import Conditions, RigSpec, save_frames, SimRig
from depth_node.testing.oracle import DisparityOracle
from depth_node.training.calibrate_uncertainty import band_bias, fit_weights


def _constant_model(rel: float, reference=None) -> UncertaintyModel:
    """sigma / z = ``rel`` everywhere (only the bias weight)."""
    w = [0.0] * len(FEATURES)
    w[0] = float(np.log(rel))
    return UncertaintyModel(tuple(w), tuple(w), heldout_reference=reference)


def _scene(noise: float, seed: int = 0, h: int = 120, w: int = 160):
    """A wall at 10-20 m, exact LiDAR on every 2nd pixel of every 3rd row, and a network whose
    log depth carries white noise of ``noise``."""
    rng = np.random.default_rng(seed)
    truth = np.tile(np.linspace(10.0, 20.0, w, dtype=np.float32), (h, 1))
    glob = (truth * np.exp(rng.normal(0.0, noise, truth.shape))).astype(np.float32)
    vv, uu = np.mgrid[0:h:3, 0:w:2]
    u, v = uu.ravel().astype(np.int32), vv.ravel().astype(np.int32)
    return glob, SparseDepth(u, v, truth[v, u], w, h)


def test_halves_interleave_over_the_image():
    _, lidar = _scene(0.0)
    a = split_halves(lidar)
    assert 0.4 < a.mean() < 0.6
    # Every B return has an A return within a few pixels.
    ua, va = lidar.u[a], lidar.v[a]
    for ub, vb in zip(lidar.u[~a][::37], lidar.v[~a][::37]):
        assert np.min(np.hypot(ua - ub, va - vb)) <= 4.5


def test_raw_scale_follows_the_data_and_is_inverse_to_the_model():
    model = _constant_model(0.05)
    # Without the beam fill the held-out returns are predicted by the network's shape.
    no_fill = FusionConfig(beam_gap=0.0)
    quiet = raw_scale(*_scene(0.02), 0.02, model, no_fill)
    loud = raw_scale(*_scene(0.08), 0.02, model, no_fill)
    assert np.isfinite(quiet) and np.isfinite(loud)
    assert 2.0 < loud / quiet < 6.0, (quiet, loud)  # 4x the network's noise
    # With it (the default) they are the LiDAR's own interpolation: the wall is a plane and
    # its returns exact, so the error is far below the network's and does not follow it.
    filled = raw_scale(*_scene(0.08), 0.02, model)
    assert filled < 0.2 * loud, (filled, loud)
    assert filled == pytest.approx(raw_scale(*_scene(0.02), 0.02, model), rel=0.5, abs=0.01)
    # The raw scale of held-out samples is exactly inverse to the model's sigma.
    phi, err = heldout_samples(*_scene(0.05), 0.02)
    assert phi.shape == (err.size, len(FEATURES)) and err.size > 500
    w1, w2 = np.asarray(_constant_model(0.05).fused), np.asarray(_constant_model(0.1).fused)
    assert raw_scale_of(phi, err, w1) == pytest.approx(2.0 * raw_scale_of(phi, err, w2))
    # Too few returns: no check.
    glob, lidar = _scene(0.05)
    few = lidar.subset(np.arange(lidar.count) < 100)
    assert np.isnan(raw_scale(glob, few, 0.02, model))


def test_self_check_runs_once_a_period_and_clips():
    check = SelfCheck(period=1.0)
    stamps = [0.0, 0.3, 0.6, 1.0, 1.4, 2.05, 2.1]
    assert [check.due(t) for t in stamps] == [True, False, False, True, False, True, False]
    assert check.update(1.0, 0.5) == pytest.approx(2.0)
    assert check.update(100.0, 1.0) == SCALE_RANGE[1]  # clipped, and no memory of the last
    assert check.update(0.001, 1.0) == SCALE_RANGE[0]
    # A check that cannot run restores the calibrated sigma (the state stays one period deep).
    assert check.update(float('nan'), 1.0) == 1.0
    check.update(1.5, 1.0)
    assert check.update(1.0, float('nan')) == 1.0
    assert check.checks == 6
    check.reset()
    assert check.scale == 1.0 and check.due(2.1)
    off = SelfCheck(period=0.0)
    assert not any(off.due(t) for t in stamps)
    assert not SelfCheck().due(float('nan'))


def test_the_scale_widens_sigma_only_where_lidar_supports_it():
    glob, lidar = _scene(0.05)
    # Returns only on the left half: the right half is unsupported.
    left = lidar.subset(lidar.u < 60)
    fit = AffineFit(1.0, 0.0, OutputKind.DEPTH, left.count, 0.02, 0.02)
    cfg = PipelineConfig(max_relative_uncertainty=100.0)
    model = UncertaintyModel.load()
    one = trusted_depth(glob, left, fit, cfg, model, sigma_scale=1.0)
    two = trusted_depth(glob, left, fit, cfg, model, sigma_scale=2.0)
    ratio = two.relative_sigma / one.relative_sigma
    assert np.median(ratio[:, 10:50]) == pytest.approx(2.0, rel=0.05)
    assert np.median(ratio[:, 140:]) == pytest.approx(1.0, abs=0.02)
    assert two.report.sigma_scale == 2.0 and one.report.sigma_scale == 1.0


def test_pipeline_checks_on_the_first_frame_and_then_every_n(tmp_path):
    rig = SimRig.build(RigSpec(width=320, height=240), Conditions(), seed=4)
    frames = list(rig.frames(3, seed=4))
    folder = save_frames(tmp_path / 'frames', frames)
    shipped = UncertaintyModel.load()
    with_ref = tmp_path / 'cal.json'
    with_ref.write_text(replace(shipped, heldout_reference=0.5).to_json())
    stamps = [f.stamp for f in frames]
    period = 0.75 * (stamps[2] - stamps[0])  # frames 1 and 2 in one slot, frame 3 in the next
    assert np.floor(stamps[0] / period) == np.floor(stamps[1] / period) \
        != np.floor(stamps[2] / period)
    cfg = PipelineConfig(temporal=False, uncertainty_calibration=str(with_ref),
                         uncertainty_self_check_period=period)
    pipe = DepthPipeline(DisparityOracle(str(folder)), cfg)
    results = [pipe.process(FrameInput(f.rgb, rig.camera, f.stamp, f.lidar,
                                       rig.lidar_to_camera)) for f in frames]
    assert pipe.self_check.checks == 2  # frames 1 and 3
    assert np.isfinite(pipe.self_check.last_raw)
    assert all(r.trust.sigma_scale == pytest.approx(pipe.self_check.scale) for r in results[2:])
    lo, hi = SCALE_RANGE
    assert lo <= pipe.self_check.scale <= hi
    # A calibration without a reference (an older file): no check, sigma as calibrated.
    no_ref = tmp_path / 'old.json'
    no_ref.write_text(replace(shipped, heldout_reference=None).to_json())
    pipe = DepthPipeline(DisparityOracle(str(folder)),
                         replace(cfg, uncertainty_calibration=str(no_ref)))
    r = pipe.process(FrameInput(frames[0].rgb, rig.camera, frames[0].stamp, frames[0].lidar,
                                rig.lidar_to_camera))
    assert pipe.self_check.checks == 0 and r.trust.sigma_scale == 1.0
    assert UncertaintyModel.load(no_ref).heldout_reference is None


def test_self_check_parameter_is_validated():
    for bad in (-1.0, float('nan')):
        with pytest.raises(ConfigError, match='uncertainty.self_check_period'):
            PipelineConfig(uncertainty_self_check_period=bad).validate()


def test_band_bias_puts_each_scenario_in_the_band_and_leaves_out_the_hopeless():
    rng = np.random.default_rng(0)
    n = 20000
    # Scenario 0: sigma right; 1: sigma 1.5x too wide; 2: sigma 5x too narrow (hopeless).
    true_b = np.concatenate([np.full(n, 0.05), np.full(n, 0.05), np.full(n, 0.05)])
    err = rng.laplace(0.0, true_b)
    model_b = np.concatenate([np.full(n, 0.05), np.full(n, 0.075), np.full(n, 0.01)])
    scenario = np.repeat([0, 1, 2], n)
    # Laplace: P(|e| <= 2 b) = 1 - exp(-2) = 0.865 at the right scale: the band wants wider.
    delta, report = band_bias(np.log(model_b), err, scenario, threshold=1.0)
    assert report['left_out'] == [2]
    within = report['within']
    assert 0.90 <= within[0] <= 0.98 and 0.90 <= within[1] <= 0.98, within
    assert delta > 0


def test_band_bias_counts_the_edge_term_unscaled_by_the_shift_and_refuses_with_it():
    """The edge term is added after the bias and the self-check's gain (as the node adds it
    per pixel): where it covers the errors no shift is needed; pixels it takes over the
    threshold are out of the published share."""
    rng = np.random.default_rng(2)
    n = 20000
    err = rng.laplace(0.0, 0.05, n)
    log_rel = np.log(np.full(n, 0.05))
    scenario = np.zeros(n, np.int64)
    plain, _ = band_bias(log_rel, err, scenario, threshold=1.0)
    assert plain > 0  # 0.865 within 2 sigma at the right Laplace scale: widen
    edge = np.where(np.abs(err) > 0.1, np.abs(err), 0.0)  # a term that covers the tail
    delta, report = band_bias(log_rel, err, scenario, threshold=1.0, edge=edge)
    assert delta < plain and 0.90 <= report['within'][0] <= 0.98, (delta, report)
    # At a threshold the edge term crosses, those pixels are no longer published.
    _, low = band_bias(log_rel, err, scenario, threshold=0.09, edge=edge,
                       grid=np.zeros(1))
    assert low['within'][0] == pytest.approx(np.mean(np.abs(err[edge <= 0.09]) <= 0.1))


def test_fit_weights_recovers_a_known_model_with_the_carried_correction_in_quadrature():
    """Errors drawn as Laplace with scale hypot(exp(w . phi), q): the fit finds w with q
    given, and the 2-sigma shift then holds the target (fitting without q does not)."""
    rng = np.random.default_rng(1)
    n = 60000
    phi = np.column_stack([np.ones(n), rng.normal(0, 1, n), rng.uniform(0, 1, n)])
    w_true = np.array([-3.0, 0.4, -0.8])
    q = np.where(rng.uniform(size=n) < 0.3, rng.uniform(0.05, 0.4, n), 0.0)
    err = rng.laplace(0.0, np.hypot(np.exp(phi @ w_true), q))
    w, reached = fit_weights(phi, err, q)
    np.testing.assert_allclose(w[1:], w_true[1:], atol=0.03)
    # The bias is then shifted to 95 % within 2 sigma: for a Laplace of scale b that is
    # sigma = -log(0.05) / 2 * b = 1.5 b, a shift of log 1.5 if all of sigma scaled with it;
    # q does not, so the shift is larger.
    assert abs(reached - 0.95) < 0.005
    assert np.log(1.5) + 0.05 < w[0] - w_true[0] < 1.5
    plain, _ = fit_weights(phi, err)
    assert abs(plain[2] - w_true[2]) > 0.1  # without q the same errors bend the weights


def test_scenario_score_counts_wrong_pixels_refused_and_flagged(tmp_path):
    """refused_wrong: wrong pixels NaN-ed; flagged_wrong: also those whose 2 sigma covers it."""
    from depth_node.offline.scenarios import FrameEval, score_frames
    rig = SimRig.build(RigSpec(width=320, height=240), Conditions(), seed=4)
    f = next(rig.frames(1, seed=4))
    folder = save_frames(tmp_path / 'frames', [f])
    pipe = DepthPipeline(DisparityOracle(str(folder)), PipelineConfig(temporal=False))
    r = pipe.process(FrameInput(f.rgb, rig.camera, f.stamp, f.lidar, rig.lidar_to_camera))
    pub = np.isfinite(r.depth)
    # Truth = the published depth, except: 100 published pixels 50 % off with a sigma that
    # covers it, 100 published 50 % off with a small sigma, and 100 refused 50 % off.
    truth = np.where(np.isfinite(r.unrefused), r.unrefused, np.inf).astype(np.float32)
    ys, xs = np.nonzero(pub & (r.unrefused < 40))
    cov, hid = (ys[:100], xs[:100]), (ys[100:200], xs[100:200])
    ry, rx = np.nonzero(~pub & np.isfinite(r.unrefused) & (r.unrefused < 50))
    refd = (ry[:100], rx[:100])
    for idx in (cov, hid, refd):
        truth[idx] = r.unrefused[idx] / 1.5
    r.sigma = np.where(pub, 0.01 * r.depth, np.nan).astype(np.float32)
    r.sigma[cov] = r.depth[cov]  # 2 sigma = 2 z covers a 50 % error
    truth = np.where(truth <= 80, truth, np.inf).astype(np.float32)
    score = score_frames('t', 'default', [FrameEval('t', 4, 0, truth, r, None, None)])
    assert score['wrong_share'] == 300
    assert score['refused_wrong'] == pytest.approx(100 / 300)
    assert score['flagged_wrong'] == pytest.approx(200 / 300)


def test_the_half_is_fused_with_the_frames_own_beam_check_verdict():
    """The defect: half A of the returns made its own beam-check verdict. On a 32-beam frame
    (street 902, the second frame) the half turned the beam fill off while the frame's
    fusion had it on, so the check compared the fill-less half's errors with the frame's
    filled sigma and halved sigma (the scale clipped at 0.5)."""
    from depth_node.core.align import apply_affine
    from depth_node.core.fusion import fuse, with_verdict
    from depth_node.estimators.base import model_input_size, SHIPPED_STUDENT
    from depth_node.estimators.depth_anything import DepthAnythingEstimator
    from depth_node.offline.scenarios import SCENARIOS, scenario_frames
    est = DepthAnythingEstimator(str(SHIPPED_STUDENT),
                                 input_size=model_input_size(str(SHIPPED_STUDENT)))
    scenario = next(s for s in SCENARIOS if s.name == 'lidar_hdl32')
    _, rig, f = list(scenario_frames(scenario, (902,), 2, 640, 480))[1]
    cfg = PipelineConfig(temporal=False, max_depth=80.0)
    res = DepthPipeline(est, cfg).process(FrameInput(f.rgb, rig.camera, f.stamp, f.lidar,
                                                     rig.nominal), want_points=False)
    used = res.sparse.subset(res.kept)
    glob = apply_affine(res.relative, res.applied.scale, res.applied.shift, res.applied.space,
                        cfg.max_depth)
    frame = fuse(glob, used, cfg.fusion_options())
    assert frame.filled.mean() > 0.3  # the frame's fusion fills between beams
    fixed = with_verdict(glob, used, cfg.fusion_options())
    assert not fixed.beam_check and fixed.beam_gap == cfg.fusion_options().beam_gap
    phi, _ = heldout_samples(glob, used, 0.02, cfg.fusion_options())
    assert phi[:, FEATURES.index('filled')].mean() > 0.3  # and so does the check's half
    assert 0.8 < res.trust.sigma_scale < 1.6, res.trust.sigma_scale  # 0.5 before
    # a config without the check is left as it is
    off = replace(cfg.fusion_options(), beam_check=False)
    assert with_verdict(glob, used, off) is off
