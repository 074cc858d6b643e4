"""Held-out LiDAR ground truth: each sweep split into what the fit may see and what only the
metrics see (the evaluation's ``ground_truth='lidar'``).

Each sweep is projected once (the pipeline's own projection, nearest return per pixel); its
LiDAR pixels are split at random into a *fit* set and a held-out *evaluation* set. The pipeline
receives only the raw points that land on fit pixels; :func:`check_no_leak` then checks that
the pixels the fit used are exactly the fit set. Held-out returns that see past a foreground
edge (the see-through test on the whole sweep) can be dropped from the ground truth: they are
LiDAR artefacts, not depth.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.errors import DepthNodeError
from depth_node.core.lidar import point_pixels as core_point_pixels
from depth_node.core.lidar import SparseDepth
from depth_node.core.transforms import RigidTransform
from depth_node.pipeline.alignment import project_lidar
from depth_node.pipeline.frame import PipelineConfig


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
    # The pipeline's projection; the see-through test (on the whole sweep) cleans the truth.
    support = project_lidar(points, camera, lidar_to_camera,
                            replace(config, see_through=clean and config.see_through))
    full = support.sparse
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
    keep = held if support.kept is None else held & support.kept
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


__all__ = ['HeldOutSplit', 'check_no_leak', 'point_pixels', 'split_lidar']
