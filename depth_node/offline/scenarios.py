"""Synthetic scenarios: the node's pipeline on drives across light, weather, rig and lens.

A :class:`Scenario` names one point on the axes a vehicle meets (a rig: LiDAR model and mount,
lens, camera height and pitch, calibration error, scene kind; and conditions: sun, exposure and
noise, fog), and :data:`SCENARIOS` lists them (the sim's named scenarios,
:data:`depth_node.sim.world.SCENARIOS`), each changing one axis from the default rig in clear
daylight. :func:`run_scenario` renders drives of several streets, runs every frame through
:class:`~depth_node.pipeline.frame.DepthPipeline` (the node's per-frame code, with a real
network: the shipped student unless told otherwise), and scores, against the exact depth:

* the global fit alone, the fusion before refusal and the published depth (after refusal);
* LiDAR-only interpolation on the pixels its triangulation covers, and the fusion on the same
  pixels;
* the dense-GT bound (the best single affine map of the network's output);
* coverage (published pixels / pixels with ground truth), the uncertainty's calibration
  (share of published pixels with ``|err| <= sigma`` and ``<= 2 sigma``) and refusal (share of
  the pixels whose fused error exceeds 20 % that were NaN-ed or whose frame was refused; and,
  as ``flagged_wrong``, that share plus the wrong pixels published with a sigma that says so,
  ``|err| <= 2 sigma``: a consumer reading sigma is not misled by them).

Street seeds are apart from the student's training (1-24), its validation (1000-1001), the
report's (500-505) and the uncertainty calibration's (:data:`CALIBRATION_SEEDS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator, Optional, Sequence

import numpy as np

from depth_node.core.metrics import dense_oracle_fit
from depth_node.estimators.base import Estimator
from depth_node.offline.lidar_only import lidar_only_depth
from depth_node.pipeline.alignment import project_lidar
from depth_node.pipeline.frame import DepthPipeline, FrameInput, FrameResult, PipelineConfig
from depth_node.pipeline.teacher_check import StudentView, teacher_scale
from depth_node.sim.world import (COMBINED_SCENARIOS as WORLD_COMBINED, Conditions, RigSpec,
                                  SCENARIOS as WORLD_SCENARIOS, SimFrame, SimRig)

#: Streets of the accuracy table (held out from training, validation, report, calibration).
EVALUATION_SEEDS = (700, 701, 702)
#: Streets the uncertainty is calibrated on.
CALIBRATION_SEEDS = tuple(range(900, 906))

#: Error above which a published pixel is "wrong" for the refusal figure (relative).
WRONG = 0.2


@dataclass(frozen=True)
class Scenario:
    """One point on the axes: a rig and conditions (default rig, clear daylight)."""

    name: str
    rig: RigSpec = field(default_factory=RigSpec)
    conditions: Conditions = field(default_factory=Conditions)
    axis: str = 'default'  # which axis it varies, for the table's grouping

    def build(self, seed: int, width: int, height: int) -> SimRig:
        return SimRig.build(replace(self.rig, width=width, height=height), self.conditions,
                            seed)


def _axis(name: str) -> str:
    """The axis a scenario of :data:`depth_node.sim.world.SCENARIOS` varies, from its name."""
    for prefix, axis in (('default', 'default'), ('lidar_', 'lidar'), ('lens_', 'lens'),
                         ('camera_', 'pose'), ('miscalibrated', 'calibration'),
                         ('open_road', 'scene'), ('dense_trees', 'scene')):
        if name.startswith(prefix):
            return axis
    return 'light/weather'


#: The scenario list of the accuracy table (the sim's named scenarios), by axis.
SCENARIOS: tuple[Scenario, ...] = tuple(
    Scenario(name, RigSpec(**world.rig), world.conditions, _axis(name))
    for name, world in WORLD_SCENARIOS.items())

#: Two axes at once (:data:`depth_node.sim.world.COMBINED_SCENARIOS`): rows off the list the
#: uncertainty is calibrated on, for ``benchmark accuracy --combined``.
COMBINED: tuple[Scenario, ...] = tuple(
    Scenario(name, RigSpec(**world.rig), world.conditions, 'combined')
    for name, world in WORLD_COMBINED.items())


@dataclass
class FrameEval:
    """One frame of a scenario: the truth, what the pipeline did, the LiDAR-only baseline."""

    scenario: str
    seed: int
    index: int
    truth: np.ndarray  # [H, W] float32 m, inf = sky
    result: FrameResult
    lidar_only: Optional[np.ndarray]  # [H, W] float32 m, NaN outside the hull
    bound: Optional[np.ndarray]  # [H, W] dense-GT affine fit of the network's output


def scenario_frames(scenario: Scenario, seeds: Sequence[int], frames: int, width: int,
                    height: int, rate: float = 1.0,
                    speed: Optional[float] = None) -> Iterator[tuple[int, SimRig, SimFrame]]:
    """``frames`` frames of each street ``seeds`` (8 m apart at the defaults); ``speed``
    None: the scenario rig's (``RigSpec.speed_mps``, 8 m/s unless it says otherwise)."""
    for seed in seeds:
        rig = scenario.build(int(seed), width, height)
        for f in rig.frames(frames, speed=speed, rate=rate, seed=int(seed)):
            yield int(seed), rig, f


