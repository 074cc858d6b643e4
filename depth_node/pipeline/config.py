"""The numbers that shape one frame's processing (the node's ``lidar.*``, ``fit.*``, ...)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from depth_node.core.errors import ConfigError
from depth_node.core.extrinsic_check import ExtrinsicCheckConfig
from depth_node.core.fusion import FusionConfig
from depth_node.core.image_quality import QualityConfig
from depth_node.core.robust import FitConfig
from depth_node.core.temporal import FilterConfig
from depth_node.pipeline.input_limits import InputLimits


@dataclass
class PipelineConfig:
    """Numbers that shape one frame's processing (the node's ``lidar.*``, ``fit.*``, ...)."""

    lidar_min_depth: float = 0.5  # m, LiDAR points nearer than this are dropped
    lidar_max_depth: float = 120.0  # m, and farther than this
    lidar_overlap: bool = True  # image check + projection on a helper thread while the model runs
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
    fusion: bool = True  # LiDAR-network fusion after the global fit (else: the global fit)
    fusion_cell: int = 4  # px, grid cell of the fusion
    fusion_fine_sigma: float = 1.0  # cells, reach of the fine filter
    fusion_coarse_sigma: float = 16.0  # cells, reach of the coarse filter
    fusion_edge_sigma: float = 0.005  # 1/m of disparity step that stops the filter
    fusion_beam_gap: float = 40.0  # px, returns down a column band joined by the beam fill
    fusion_edge_step: float = 0.1  # log-depth step of the fused depth that the edge fill starts at
    # The beam fill's per-frame check (off: the beam and edge fills run whatever the network;
    # benchmark pipeline --fills, whose oracle would otherwise turn both off)
    fusion_beam_check: bool = True
    uncertainty: bool = True  # per-pixel sigma and refusal (off: published as fitted)
    uncertainty_calibration: str = ''  # JSON weights; '' = the shipped calibration
    uncertainty_self_check_period: float = 1.0  # s of image stamps between held-out checks
    uncertainty_teacher_hold: float = 10.0  # s of image time a keyframe's check of sigma holds
    max_relative_uncertainty: float = 0.2  # sigma/z above this: pixel published as NaN
    # LiDAR -> camera alignment check (core.extrinsic_check): on, and s of image time between
    extrinsic_check: bool = True
    extrinsic_check_period: float = 1.0
    min_lidar_share: float = 0.05  # LiDAR supports less of the image: frame refused
    image_check: bool = True  # refuse blind, saturated, flat and noise images
    input_limits: InputLimits = field(default_factory=InputLimits)  # input.*: aspect, pixels

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
        if not self.max_relative_uncertainty > 0:
            raise ConfigError('output.max_relative_uncertainty', 'must be > 0',
                              self.max_relative_uncertainty)
        if not (self.uncertainty_self_check_period >= 0
                and math.isfinite(self.uncertainty_self_check_period)):
            raise ConfigError('uncertainty.self_check_period', 'must be >= 0 s (0: off)',
                              self.uncertainty_self_check_period)
        if not (self.uncertainty_teacher_hold > 0
                and math.isfinite(self.uncertainty_teacher_hold)):
            raise ConfigError('uncertainty.teacher_hold', 'must be > 0 s',
                              self.uncertainty_teacher_hold)
        if not 0 <= self.min_lidar_share <= 1:
            raise ConfigError('refusal.min_lidar_share', 'must be in [0, 1]',
                              self.min_lidar_share)
        self.input_limits.validate()
        self.robust_config()
        self.filter_config()
        self.fusion_options().validate()
        self.quality_config().validate()
        self.extrinsic_check_config().validate()

    def fusion_options(self) -> FusionConfig:
        """Options of the fusion (``fusion.*``; the rest at the calibrated defaults)."""
        return FusionConfig(cell=self.fusion_cell, fine_sigma=self.fusion_fine_sigma,
                            coarse_sigma=self.fusion_coarse_sigma,
                            edge_sigma=self.fusion_edge_sigma,
                            beam_gap=self.fusion_beam_gap, edge_step=self.fusion_edge_step,
                            beam_check=self.fusion_beam_check)

    def extrinsic_check_config(self) -> ExtrinsicCheckConfig:
        """The LiDAR -> camera alignment check (``extrinsic_check.*``)."""
        return ExtrinsicCheckConfig(enable=self.extrinsic_check,
                                    period=self.extrinsic_check_period)

    def quality_config(self) -> QualityConfig:
        """Thresholds of the image check (``refusal.image_check``)."""
        return QualityConfig(enable=self.image_check)

    def robust_config(self) -> FitConfig:
        """Options of the robust fit (raises ConfigError naming the bad field)."""
        return FitConfig(loss=self.fit_loss, min_points=self.min_fit_points,
                         max_residual=self.max_residual)

    def filter_config(self) -> FilterConfig:
        """Options of the temporal filter; it drops its state after ``hold_time``."""
        return FilterConfig(process_noise=self.filter_process_noise, gate=self.filter_gate,
                            reset_after=self.filter_reset_after,
                            max_age=max(self.hold_time, 1e-6))
