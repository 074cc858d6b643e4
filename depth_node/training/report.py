"""How good is a student? Metric accuracy on held-out synthetic frames, next to two baselines.

Every method is scored on the same frames (synthetic drives of streets the student never
saw) against exact depth, with the Marigold-style metrics (:mod:`depth_node.core.metrics`):

* ``student`` - the model through the very :class:`~depth_node.pipeline.frame.DepthPipeline`
  the node runs: LiDAR projection, see-through rejection, robust affine fit in disparity space
  (per frame: the temporal filter is off, so each frame stands alone);
* ``student_local`` - the same with the node's local alignment (``local.enable``: a smooth
  scale field from the LiDAR residuals on top of the global fit);
* ``random`` - a network of the same architecture and size with random weights (fan-in scaled,
  so that its output depends on the image), through the same pipeline;
* ``lidar_only`` - no network: the sweep's see-through-filtered pixels interpolated to a dense
  map, linearly in inverse depth over a Delaunay triangulation (exact for planes) and by the
  nearest return outside it.

``coverage`` is the fraction of ground-truth pixels (within ``max_depth``) that a method gives a
depth to; the metrics are over those pixels.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence, Union

import numpy as np

from depth_node.core.align import OutputKind
from depth_node.core.metrics import depth_metrics, DepthMetrics, mean_metrics
from depth_node.estimators.base import model_input_size
from depth_node.core.metrics import dense_oracle_fit
from depth_node.pipeline.frame import DepthPipeline, FrameInput, PipelineConfig
from depth_node.offline.lidar_only import lidar_only_depth, lidar_only_from_sweep
from depth_node.sim.frames import SimFrame, SimRig

__all__ = ['MethodScore', 'StudentReport', 'lidar_only_depth', 'lidar_only_from_sweep',
           'random_like', 'student_report']


@dataclass
class MethodScore:
    """A method's metrics averaged over the frames."""

    name: str
    metrics: DepthMetrics
    coverage: float  # fraction of ground-truth pixels with a depth, 0..1
    per_frame: list[DepthMetrics] = field(default_factory=list)
    seconds: float = 0.0  # per frame, mean
    refused: dict[str, int] = field(default_factory=dict)  # why the LiDAR fit refused -> frames
    depths_present: list[bool] = field(default_factory=list)  # per frame: had a depth
    bound: Optional[DepthMetrics] = None  # networks: best global affine map fitted on GT


@dataclass
class StudentReport:
    """Scores of every method, plus the student's dense-GT bound."""

    model: str
    frames: int  # per street
    size: tuple[int, int]  # (width, height)
    seeds: list[int]  # streets
    max_depth: float
    methods: dict[str, MethodScore]
    street_of: list[int]  # street of each scored frame, in order

    def per_street(self, method: str) -> dict[int, DepthMetrics]:
        """A method's mean metrics on each street (frames without depth do not count)."""
        score = self.methods[method]
        frames = [s for s, d in zip(self.street_of, score.depths_present) if d]
        out: dict[int, DepthMetrics] = {}
        for seed in self.seeds:
            out[seed] = mean_metrics(m for s, m in zip(frames, score.per_frame) if s == seed)
        return out

    def table(self) -> str:
        """Markdown table, one row per method."""
        rows = ['| method | AbsRel | δ1 | RMSE (m) | coverage | LiDAR fits refused | '
                'dense-GT bound AbsRel / δ1 | s/frame |',
                '| --- | --- | --- | --- | --- | --- | --- | --- |']
        for m in self.methods.values():
            refused = ', '.join(f'{n}: {why}' for why, n in m.refused.items()) or '-'
            bound = '-' if m.bound is None or not m.bound.valid \
                else f'{m.bound.abs_rel:.4f} / {m.bound.delta1:.4f}'
            if m.metrics.valid:
                cells = f'{m.metrics.abs_rel:.4f} | {m.metrics.delta1:.4f} | {m.metrics.rmse:.3f}'
            else:
                cells = 'no depth | no depth | no depth'
            rows.append(f'| {m.name} | {cells} | {m.coverage:.3f} | {refused} | {bound} | '
                        f'{m.seconds:.3f} |')
        rows += ['', '| street | ' + ' | '.join(str(s) for s in self.seeds) + ' |',
                 '| --- |' + ' --- |' * len(self.seeds)]
        for name in ('student', 'lidar_only'):
            streets = self.per_street(name)
            rows.append(f'| {name} AbsRel / δ1 | ' + ' | '.join(
                f'{streets[s].abs_rel:.4f} / {streets[s].delta1:.3f}' if streets[s].valid
                else 'no depth' for s in self.seeds) + ' |')
        return '\n'.join(rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            'model': self.model, 'frames_per_street': self.frames, 'size': list(self.size),
            'seeds': self.seeds, 'max_depth': self.max_depth,
            'per_street': {name: {str(k): v.as_dict() for k, v in self.per_street(name).items()}
                           for name in ('student', 'lidar_only')},
            'methods': {k: {'metrics': m.metrics.as_dict(), 'coverage': m.coverage,
                            's_per_frame': m.seconds, 'refused': m.refused,
                            'bound': None if m.bound is None else m.bound.as_dict()}
                        for k, m in self.methods.items()},
        }


