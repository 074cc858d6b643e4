"""After the global fit: fusion with the LiDAR, per-pixel uncertainty, and refusal.

:func:`trusted_depth` turns the globally fitted depth of a frame into what the node publishes:

1. **fusion** (:func:`depth_node.core.fusion.fuse`, ``fusion.enable``): the network's shape
   pinned to the LiDAR returns the fit kept;
2. **uncertainty** (:mod:`depth_node.core.uncertainty`): sigma in metres per pixel from the
   calibrated model, on the fusion's support, spread and depth and the fit's residual;
3. **refusal per pixel**: where ``sigma / z`` exceeds ``output.max_relative_uncertainty`` the
   depth (and sigma) is NaN, so ``depth`` and ``depth/points`` carry only supported metres;
4. **refusal per frame**: when this frame's sweep supports less than
   ``refusal.min_lidar_share`` of the pixels that have depth, the frame publishes no metric
   depth at all (the fit then rests on a corner of the image and says nothing of the rest). A
   frame without a sweep (its fit held, within ``fit.hold_time``) is not refused as a whole:
   its pixels carry the sigma of unsupported depth.

The image itself is checked before (:mod:`depth_node.core.image_quality`, in
:meth:`~depth_node.pipeline.frame.DepthPipeline.process`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from depth_node.core.align import AffineFit
from depth_node.core.fusion import fuse, Fusion
from depth_node.core.lidar import SparseDepth
from depth_node.core.uncertainty import features, UncertaintyModel
from depth_node.pipeline.config import PipelineConfig

#: Returns per cell (under the fine kernel) from which a cell counts as LiDAR-supported.
SUPPORTED_DENSITY = 0.05


@dataclass(frozen=True)
class TrustReport:
    """Per-frame figures of the published depth (the node's diagnostics)."""

    coverage: float  # share of the pixels with depth whose sigma/z is within the threshold
    lidar_share: float  # share of the pixels with depth that LiDAR supports
    median_relative_sigma: float  # median sigma/z over the published pixels (NaN: none)
    refused: str = ''  # why the frame's metric depth was refused ('' = published)


@dataclass
class Trusted:
    """What :func:`trusted_depth` made of one frame."""

    depth: Optional[np.ndarray]  # [H, W] float32 m, NaN where refused; None: frame refused
    sigma: Optional[np.ndarray]  # [H, W] float32 m, NaN where depth is NaN
    fusion: Fusion
    report: TrustReport
    unrefused: np.ndarray  # [H, W] float32 m: the depth before any refusal
    relative_sigma: np.ndarray  # [H, W] float32 sigma / z before any refusal


def empty_support(height: int, width: int) -> SparseDepth:
    """No LiDAR returns (a frame whose fit is held from an earlier sweep)."""
    none = np.zeros(0, np.int32)
    return SparseDepth(none, none, np.zeros(0, np.float32), width, height)


def fit_residual(fit: AffineFit) -> float:
    """The fit's log-depth residual sigma (robust fits report it; least squares: from abs_rel)."""
    if fit.inliers >= 0:
        return float(fit.residual)
    return math.sqrt(math.pi / 2.0) * float(fit.abs_rel)


def _upsample(grid: np.ndarray, cell: int, h: int, w: int) -> np.ndarray:
    gh, gw = grid.shape
    out: np.ndarray = cv2.resize(np.ascontiguousarray(grid, np.float32), (gw * cell, gh * cell),
                                 interpolation=cv2.INTER_LINEAR)
    return out[:h, :w]


def _supported_share(fusion: Fusion, has_depth: np.ndarray) -> float:
    """Share of the pixels with depth whose cell has LiDAR support."""
    n = int(has_depth.sum())
    if not n:
        return 0.0
    h, w = has_depth.shape
    supported = _upsample((fusion.support >= SUPPORTED_DENSITY).astype(np.float32), fusion.cell,
                          h, w) >= 0.5
    return float((supported & has_depth).sum()) / n


def trusted_depth(global_depth: np.ndarray, lidar: Optional[SparseDepth], fit: AffineFit,
                  config: PipelineConfig, model: Optional[UncertaintyModel],
                  fit_age: float = 0.0) -> Trusted:
    """Fuse, attach sigma and refuse (see the module docstring).

    Parameters
    ----------
    global_depth
        [H, W] float32 metres from the applied fit (NaN = none).
    lidar
        The kept returns of this frame's sweep (None: no sweep this frame).
    fit
        The applied fit (its residual is a feature of the uncertainty).
    config
        ``fusion`` / ``fusion_options()``, ``max_relative_uncertainty``, ``min_lidar_share``.
    model
        The calibrated uncertainty model; None (``uncertainty.enable`` false): fusion only, no
        sigma and no refusal.
    fit_age
        Seconds since the applied fit was made (a held fit): its scale may have drifted by the
        temporal filter's random walk, ``filter_process_noise * sqrt(age)`` in log scale,
        which adds to sigma / z in quadrature.
    """
    h, w = global_depth.shape
    fusion = fuse(global_depth, lidar if lidar is not None else empty_support(h, w),
                  config.fusion_options())
    fused = config.fusion and lidar is not None  # without a sweep nothing was fused
    depth = fusion.depth if fused else np.array(global_depth, np.float32, copy=True)
    if model is None:
        share = _supported_share(fusion, np.isfinite(depth))
        return Trusted(depth, None, fusion, TrustReport(1.0, share, float('nan')), depth,
                       np.full(depth.shape, np.nan, np.float32))
    rel_cells = model.relative_sigma(features(fusion, fit_residual(fit)), fused=fused)
    if fit_age > 0 and math.isfinite(fit_age):
        drift = config.filter_process_noise ** 2 * fit_age
        rel_cells = np.sqrt(rel_cells * rel_cells + np.float32(drift))
    rel = _upsample(rel_cells, fusion.cell, h, w)
    has_depth = np.isfinite(depth)
    n_depth = int(has_depth.sum())
    keep = has_depth & (rel <= config.max_relative_uncertainty)
    n_keep = int(keep.sum())
    lidar_share = _supported_share(fusion, has_depth)
    coverage = n_keep / n_depth if n_depth else 0.0
    median = float(np.median(rel[keep])) if n_keep else float('nan')
    refused = ''
    if lidar is not None and n_depth and lidar_share < config.min_lidar_share:
        refused = f'LiDAR supports only {100 * lidar_share:.1f} % of the image ' \
                  f'(refusal.min_lidar_share {100 * config.min_lidar_share:g} %)'
    elif not n_keep:
        refused = 'no pixel within output.max_relative_uncertainty ' \
                  f'{config.max_relative_uncertainty:g}'
    report = TrustReport(coverage, lidar_share, median, refused)
    if refused:
        return Trusted(None, None, fusion, report, depth, rel)
    out = np.where(keep, depth, np.float32(np.nan))
    sigma = out * rel  # NaN where out is NaN
    return Trusted(out, sigma.astype(np.float32, copy=False), fusion, report, depth, rel)


__all__ = ['empty_support', 'fit_residual', 'SUPPORTED_DENSITY', 'Trusted', 'trusted_depth',
           'TrustReport']
