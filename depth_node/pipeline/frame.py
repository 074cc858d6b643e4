"""Per-frame processing: estimate, project LiDAR, fit, metric depth, points."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from depth_node.core.align import AffineFit, apply_affine, fit_affine, OutputKind
from depth_node.core.camera import PinholeCamera
from depth_node.core.cloud import PointGrid
from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.core.lidar import project_points, SparseDepth
from depth_node.core.local_align import align_local
from depth_node.core.robust import FitConfig, reject_see_through
from depth_node.core.temporal import AffineFilter, FilterConfig
from depth_node.core.transforms import RigidTransform
from depth_node.estimators.base import check_input_image, check_prediction, Estimator


@dataclass
class PipelineConfig:
    """Numbers that shape one frame's processing (the node's ``lidar.*``, ``fit.*``, ...)."""

    lidar_min_depth: float = 0.5  # m, LiDAR points nearer than this are dropped
    lidar_max_depth: float = 120.0  # m, and farther than this
    max_depth: float = 80.0  # m, metric output beyond this is NaN
    min_fit_points: int = 20  # fewer LiDAR pixels than this: no fresh fit
    hold_time: float = 1.0  # s, how long a good fit is reused when no fresh one is possible
    cloud_stride: int = 2  # output cloud keeps every n-th pixel in each direction
    fit_method: str = 'robust'  # 'robust' (IRLS, log-depth residuals) or 'lsq' (plain)
    fit_loss: str = 'tukey'  # robust weight function: 'tukey' or 'huber'
    max_residual: float = 0.25  # robust fit: log-depth sigma above this is refused
    see_through: bool = True  # drop LiDAR returns that see past foreground edges
    see_through_window: int = 7  # px, neighbourhood of the see-through test
    see_through_gap: float = 0.1  # relative depth gap that marks a nearer neighbour
    temporal: bool = True  # Kalman-filter scale and shift over time
    filter_process_noise: float = 0.02  # random-walk std of log-scale per sqrt(s)
    filter_gate: float = 4.0  # sigmas beyond which a fit does not update the filter
    filter_reset_after: int = 2  # consecutive agreeing gated fits that reset it
    local: bool = False  # spatially varying scale from LiDAR residuals
    local_sigma: float = 0.06  # smoothness of the local scale field, fraction of image size

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad value."""
        if not self.lidar_min_depth >= 0:
            raise ConfigError('lidar.min_depth', 'must be >= 0', self.lidar_min_depth)
        if not self.lidar_max_depth > self.lidar_min_depth:
            raise ConfigError('lidar.max_depth', 'must be > lidar.min_depth',
                              self.lidar_max_depth)
        if not self.max_depth > 0:
            raise ConfigError('output.max_depth', 'must be > 0', self.max_depth)
        if self.min_fit_points < 2:
            raise ConfigError('fit.min_points', 'must be >= 2', self.min_fit_points)
        if not self.hold_time >= 0:
            raise ConfigError('fit.hold_time', 'must be >= 0', self.hold_time)
        if self.cloud_stride < 1:
            raise ConfigError('cloud.stride', 'must be >= 1', self.cloud_stride)
        if self.fit_method not in ('robust', 'lsq'):
            raise ConfigError('fit.method', "must be 'robust' or 'lsq'", self.fit_method)
        if self.see_through_window < 3 or self.see_through_window % 2 == 0:
            raise ConfigError('fit.see_through_window', 'must be an odd number >= 3',
                              self.see_through_window)
        if not self.see_through_gap > 0:
            raise ConfigError('fit.see_through_gap', 'must be > 0', self.see_through_gap)
        if not self.local_sigma > 0:
            raise ConfigError('local.sigma', 'must be > 0', self.local_sigma)
        self.robust_config()
        self.filter_config()

    def robust_config(self) -> FitConfig:
        """Options of the robust fit (raises ConfigError naming the bad field)."""
        return FitConfig(loss=self.fit_loss, min_points=self.min_fit_points,
                         max_residual=self.max_residual)

    def filter_config(self) -> FilterConfig:
        """Options of the temporal filter; it drops its state after ``hold_time``."""
        return FilterConfig(process_noise=self.filter_process_noise, gate=self.filter_gate,
                            reset_after=self.filter_reset_after,
                            max_age=max(self.hold_time, 1e-6))


@dataclass
class FrameInput:
    """One camera frame and the LiDAR sweep chosen for it."""

    rgb: np.ndarray  # [H, W, 3] uint8
    camera: PinholeCamera  # model of this image (size must match rgb)
    stamp: float  # s, image time
    lidar: Optional[np.ndarray] = None  # [N, 3] float32, LiDAR frame, metres; None: no sweep
    lidar_to_camera: RigidTransform = field(default_factory=RigidTransform.identity)


@dataclass
class FrameResult:
    """Everything one frame produced. ``depth`` is None when no fit could be used.

    ``fit_state`` is ``fresh`` (fitted on this frame), ``held`` (a recent good fit reused),
    ``none`` (no usable fit: only relative outputs) or ``metric`` (the model is metric).
    """

    relative: np.ndarray  # [H, W] float32, raw model output (disparity or depth, unitless)
    depth: Optional[np.ndarray]  # [H, W] float32, metres, NaN = invalid
    points: Optional[np.ndarray]  # [H', W', 3] float32, metres, optical frame, NaN = invalid
    fit: AffineFit  # this frame's own fit attempt
    applied: Optional[AffineFit]  # the fit used for `depth` (this frame's or a held one)
    fit_state: str
    fit_age: float  # s since the applied fit was made (0 when fresh)
    sparse: Optional[SparseDepth]  # projected LiDAR used for the fit
    timings_ms: dict[str, float] = field(default_factory=dict)
    kept: Optional[np.ndarray] = None  # [M] bool, LiDAR pixels that passed see-through test
    filter_event: str = ''  # temporal filter: init, update, gated, reset, predict, stale, none