def run_scenario(estimator: Estimator, scenario: Scenario, seeds: Sequence[int] = EVALUATION_SEEDS,
                 frames: int = 2, width: int = 640, height: int = 480,
                 config: Optional[PipelineConfig] = None, baselines: bool = True,
                 max_depth: float = 80.0, teacher_bound: bool = False) -> Iterator[FrameEval]:
    """Each frame through a fresh pipeline (no temporal state between frames).

    ``baselines``: also compute LiDAR-only and the dense-GT bound (slower: ~0.5 s a frame).
    The pipeline is configured with the rig's *nominal* extrinsic (calibration error
    included); the LiDAR-only baseline sees the same. ``teacher_bound``: the frame is run
    again with the keyframe teacher's check of sigma (:mod:`depth_node.pipeline.
    teacher_check`) measured against the ground truth on that same frame: a perfect teacher
    on every frame, the most the node's check can do (twice the network time).
    """
    cfg = replace(config or PipelineConfig(), temporal=False, max_depth=max_depth)
    space = estimator.output.kind
    for seed, rig, f in scenario_frames(scenario, seeds, frames, width, height):
        pipe = DepthPipeline(estimator, cfg)
        frame = FrameInput(f.rgb, rig.camera, f.stamp, f.lidar, rig.nominal)
        res = pipe.process(frame, want_points=False)
        if teacher_bound and res.depth is not None and res.sigma is not None \
                and res.support is not None:
            with np.errstate(invalid='ignore'):
                truth = np.where(f.depth <= max_depth, f.depth, np.nan).astype(np.float32)
            scale, pixels = teacher_scale(StudentView(res.depth, res.sigma, res.support,
                                                      cfg.fusion_cell), truth, None)
            pipe.teacher_check.update(scale, f.stamp, pixels)
            res = pipe.process(frame, want_points=False)
        lidar = bound = None
        if baselines:
            used = project_lidar(f.lidar, rig.camera, rig.nominal, cfg).used
            lidar = lidar_only_depth(used, hull_only=True)
            bound = dense_oracle_fit(res.relative, f.depth, space, max_depth)
        yield FrameEval(scenario.name, seed, f.index, f.depth, res, lidar, bound)


def _abs_rel(pred: Optional[np.ndarray], truth: np.ndarray,
             mask: np.ndarray) -> tuple[float, float, int]:
    """AbsRel, delta1 and pixel count of ``pred`` on ``mask`` (where pred is finite)."""
    if pred is None:
        return float('nan'), float('nan'), 0
    m = mask & np.isfinite(pred)
    if not m.any():
        return float('nan'), float('nan'), 0
    p, t = pred[m].astype(np.float64), truth[m].astype(np.float64)
    ratio = np.maximum(p / t, t / p)
    return float(np.mean(np.abs(p - t) / t)), float(np.mean(ratio < 1.25)), int(m.sum())


@dataclass
class ScenarioScore:
    """Per-scenario figures (means over frames; NaN where a method produced nothing)."""

    name: str
    axis: str
    frames: int
    values: dict[str, float]

    def __getitem__(self, key: str) -> float:
        return self.values[key]


#: Columns of a :class:`ScenarioScore`, in table order.
COLUMNS = ('global', 'global_d1', 'fused', 'fused_d1', 'lidar_hull', 'fused_hull', 'hull_share',
           'bound', 'published', 'coverage', 'within_1s', 'within_2s', 'refused_wrong',
           'flagged_wrong', 'frames_refused')