def random_like(model_path: Union[str, os.PathLike], seed: int = 0) -> Any:
    """A network with the architecture of ``model_path`` and random, fan-in scaled weights.

    See :func:`depth_node.training.student.random_network` (transformers' own std-0.02
    initialisation gives a nearly constant output that no fit accepts).
    """
    from transformers import AutoConfig

    from depth_node.training.student import random_network

    config = AutoConfig.from_pretrained(os.fspath(model_path), local_files_only=True)
    return random_network(config, seed, head_bias=0.5)


def _score(name: str, depths: Sequence[Optional[np.ndarray]], truths: Sequence[np.ndarray],
           max_depth: float, seconds: float) -> MethodScore:
    per_frame = []
    covered = total = 0
    for depth, gt in zip(depths, truths):
        valid = np.isfinite(gt) & (gt > 1e-3) & (gt <= max_depth)
        total += int(valid.sum())
        if depth is None:
            continue
        m = depth_metrics(depth, gt, max_depth=max_depth)
        covered += m.valid
        per_frame.append(m)
    present = [d is not None for d in depths]
    return MethodScore(name, mean_metrics(per_frame), covered / max(1, total), per_frame,
                       seconds / max(1, len(depths)), depths_present=present)


def student_report(model_path: Union[str, os.PathLike], frames: int = 8,
                   seeds: Sequence[int] = tuple(range(500, 506)),
                   size: tuple[int, int] = (640, 480), max_depth: float = 80.0,
                   input_size: int = 0, random_seed: int = 0,
                   config: Optional[PipelineConfig] = None) -> StudentReport:
    """Score a student, a random network of its size and LiDAR-only on held-out drives.

    Parameters
    ----------
    model_path : str or path-like
        The student (Hugging Face folder).
    frames : int
        Frames of each held-out drive (10 Hz, 8 m/s).
    seeds : sequence of int
        Street (and LiDAR-noise) seeds, one drive each; the shipped student was trained on
        1-24 (validated on 1000-1001), so the default 500-505 are streets it never saw.
    size : (int, int)
        Camera width, height.
    max_depth : float
        Metrics cap, metres.
    input_size : int
        Network input lower bound; 0 = the model's own.
    config : PipelineConfig, optional
        Alignment settings; default the node's defaults with the temporal filter, the fusion
        and the uncertainty off (the student's own figures after the global fit).
    """
    from depth_node.estimators.depth_anything import (DepthAnythingEstimator,
                                                      use_official_pos_embed_interpolation)

    if not seeds or frames < 1:
        raise ValueError('a report needs at least one street and one frame')
    # The network's figures: the node's global fit alone (fusion would mix in the LiDAR).
    cfg = config or replace(PipelineConfig(), temporal=False, max_depth=max_depth,
                            fusion=False, uncertainty=False)
    drives: list[tuple[int, SimRig, list[SimFrame]]] = []
    for seed in seeds:
        rig = SimRig.default(size[0], size[1], int(seed))
        drives.append((int(seed), rig, list(rig.frames(frames, seed=int(seed)))))
    truths = [f.depth for _, _, drive in drives for f in drive]
    street_of = [seed for seed, _, drive in drives for _ in drive]
    size_in = input_size or model_input_size(model_path)
    student = DepthAnythingEstimator(model_path, input_size=size_in)
    rand = DepthAnythingEstimator(model_path, input_size=size_in)
    rand.model = random_like(model_path, random_seed)
    use_official_pos_embed_interpolation(rand.model, True)
    methods: dict[str, MethodScore] = {}
    runs = (('student', student, cfg), ('student_local', student, replace(cfg, local=True)),
            ('random', rand, cfg))
    for name, est, run_cfg in runs:
        depths = []
        bounds = []
        refused: dict[str, int] = {}
        seconds = 0.0
        for _, rig, drive in drives:
            pipe = DepthPipeline(est, run_cfg)  # a fresh pipeline per street
            for f in drive:
                start = time.perf_counter()
                res = pipe.process(FrameInput(f.rgb, rig.camera, f.stamp, f.lidar,
                                              rig.lidar_to_camera))
                seconds += time.perf_counter() - start
                depths.append(res.depth)
                if not res.fit.ok:
                    why = re.sub(r'-?\d+(\.\d+)?(e-?\d+)?', '#', res.fit.reason)  # no numbers
                    refused[why] = refused.get(why, 0) + 1
                if not run_cfg.local:
                    bounds.append(depth_metrics(dense_oracle_fit(
                        res.relative, f.depth, OutputKind.DISPARITY, max_depth), f.depth,
                        max_depth=max_depth))
        methods[name] = _score(name, depths, truths, max_depth, seconds)
        methods[name].refused = refused
        methods[name].bound = mean_metrics(bounds) if bounds else None
    depths = []
    start = time.perf_counter()
    for _, rig, drive in drives:
        for f in drive:
            depths.append(lidar_only_from_sweep(f.lidar, rig.camera, rig.lidar_to_camera, cfg))
    methods['lidar_only'] = _score('lidar_only', depths, truths, max_depth,
                                   time.perf_counter() - start)
    return StudentReport(os.fspath(model_path), frames, size, [int(x) for x in seeds],
                         max_depth, methods, street_of)
