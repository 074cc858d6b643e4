"""The keyframe teacher as a check of sigma where no LiDAR return is near (teacher_check)."""

from dataclasses import replace

import numpy as np
import pytest

from depth_node.core.errors import ConfigError
from depth_node.pipeline.frame import DepthPipeline, FrameInput, PipelineConfig
from depth_node.pipeline.teacher_check import MAX_SCALE, StudentView, teacher_scale, TeacherCheck
from depth_node.sim.world import Conditions, RigSpec, save_frames, SimRig
from depth_node.testing.oracle import DisparityOracle


def _view(h=96, w=128, lidar_rows=48, near=0.7, rel_sigma=0.1):
    """A student right where LiDAR is (rows >= lidar_rows) and ``near`` x the truth above it,
    with sigma / z ``rel_sigma`` above and 0.01 below; the truth is 20 m everywhere."""
    truth = np.full((h, w), 20.0, np.float32)
    depth = truth.copy()
    depth[:lidar_rows] *= np.float32(near)
    rel = np.full((h, w), 0.01, np.float32)
    rel[:lidar_rows] = rel_sigma
    support = np.zeros((h // 4, w // 4), np.float32)
    support[lidar_rows // 4:] = 2.0  # returns per cell
    return StudentView(depth, depth * rel, support, 4), truth


def test_a_teacher_that_sees_the_student_off_where_no_lidar_is_widens_sigma_by_that_much():
    view, truth = _view()
    scale, n = teacher_scale(view, truth, None)
    # 30 % too near with sigma / z 0.1: |log 0.7| / 0.1 = 3.57 sigma, so 2 sigma needs 1.78x.
    assert scale == pytest.approx(abs(np.log(0.7)) / 0.1 / 2, rel=1e-6)
    assert n == 48 * 128
    # A teacher that agrees: no wider (and never narrower).
    assert teacher_scale(view, view.depth.copy(), None)[0] == 1.0
    # Within 2 sigma already (10 % off with sigma / z 0.1): 1.
    near, truth = _view(near=0.9)
    assert teacher_scale(near, truth, None)[0] == 1.0
    # Far off: clipped.
    off, truth = _view(near=0.2)
    assert teacher_scale(off, truth, None)[0] == MAX_SCALE


def test_the_check_reads_only_unsupported_published_pixels_where_the_teacher_is_sure():
    view, truth = _view(near=1.0)
    teacher = truth.copy()
    teacher[60:] *= 3.0  # the teacher is far off where LiDAR supports the student: not read
    assert teacher_scale(view, teacher, None)[0] == 1.0
    # Off above the beams, but only where the teacher's own ensemble doubts itself.
    teacher = truth.copy()
    teacher[:24] *= 2.0
    unc = np.zeros_like(truth)
    unc[:24] = 1.0
    assert teacher_scale(view, teacher, unc, quantile=0.5)[0] == 1.0
    unc[:8, :8] = np.nan  # an uncertainty map with holes: those pixels are not read
    assert teacher_scale(view, teacher, unc, quantile=0.5) == (1.0, 24 * 128)
    assert teacher_scale(view, teacher, None)[0] > 1.5
    # Unpublished (NaN) student pixels and too few pixels say nothing.
    depth = view.depth.copy()
    depth[:47] = np.nan  # one unsupported row of 128 pixels left: fewer than MIN_PIXELS
    few = replace(view, depth=depth, sigma=depth * np.float32(0.1))
    assert teacher_scale(few, truth * np.float32(2.0), None) == (1.0, 128)
    with pytest.raises(ValueError, match='shapes'):
        teacher_scale(view, truth[:10], None)


def test_a_keyframes_scale_holds_for_the_hold_then_lapses():
    check = TeacherCheck(hold=5.0)
    assert check.scale_at(100.0) == 1.0 and check.last == (1.0, -np.inf, 0)
    check.update(2.0, 100.0, 900)
    assert check.scale_at(100.0) == 2.0 and check.scale_at(105.0) == 2.0
    assert check.scale_at(105.5) == 1.0  # the hold is over
    assert check.scale_at(99.0) == 1.0  # a frame before the keyframe (time went back)
    check.update(3.0, 90.0)  # an older keyframe arriving late does not replace the newer
    assert check.last == (2.0, 100.0, 900)
    for bad in (0.5, float('nan'), float('inf')):
        check.update(bad, 101.0)
    assert check.last[0] == 2.0
    check.reset()
    assert check.scale_at(100.0) == 1.0


def test_the_pipeline_widens_only_unsupported_sigma_with_the_teachers_scale(tmp_path):
    rig = SimRig.build(RigSpec(width=320, height=240), Conditions(), seed=3)
    f = next(rig.frames(1, seed=3))
    pipe = DepthPipeline(DisparityOracle(str(save_frames(tmp_path / 'frames', [f]))),
                         PipelineConfig(temporal=False, uncertainty_self_check_period=0.0))
    frame = FrameInput(f.rgb, rig.camera, f.stamp, f.lidar, rig.lidar_to_camera)
    before = pipe.process(frame)
    assert before.trust.teacher_scale == 1.0 and before.support is not None
    pipe.teacher_check.update(2.0, f.stamp - 1.0)
    after = pipe.process(frame)
    assert after.trust.teacher_scale == 2.0
    ratio = after.relative_sigma / before.relative_sigma
    cell = pipe.config.fusion_cell
    support = np.repeat(np.repeat(before.support, cell, 0), cell, 1)[:240, :320]
    far, near = support < 1e-3, support > 5.0  # no return near; many
    assert np.median(ratio[far]) == pytest.approx(2.0, rel=1e-3)
    assert np.median(ratio[near]) == pytest.approx(1.0, abs=0.02)
    assert after.trust.coverage < before.trust.coverage  # wider sigma: more refused
    # After the hold, as before.
    later = pipe.process(replace(frame, stamp=f.stamp + pipe.config.uncertainty_teacher_hold))
    assert later.trust.teacher_scale == 1.0
    with pytest.raises(ConfigError, match='uncertainty.teacher_hold'):
        PipelineConfig(uncertainty_teacher_hold=0.0).validate()


def test_the_scenario_harness_bounds_the_check_with_a_perfect_teacher():
    """``benchmark accuracy --teacher-bound``: the truth as the teacher, on the same frame."""
    import torch

    from depth_node.estimators.base import model_input_size, SHIPPED_STUDENT
    from depth_node.estimators.depth_anything import DepthAnythingEstimator
    from depth_node.offline.scenarios import EVALUATION_SEEDS, run_scenario, SCENARIOS, \
        score_frames

    torch.set_num_threads(1)
    est = DepthAnythingEstimator(str(SHIPPED_STUDENT),
                                 input_size=model_input_size(str(SHIPPED_STUDENT)))
    dusk = next(s for s in SCENARIOS if s.name == 'dusk')
    runs = {bound: list(run_scenario(est, dusk, EVALUATION_SEEDS[:1], frames=2,
                                     baselines=False, teacher_bound=bound))
            for bound in (False, True)}
    assert all(e.result.trust.teacher_scale == 1.0 for e in runs[False])
    assert max(e.result.trust.teacher_scale for e in runs[True]) > 1.0
    plain, checked = (score_frames('dusk', dusk.axis, runs[b]) for b in (False, True))
    assert checked['refused_wrong'] > plain['refused_wrong']
    assert checked['coverage'] < plain['coverage']
