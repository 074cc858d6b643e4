"""Results of a bag evaluation: one record per frame, and what the report needs from them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional, TYPE_CHECKING

import numpy as np

from depth_node.core.lidar import SparseDepth
from depth_node.core.metrics import DepthMetrics, mean_metrics
from depth_node.offline.records import BagIssue
from depth_node.pipeline.frame import FitState

if TYPE_CHECKING:  # eval_config imports RANGE_BINS from here
    from depth_node.offline.eval_config import EvaluationOptions, NodeSettings

#: Depth bins of the per-range metrics, metres (ground truth along the optical axis).
RANGE_BINS: tuple[tuple[float, float], ...] = ((0.0, 10.0), (10.0, 20.0), (20.0, 40.0),
                                               (40.0, 80.0))


def bin_label(lo: float, hi: float) -> str:
    """``'0-10'`` for the bin [0, 10) m."""
    return f'{lo:g}-{hi:g}'


@dataclass
class FrameRecord:
    """What one frame did and how good its depth was."""

    index: int  # camera frame of the bag (0-based, in bag order)
    stamp: float  # s, image header stamp
    time: float  # s since the first evaluated frame
    gt: str  # ground truth used: 'depth', 'lidar' or 'none'
    fit_state: FitState
    filter_event: str  # a FilterEvent ('' with the temporal filter off)
    fit_ok: bool  # this frame's own fit was accepted
    fit_reason: str  # why it was refused ('' when accepted)
    scale: float  # applied to the depth (nan: no metric depth)
    shift: float
    frame_scale: float  # this frame's own fit (nan when refused)
    frame_shift: float
    fit_points: int  # LiDAR pixels the fit used
    fit_inliers: int  # of them, kept by the robust fit (-1: all)
    fit_residual: float  # log-depth sigma (robust) or fit-space RMS (lsq)
    lidar_points: int  # raw points of the matched sweep (0: none)
    lidar_pixels: int  # projected LiDAR pixels of the sweep
    eval_pixels: int  # held-out pixels (lidar ground truth; 0 otherwise)
    extrinsic: str  # 'bag' (/tf_static), 'parameters' or '' (no LiDAR)
    metrics: Optional[DepthMetrics]  # None: no metric depth or no ground truth
    bins: dict[str, DepthMetrics] = field(default_factory=dict)
    gt_pixels: int = 0  # ground-truth pixels in range
    timings_ms: dict[str, float] = field(default_factory=dict)  # the node's stages

    @property
    def has_depth(self) -> bool:
        return self.fit_state != FitState.NONE

    @property
    def coverage(self) -> float:
        """Fraction of ground-truth pixels with a valid metric prediction."""
        if not self.gt_pixels:
            return float('nan')
        return (self.metrics.valid if self.metrics else 0) / self.gt_pixels


@dataclass
class SamplePanel:
    """What the sample figure shows for one frame."""

    index: int
    rgb: np.ndarray  # [H, W, 3] uint8
    depth: Optional[np.ndarray]  # [H, W] float32 m
    gt_dense: Optional[np.ndarray]  # [H, W] float32 m (depth ground truth)
    gt_sparse: Optional[SparseDepth]  # held-out ground truth
    abs_rel: float
    sigma: Optional[np.ndarray] = None  # [H, W] float32 m, the published uncertainty


@dataclass
class EvaluationResult:
    """An evaluation: per-frame records and everything the report needs."""

    bag: str
    estimator: str
    ground_truth: str  # 'depth' or 'lidar'
    options: 'EvaluationOptions'
    settings: 'NodeSettings'
    records: list[FrameRecord] = field(default_factory=list)
    issues: list[BagIssue] = field(default_factory=list)
    interrupted: bool = False
    damaged: bool = False  # the bag could not be read completely (see issues)
    images_declared: int = 0  # camera messages the bag declares (0: unknown)
    images_skipped: int = 0  # camera messages that could not be decoded
    frames_failed: int = 0  # frames the pipeline refused (bad input), each an issue
    wall_s: float = 0.0  # the replay loop
    read_s: float = 0.0  # reading and decoding the bag
    process_s: float = 0.0  # DepthPipeline.process
    split_s: float = 0.0  # held-out split and its check
    metrics_s: float = 0.0
    output_s: float = 0.0  # messages for the output bag
    output_bag: Optional[str] = None
    output_counts: dict[str, int] = field(default_factory=dict)
    sample: Optional[SamplePanel] = None
    curve_edges: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [B+1] m
    curve_abs: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [B] sum |d-g|/g
    curve_signed: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [B] sum (d-g)/g
    curve_count: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [B] pixels
    # Reliability of the uncertainty: pixels binned by predicted sigma / z.
    rel_edges: np.ndarray = field(default_factory=lambda: np.geomspace(0.002, 1.0, 19))
    rel_count: np.ndarray = field(default_factory=lambda: np.zeros(18))  # [R] pixels
    rel_pred: np.ndarray = field(default_factory=lambda: np.zeros(18))  # [R] sum sigma / z
    rel_sq: np.ndarray = field(default_factory=lambda: np.zeros(18))  # [R] sum ((d-g)/d)^2
    within_sigma: np.ndarray = field(default_factory=lambda: np.zeros(2))  # <= 1, 2 sigma

    @property
    def frames(self) -> int:
        return len(self.records)

    @property
    def frames_with_depth(self) -> int:
        return sum(r.has_depth for r in self.records)

    @property
    def frames_evaluated(self) -> int:
        return sum(r.metrics is not None and r.metrics.valid > 0 for r in self.records)

    def overall(self) -> DepthMetrics:
        """Mean of the per-frame metrics over frames with valid pixels."""
        return mean_metrics(r.metrics for r in self.records if r.metrics is not None)

    def overall_bins(self) -> dict[str, DepthMetrics]:
        """Per depth bin: mean over frames with valid pixels in that bin."""
        return {bin_label(lo, hi): mean_metrics(r.bins[bin_label(lo, hi)] for r in self.records
                                                if bin_label(lo, hi) in r.bins)
                for lo, hi in self.options.bins}

    def latency(self) -> dict[str, dict[str, float]]:
        """Per stage of the node (ms): mean, p50, p95, max over frames."""
        stages: dict[str, list[float]] = {}
        for r in self.records:
            for k, v in r.timings_ms.items():
                stages.setdefault(k, []).append(v)
        return {k: {'mean': float(np.mean(v)), 'p50': float(np.percentile(v, 50)),
                    'p95': float(np.percentile(v, 95)), 'max': float(np.max(v)),
                    'frames': len(v)} for k, v in stages.items()}

    def throughput(self) -> dict[str, float]:
        """Frames per second and where the time went."""
        estimate_s = sum(r.timings_ms.get('estimate', 0.0) for r in self.records) / 1e3
        wall = max(self.wall_s, 1e-9)
        n = len(self.records)
        return {'frames_per_s': n / wall, 'wall_s': self.wall_s, 'read_s': self.read_s,
                'process_s': self.process_s, 'estimate_s': estimate_s,
                'split_s': self.split_s, 'metrics_s': self.metrics_s,
                'output_bag_s': self.output_s,
                'model_share': estimate_s / wall,
                'outside_model_share': 1.0 - estimate_s / wall,
                'pipeline_outside_model_share': (1.0 - estimate_s / self.process_s
                                                 if self.process_s > 0 else float('nan'))}

    def fit_states(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records:
            out[str(r.fit_state)] = out.get(str(r.fit_state), 0) + 1
        return out

    def refusals(self) -> dict[str, int]:
        """Why frames' own fits were refused: reason (numbers dropped) -> frames."""
        out: dict[str, int] = {}
        for r in self.records:
            if not r.fit_ok and r.fit_reason:
                key = ' '.join(w for w in r.fit_reason.split()
                               if not any(c.isdigit() for c in w))
                out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def uncertainty_summary(self) -> dict[str, Any]:
        """Calibration of the published sigma: share of pixels within 1 and 2 sigma."""
        n = float(self.rel_count.sum())
        return {'pixels': int(n),
                'within_1sigma': float(self.within_sigma[0] / n) if n else None,
                'within_2sigma': float(self.within_sigma[1] / n) if n else None}

    def summary(self) -> dict[str, Any]:
        """Everything of the evaluation as plain JSON-able data (no per-frame rows)."""
        opts = dataclasses.asdict(self.options)
        return {
            'bag': self.bag, 'estimator': self.estimator, 'ground_truth': self.ground_truth,
            'interrupted': self.interrupted, 'damaged': self.damaged,
            'frames': {'declared': self.images_declared, 'processed': self.frames,
                       'with_metric_depth': self.frames_with_depth,
                       'evaluated': self.frames_evaluated,
                       'skipped_unreadable': self.images_skipped,
                       'failed': self.frames_failed},
            'fit_states': self.fit_states(), 'fit_refusals': self.refusals(),
            'metrics': _metrics_dict(self.overall()),
            'metrics_by_depth': {k: _metrics_dict(m) for k, m in self.overall_bins().items()},
            'scale': _series_stats([r.scale for r in self.records]),
            'shift': _series_stats([r.shift for r in self.records]),
            'uncertainty': self.uncertainty_summary(),
            'latency_ms': self.latency(),
            'throughput': self.throughput(),
            'issues': [{'bag': i.bag, 'topic': i.topic, 'message': i.message}
                       for i in self.issues],
            'output_bag': ({'path': self.output_bag, 'messages': self.output_counts}
                           if self.output_bag else None),
            'options': opts,
            'pipeline': dataclasses.asdict(self.settings.pipeline),
        }


def _metrics_dict(m: DepthMetrics) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in m.as_dict().items()}


def _series_stats(values: list[float]) -> dict[str, Any]:
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if not v.size:
        return {'frames': 0, 'mean': None, 'std': None, 'min': None, 'max': None}
    return {'frames': int(v.size), 'mean': float(v.mean()), 'std': float(v.std()),
            'min': float(v.min()), 'max': float(v.max())}


__all__ = ['EvaluationResult', 'FrameRecord', 'RANGE_BINS', 'SamplePanel', 'bin_label']
