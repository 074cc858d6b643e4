"""Trust: the image check, the uncertainty model and its calibration, refusal in the pipeline."""

import json
from dataclasses import replace

import numpy as np
import pytest

from depth_node.core.errors import ConfigError
from depth_node.core.image_quality import assess_image, QualityConfig
from depth_node.core.uncertainty import FEATURES, UncertaintyModel
from depth_node.pipeline.frame import DepthPipeline, FrameInput, PipelineConfig
from depth_node.sim.world import CONDITIONS, Conditions, RigSpec, save_frames, SimFrame, SimRig
from depth_node.testing.oracle import DisparityOracle


@pytest.fixture(scope='module')
def street():
    rig = SimRig.build(RigSpec(width=320, height=240), Conditions(), seed=3)
    return rig, next(rig.frames(1, seed=3))


def _rendered(name, seed=3):
    rig = SimRig.build(RigSpec(width=320, height=240), CONDITIONS[name], seed=seed)
    return next(rig.frames(1, seed=seed)).rgb


@pytest.mark.parametrize('name', ['clear', 'dusk', 'fog', 'low_sun', 'backlight', 'mono'])
def test_image_check_passes_real_pictures(name):
    q = assess_image(_rendered(name))
    assert q.ok, q.message


@pytest.mark.parametrize('problem, make', [
    ('blind', lambda rng: np.zeros((240, 320, 3), np.uint8)),
    ('blind', lambda rng: rng.integers(0, 6, (240, 320, 3), dtype=np.uint8)),
    ('saturated', lambda rng: np.full((240, 320, 3), 255, np.uint8)),
    ('flat', lambda rng: np.full((240, 320, 3), 128, np.uint8)),
    ('noise', lambda rng: rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)),
])
def test_image_check_names_what_is_wrong(problem, make):
    q = assess_image(make(np.random.default_rng(0)))
    assert q.problem == problem, q
    assert q.message and not q.ok
    assert not assess_image(make(np.random.default_rng(0)), QualityConfig(enable=False)).problem


def test_rendered_blind_and_saturated_are_refused():
    assert assess_image(_rendered('blind')).problem == 'blind'
    assert assess_image(_rendered('saturated')).problem == 'saturated'


def test_uncertainty_model_file_errors_name_the_parameter(tmp_path):
    model = UncertaintyModel.load()  # the shipped calibration
    assert len(model.fused) == len(FEATURES) and model.provenance['pixels'] > 10000
    bad = tmp_path / 'bad.json'
    bad.write_text('{"fused": [1, 2]}')
    with pytest.raises(ConfigError, match='uncertainty.calibration'):
        UncertaintyModel.load(bad)
    with pytest.raises(ConfigError, match='cannot be read'):
        UncertaintyModel.load(tmp_path / 'missing.json')
    good = tmp_path / 'good.json'
    good.write_text(model.to_json())
    assert UncertaintyModel.load(good) == model
    assert json.loads(good.read_text())['features'] == list(FEATURES)
    # The carried correction: written and read back; a file from before it has none.
    data = json.loads(good.read_text())
    assert data['carried_correction'] == model.carried > 0
    data['carried_correction'] = -1
    bad.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match='carried_correction'):
        UncertaintyModel.load(bad)
    del data['carried_correction']
    bad.write_text(json.dumps(data))
    assert UncertaintyModel.load(bad).carried == 0.0