def score_frames(name: str, axis: str, evals: Sequence[FrameEval],
                 max_depth: float = 80.0) -> ScenarioScore:
    """Aggregate :func:`run_scenario`'s frames into a :class:`ScenarioScore`."""
    rows: dict[str, list[float]] = {k: [] for k in COLUMNS}
    wrong_total = wrong_flagged = wrong_covered = 0
    for e in evals:
        valid = np.isfinite(e.truth) & (e.truth > 1e-3) & (e.truth <= max_depth)
        r = e.result
        glob = r.global_depth
        if glob is not None:
            glob = np.where(glob <= max_depth, glob, np.nan)
        fused = r.unrefused
        g = _abs_rel(glob, e.truth, valid)
        fu = _abs_rel(fused, e.truth, valid)
        rows['global'].append(g[0])
        rows['global_d1'].append(g[1])
        rows['fused'].append(fu[0])
        rows['fused_d1'].append(fu[1])
        if e.lidar_only is not None:
            hull = valid & np.isfinite(e.lidar_only)
            if fused is not None:
                hull &= np.isfinite(fused)
            rows['lidar_hull'].append(_abs_rel(e.lidar_only, e.truth, hull)[0])
            rows['fused_hull'].append(_abs_rel(fused, e.truth, hull)[0])
            rows['hull_share'].append(float(hull.sum()) / max(1, int(valid.sum())))
        if e.bound is not None:
            rows['bound'].append(_abs_rel(e.bound, e.truth, valid)[0])
        pub = r.depth
        rows['published'].append(_abs_rel(pub, e.truth, valid)[0])
        published = valid & np.isfinite(pub) if pub is not None else np.zeros_like(valid)
        rows['coverage'].append(float(published.sum()) / max(1, int(valid.sum())))
        if pub is not None and r.sigma is not None and published.any():
            err = np.abs(pub[published] - e.truth[published])
            sig = r.sigma[published]
            rows['within_1s'].append(float(np.mean(err <= sig)))
            rows['within_2s'].append(float(np.mean(err <= 2 * sig)))
        rows['frames_refused'].append(float(pub is None))
        if fused is not None:
            with np.errstate(invalid='ignore'):
                wrong = valid & (np.abs(fused - e.truth) > WRONG * e.truth)
            wrong_total += int(wrong.sum())
            flagged = wrong if pub is None else wrong & ~np.isfinite(pub)
            wrong_flagged += int(flagged.sum())
            if pub is not None and r.sigma is not None:
                with np.errstate(invalid='ignore'):
                    # Published, but its own sigma says it may be this far off.
                    covered = wrong & np.isfinite(pub) & (np.abs(pub - e.truth) <= 2 * r.sigma)
                flagged = flagged | covered
            wrong_covered += int(flagged.sum())
    values = {k: float(np.nanmean(v)) if v and np.isfinite(v).any() else float('nan')
              for k, v in rows.items()}
    values['refused_wrong'] = wrong_flagged / wrong_total if wrong_total else float('nan')
    values['flagged_wrong'] = wrong_covered / wrong_total if wrong_total else float('nan')
    values['wrong_share'] = float(wrong_total)
    return ScenarioScore(name, axis, len(evals), values)


def threshold_sweep(evals: Sequence[FrameEval], thresholds: Sequence[float],
                    max_depth: float = 80.0) -> list[tuple[float, float, float]]:
    """Coverage and refused share of wrong pixels had ``output.max_relative_uncertainty``
    been each of ``thresholds`` (from the fused depth and sigma / z before refusal).

    Frames refused as a whole (image check, fit) count as refusing every pixel. Returns
    ``[(threshold, coverage, wrong_refused)]``.
    """
    out = []
    for tau in thresholds:
        kept = valid_total = wrong_total = wrong_kept = 0
        for e in evals:
            valid = np.isfinite(e.truth) & (e.truth > 1e-3) & (e.truth <= max_depth)
            valid_total += int(valid.sum())
            fused, rel = e.result.unrefused, e.result.relative_sigma
            if fused is None or rel is None or e.result.refused:
                continue
            with np.errstate(invalid='ignore'):
                keep = valid & np.isfinite(fused) & (rel <= tau)
                wrong = valid & (np.abs(fused - e.truth) > WRONG * e.truth)
            kept += int(keep.sum())
            wrong_total += int(wrong.sum())
            wrong_kept += int((wrong & keep).sum())
        out.append((float(tau), kept / max(1, valid_total),
                    1.0 - wrong_kept / wrong_total if wrong_total else float('nan')))
    return out


__all__ = ['CALIBRATION_SEEDS', 'COLUMNS', 'COMBINED', 'EVALUATION_SEEDS', 'FrameEval',
           'run_scenario', 'Scenario', 'SCENARIOS', 'scenario_frames', 'ScenarioScore',
           'score_frames', 'threshold_sweep', 'WRONG']
