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
from depth_node.core.fusion import fuse, Fusion, FusionConfig
from depth_node.core.lidar import SparseDepth
from depth_node.core.uncertainty import cell_depth, features, UncertaintyModel, unsupported_gate
from depth_node.pipeline.config import PipelineConfig

try:  # numba is a dependency; without it (a broken install) the numpy step runs
    from numba import njit
except ImportError:  # pragma: no cover
    njit = None

#: Returns per cell (under the fine kernel) from which a cell counts as LiDAR-supported.
SUPPORTED_DENSITY = 0.05


@dataclass(frozen=True)
class TrustReport:
    """Per-frame figures of the published depth (the node's diagnostics)."""

    coverage: float  # share of the pixels with depth whose sigma/z is within the threshold
    lidar_share: float  # share of the pixels with depth that LiDAR supports
    median_relative_sigma: float  # median sigma/z over the published pixels (NaN: none)
    refused: str = ''  # why the frame's metric depth was refused ('' = published)
    sigma_scale: float = 1.0  # held-out scale applied to supported sigma (self_check)


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
                  fit_age: float = 0.0, sigma_scale: float = 1.0) -> Trusted:
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
    sigma_scale
        The held-out scale of :mod:`depth_node.pipeline.self_check` (1: as calibrated): sigma
        is multiplied by ``sigma_scale ** (1 - unsupported)``, i.e. fully where LiDAR supports
        a cell and not at all where none is near. Not applied to a frame without a sweep.
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
    if fused and sigma_scale != 1.0 and math.isfinite(sigma_scale) and sigma_scale > 0:
        gain = np.power(np.float32(sigma_scale),
                        (1.0 - unsupported_gate(fusion.support)).astype(np.float32))
        rel_cells = np.clip(rel_cells * gain, model.min_relative,
                            model.max_relative).astype(np.float32)
    if fit_age > 0 and math.isfinite(fit_age):
        drift = config.filter_process_noise ** 2 * fit_age
        rel_cells = np.sqrt(rel_cells * rel_cells + np.float32(drift))
    supported = (fusion.support >= SUPPORTED_DENSITY).astype(np.float32)
    out, sigma, rel, counts = compose(depth, rel_cells, supported, fusion.cell,
                                      config.max_relative_uncertainty)
    n_depth, n_keep, n_supported = (int(k) for k in counts)
    lidar_share = n_supported / n_depth if n_depth else 0.0
    coverage = n_keep / n_depth if n_depth else 0.0
    # Median sigma/z of the published pixels, on the grid (a cell per 16 pixels).
    cells = rel_cells[(rel_cells <= config.max_relative_uncertainty)
                      & np.isfinite(cell_depth(depth, fusion.cell))]
    median = float(np.median(cells)) if cells.size else float('nan')
    refused = ''
    if lidar is not None and n_depth and lidar_share < config.min_lidar_share:
        refused = f'LiDAR supports only {100 * lidar_share:.1f} % of the image ' \
                  f'(refusal.min_lidar_share {100 * config.min_lidar_share:g} %)'
    elif not n_keep:
        refused = 'no pixel within output.max_relative_uncertainty ' \
                  f'{config.max_relative_uncertainty:g}'
    report = TrustReport(coverage, lidar_share, median, refused,
                         float(sigma_scale) if fused else 1.0)
    if refused:
        return Trusted(None, None, fusion, report, depth, rel)
    return Trusted(out, sigma, fusion, report, depth, rel)


def warm_up() -> None:
    """Compile the numba kernels (fusion filter, per-pixel step) now, not on the first frame.

    The first call in a process compiles them, or loads them from numba's cache (``cache=True``,
    next to the package or in the user's cache); without this the first frame of a node would
    take that time on top of its own and newer frames would be dropped meanwhile.
    """
    depth = np.full((8, 8), 10.0, np.float32)
    lidar = SparseDepth(np.array([1, 5], np.int32), np.array([2, 6], np.int32),
                        np.array([9.0, 11.0], np.float32), 8, 8)
    fusion = fuse(depth, lidar, FusionConfig(cell=2, coarse_factor=2))
    compose(fusion.depth, np.full(fusion.rho.shape, 0.1, np.float32),
            np.ones(fusion.rho.shape, np.float32), 2, 0.2)