def test_a_correction_carried_onto_a_surface_no_return_sees_is_refused_or_covered():
    """The network merges a low wall (10 m) with the façade behind it (20 m, which the global
    fit has right); the LiDAR sees only the wall. The fusion carries the wall's correction up
    the façade, where no return checks it: those wrong pixels must be refused or have their
    error within 2 sigma (they were published at sigma / z 0.07, 10 m off)."""
    from depth_node.core.align import AffineFit, OutputKind
    from depth_node.core.lidar import SparseDepth
    from depth_node.pipeline.trust import trusted_depth

    h, w, top = 240, 320, 150
    global_depth = np.full((h, w), 20.0, np.float32)
    truth = np.where(np.arange(h)[:, None] >= top, 10.0, 20.0) * np.ones((1, w))
    v, u = np.mgrid[top + 2:h:6, 1:w:2]  # beams every 6 rows, on the wall only
    lidar = SparseDepth(u.ravel().astype(np.int32), v.ravel().astype(np.int32),
                        np.full(v.size, 10.0, np.float32), w, h)
    fit = AffineFit(1.0, 0.0, OutputKind.DEPTH, lidar.count, 0.05, 0.05, inliers=lidar.count)
    t = trusted_depth(global_depth, lidar, fit, PipelineConfig(), UncertaintyModel.load())
    err = np.abs(t.unrefused - truth)
    wrong = (err > 0.2 * truth) & (np.arange(h)[:, None] < top)
    assert wrong.sum() > 0.5 * top * w  # the fusion did carry it (the case this is about)
    with np.errstate(invalid='ignore'):
        caught = ~np.isfinite(t.depth) | (np.abs(t.depth - truth) <= 2 * t.sigma)
    assert caught[wrong].mean() >= 0.95, caught[wrong].mean()
    # The wall itself, under its returns, stays published and right.
    wall = slice(top + 8, h)
    assert np.isfinite(t.depth[wall]).mean() > 0.95
    assert np.nanmax(np.abs(t.depth[wall] - 10.0)) < 0.5


def test_pipeline_refuses_a_black_image_and_publishes_sigma_otherwise(street, tmp_path):
    rig, f = street
    black_frame = SimFrame(1, f.stamp, np.zeros_like(f.rgb), f.depth, f.lidar)
    folder = save_frames(tmp_path / 'frames', [f, black_frame])
    pipe = DepthPipeline(DisparityOracle(str(folder)), PipelineConfig(temporal=False))
    ok = pipe.process(FrameInput(f.rgb, rig.camera, f.stamp, f.lidar, rig.lidar_to_camera))
    assert ok.depth is not None and ok.sigma is not None and not ok.refused
    np.testing.assert_array_equal(np.isnan(ok.sigma), np.isnan(ok.depth))
    assert np.all(ok.sigma[np.isfinite(ok.sigma)] > 0)
    rel = ok.sigma / ok.depth
    assert np.nanmax(rel) <= pipe.config.max_relative_uncertainty + 1e-6
    assert ok.trust.coverage > 0.5 and 0 < ok.trust.lidar_share <= 1
    # The same frame, but black: no metric depth and no held fit.
    black = pipe.process(FrameInput(np.zeros_like(f.rgb), rig.camera, f.stamp + 0.1, f.lidar,
                                    rig.lidar_to_camera))
    assert black.depth is None and black.fit_state == 'none' and 'dark' in black.fit.reason
    # A tighter threshold refuses more pixels; refusal of the whole frame when LiDAR
    # supports too little of it.
    pipe.config = replace(pipe.config, max_relative_uncertainty=0.05)
    tight = pipe.process(FrameInput(f.rgb, rig.camera, f.stamp, f.lidar, rig.lidar_to_camera))
    assert np.isfinite(tight.depth).sum() < np.isfinite(ok.depth).sum()
    pipe.config = replace(pipe.config, max_relative_uncertainty=0.2, min_lidar_share=0.99)
    few = pipe.process(FrameInput(f.rgb, rig.camera, f.stamp, f.lidar, rig.lidar_to_camera))
    assert few.depth is None and few.sigma is None and 'LiDAR supports only' in few.refused


