"""Per-frame processing: estimate, project LiDAR, fit, metric depth, points."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from depth_node.core.align import AffineFit, apply_affine, OutputKind
from depth_node.core.camera import PinholeCamera
from depth_node.core.cloud import PointGrid
from depth_node.core.compat import StrEnum
from depth_node.core.errors import DepthNodeError
from depth_node.core.extrinsic_check import ExtrinsicCheck
from depth_node.core.image_quality import assess_image, ImageQuality
from depth_node.core.image_quality import warm_up as warm_up_image_check
from depth_node.core.lidar import SparseDepth
from depth_node.core.local_align import align_local
from depth_node.core.temporal import AffineFilter, FilterEvent
from depth_node.core.transforms import RigidTransform
from depth_node.core.uncertainty import UncertaintyModel
from depth_node.estimators.base import check_input_image, check_prediction, Estimator
from depth_node.pipeline.alignment import (fit_to_lidar, LidarSupport, project_lidar,
                                           warm_up as warm_up_lidar)
from depth_node.pipeline.config import PipelineConfig
from depth_node.pipeline.self_check import raw_scale, SelfCheck
from depth_node.pipeline.teacher_check import TeacherCheck
from depth_node.pipeline.trust import fit_residual, trusted_depth, TrustReport, warm_up
from depth_node.pipeline.input_limits import letterboxed

__all__ = ['DepthPipeline', 'FitState', 'FrameInput', 'FrameResult', 'PipelineConfig']


class FitState(StrEnum):
    """Which fit a frame's metric depth comes from (str-valued: reports keep the text)."""

    FRESH = 'fresh'  # fitted on this frame
    HELD = 'held'  # a recent good fit reused
    NONE = 'none'  # no usable fit: only relative outputs
    METRIC = 'metric'  # the model is metric: no fit


@dataclass
class FrameInput:
    """One camera frame and the LiDAR sweep chosen for it."""

    rgb: np.ndarray  # [H, W, 3] uint8
    camera: PinholeCamera  # model of this image (size must match rgb)
    stamp: float  # s, image time
    lidar: Optional[np.ndarray] = None  # [N, 3] float32, LiDAR frame, metres; None: no sweep
    lidar_to_camera: RigidTransform = field(default_factory=RigidTransform.identity)


@dataclass(frozen=True)
class _LidarSide:
    """The part of a frame that needs no depth (:meth:`DepthPipeline._lidar_side`)."""

    quality: Optional[ImageQuality]  # None: the image check is off
    support: Optional[LidarSupport]  # None: no sweep, a blind picture or a metric model
    timings: dict[str, float]  # ms: image_check, project, see_through, extrinsic_check


@dataclass
class FrameResult:
    """Everything one frame produced. ``depth`` is None when no fit could be used."""

    relative: np.ndarray  # [H, W] float32, raw model output (disparity or depth, unitless)
    depth: Optional[np.ndarray]  # [H, W] float32, metres, NaN = invalid
    points: Optional[np.ndarray]  # [H', W', 3] float32, metres, optical frame, NaN = invalid
    fit: AffineFit  # this frame's own fit attempt
    applied: Optional[AffineFit]  # the fit used for `depth` (this frame's or a held one)
    fit_state: FitState
    fit_age: float  # s since the applied fit was made (0 when fresh)
    sparse: Optional[SparseDepth]  # projected LiDAR used for the fit
    timings_ms: dict[str, float] = field(default_factory=dict)
    kept: Optional[np.ndarray] = None  # [M] bool, LiDAR pixels that passed see-through test
    filter_event: str = ''  # FilterEvent of the temporal filter; '' when it is off
    sigma: Optional[np.ndarray] = None  # [H, W] float32 m, std of `depth`, NaN where it is NaN
    trust: Optional[TrustReport] = None  # coverage, LiDAR share, refusal of the trust step
    quality: Optional[ImageQuality] = None  # the image check (None: off)
    refused: str = ''  # why this frame has no metric depth although a fit was applied
    unrefused: Optional[np.ndarray] = None  # [H, W] m: fused depth before refusal
    relative_sigma: Optional[np.ndarray] = None  # [H, W] sigma / z before refusal
    letterboxed: Optional[tuple[int, int]] = None  # (h, w) the network's image was padded to
    support: Optional[np.ndarray] = None  # [gh, gw] float32 LiDAR returns per fusion cell

    @property
    def global_depth(self) -> Optional[np.ndarray]:
        """Depth [H, W] of the applied global fit alone (before fusion and refusal)."""
        if self.applied is None:
            return None
        return apply_affine(self.relative, self.applied.scale, self.applied.shift,
                            self.applied.space)


