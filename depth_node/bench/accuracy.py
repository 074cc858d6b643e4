"""Accuracy harness: how well the metric path recovers exact depth on the synthetic drive.

Every experiment feeds a relative "oracle" prediction (exact disparity under an affine map the
aligner does not know, optionally corrupted: :mod:`depth_node.sim.oracles`) through the very
:class:`~depth_node.pipeline.frame.DepthPipeline` the node runs, with the synthetic LiDAR and
its natural see-through returns, and scores the metric depth against the exact depth with the
Marigold-style metrics. Next to each LiDAR fit it computes the dense-GT oracle fit: the best a
single global affine map can do on that frame, fitted on every pixel with exact depth, so that
alignment quality is a ratio rather than a guess.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np

from depth_node.core.align import OutputKind, OutputSpec
from depth_node.core.metrics import dense_oracle_fit, depth_metrics, DepthMetrics, mean_metrics
from depth_node.core.temporal import AffineFilter
from depth_node.pipeline.alignment import align_to_lidar
from depth_node.pipeline.frame import DepthPipeline, FrameInput, PipelineConfig
from depth_node.sim.frames import SimFrame, SimRig
from depth_node.sim.oracles import Corruption, oracle_prediction


#: The global fit alone (what this harness measures unless a scenario says otherwise): no
#: fusion, no uncertainty or per-pixel refusal.
GLOBAL = PipelineConfig(fusion=False, uncertainty=False)


class ArrayEstimator:
    """An estimator that returns whatever prediction it was handed last (for experiments)."""

    name = 'array'

    def __init__(self, kind: OutputKind = OutputKind.DISPARITY) -> None:
        self.output = OutputSpec(kind, metric=False)
        self.next: Optional[np.ndarray] = None

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        if self.next is None:
            raise RuntimeError('ArrayEstimator: no prediction was set')
        return self.next


@dataclass(frozen=True)
class Scenario:
    """One row of the harness: corruption of the relative input and the pipeline settings."""

    name: str
    corruption: Corruption = Corruption()
    config: PipelineConfig = field(default_factory=lambda: GLOBAL)


@dataclass
class ScenarioResult:
    """Mean metrics over the frames: LiDAR-aligned output and the dense-GT oracle fit."""

    name: str
    lidar: DepthMetrics
    oracle: DepthMetrics
    frames: int

    @property
    def ratio_to_oracle(self) -> float:
        return self.lidar.abs_rel / self.oracle.abs_rel if self.oracle.abs_rel > 0 else math.inf


def run_scenario(rig: SimRig, frames: Sequence[SimFrame], scenario: Scenario,
                 max_depth: float = 80.0, scale: float = 0.37, shift: float = 0.05,
                 space: OutputKind = OutputKind.DISPARITY) -> ScenarioResult:
    """Each frame through a fresh pipeline (no temporal state shared between frames)."""
    est = ArrayEstimator(space)
    per_lidar, per_oracle = [], []
    config = replace(scenario.config, max_depth=max_depth, temporal=False)
    for f in frames:
        pred = oracle_prediction(f.depth, space, scale, shift, scenario.corruption, seed=f.index)
        est.next = pred
        res = DepthPipeline(est, config).process(
            FrameInput(f.rgb, rig.camera, f.stamp, f.lidar, rig.lidar_to_camera),
            want_points=False)
        out = res.depth if res.depth is not None else np.full(f.depth.shape, np.nan)
        per_lidar.append(depth_metrics(out, f.depth, max_depth=max_depth))
        per_oracle.append(depth_metrics(dense_oracle_fit(pred, f.depth, space, max_depth),
                                        f.depth, max_depth=max_depth))
    return ScenarioResult(scenario.name, mean_metrics(per_lidar), mean_metrics(per_oracle),
                          len(frames))


@dataclass
class TemporalResult:
    """Frame-to-frame jitter of log-scale, filtered vs not, and the step response."""

    jitter_raw: float
    jitter_filtered: float
    step_frames: int  # frames after the step until the output is within 2 % of the new scale

    @property
    def jitter_ratio(self) -> float:
        return self.jitter_raw / self.jitter_filtered if self.jitter_filtered > 0 else math.inf


def run_temporal(rig: SimRig, steady: int = 20, after_step: int = 6, step: float = 1.5,
                 rate: float = 10.0, corruption: Corruption = Corruption(noise=0.05),
                 max_depth: float = 80.0) -> TemporalResult:
    """A stationary segment (new LiDAR noise and model noise every frame), then a scale step.

    The per-frame fits jitter because each sweep's noise, dropouts and the model's noise
    differ; the true scale is constant until frame ``steady``, then multiplied by ``step``.
    """
    frame = rig.render(0.0)
    est = ArrayEstimator(OutputKind.DISPARITY)
    raw_pipe = DepthPipeline(est, replace(GLOBAL, max_depth=max_depth, temporal=False))
    filt_pipe = DepthPipeline(est, replace(GLOBAL, max_depth=max_depth, temporal=True))
    raw, filt = [], []
    base = 0.37
    for k in range(steady + after_step):
        scale = base * (step if k >= steady else 1.0)
        # The oracle predicts scale * c(1/z) + shift, so the fit's scale is 1/scale.
        est.next = oracle_prediction(frame.depth, OutputKind.DISPARITY, scale, 0.05,
                                     corruption, seed=k)
        lidar = rig.sweep(0.0, seed=1000 + k).points
        inp = FrameInput(frame.rgb, rig.camera, k / rate, lidar, rig.lidar_to_camera)
        a = raw_pipe.process(inp, want_points=False)
        b = filt_pipe.process(inp, want_points=False)
        raw.append(math.log(a.applied.scale) if a.applied else math.nan)
        filt.append(math.log(b.applied.scale) if b.applied else math.nan)
    raw_a, filt_a = np.array(raw), np.array(filt)
    jr = float(np.std(np.diff(raw_a[:steady])))
    jf = float(np.std(np.diff(filt_a[:steady])))
    target = math.log(1.0 / (base * step))
    follow = after_step
    for j in range(after_step):
        if abs(filt_a[steady + j] - target) < 0.02:
            follow = j + 1
            break
    return TemporalResult(jr, jf, follow)


def time_alignment(rig: SimRig, frame: SimFrame, repeats: int = 30) -> dict[str, float]:
    """Median ms of projection, see-through rejection, robust fit and filter on one frame."""
    pred = oracle_prediction(frame.depth, OutputKind.DISPARITY, 0.37, 0.05,
                             Corruption(distortion=0.1, noise=0.05))
    cfg = PipelineConfig()
    filt = AffineFilter(cfg.filter_config())
    stages: dict[str, list[float]] = {'project': [], 'see_through': [], 'fit': [],
                                      'filter': [], 'total': []}
    for k in range(repeats + 3):
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        support, fit = align_to_lidar(pred, frame.lidar, rig.camera, rig.lidar_to_camera,
                                      OutputKind.DISPARITY, cfg, method='robust',
                                      timings_ms=timings)
        t1 = time.perf_counter()
        filt.update(fit, k * 0.1)
        t2 = time.perf_counter()
        for key in ('project', 'see_through', 'fit'):
            stages[key].append(timings[key])
        stages['filter'].append((t2 - t1) * 1e3)
        stages['total'].append((t2 - t0) * 1e3)
    out = {k: float(np.median(v[3:])) for k, v in stages.items()}  # first runs warm caches
    out['lidar_points'] = float(frame.lidar.shape[0])
    out['projected_pixels'] = float(support.sparse.count)
    return out