def test_a_held_fit_without_lidar_has_more_uncertainty_the_older_it_is(street, tmp_path):
    rig, f = street
    folder = save_frames(tmp_path / 'frames', [f])
    pipe = DepthPipeline(DisparityOracle(str(folder)), PipelineConfig(hold_time=5.0))
    fresh = pipe.process(FrameInput(f.rgb, rig.camera, 10.0, f.lidar, rig.lidar_to_camera))
    young = pipe.process(FrameInput(f.rgb, rig.camera, 10.1, None, rig.lidar_to_camera))
    old = pipe.process(FrameInput(f.rgb, rig.camera, 14.0, None, rig.lidar_to_camera))
    assert young.fit_state == old.fit_state == 'held'
    med = [float(np.nanmedian(r.relative_sigma)) for r in (fresh, young, old)]
    assert med[1] < med[2], med
    # The filter's random walk: 0.02 * sqrt(4 s) = 0.04 in log scale, in quadrature.
    assert 0.04 <= med[2] < 1.0  # no support at all is far, not infinitely far


def test_uncertainty_is_calibrated_on_held_out_streets():
    """The shipped calibration on streets it was not fitted on (student, 640x480)."""
    import torch

    from depth_node.estimators.base import model_input_size, SHIPPED_STUDENT
    from depth_node.estimators.depth_anything import DepthAnythingEstimator
    from depth_node.offline.scenarios import EVALUATION_SEEDS, run_scenario, SCENARIOS, \
        score_frames, threshold_sweep

    torch.set_num_threads(1)
    est = DepthAnythingEstimator(str(SHIPPED_STUDENT),
                                 input_size=model_input_size(str(SHIPPED_STUDENT)))
    picked = [s for s in SCENARIOS if s.name in ('default', 'lidar_hdl32', 'mirrored_sun')]
    for sc in picked:
        evals = list(run_scenario(est, sc, EVALUATION_SEEDS[:1], frames=1, baselines=False))
        score = score_frames(sc.name, sc.axis, evals)
        assert 0.88 <= score['within_2s'] <= 0.995, (sc.name, score.values)
        assert score['within_1s'] < score['within_2s']
        assert score['coverage'] > 0.6, (sc.name, score.values)
        assert score['fused'] < score['global'], (sc.name, score.values)
        # Looser thresholds publish more and refuse fewer of the wrong pixels.
        sweep = threshold_sweep(evals, (0.1, 0.2, 0.4))
        assert [c for _, c, _ in sweep] == sorted(c for _, c, _ in sweep)
        assert [r for _, _, r in sweep] == sorted((r for _, _, r in sweep), reverse=True)


def test_compiled_compose_matches_the_numpy_reference():
    from depth_node.core.cell_grid import upsample_reference
    from depth_node.core.fusion import fuse_field
    from depth_node.core.fusion_reference import fuse_reference
    from depth_node.core.lidar import SparseDepth
    from depth_node.pipeline.trust import compose
    from depth_node.pipeline.trust_reference import compose_reference
    rng = np.random.default_rng(1)
    depth = rng.uniform(1, 60, (123, 157)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.1] = np.nan
    rel_cells = rng.uniform(0.01, 0.5, (31, 40)).astype(np.float32)
    supported = (rng.random((31, 40)) < 0.5).astype(np.float32)
    u = rng.integers(0, 157, 400).astype(np.int32)
    v = rng.integers(0, 123, 400).astype(np.int32)
    lidar = SparseDepth(u, v, depth[v, u] * rng.uniform(0.9, 1.1, 400).astype(np.float32),
                        157, 123)
    field = fuse_field(depth, lidar)
    assert field.pinned > 100
    fused = fuse_reference(depth, lidar).depth  # the gain, the beam fill, the pins
    assert np.isfinite(field.fill).sum() > 50  # some returns are joined
    without_fill = depth * upsample_reference(field.gain, 4, 123, 157)
    pinned = np.isfinite(without_fill[field.pin_v, field.pin_u])
    without_fill[field.pin_v[pinned], field.pin_u[pinned]] = field.pin_z[pinned]
    assert np.sum(fused != without_fill) > 100
    for f, expected_depth in ((None, depth), (field, fused)):
        fast = compose(depth, rel_cells, supported, 4, 0.2, f)
        ref = compose_reference(expected_depth, rel_cells, supported, 4, 0.2)
        for name in ('depth', 'published', 'sigma', 'relative_sigma'):
            np.testing.assert_allclose(getattr(fast, name), getattr(ref, name), rtol=1e-5,
                                       atol=1e-6, equal_nan=True, err_msg=name)
        # Counts: pixels with depth exact; pixels at the threshold or the support's 1/2 level
        # may flip with float rounding, so a few may differ.
        assert fast.counts[0] == ref.counts[0]
        assert np.all(np.abs(fast.counts - ref.counts) <= 0.002 * ref.counts[0])