class DepthPipeline:
    """Turns frames into metric depth with one estimator; keeps the held fit between frames.

    Not thread-safe: one caller at a time (the node's inference worker). With
    ``lidar_overlap`` a frame's LiDAR side (:meth:`_lidar_side`: image check, projection,
    see-through test, extrinsic check) runs on one helper thread of the pipeline's own while
    the model runs; :meth:`process` returns only once it is done, so the two never overlap
    across frames, and the outputs are those of the one-thread order.
    """

    def __init__(self, estimator: Estimator, config: Optional[PipelineConfig] = None) -> None:
        self.estimator = estimator
        self._last_good: Optional[AffineFit] = None
        self._last_good_stamp = -np.inf
        self._grid: Optional[PointGrid] = None
        self._model: Optional[UncertaintyModel] = None
        self._executor: Optional[ThreadPoolExecutor] = None
        self.config = config or PipelineConfig()  # also makes self.self_check

    @property
    def config(self) -> PipelineConfig:
        return self._config

    @config.setter
    def config(self, config: PipelineConfig) -> None:
        """Validate and apply; the temporal filter restarts when its settings change."""
        config.validate()
        old = getattr(self, '_config', None)
        if old is None or old.filter_config() != config.filter_config() \
                or old.temporal != config.temporal:
            self._filter = AffineFilter(config.filter_config())
        if (config.fusion or config.uncertainty) and (old is None or not (old.fusion
                                                                          or old.uncertainty)):
            warm_up()
        if config.image_check and (old is None or not old.image_check):
            warm_up_image_check()
        if old is None:
            warm_up_lidar()
        if config.uncertainty and (self._model is None or old is None
                                   or old.uncertainty_calibration
                                   != config.uncertainty_calibration):
            self._model = UncertaintyModel.load(config.uncertainty_calibration or None)
        elif not config.uncertainty:
            self._model = None
        if old is None or old.uncertainty_self_check_period \
                != config.uncertainty_self_check_period:
            self.self_check = SelfCheck(period=config.uncertainty_self_check_period)
        if old is None or old.extrinsic_check_config() != config.extrinsic_check_config():
            self.extrinsic_check = ExtrinsicCheck(config.extrinsic_check_config())
        if old is None:  # the node's keyframe worker updates it (teacher_check)
            self.teacher_check = TeacherCheck(config.uncertainty_teacher_hold)
        self.teacher_check.hold = config.uncertainty_teacher_hold
        self._config = config

    @property
    def space(self) -> OutputKind:
        return self.estimator.output.kind

    def reset(self) -> None:
        """Forget the held fit (e.g. after a time jump backwards in a replay)."""
        self._last_good = None
        self._last_good_stamp = -np.inf
        self._filter.reset()
        self.self_check.reset()
        self.teacher_check.reset()
        self.extrinsic_check.reset()

    def grid(self, camera: PinholeCamera) -> PointGrid:
        """The back-projection grid of ``camera`` at ``cloud_stride`` (kept while they stay)."""
        stride = self.config.cloud_stride
        if self._grid is None or self._grid.camera != camera or self._grid.stride != stride:
            self._grid = PointGrid(camera, stride)
        return self._grid

    def _points(self, depth: np.ndarray, camera: PinholeCamera) -> np.ndarray:
        return self.grid(camera).points(depth)

    def _helper(self) -> ThreadPoolExecutor:
        """The thread the LiDAR side of a frame runs on while the model does (made once)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix='depth_node_lidar')
        return self._executor

    def _lidar_side(self, frame: FrameInput, cfg: PipelineConfig, metric: bool) -> _LidarSide:
        """What a frame needs besides the model's depth: the image check, the sweep's
        projection and see-through test, the returns the fit uses, and the extrinsic check
        when due (not on a blind picture, nor for a metric model, which takes no fit)."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        quality = assess_image(frame.rgb, cfg.quality_config()) if cfg.image_check else None
        if quality is not None:
            timings['image_check'] = (time.perf_counter() - t0) * 1e3
        support = None
        if frame.lidar is not None and not metric and (quality is None or quality.ok):
            support = project_lidar(frame.lidar, frame.camera, frame.lidar_to_camera, cfg,
                                    timings)
            support.used  # noqa: B018 - the subset, made here rather than after the model
            if self.extrinsic_check.due(frame.stamp):
                t_x = time.perf_counter()
                self.extrinsic_check.update(frame.rgb, frame.lidar, frame.camera,
                                            frame.lidar_to_camera, frame.stamp,
                                            cfg.lidar_min_depth, cfg.lidar_max_depth)
                timings['extrinsic_check'] = (time.perf_counter() - t_x) * 1e3
        return _LidarSide(quality, support, timings)

    def process(self, frame: FrameInput, want_points: bool = True) -> FrameResult:
        """Run one frame through the model, the LiDAR fit and back-projection."""
        cfg = self.config
        check_input_image(frame.rgb)
        h, w = frame.rgb.shape[:2]
        if (frame.camera.width, frame.camera.height) != (w, h):
            raise DepthNodeError(f'camera model is {frame.camera.width}x{frame.camera.height} '
                                 f'but the image is {w}x{h}')
        padded = cfg.input_limits.letterbox_shape(h, w)  # raises InputRefused
        spec = self.estimator.output
        # The image check and the sweep's projection need no depth: on the helper thread
        # while the model runs (``lidar.overlap``), or here before it.
        side: Optional[Future[_LidarSide]] = None
        if cfg.lidar_overlap:
            side = self._helper().submit(self._lidar_side, frame, cfg, spec.metric)
        else:
            lidar_side = self._lidar_side(frame, cfg, spec.metric)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        predict = self.estimator.predict
        try:
            raw = predict(frame.rgb) if padded is None else letterboxed(predict, frame.rgb,
                                                                        padded)
            relative = check_prediction(raw, h, w, getattr(self.estimator, 'name',
                                                           type(self.estimator).__name__))
        except BaseException:
            if side is not None:  # its state (the extrinsic check) is whole before the next
                wait((side,))
            raise
        t1 = time.perf_counter()
        timings['estimate'] = (t1 - t0) * 1e3
        if side is not None:
            lidar_side = side.result()  # raises what the helper raised
        timings.update(lidar_side.timings)
        quality, support = lidar_side.quality, lidar_side.support
        blind = quality is not None and not quality.ok

        sparse: Optional[SparseDepth] = None
        kept: Optional[np.ndarray] = None
        used: Optional[SparseDepth] = None  # the kept returns
        event = ''
        applied: Optional[AffineFit]
        if blind:
            # No picture: no metric depth, and nothing held either (a held fit would put
            # metres on a picture of nothing); the fit state is left as it was.
            fit = AffineFit.refused(spec.kind, 0, quality.message)
            applied, state, age = None, FitState.NONE, float('inf')
        elif spec.metric:
            fit = AffineFit(1.0, 0.0, spec.kind, 0, 0.0, 0.0)
            applied = fit
            state, age = FitState.METRIC, 0.0
        else:
            if support is not None:
                t_fit = time.perf_counter()
                fit = fit_to_lidar(relative, support, spec.kind, cfg)
                timings['fit'] = (time.perf_counter() - t_fit) * 1e3
                sparse, kept, used = support.sparse, support.kept, support.used
            else:
                fit = AffineFit.refused(spec.kind, 0, 'no LiDAR sweep within max_age')
            t_f = time.perf_counter()
            if cfg.temporal:
                applied, state, age, event = self._filtered(fit, frame.stamp)
                timings['filter'] = (time.perf_counter() - t_f) * 1e3
            else:
                applied, state, age = self._choose_fit(fit, frame.stamp)

        t3 = time.perf_counter()
        depth = None
        if applied is not None and cfg.local and sparse is not None and not spec.metric:
            depth = align_local(relative, sparse, kept, applied, sigma=cfg.local_sigma,
                                max_depth=cfg.max_depth)
        elif applied is not None:
            depth = apply_affine(relative, applied.scale, applied.shift, applied.space,
                                 cfg.max_depth)
        t4 = time.perf_counter()
        timings['depth'] = (t4 - t3) * 1e3
        sigma, trust, refused, unrefused, rel_sigma = None, None, '', None, None
        support = None
        if depth is not None and applied is not None and not spec.metric \
                and (cfg.fusion or cfg.uncertainty):
            scale = self._checked_scale(depth, used, applied, frame.stamp)
            trusted = trusted_depth(depth, used, applied, cfg, self._model, age, scale,
                                    self.teacher_check.scale_at(frame.stamp),
                                    self.extrinsic_check.alignment.shift, timings=timings)
            depth, sigma, trust, refused = trusted.depth, trusted.sigma, trusted.report, \
                trusted.report.refused
            unrefused, rel_sigma = trusted.unrefused, trusted.relative_sigma
            support = trusted.fusion.support
            t5 = time.perf_counter()
            timings['fusion'] = (t5 - t4) * 1e3
            t4 = t5
        points = None
        if depth is not None and want_points:
            points = self._points(depth, frame.camera)
            timings['points'] = (time.perf_counter() - t4) * 1e3
        return FrameResult(relative, depth, points, fit, applied, state, age, sparse, timings,
                           kept, event, sigma, trust, quality, refused, unrefused, rel_sigma,
                           padded, support)

    def _checked_scale(self, depth: np.ndarray, used: Optional[SparseDepth],
                       applied: AffineFit, stamp: float) -> float:
        """The held-out scale of sigma (:mod:`~depth_node.pipeline.self_check`), checked on
        this frame's returns when a check is due."""
        model, cfg = self._model, self.config
        if model is None or used is None or not cfg.fusion \
                or model.heldout_reference is None:
            return 1.0
        if self.self_check.due(stamp):
            self.self_check.update(raw_scale(depth, used, fit_residual(applied), model,
                                             cfg.fusion_options(),
                                             cfg.max_relative_uncertainty),
                                   model.heldout_reference)
        return self.self_check.scale

    def _filtered(self, fit: AffineFit,
                  stamp: float) -> tuple[Optional[AffineFit], FitState, float, str]:
        out = self._filter.update(fit, stamp)
        event = self._filter.last_event
        if not out.ok:
            return None, FitState.NONE, float('inf'), event
        if event in (FilterEvent.INIT, FilterEvent.UPDATE, FilterEvent.RESET):
            return out, FitState.FRESH, 0.0, event
        return out, FitState.HELD, float(self._filter.age), event

    def _choose_fit(self, fit: AffineFit,
                    stamp: float) -> tuple[Optional[AffineFit], FitState, float]:
        if fit.ok:
            self._last_good, self._last_good_stamp = fit, stamp
            return fit, FitState.FRESH, 0.0
        age = stamp - self._last_good_stamp
        if self._last_good is not None and 0.0 <= age <= self.config.hold_time:
            return self._last_good, FitState.HELD, float(age)
        return None, FitState.NONE, float(age) if np.isfinite(age) else float('inf')
