"""Replay a rosbag2 recording through the node's own pipeline and score the metric depth.

Every camera frame of the bag goes through :class:`~depth_node.pipeline.frame.DepthPipeline`
with the node's configuration, exactly as the node would process it (same estimator, same
LiDAR projection, see-through rejection, fit, temporal filter, depth and cloud), but without
a ROS graph: frames are read with :class:`~depth_node.offline.reader.DriveReader` and none is
dropped for lack of time.

Ground truth
------------
* ``depth``: a dense depth topic of the bag (``32FC1`` metres or ``16UC1`` millimetres), when
  it has one (``ground_truth='auto'``). The pipeline gets the whole LiDAR sweep, as live.
* ``lidar``: otherwise, held-out LiDAR. Each sweep is projected once (the pipeline's own
  projection, nearest return per pixel); its LiDAR pixels are split at random (seeded by
  ``seed`` and the frame index) into a *fit* set and a held-out *evaluation* set of
  ``holdout`` of them. The pipeline receives only the raw points that land on fit pixels, so no
  point of an evaluation pixel ever reaches it; after each frame the pixels the fit used are
  checked against the fit set (a mismatch stops the evaluation). Held-out returns that see
  past a foreground edge (the see-through test on the whole sweep) are dropped from the
  ground truth by default: they are LiDAR artefacts, not depth (``clean_lidar_gt``). The split
  is per pixel, so fit and evaluation pixels interleave on the same surfaces: the numbers say
  how well the dense depth agrees with LiDAR it was not fitted on, not how it does in regions
  without LiDAR.

Metrics are those of :mod:`depth_node.core.metrics` (per frame over valid pixels, then the mean
over frames), overall and per depth bin (ground-truth depth along the optical axis, metres;
default 0-10, 10-20, 20-40, 40-80), capped at the pipeline's ``max_depth``. Frames without
metric depth (no usable fit) have no metrics; :attr:`EvaluationResult.frames_with_depth` says
how many had some.

Ctrl-C (``KeyboardInterrupt``) stops the replay after the current frame: the result holds the
frames done and ``interrupted=True``, and an output bag is closed properly.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.core.lidar import point_pixels as core_point_pixels
from depth_node.core.lidar import project_points, SparseDepth
from depth_node.core.metrics import depth_metrics, DepthMetrics, mean_metrics, METRIC_NAMES
from depth_node.core.robust import reject_see_through
from depth_node.core.transforms import RigidTransform
from depth_node.estimators.base import Estimator
from depth_node.offline.drive_bag import DriveTopics
from depth_node.offline.reader import DriveReader
from depth_node.offline.records import BagIssue, DriveFrame
from depth_node.pipeline.frame import DepthPipeline, FrameInput, FrameResult, PipelineConfig
from depth_node.pipeline.published import (diagnostic_status, frame_outputs, PublishSettings)
from depth_node.pipeline.stats import FrameStats

#: Depth bins of the per-range metrics, metres (ground truth along the optical axis).
RANGE_BINS: tuple[tuple[float, float], ...] = ((0.0, 10.0), (10.0, 20.0), (20.0, 40.0),
                                               (40.0, 80.0))
GROUND_TRUTHS = ('auto', 'depth', 'lidar')
EXTRINSIC_SOURCES = ('auto', 'bag', 'parameters')
# rclpy's own parameters, which a params file may set besides the node's (as the node skips).
_RCLPY_PARAMS = ('use_sim_time', 'start_type_description_service', 'qos_overrides.')
# Resolution of the pooled error-versus-depth curve, metres.
_CURVE_STEP = 2.0


def bin_label(lo: float, hi: float) -> str:
    """``'0-10'`` for the bin [0, 10) m."""
    return f'{lo:g}-{hi:g}'


# ----------------------------------------------------------------------------- configuration


def load_params_file(path: str | Path, node_name: str = 'depth_node') -> dict[str, Any]:
    """Parameter values for ``node_name`` from a ROS 2 params file, with dotted names.

    Sections apply as ``ros2 run ... --params-file`` applies them: ``/**`` (or ``**``) to every
    node, ``<name>``, ``/<name>``, ``/<namespace>/<name>`` or ``/**/<name>`` to the node of that
    name; later sections override earlier ones. Each section's ``ros__parameters`` is flattened
    (``{'fit': {'method': 'lsq'}}`` -> ``{'fit.method': 'lsq'}``). rclpy's own parameters
    (``use_sim_time``, ``qos_overrides.*``, ...) are left out, as the node ignores them.

    Raises
    ------
    ConfigError
        The file is not YAML, has no section for the node, or a section has no
        ``ros__parameters`` mapping (the message names the file).
    """
    import yaml

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError('--params-file', f'cannot be read as YAML ({exc})', str(p)) from None
    if not isinstance(doc, dict):
        raise ConfigError('--params-file', 'must map node names to ros__parameters', str(p))
    values: dict[str, Any] = {}
    matched = False
    for key, section in doc.items():
        name = str(key).strip()
        last = name.rstrip('/').rsplit('/', 1)[-1]
        if not (name in ('/**', '**') or last == node_name):
            continue
        if not isinstance(section, dict) or not isinstance(section.get('ros__parameters'),
                                                           dict):
            raise ConfigError('--params-file', f'section {name!r} has no ros__parameters '
                              'mapping', str(p))
        matched = True
        _flatten(section['ros__parameters'], '', values)
    if not matched:
        raise ConfigError('--params-file', f'has no section for node {node_name!r} (sections: '
                          f'{", ".join(map(str, doc))}; use /** or {node_name})', str(p))
    return {k: v for k, v in values.items() if not k.startswith(_RCLPY_PARAMS)}


def _flatten(tree: dict, prefix: str, out: dict[str, Any]) -> None:
    for k, v in tree.items():
        name = f'{prefix}{k}'
        if isinstance(v, dict):
            _flatten(v, name + '.', out)
        else:
            out[name] = v


@dataclass(frozen=True)
class NodeSettings:
    """The parts of the node's configuration an evaluation uses.

    :meth:`from_node_config` takes them from a
    :class:`depth_node.ros.params.NodeConfig` (``build_config`` of the node's parameters), so an
    evaluation runs with exactly the configuration, and validation, of the node.
    """

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    extrinsic: RigidTransform = field(default_factory=RigidTransform.identity)  # extrinsic.*
    lidar_max_age: float = 0.1  # s, LiDAR sweep matching (lidar.max_age)
    publish: PublishSettings = field(default_factory=PublishSettings)
    qos_depth: int = 5
    qos_output_reliable: bool = True
    diagnostics_period: float = 1.0  # s

    @classmethod
    def from_node_config(cls, config: Any) -> 'NodeSettings':
        """From a ``NodeConfig`` (read by attribute: this layer does not import ``ros``)."""
        return cls(
            pipeline=config.pipeline, extrinsic=config.extrinsic,
            lidar_max_age=float(config.lidar_max_age),
            publish=PublishSettings(
                relative=bool(config.publish_relative), colored=bool(config.publish_colored),
                colormap_range=tuple(config.colormap_range),
                cloud=bool(config.cloud_enable), cloud_color=bool(config.cloud_color),
                cloud_stride=int(config.pipeline.cloud_stride)),
            qos_depth=int(config.qos_depth),
            qos_output_reliable=bool(config.qos_output_reliable),
            diagnostics_period=float(config.diagnostics_period))


@dataclass(frozen=True)
class EvaluationOptions:
    """How to evaluate (see the module docstring)."""

    topics: DriveTopics = DriveTopics()
    ground_truth: str = 'auto'  # 'auto', 'depth' (dense topic) or 'lidar' (held-out LiDAR)
    holdout: float = 0.2  # fraction of each sweep's LiDAR pixels held out (lidar GT)
    seed: int = 0  # of the held-out split
    clean_lidar_gt: bool = True  # drop see-through returns from the held-out ground truth
    extrinsic: str = 'auto'  # 'auto': /tf_static when it connects the frames, else parameters
    max_frames: int = 0  # 0: all
    min_depth: float = 1e-3  # m, metrics
    max_depth: Optional[float] = None  # m, metrics cap; None: the pipeline's max_depth
    bins: tuple[tuple[float, float], ...] = RANGE_BINS
    sample_frame: Optional[int] = None  # frame index of the sample figure; None: the middle
    progress: bool = False  # tqdm progress bar on stderr

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad option."""
        if self.ground_truth not in GROUND_TRUTHS:
            raise ConfigError('--gt', f'must be one of {", ".join(GROUND_TRUTHS)}',
                              self.ground_truth)
        if self.extrinsic not in EXTRINSIC_SOURCES:
            raise ConfigError('--extrinsic', f'must be one of {", ".join(EXTRINSIC_SOURCES)}',
                              self.extrinsic)
        if not 0.0 < self.holdout < 1.0:
            raise ConfigError('--holdout', 'must be in (0, 1)', self.holdout)
        if self.max_frames < 0:
            raise ConfigError('--max-frames', 'must be >= 0', self.max_frames)
        if self.max_depth is not None and not self.max_depth > self.min_depth:
            raise ConfigError('--max-depth', 'must be > the minimum depth', self.max_depth)
        for lo, hi in self.bins:
            if not 0 <= lo < hi:
                raise ConfigError('bins', 'must be (lo, hi) with 0 <= lo < hi', (lo, hi))


# ----------------------------------------------------------------------------- held-out LiDAR


@dataclass(frozen=True)
class HeldOutSplit:
    """One sweep split into what the fit may see and what only the metrics see.

    Pixels are flat indices ``v * width + u``. ``fit_points`` are exactly the raw points whose
    projection lands on a fit pixel; the evaluation ground truth is the nearest return of the
    whole sweep at each evaluation pixel.
    """

    fit_points: np.ndarray  # [K, 3] float32, LiDAR frame, metres: all the pipeline receives
    fit_pixels: np.ndarray  # [F] int64, sorted
    eval_pixels: np.ndarray  # [E] int64, sorted, disjoint from fit_pixels
    eval_depth: SparseDepth  # [E'] the evaluation ground truth (E' <= E after cleaning)
    full: SparseDepth  # the whole sweep's projection


def point_pixels(points: np.ndarray, camera: PinholeCamera, lidar_to_camera: RigidTransform,
                 min_depth: float, max_depth: float) -> np.ndarray:
    """Flat pixel ``v * width + u`` [N] int64 of each raw point, -1 where it is not projected.

    :func:`depth_node.core.lidar.point_pixels`, the first half of ``project_points`` (which
    keeps only the nearest return per pixel and so cannot say where each point went).
    """
    return core_point_pixels(points, camera, lidar_to_camera, min_depth, max_depth)[0]


def split_lidar(points: np.ndarray, camera: PinholeCamera, lidar_to_camera: RigidTransform,
                config: PipelineConfig, holdout: float, rng: np.random.Generator,
                clean: bool = True) -> HeldOutSplit:
    """Split a sweep's LiDAR pixels into fit and held-out evaluation sets.

    Parameters
    ----------
    points
        [N, 3] LiDAR frame, metres (one sweep).
    camera, lidar_to_camera
        As the pipeline will use them.
    config
        The pipeline's configuration (LiDAR depth limits and see-through test).
    holdout
        Fraction of the projected pixels held out, in (0, 1) (rounded to whole pixels).
    rng
        Source of the random split.
    clean
        Drop held-out pixels whose return fails the see-through test on the whole sweep.
    """
    full = project_points(points, camera, lidar_to_camera, config.lidar_min_depth,
                          config.lidar_max_depth)
    pixels = full.v.astype(np.int64) * camera.width + full.u.astype(np.int64)  # [M]
    n_eval = int(round(holdout * full.count))
    held = np.zeros(full.count, dtype=bool)
    held[rng.permutation(full.count)[:n_eval]] = True
    fit_pixels = np.sort(pixels[~held])
    eval_pixels = np.sort(pixels[held])
    where = point_pixels(points, camera, lidar_to_camera, config.lidar_min_depth,
                         config.lidar_max_depth)
    to_fit = np.isin(where, fit_pixels)  # never -1: fit pixels are >= 0
    fit_points = np.asarray(points, dtype=np.float32)[to_fit]
    keep = held
    if clean and config.see_through and full.count:
        keep = held & reject_see_through(full, config.see_through_window,
                                         config.see_through_gap, focal_px=camera.fy)
    return HeldOutSplit(fit_points, fit_pixels, eval_pixels, full.subset(keep), full)


def check_no_leak(split: HeldOutSplit, used: Optional[SparseDepth], width: int) -> None:
    """Raise :class:`DepthNodeError` unless the pipeline's LiDAR pixels are the fit set.

    ``used`` is the pipeline's projection of what it received (``FrameResult.sparse``; None
    when it projected nothing, e.g. a metric model).
    """
    if np.intersect1d(split.fit_pixels, split.eval_pixels).size:
        raise DepthNodeError('held-out split: fit and evaluation pixels overlap')
    if used is None:
        return
    got = np.sort(used.v.astype(np.int64) * width + used.u.astype(np.int64))
    if not np.array_equal(got, split.fit_pixels):
        extra = np.setdiff1d(got, split.fit_pixels).size
        raise DepthNodeError(f'held-out split: the pipeline projected {got.size} LiDAR pixels, '
                             f'{extra} of them outside the {split.fit_pixels.size} fit pixels')


# ----------------------------------------------------------------------------- results


@dataclass
class FrameRecord:
    """What one frame did and how good its depth was."""

    index: int  # camera frame of the bag (0-based, in bag order)
    stamp: float  # s, image header stamp
    time: float  # s since the first evaluated frame
    gt: str  # ground truth used: 'depth', 'lidar' or 'none'
    fit_state: str  # fresh, held, none, metric
    filter_event: str
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
        return self.fit_state != 'none'

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


@dataclass
class EvaluationResult:
    """An evaluation: per-frame records and everything the report needs."""

    bag: str
    estimator: str
    ground_truth: str  # 'depth' or 'lidar'
    options: EvaluationOptions
    settings: NodeSettings
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
            out[r.fit_state] = out.get(r.fit_state, 0) + 1
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


# ----------------------------------------------------------------------------- the replay


class BagEvaluation:
    """Replays one bag through a :class:`DepthPipeline` and scores it (see the module).

    Parameters
    ----------
    bag
        rosbag2 folder (mcap or sqlite3) or a bare ``.mcap`` file.
    estimator
        The estimator the node would build (``build_estimator(config.estimator)``).
    settings
        The node's configuration (:meth:`NodeSettings.from_node_config`).
    options
        How to evaluate.
    output_bag
        Optional path of a new rosbag2 bag receiving what the node publishes.
    output_storage, output_namespace
        Its storage plugin and the node namespace its topics are in.
    """

    def __init__(self, bag: str | Path, estimator: Estimator, settings: NodeSettings,
                 options: EvaluationOptions = EvaluationOptions(),
                 output_bag: Optional[str | Path] = None, output_storage: str = 'mcap',
                 output_namespace: str = '') -> None:
        options.validate()
        if output_bag is not None and Path(output_bag).exists():
            raise ConfigError('--output-bag', 'exists already (bags are never overwritten)',
                              str(output_bag))
        self.bag = str(bag)
        self.estimator = estimator
        self.settings = settings
        self.options = options
        self.output_bag = None if output_bag is None else str(output_bag)
        self.output_storage = output_storage
        self.output_namespace = output_namespace
        self.pipeline = DepthPipeline(estimator, settings.pipeline)
        self.max_depth = options.max_depth or settings.pipeline.max_depth

    def run(self) -> EvaluationResult:
        """Replay and score; returns even when interrupted (``result.interrupted``)."""
        opts = self.options
        reader = DriveReader(self.bag, opts.topics, lidar_tolerance=self.settings.lidar_max_age)
        self._reader = reader
        declared = reader.topics_in_bag()
        gt = opts.ground_truth
        if gt == 'auto' and declared:  # else (a bare .mcap file): the first frame decides
            gt = 'depth' if opts.topics.depth in declared else 'lidar'
        name = getattr(self.estimator, 'name', type(self.estimator).__name__)
        result = EvaluationResult(self.bag, str(name), gt, opts, self.settings,
                                  images_declared=declared.get(opts.topics.image, ('', 0))[1])
        edges = np.arange(0.0, self.max_depth + _CURVE_STEP, _CURVE_STEP)
        result.curve_edges = edges
        result.curve_abs = np.zeros(edges.size - 1)
        result.curve_signed = np.zeros(edges.size - 1)
        result.curve_count = np.zeros(edges.size - 1)
        target = opts.sample_frame
        if target is None:
            target = max(result.images_declared // 2, 0)
        writer = None
        stats = FrameStats()
        last_diag: Optional[int] = None
        bar = _progress(opts.progress, result.images_declared or None)
        frames = reader.frames()
        t_start = time.perf_counter()
        first_stamp: Optional[float] = None
        try:
            while not (opts.max_frames and len(result.records) >= opts.max_frames):
                t0 = time.perf_counter()
                frame = next(frames, None)
                result.read_s += time.perf_counter() - t0
                if frame is None:
                    break
                if first_stamp is None:
                    first_stamp = frame.stamp
                    if gt == 'auto':
                        gt = result.ground_truth = 'depth' if frame.depth is not None \
                            else 'lidar'
                if writer is None and self.output_bag is not None:  # once the bag reads
                    writer = self._writer()
                    result.output_bag = self.output_bag
                record = self._frame(frame, gt, result, first_stamp, stats, writer, target)
                if record is None:
                    continue
                result.records.append(record)
                if writer is not None:
                    t_w = time.perf_counter()
                    stamp_ns = frame.stamp_ns
                    period_ns = int(self.settings.diagnostics_period * 1e9)
                    if last_diag is None or stamp_ns - last_diag >= period_ns:
                        writer.write_diagnostics(frame.log_ns or stamp_ns, stamp_ns,
                                                 diagnostic_status(stats.snapshot(),
                                                                   self.pipeline.space.value))
                        last_diag = stamp_ns
                    result.output_s += time.perf_counter() - t_w
                bar.update(1)
                if record.metrics is not None and math.isfinite(record.metrics.abs_rel):
                    bar.set_postfix(abs_rel=f'{record.metrics.abs_rel:.4f}', refresh=False)
        except KeyboardInterrupt:
            result.interrupted = True
        finally:
            result.wall_s = time.perf_counter() - t_start
            bar.close()
            frames.close()
            if writer is not None:
                writer.close()
                result.output_counts = dict(writer.counts)
        result.damaged = bool(reader.issues)
        result.issues = list(reader.issues) + result.issues
        result.images_skipped = reader.skipped_images
        return result

    def _writer(self) -> Any:
        from depth_node.offline.writer import OutputBagWriter
        return OutputBagWriter(
            self.output_bag, storage=self.output_storage, namespace=self.output_namespace,
            qos_depth=self.settings.qos_depth, reliable=self.settings.qos_output_reliable)

    # ----- one frame
    def _frame(self, frame: DriveFrame, gt: str, result: EvaluationResult, first_stamp: float,
               stats: FrameStats, writer: Any, target: int) -> Optional[FrameRecord]:
        opts, cfg = self.options, self.settings.pipeline
        if frame.camera is None:
            self._issue(result, self.options.topics.camera_info,
                        'no camera_info before or near the image: frame skipped',
                        once=True)
            result.frames_failed += 1
            return None
        h, w = frame.rgb.shape[:2]
        camera = frame.camera
        if (camera.width, camera.height) != (w, h):  # as the node does
            camera = camera.resized(w, h)
        extrinsic, source = self._extrinsic(frame, result)
        lidar = frame.lidar if source else None
        split = None
        t_s = time.perf_counter()
        if gt == 'lidar' and lidar is not None:
            rng = np.random.default_rng([opts.seed, frame.index])
            split = split_lidar(lidar, camera, extrinsic, cfg, opts.holdout, rng,
                                clean=opts.clean_lidar_gt)
            lidar = split.fit_points
        result.split_s += time.perf_counter() - t_s
        t_p = time.perf_counter()
        try:
            res = self.pipeline.process(FrameInput(frame.rgb, camera, frame.stamp, lidar,
                                                   extrinsic),
                                        want_points=self.settings.publish.cloud)
        except DepthNodeError as exc:  # a bad input: the node drops the frame too
            self._issue(result, self.options.topics.image,
                        f'frame {frame.index} (stamp {frame.stamp:.3f} s) dropped by the '
                        f'pipeline: {exc}')
            result.frames_failed += 1
            return None
        except Exception as exc:  # the node logs these and keeps serving frames; so do we
            self._issue(result, self.options.topics.image, f'frames dropped by an unexpected '
                        f'error in the pipeline: {type(exc).__name__}: {exc}', once=True)
            result.frames_failed += 1
            return None
        result.process_s += time.perf_counter() - t_p
        if split is not None:
            t_s = time.perf_counter()
            check_no_leak(split, res.sparse, camera.width)
            result.split_s += time.perf_counter() - t_s
        timings = dict(res.timings_ms)
        rejected = 0 if res.kept is None else int(res.kept.size - res.kept.sum())
        stats.count('frames_in')
        stats.count('sweeps_in' if frame.lidar is not None else 'frames_without_lidar')
        stats.record_frame(timings, res.fit, res.fit_state, res.fit_age, res.applied,
                           rejected, res.filter_event)
        stats.count('published' if res.depth is not None else 'published_relative_only')
        if writer is not None:
            t_w = time.perf_counter()
            out = frame_outputs(res.depth, res.points, res.relative, frame.rgb, camera,
                                frame.distortion_model or 'plumb_bob', frame.distortion_count,
                                self.settings.publish)
            writer.copy_static(self._reader.static_transforms)
            writer.write_frame(frame.log_ns or frame.stamp_ns, frame.stamp_ns, frame.frame_id,
                               out)
            result.output_s += time.perf_counter() - t_w
        t_m = time.perf_counter()
        record = self._score(frame, gt, res, split, first_stamp, source, timings, result)
        if res.depth is not None and (result.sample is None or frame.index <= target):
            result.sample = SamplePanel(
                frame.index, frame.rgb, res.depth, frame.depth if gt == 'depth' else None,
                split.eval_depth if split is not None else None,
                record.metrics.abs_rel if record.metrics else float('nan'))
        result.metrics_s += time.perf_counter() - t_m
        return record

    def _issue(self, result: EvaluationResult, topic: Optional[str], message: str,
               once: bool = False) -> None:
        if once and any(i.message == message for i in result.issues):
            return
        result.issues.append(BagIssue(self.bag, topic, message))

    def _extrinsic(self, frame: DriveFrame,
                   result: EvaluationResult) -> tuple[RigidTransform, str]:
        """LiDAR -> camera pose and where it came from ('' when the LiDAR is unusable)."""
        params = self.settings.extrinsic
        if frame.lidar is None:
            return params, ''
        source = self.options.extrinsic
        if source == 'parameters':
            return params, 'parameters'
        if frame.lidar_to_camera is not None:
            return frame.lidar_to_camera, 'bag'
        if source == 'bag':
            self._issue(result, self.options.topics.tf_static,
                        f'no transform from {frame.lidar_frame_id!r} to {frame.frame_id!r}: '
                        'LiDAR not used (--extrinsic bag)', once=True)
            return params, ''
        self._issue(result, self.options.topics.tf_static,
                    f'no transform from {frame.lidar_frame_id!r} to {frame.frame_id!r} in the '
                    'bag: using the extrinsic.* parameters', once=True)
        return params, 'parameters'

    def _truth(self, frame: DriveFrame, gt: str, res: FrameResult,
               split: Optional[HeldOutSplit]) -> tuple[Optional[np.ndarray],
                                                       Optional[np.ndarray]]:
        """Ground truth in range and the prediction there, both [K] float64 (or None)."""
        if gt == 'depth' and frame.depth is not None:
            truth = frame.depth.reshape(-1)
            pred = None if res.depth is None else res.depth.reshape(-1)
        elif gt == 'lidar' and split is not None:
            e = split.eval_depth
            truth = e.z
            pred = None if res.depth is None else res.depth[e.v, e.u]
        else:
            return None, None
        in_range = np.isfinite(truth) & (truth > self.options.min_depth) & \
            (truth <= self.max_depth)
        truth = truth[in_range].astype(np.float64)
        return truth, None if pred is None else pred[in_range].astype(np.float64)

    def _score(self, frame: DriveFrame, gt: str, res: FrameResult,
               split: Optional[HeldOutSplit], first_stamp: float, source: str,
               timings: dict[str, float], result: EvaluationResult) -> FrameRecord:
        opts = self.options
        lo_cap, hi_cap = opts.min_depth, self.max_depth
        truth, pred = self._truth(frame, gt, res, split)
        kind = 'none' if truth is None else gt
        metrics, bins = None, {}
        if truth is not None and pred is not None:
            metrics = depth_metrics(pred, truth, lo_cap, hi_cap)
            for lo, hi in opts.bins:
                mask = (truth >= lo) & ((truth < hi) if hi < hi_cap else (truth <= hi))
                bins[bin_label(lo, hi)] = depth_metrics(pred[mask], truth[mask], lo_cap, hi_cap)
            self._curve(truth, pred, result)
        fit, applied = res.fit, res.applied
        nan = float('nan')
        return FrameRecord(
            index=frame.index, stamp=frame.stamp, time=frame.stamp - first_stamp, gt=kind,
            fit_state=res.fit_state, filter_event=res.filter_event, fit_ok=bool(fit.ok),
            fit_reason=fit.reason, scale=applied.scale if applied is not None else nan,
            shift=applied.shift if applied is not None else nan,
            frame_scale=fit.scale, frame_shift=fit.shift, fit_points=int(fit.points),
            fit_inliers=int(fit.inliers), fit_residual=float(fit.residual),
            lidar_points=0 if frame.lidar is None else int(frame.lidar.shape[0]),
            lidar_pixels=(split.full.count if split is not None
                          else (res.sparse.count if res.sparse is not None else 0)),
            eval_pixels=0 if split is None else int(split.eval_depth.count),
            extrinsic=source, metrics=metrics, bins=bins,
            gt_pixels=0 if truth is None else int(truth.size), timings_ms=timings)

    @staticmethod
    def _curve(truth: np.ndarray, pred: np.ndarray, result: EvaluationResult) -> None:
        """Accumulate the pooled relative error per depth step (error-versus-depth plot)."""
        ok = np.isfinite(pred) & (pred > 0)
        t, p = truth[ok], pred[ok]
        n = result.curve_count.size
        idx = np.clip(np.searchsorted(result.curve_edges, t, side='right') - 1, 0, n - 1)
        rel = (p - t) / t
        result.curve_abs += np.bincount(idx, np.abs(rel), n)
        result.curve_signed += np.bincount(idx, rel, n)
        result.curve_count += np.bincount(idx, None, n)


def _progress(enabled: bool, total: Optional[int]) -> Any:
    """A tqdm bar on stderr, or a stand-in that does nothing."""
    if enabled:
        try:
            from tqdm import tqdm
            return tqdm(total=total, unit='frame', file=sys.stderr, dynamic_ncols=True,
                        leave=False)
        except ImportError:
            pass
    return _NoBar()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


__all__ = ['BagEvaluation', 'EvaluationOptions', 'EvaluationResult', 'FrameRecord',
           'HeldOutSplit', 'NodeSettings', 'RANGE_BINS', 'check_no_leak', 'load_params_file',
           'point_pixels', 'split_lidar', 'METRIC_NAMES']
