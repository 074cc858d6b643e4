"""Replay a rosbag2 recording through the node's own pipeline and score the metric depth.

Every camera frame of the bag goes through the node's own per-frame runner
(:class:`~depth_node.pipeline.runner.FrameRunner`) with the node's configuration: same
estimator, decisions (frames without camera_info, LiDAR or extrinsic), projection,
see-through rejection, fit, temporal filter, published bytes and diagnostics counters, but
without a ROS graph: frames are read with :class:`~depth_node.offline.reader.DriveReader` and none
is dropped for lack of time. The held-out split is :mod:`depth_node.offline.heldout`, the
records and summary :mod:`depth_node.offline.results`.

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
from collections import Counter
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.core.extrinsic_check import shift_message
from depth_node.core.metrics import depth_metrics, METRIC_NAMES
from depth_node.core.transforms import RigidTransform
from depth_node.estimators.base import Estimator
from depth_node.offline.reader import DriveReader, ReadWindow
from depth_node.offline.records import BagIssue, DriveFrame, MISALIGNED_ISSUE
from depth_node.offline.eval_config import (EvaluationOptions, EXTRINSIC_SOURCES,
                                            GROUND_TRUTHS, NodeSettings)
from depth_node.offline.heldout import (check_no_leak, HeldOutSplit, point_pixels,
                                        split_lidar)
from depth_node.offline.results import (bin_label, EvaluationResult, FrameRecord, RANGE_BINS,
                                        SamplePanel)
from depth_node.pipeline.frame import FrameInput, FrameResult
from depth_node.pipeline.published import diagnostic_status, FrameOutputs
from depth_node.pipeline.sweep_motion import MotionLookup, SweepMotion
from depth_node.pipeline.runner import (CameraModel, DROPPED_NO_CAMERA_INFO, ExtrinsicLookup,
                                        FrameRunner, ImageFrame, Sweep)

# Resolution of the pooled error-versus-depth curve, metres.
_CURVE_STEP = 2.0


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
    window
        Evaluate one time chunk of the bag (a fleet run): its frames, after the warm-up frames
        the reader yields before it (run through the pipeline for its state, not scored).
    """

    def __init__(self, bag: str | Path, estimator: Estimator, settings: NodeSettings,
                 options: EvaluationOptions = EvaluationOptions(),
                 output_bag: Optional[str | Path] = None, output_storage: str = 'mcap',
                 output_namespace: str = '', window: Optional[ReadWindow] = None) -> None:
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
        self.runner = FrameRunner(estimator, settings.runner)
        self.pipeline = self.runner.pipeline
        self.max_depth = options.max_depth or settings.pipeline.max_depth
        self.window = window
        self.first_stamp: Optional[float] = None  # s, of the first frame read (after run)

    def run(self) -> EvaluationResult:
        """Replay and score; returns even when interrupted (``result.interrupted``)."""
        opts = self.options
        reader = DriveReader(self.bag, opts.topics, lidar_tolerance=self.settings.lidar_max_age,
                             window=self.window, time_field=self.settings.time_field)
        self._reader = reader
        declared = reader.topics_in_bag()
        gt = opts.ground_truth
        if gt == 'auto' and declared:  # else (a bare .mcap file): the first frame decides
            gt = 'depth' if opts.topics.depth in declared else 'lidar'
        name = getattr(self.estimator, 'name', type(self.estimator).__name__)
        result = EvaluationResult(self.bag, str(name), gt, opts, self.settings,
                                  images_declared=declared.get(opts.topics.image, ('', 0))[1])
        self._curves(result)
        warm = None  # what warm-up frames of a window would add to the result: dropped
        target = opts.sample_frame
        if target is None:
            target = max(result.images_declared // 2, 0)
        writer = None
        stats = self.runner.stats
        last_diag: Optional[int] = None
        bar = _progress(opts.progress, result.images_declared or None)
        frames = reader.frames()
        t_start = time.perf_counter()
        first_stamp: Optional[float] = None
        sweeps_seen: set[int] = set()
        skipped = 0
        counted: Counter[str] = Counter()
        try:
            while not (opts.max_frames and len(result.records) >= opts.max_frames):
                t0 = time.perf_counter()
                frame = next(frames, None)
                result.read_s += time.perf_counter() - t0
                # The node counts every image it receives, and those it cannot decode.
                for _ in range(reader.skipped_images - skipped):
                    stats.count('frames_in')
                    stats.error('malformed_image', 'image dropped: see the issues')
                skipped = reader.skipped_images
                for key, n in reader.malformed.items():  # clouds, camera_infos dropped
                    for _ in range(n - counted[key]):
                        stats.error(key, f'{key}: see the issues')
                    counted[key] = n
                if frame is None:
                    break
                stats.count('frames_in')
                if frame.lidar_stamp_ns is not None and frame.lidar_stamp_ns not in sweeps_seen:
                    sweeps_seen.add(frame.lidar_stamp_ns)
                    stats.count('sweeps_in')
                if first_stamp is None:
                    first_stamp = self.first_stamp = frame.stamp
                    if gt == 'auto':
                        gt = result.ground_truth = 'depth' if frame.depth is not None \
                            else 'lidar'
                if self.window is not None and (frame.log_ns or 0) < self.window.start_ns:
                    warm = warm or self._curves(dataclasses.replace(result, records=[],
                                                                    issues=[]))
                    self._frame(frame, gt, warm, first_stamp, None, target)
                    continue
                if writer is None and self.output_bag is not None:  # once the bag reads
                    writer = self._writer()
                    result.output_bag = self.output_bag
                record = self._frame(frame, gt, result, first_stamp, writer, target)
                if record is not None:
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
                if record is None:
                    continue
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

    def _curves(self, result: EvaluationResult) -> EvaluationResult:
        """Empty error-versus-depth and reliability accumulators on ``result`` (returned)."""
        edges = np.arange(0.0, self.max_depth + _CURVE_STEP, _CURVE_STEP)
        result.curve_edges = edges
        result.curve_abs = np.zeros(edges.size - 1)
        result.curve_signed = np.zeros(edges.size - 1)
        result.curve_count = np.zeros(edges.size - 1)
        for k in ('rel_count', 'rel_pred', 'rel_sq', 'within_sigma'):  # not shared with a copy
            setattr(result, k, np.zeros_like(getattr(result, k)))
        return result

    def _writer(self) -> Any:
        from depth_node.offline.writer import OutputBagWriter
        return OutputBagWriter(
            self.output_bag, storage=self.output_storage, namespace=self.output_namespace,
            qos_depth=self.settings.qos_depth, reliable=self.settings.qos_output_reliable)

    # ----- one frame
    def _frame(self, frame: DriveFrame, gt: str, result: EvaluationResult, first_stamp: float,
               writer: Any, target: int) -> Optional[FrameRecord]:
        """Run one frame through the node's runner and score it (None: dropped, an issue)."""
        opts, cfg = self.options, self.settings.pipeline
        camera = None if frame.camera is None else CameraModel(
            frame.camera, frame.distortion_model, frame.distortion_count)
        sweep = None
        if frame.lidar is not None:
            sweep = Sweep(int(frame.lidar_stamp_ns or frame.stamp_ns),
                          str(frame.lidar_frame_id or ''), frame.lidar, frame.lidar_times)
        source = self._extrinsic_source(frame, result)
        lookup = None if source == 'parameters' else self._lookup(frame)
        held: list[HeldOutSplit] = []

        def prepare(inp: FrameInput) -> FrameInput:
            if gt != 'lidar' or inp.lidar is None:
                return inp
            t_s = time.perf_counter()
            rng = np.random.default_rng([opts.seed, frame.index])
            held.append(split_lidar(inp.lidar, inp.camera, inp.lidar_to_camera, cfg,
                                    opts.holdout, rng, clean=opts.clean_lidar_gt))
            result.split_s += time.perf_counter() - t_s
            return dataclasses.replace(inp, lidar=held[0].fit_points)

        def emit(out: FrameOutputs, inp: FrameInput, res: FrameResult) -> None:
            if writer is not None:
                t_w = time.perf_counter()
                writer.copy_static(self._reader.static_transforms)
                writer.write_frame(frame.log_ns or frame.stamp_ns, frame.stamp_ns,
                                   frame.frame_id, out)
                result.output_s += time.perf_counter() - t_w

        t_p = time.perf_counter()
        run = self.runner.run(ImageFrame(frame.rgb, frame.stamp_ns, frame.frame_id), camera,
                              sweep, lookup, motion=self._motion(frame), prepare=prepare,
                              emit=emit)
        result.process_s += time.perf_counter() - t_p
        if run.extrinsic_error:
            self._issue(result, opts.topics.tf_static, f'{run.extrinsic_error}: LiDAR not used '
                        f'(--extrinsic {opts.extrinsic})', once=True)
        if run.dropped or run.result is None or run.frame is None:
            if run.dropped == DROPPED_NO_CAMERA_INFO:  # once: it says the same every frame
                self._issue(result, opts.topics.camera_info, run.reason, once=True)
            else:
                self._issue(result, opts.topics.image, f'frame {frame.index} (stamp '
                            f'{frame.stamp:.3f} s): {run.reason}')
            result.frames_failed += 1
            return None
        res = run.result
        split = held[0] if held else None
        if split is not None:
            t_s = time.perf_counter()
            check_no_leak(split, res.sparse, run.frame.camera.width)
            result.split_s += time.perf_counter() - t_s
        shift = res.trust.extrinsic_shift if res.trust is not None else 0
        if shift and not any(i.message.startswith(MISALIGNED_ISSUE) for i in result.issues):
            self._issue(result, opts.topics.tf_static if source == 'bag' else None,
                        f'{MISALIGNED_ISSUE} from frame {frame.index} (stamp '
                        f'{frame.stamp:.3f} s): '
                        f'{shift_message(shift)} (--extrinsic {opts.extrinsic})')
        t_m = time.perf_counter()
        used = '' if run.frame.lidar is None else source
        record = self._score(frame, gt, res, split, first_stamp, used, run.timings_ms, result)
        if res.depth is not None and (result.sample is None or frame.index <= target):
            result.sample = SamplePanel(
                frame.index, frame.rgb, res.depth, frame.depth if gt == 'depth' else None,
                split.eval_depth if split is not None else None,
                record.metrics.abs_rel if record.metrics else float('nan'), res.sigma)
        result.metrics_s += time.perf_counter() - t_m
        return record

    def _issue(self, result: EvaluationResult, topic: Optional[str], message: str,
               once: bool = False) -> None:
        if once and any(i.message == message for i in result.issues):
            return
        result.issues.append(BagIssue(self.bag, topic, message))

    def _motion(self, frame: DriveFrame) -> MotionLookup:
        """The bag's /tf poses of the vehicle around this frame's sweep (the reader kept them)."""
        odom, base = self._reader.motion_frames
        motion = SweepMotion(frame.vehicle_poses, frame.lidar_in_base or RigidTransform.identity(),
                             f'bag /tf {odom} -> {base}')
        return lambda lidar_frame, start_ns, stop_ns, image_ns: motion

    def _extrinsic_source(self, frame: DriveFrame, result: EvaluationResult) -> str:
        """Where the LiDAR -> camera pose comes from: 'bag' (/tf_static) or 'parameters'."""
        source = self.options.extrinsic
        if source == 'auto':
            if frame.lidar is None or frame.lidar_to_camera is not None:
                return 'bag'
            self._issue(result, self.options.topics.tf_static,
                        f'no transform from {frame.lidar_frame_id!r} to {frame.frame_id!r} in '
                        'the bag: using the extrinsic.* parameters', once=True)
            return 'parameters'
        return source

    @staticmethod
    def _lookup(frame: DriveFrame) -> ExtrinsicLookup:
        """The bag's /tf_static pose of this frame's sweep (the reader looked it up)."""
        def lookup(camera_frame: str, lidar_frame: str, stamp_ns: int) -> RigidTransform:
            if frame.lidar_to_camera is None:
                raise DepthNodeError(f'no transform from {lidar_frame!r} to {camera_frame!r} '
                                     'in /tf_static')
            return frame.lidar_to_camera
        return lookup

    def _truth(self, frame: DriveFrame, gt: str, res: FrameResult,
               split: Optional[HeldOutSplit]) -> tuple[Optional[np.ndarray],
                                                       Optional[np.ndarray],
                                                       Optional[np.ndarray]]:
        """Ground truth in range, the prediction and its sigma there, [K] float64 (or None)."""
        sigma = None
        if gt == 'depth' and frame.depth is not None:
            truth = frame.depth.reshape(-1)
            pred = None if res.depth is None else res.depth.reshape(-1)
            if res.sigma is not None:
                sigma = res.sigma.reshape(-1)
        elif gt == 'lidar' and split is not None:
            e = split.eval_depth
            truth = e.z
            pred = None if res.depth is None else res.depth[e.v, e.u]
            if res.sigma is not None:
                sigma = res.sigma[e.v, e.u]
        else:
            return None, None, None
        in_range = np.isfinite(truth) & (truth > self.options.min_depth) & \
            (truth <= self.max_depth)
        truth = truth[in_range].astype(np.float64)
        return (truth, None if pred is None else pred[in_range].astype(np.float64),
                None if sigma is None else sigma[in_range].astype(np.float64))

    def _score(self, frame: DriveFrame, gt: str, res: FrameResult,
               split: Optional[HeldOutSplit], first_stamp: float, source: str,
               timings: dict[str, float], result: EvaluationResult) -> FrameRecord:
        opts = self.options
        lo_cap, hi_cap = opts.min_depth, self.max_depth
        truth, pred, sigma = self._truth(frame, gt, res, split)
        kind = 'none' if truth is None else gt
        metrics, bins = None, {}
        if truth is not None and pred is not None:
            metrics = depth_metrics(pred, truth, lo_cap, hi_cap)
            for lo, hi in opts.bins:
                mask = (truth >= lo) & ((truth < hi) if hi < hi_cap else (truth <= hi))
                bins[bin_label(lo, hi)] = depth_metrics(pred[mask], truth[mask], lo_cap, hi_cap)
            self._curve(truth, pred, result)
            if sigma is not None:
                self._reliability(truth, pred, sigma, result)
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
    def _reliability(truth: np.ndarray, pred: np.ndarray, sigma: np.ndarray,
                     result: EvaluationResult) -> None:
        """Accumulate predicted sigma against the observed error (the reliability diagram)."""
        ok = np.isfinite(pred) & (pred > 0) & np.isfinite(sigma)
        t, p, s = truth[ok], pred[ok], sigma[ok]
        n = result.rel_count.size
        rel = s / p
        idx = np.clip(np.searchsorted(result.rel_edges, rel, side='right') - 1, 0, n - 1)
        err = np.abs(p - t)
        result.rel_count += np.bincount(idx, None, n)
        result.rel_pred += np.bincount(idx, rel, n)
        result.rel_sq += np.bincount(idx, (err / p) ** 2, n)
        result.within_sigma += (float(np.sum(err <= s)), float(np.sum(err <= 2 * s)))

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


__all__ = ['BagEvaluation', 'EvaluationOptions', 'EvaluationResult', 'EXTRINSIC_SOURCES',
           'FrameRecord', 'GROUND_TRUTHS',
           'HeldOutSplit', 'NodeSettings', 'RANGE_BINS', 'check_no_leak', 'point_pixels',
           'split_lidar', 'METRIC_NAMES']