def compose_reference(depth: np.ndarray, rel_cells: np.ndarray, supported: np.ndarray,
                      cell: int,
                      threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The per-pixel step in numpy: the reference of the compiled :func:`compose`.

    ``depth`` [H, W] float32 m; ``rel_cells`` [gh, gw] sigma / z and ``supported`` [gh, gw]
    (1.0 / 0.0) on the ``cell``-pixel grid, upsampled bilinearly (OpenCV's convention).
    Returns the published depth (NaN where sigma / z > ``threshold``), its sigma, sigma / z
    per pixel, and the counts [pixels with depth, published, LiDAR-supported with depth].
    """
    h, w = depth.shape
    rel = _upsample(rel_cells, cell, h, w)
    has_depth = np.isfinite(depth)
    keep = has_depth & (rel <= threshold)
    out = np.where(keep, depth, np.float32(np.nan)).astype(np.float32)
    sup = _upsample(supported, cell, h, w) >= 0.5
    counts = np.array([has_depth.sum(), keep.sum(), (sup & has_depth).sum()], np.int64)
    return out, (out * rel).astype(np.float32), rel, counts


def _axis_weights(n: int, cells: int, cell: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear source cells and weight along one axis (OpenCV's INTER_LINEAR convention)."""
    src = np.clip((np.arange(n) + 0.5) / cell - 0.5, 0.0, cells - 1.0)
    i0 = src.astype(np.int64)
    return i0, np.minimum(i0 + 1, cells - 1), (src - i0).astype(np.float32)


def _compose_kernel(depth: np.ndarray, rel_cells: np.ndarray, supported: np.ndarray,
                    y0: np.ndarray, y1: np.ndarray, fy: np.ndarray, x0: np.ndarray,
                    x1: np.ndarray, fx: np.ndarray, threshold: float, out: np.ndarray,
                    sigma: np.ndarray, rel: np.ndarray, counts: np.ndarray) -> None:
    """One pass over the pixels: bilinear sigma / z and support, refusal, sigma, counts."""
    h, w = depth.shape
    nan = np.float32(np.nan)
    thr = np.float32(threshold)
    n_depth = n_keep = n_sup = 0
    for y in range(h):
        a0, a1, ty = y0[y], y1[y], fy[y]
        for x in range(w):
            b0, b1, tx = x0[x], x1[x], fx[x]
            top = rel_cells[a0, b0] + tx * (rel_cells[a0, b1] - rel_cells[a0, b0])
            bot = rel_cells[a1, b0] + tx * (rel_cells[a1, b1] - rel_cells[a1, b0])
            r = top + ty * (bot - top)
            rel[y, x] = r
            z = depth[y, x]
            if z == z:  # finite (max_depth caps the depth, so never inf)
                n_depth += 1
                st = supported[a0, b0] + tx * (supported[a0, b1] - supported[a0, b0])
                sb = supported[a1, b0] + tx * (supported[a1, b1] - supported[a1, b0])
                if st + ty * (sb - st) >= 0.5:
                    n_sup += 1
                if r <= thr:
                    n_keep += 1
                    out[y, x] = z
                    sigma[y, x] = z * r
                    continue
            out[y, x] = nan
            sigma[y, x] = nan
    counts[0], counts[1], counts[2] = n_depth, n_keep, n_sup


_compiled_compose = njit(cache=True, nogil=True)(_compose_kernel) if njit is not None else None


def compose(depth: np.ndarray, rel_cells: np.ndarray, supported: np.ndarray, cell: int,
            threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Compiled :func:`compose_reference` (same arguments, same results to float rounding)."""
    if _compiled_compose is None:  # pragma: no cover - numba missing
        return compose_reference(depth, rel_cells, supported, cell, threshold)
    h, w = depth.shape
    gh, gw = rel_cells.shape
    out = np.empty((h, w), np.float32)
    sigma = np.empty((h, w), np.float32)
    rel = np.empty((h, w), np.float32)
    counts = np.zeros(3, np.int64)
    _compiled_compose(np.ascontiguousarray(depth, np.float32),
                      np.ascontiguousarray(rel_cells, np.float32),
                      np.ascontiguousarray(supported, np.float32),
                      *_axis_weights(h, gh, int(cell)), *_axis_weights(w, gw, int(cell)),
                      float(threshold), out, sigma, rel, counts)
    return out, sigma, rel, counts


__all__ = ['compose', 'compose_reference', 'empty_support', 'fit_residual', 'SUPPORTED_DENSITY',
           'Trusted', 'trusted_depth', 'TrustReport', 'warm_up']
