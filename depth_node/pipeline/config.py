"""The numbers that shape one frame's processing (the node's ``lidar.*``, ``fit.*``, ...)."""

from __future__ import annotations

from dataclasses import dataclass

from depth_node.core.errors import ConfigError
from depth_node.core.robust import FitConfig
from depth_node.core.temporal import FilterConfig


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