@pytest.fixture(scope='module')
def trust_inputs(street, tmp_path_factory):
    """The global depth and kept returns of the street frame (the trust stage's inputs)."""
    rig, f = street
    folder = save_frames(tmp_path_factory.mktemp('frames'), [f])
    cfg = PipelineConfig(temporal=False, fusion=False, uncertainty=False)
    res = DepthPipeline(DisparityOracle(str(folder)), cfg).process(
        FrameInput(f.rgb, rig.camera, f.stamp, f.lidar, rig.lidar_to_camera), want_points=False)
    return res.depth, res.sparse.subset(res.kept), res.applied


@pytest.mark.parametrize('mode', ['fused', 'held', 'no_fusion', 'no_model', 'old_fit',
                                  'self_checked', 'teacher_checked', 'misaligned'])
def test_compiled_trust_stage_matches_the_numpy_reference(trust_inputs, mode):
    """trusted_depth (grid kernels + one pixel pass) equals the step-by-step numpy stage."""
    from depth_node.pipeline.trust import trusted_depth, warm_up
    from depth_node.pipeline.trust_reference import trusted_depth_reference
    glob, used, fit = trust_inputs
    cfg = PipelineConfig(temporal=False)
    model = UncertaintyModel.load()
    assert model.edge_weight > 0  # the edge term is part of the stage compared
    args = {'fused': (used, cfg, model, 0.0), 'held': (None, cfg, model, 2.0),
            'no_fusion': (used, replace(cfg, fusion=False), model, 0.0),
            'no_model': (used, cfg, None, 0.0), 'old_fit': (used, cfg, model, 3.0),
            'self_checked': (used, cfg, model, 0.0, 1.4),
            'teacher_checked': (used, cfg, model, 0.0, 1.4, 2.5),
            'misaligned': (used, cfg, model, 0.0, 1.0, 1.0, -5)}[mode]
    warm_up()
    timings = {}
    fast = trusted_depth(glob, args[0], fit, *args[1:], timings=timings)
    ref = trusted_depth_reference(glob, args[0], fit, *args[1:])
    # Each part that ran is timed (without a model: no edge term, no report).
    from depth_node.pipeline.trust import PARTS
    ran = PARTS[:3] if mode == 'no_model' else PARTS
    assert list(timings) == list(ran) and all(0 <= ms < 1e4 for ms in timings.values())
    assert fast.report.sigma_scale == ref.report.sigma_scale
    assert fast.report.teacher_scale == ref.report.teacher_scale
    assert fast.report.extrinsic_shift == ref.report.extrinsic_shift
    assert fast.report.refused == ref.report.refused
    for name in ('coverage', 'lidar_share', 'median_relative_sigma'):
        np.testing.assert_allclose(getattr(fast.report, name), getattr(ref.report, name),
                                   rtol=1e-3, atol=1e-4, err_msg=name)
    for name in ('depth', 'sigma', 'unrefused', 'relative_sigma'):
        a, b = getattr(fast, name), getattr(ref, name)
        assert (a is None) == (b is None), name
        if a is not None:
            # Float rounding only: a pixel right at the threshold may flip, none else.
            flips = np.isnan(a) != np.isnan(b)
            assert flips.sum() <= 2e-4 * a.size, (name, int(flips.sum()))
            np.testing.assert_allclose(a[~flips], b[~flips], rtol=1e-4, atol=1e-6,
                                       equal_nan=True, err_msg=name)
    if mode != 'no_model':
        assert np.isfinite(fast.relative_sigma).all()
