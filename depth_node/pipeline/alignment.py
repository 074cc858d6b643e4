"""The LiDAR alignment step: project a sweep, reject see-through returns, fit the prediction.

One implementation for everything that aligns a relative prediction to LiDAR: the per-frame
pipeline, the keyframe teacher, the held-out split of the evaluation, the accuracy benchmark
and the student report. The options are the pipeline's (:class:`PipelineConfig`): LiDAR depth
limits, the see-through test, the fit method and its robust options.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from depth_node.core.align import AffineFit, fit_affine, OutputKind
from depth_node.core.camera import PinholeCamera
from depth_node.core import lidar, robust_kernels, see_through
from depth_node.core.lidar import project_points, SparseDepth
from depth_node.core.see_through import reject_see_through
from depth_node.core.transforms import RigidTransform
from depth_node.pipeline.config import PipelineConfig


@dataclass(frozen=True)
class LidarSupport:
    """A sweep as the fit sees it: its projection and which returns the see-through test kept."""

    sparse: SparseDepth  # [M] nearest return per pixel of the whole sweep
    kept: Optional[np.ndarray]  # [M] bool, passed the see-through test; None: test off

    @functools.cached_property
    def used(self) -> SparseDepth:
        """The returns the fit uses (the kept ones; made once, on first use)."""
        return self.sparse if self.kept is None else self.sparse.subset(self.kept)

    @property
    def rejected(self) -> int:
        """Returns the see-through test dropped."""
        return 0 if self.kept is None else int(self.kept.size - self.kept.sum())


def project_lidar(points: np.ndarray, camera: PinholeCamera, lidar_to_camera: RigidTransform,
                  config: PipelineConfig,
                  timings_ms: Optional[dict[str, float]] = None) -> LidarSupport:
    """Project a sweep and run the see-through test (when ``config.see_through``).

    Parameters
    ----------
    points
        [N, 3] float32, LiDAR frame, metres.
    camera, lidar_to_camera
        The image's camera model and the LiDAR -> camera pose.
    config
        LiDAR depth limits (``lidar_min_depth``, ``lidar_max_depth``, metres) and the
        see-through test (``see_through``, ``see_through_window`` px, ``see_through_gap``).
    timings_ms
        When given, receives ``project`` and ``see_through`` (ms).
    """
    t0 = time.perf_counter()
    sparse = project_points(points, camera, lidar_to_camera, config.lidar_min_depth,
                            config.lidar_max_depth)
    t1 = time.perf_counter()
    kept = None
    if config.see_through:
        kept = reject_see_through(sparse, config.see_through_window, config.see_through_gap,
                                  focal_px=camera.fy)
    if timings_ms is not None:
        timings_ms['project'] = (t1 - t0) * 1e3
        if kept is not None:
            timings_ms['see_through'] = (time.perf_counter() - t1) * 1e3
    return LidarSupport(sparse, kept)


def fit_to_lidar(prediction: np.ndarray, support: LidarSupport, space: OutputKind,
                 config: PipelineConfig, method: Optional[str] = None) -> AffineFit:
    """Fit ``prediction`` [H, W] (``space``: disparity or depth) to the kept LiDAR returns.

    ``method`` (default ``config.fit_method``): ``'robust'`` (IRLS on log-depth residuals,
    ``config.robust_config()``) or ``'lsq'`` (plain least squares in ``space``).
    """
    used = support.used
    if (method or config.fit_method) == 'lsq':
        return fit_affine(used.sample(prediction), used.z, space,
                          min_points=config.min_fit_points)
    return config.robust_config().fit(used.sample(prediction), used.z, space)


def align_to_lidar(prediction: np.ndarray, points: np.ndarray, camera: PinholeCamera,
                   lidar_to_camera: RigidTransform, space: OutputKind, config: PipelineConfig,
                   method: Optional[str] = None,
                   timings_ms: Optional[dict[str, float]] = None) -> tuple[LidarSupport,
                                                                           AffineFit]:
    """Project -> see-through -> fit in one call (see :func:`project_lidar`, :func:`fit_to_lidar`).

    ``timings_ms`` receives ``project``, ``see_through`` and ``fit`` (ms).
    """
    support = project_lidar(points, camera, lidar_to_camera, config, timings_ms)
    t0 = time.perf_counter()
    fit = fit_to_lidar(prediction, support, space, config, method)
    if timings_ms is not None:
        timings_ms['fit'] = (time.perf_counter() - t0) * 1e3
    return support, fit


def warm_up() -> None:
    """Compile (or load from numba's cache) the LiDAR kernels now, not on the first frame.

    Projection and see-through test (:mod:`depth_node.core.lidar`,
    :mod:`depth_node.core.see_through`) and the robust fit's (:mod:`depth_node.core.robust`).
    """
    lidar.warm_up()
    see_through.warm_up()
    robust_kernels.warm_up()


__all__ = ['LidarSupport', 'align_to_lidar', 'fit_to_lidar', 'project_lidar', 'warm_up']
