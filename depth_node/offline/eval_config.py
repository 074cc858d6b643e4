"""What a bag evaluation runs with: the node's settings and the evaluation's own options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from depth_node.core.errors import ConfigError
from depth_node.core.transforms import RigidTransform
from depth_node.messages.point_time import TimeFieldSettings
from depth_node.offline.drive_bag import DriveTopics
from depth_node.offline.results import RANGE_BINS
from depth_node.pipeline.frame import PipelineConfig
from depth_node.pipeline.published import PublishSettings
from depth_node.pipeline.runner import RunnerConfig
from depth_node.pipeline.sweep_motion import DeskewSettings

GROUND_TRUTHS = ('auto', 'depth', 'lidar')
EXTRINSIC_SOURCES = ('auto', 'bag', 'parameters')


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
    deskew: DeskewSettings = field(default_factory=DeskewSettings)  # lidar.deskew, motion.*
    time_field: TimeFieldSettings = field(default_factory=TimeFieldSettings)  # lidar.time_*

    @property
    def runner(self) -> RunnerConfig:
        """What the per-frame runner takes (as the node's ``NodeConfig.runner``)."""
        return RunnerConfig(self.pipeline, self.publish, self.extrinsic, self.lidar_max_age,
                            deskew=self.deskew)

    @classmethod
    def from_node_config(cls, config: Any) -> 'NodeSettings':
        """From a ``NodeConfig`` (read by attribute: this layer does not import ``ros``)."""
        runner: RunnerConfig = config.runner
        return cls(
            pipeline=runner.pipeline, extrinsic=runner.extrinsic,
            lidar_max_age=runner.lidar_max_age, publish=runner.publish,
            qos_depth=int(config.qos_depth),
            qos_output_reliable=bool(config.qos_output_reliable),
            diagnostics_period=float(config.diagnostics_period), deskew=runner.deskew,
            time_field=config.motion.time_field)


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


__all__ = ['EXTRINSIC_SOURCES', 'EvaluationOptions', 'GROUND_TRUTHS', 'NodeSettings']