class DepthPipeline:
    """Turns frames into metric depth with one estimator; keeps the held fit between frames.

    Not thread-safe: one caller at a time (the node's inference worker).
    """

    def __init__(self, estimator: Estimator, config: Optional[PipelineConfig] = None) -> None:
        self.estimator = estimator
        self._last_good: Optional[AffineFit] = None
        self._last_good_stamp = -np.inf
        self._grid: Optional[PointGrid] = None
        self.config = config or PipelineConfig()

    @property
    def config(self) -> PipelineConfig:
        return self._config

    @config.setter
    def config(self, config: PipelineConfig) -> None:
        """Validate and apply; the temporal filter restarts when its settings change."""
        config.validate()
        self._robust = config.robust_config()
        old = getattr(self, '_config', None)
        if old is None or old.filter_config() != config.filter_config() \
                or old.temporal != config.temporal:
            self._filter = AffineFilter(config.filter_config())
        self._config = config

    @property
    def space(self) -> OutputKind:
        return self.estimator.output.kind

    def reset(self) -> None:
        """Forget the held fit (e.g. after a time jump backwards in a replay)."""
        self._last_good = None
        self._last_good_stamp = -np.inf
        self._filter.reset()

    def _points(self, depth: np.ndarray, camera: PinholeCamera) -> np.ndarray:
        stride = self.config.cloud_stride
        if self._grid is None or self._grid.camera != camera or self._grid.stride != stride:
            self._grid = PointGrid(camera, stride)
        return self._grid.points(depth)

    def process(self, frame: FrameInput, want_points: bool = True) -> FrameResult:
        """Run one frame through the model, the LiDAR fit and back-projection."""
        cfg = self.config
        check_input_image(frame.rgb)
        h, w = frame.rgb.shape[:2]
        if (frame.camera.width, frame.camera.height) != (w, h):
            raise DepthNodeError(f'camera model is {frame.camera.width}x{frame.camera.height} '
                                 f'but the image is {w}x{h}')
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        relative = check_prediction(self.estimator.predict(frame.rgb), h, w,
                                    getattr(self.estimator, 'name', type(self.estimator).__name__))
        t1 = time.perf_counter()
        timings['estimate'] = (t1 - t0) * 1e3

        spec = self.estimator.output
        sparse: Optional[SparseDepth] = None
        kept: Optional[np.ndarray] = None
        event = ''
        if spec.metric:
            fit = AffineFit(1.0, 0.0, spec.kind, 0, 0.0, 0.0)
            applied: Optional[AffineFit] = fit
            state, age = 'metric', 0.0
        else:
            if frame.lidar is not None:
                sparse = project_points(frame.lidar, frame.camera, frame.lidar_to_camera,
                                        cfg.lidar_min_depth, cfg.lidar_max_depth)
                t2 = time.perf_counter()
                timings['project'] = (t2 - t1) * 1e3
                if cfg.see_through:
                    kept = reject_see_through(sparse, cfg.see_through_window,
                                              cfg.see_through_gap, focal_px=frame.camera.fy)
                    t2b = time.perf_counter()
                    timings['see_through'] = (t2b - t2) * 1e3
                    t2 = t2b
                used = sparse if kept is None else sparse.subset(kept)
                fit = self._fit(used.sample(relative), used.z, spec.kind)
                timings['fit'] = (time.perf_counter() - t2) * 1e3
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
        points = None
        if depth is not None and want_points:
            points = self._points(depth, frame.camera)
            timings['points'] = (time.perf_counter() - t4) * 1e3
        return FrameResult(relative, depth, points, fit, applied, state, age, sparse, timings,
                           kept, event)

    def _fit(self, prediction: np.ndarray, z: np.ndarray, space: OutputKind) -> AffineFit:
        if self.config.fit_method == 'lsq':
            return fit_affine(prediction, z, space, min_points=self.config.min_fit_points)
        return self._robust.fit(prediction, z, space)

    def _filtered(self, fit: AffineFit,
                  stamp: float) -> tuple[Optional[AffineFit], str, float, str]:
        out = self._filter.update(fit, stamp)
        event = self._filter.last_event
        if not out.ok:
            return None, 'none', float('inf'), event
        if event in ('init', 'update', 'reset'):
            return out, 'fresh', 0.0, event
        return out, 'held', float(self._filter.age), event

    def _choose_fit(self, fit: AffineFit,
                    stamp: float) -> tuple[Optional[AffineFit], str, float]:
        if fit.ok:
            self._last_good, self._last_good_stamp = fit, stamp
            return fit, 'fresh', 0.0
        age = stamp - self._last_good_stamp
        if self._last_good is not None and 0.0 <= age <= self.config.hold_time:
            return self._last_good, 'held', float(age)
        return None, 'none', float(age) if np.isfinite(age) else float('inf')
