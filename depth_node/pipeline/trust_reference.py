"""The trust stage in plain numpy, step by step: the reference of :mod:`depth_node.pipeline.trust`.

:func:`trusted_depth_reference` is :func:`~depth_node.pipeline.trust.trusted_depth` written
directly: the numpy fusion at full resolution
(:func:`~depth_node.core.fusion_reference.fuse_reference`), the stacked features
(:func:`~depth_node.core.uncertainty.features`) and the numpy per-pixel step
(:func:`compose_reference`). The node never runs it; the tests hold the compiled stage to it.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from depth_node.core.align import AffineFit
from depth_node.core.cell_grid import upsample_reference
from depth_node.core.edge_sigma import edge_steps_reference
from depth_node.core.fusion_reference import fuse_reference
from depth_node.core.lidar import SparseDepth
from depth_node.core.uncertainty import carried_correction, cell_depth, features, \
    UncertaintyModel
from depth_node.pipeline.config import PipelineConfig
from depth_node.pipeline.trust import Composed, empty_support, fit_residual, judged, \
    misaligned, scaled, SUPPORTED_DENSITY, Trusted, TrustReport


def compose_reference(depth: np.ndarray, rel_cells: np.ndarray, supported: np.ndarray,
                      cell: int, threshold: float) -> Composed:
    """The per-pixel step in numpy: the reference of :func:`~depth_node.pipeline.trust.compose`.

    ``depth`` [H, W] float32 m is the depth before refusal (already fused); ``rel_cells``
    [gh, gw] sigma / z and ``supported`` [gh, gw] (1.0 / 0.0) on the ``cell``-pixel grid,
    upsampled bilinearly (OpenCV's convention).
    """
    h, w = depth.shape
    rel = upsample_reference(rel_cells, cell, h, w)
    has_depth = np.isfinite(depth)
    keep = has_depth & (rel <= threshold)
    out = np.where(keep, depth, np.float32(np.nan)).astype(np.float32)
    sup = upsample_reference(supported, cell, h, w) >= 0.5
    counts = np.array([has_depth.sum(), keep.sum(), (sup & has_depth).sum()], np.int64)
    return Composed(np.asarray(depth, np.float32), out, (out * rel).astype(np.float32), rel,
                    counts)


def edges_reference(c: Composed, model: UncertaintyModel, threshold: float) -> Composed:
    """The edge term of sigma in numpy: the reference of
    :func:`~depth_node.pipeline.trust.with_edges` (a new :class:`Composed`)."""
    if model.edge_weight <= 0:
        return c
    s = edge_steps_reference(c.depth, model.edge_radius, model.edge_min_step)
    rel = np.where(s > 0, np.minimum(np.hypot(c.relative_sigma.astype(np.float64),
                                              model.edge_weight * s.astype(np.float64)),
                                     model.max_relative), c.relative_sigma).astype(np.float32)
    keep = np.isfinite(c.published) & (rel <= threshold)
    published = np.where(keep, c.published, np.float32(np.nan)).astype(np.float32)
    counts = c.counts.copy()
    counts[1] = int(keep.sum())
    return Composed(c.depth, published, (published * rel).astype(np.float32), rel, counts)


def trusted_depth_reference(global_depth: np.ndarray, lidar: Optional[SparseDepth],
                            fit: AffineFit, config: PipelineConfig,
                            model: Optional[UncertaintyModel], fit_age: float = 0.0,
                            sigma_scale: float = 1.0, teacher_scale: float = 1.0,
                            extrinsic_shift: int = 0) -> Trusted:
    """:func:`~depth_node.pipeline.trust.trusted_depth` in numpy (same arguments and result)."""
    h, w = global_depth.shape
    fusion = fuse_reference(global_depth, lidar if lidar is not None else empty_support(h, w),
                            config.fusion_options())
    fused = config.fusion and lidar is not None  # without a sweep nothing was fused
    depth = fusion.depth if fused else np.array(global_depth, np.float32, copy=True)
    supported = (fusion.support >= SUPPORTED_DENSITY).astype(np.float32)
    if model is None:
        c = compose_reference(depth, np.full(fusion.rho.shape, np.nan, np.float32), supported,
                              fusion.cell, config.max_relative_uncertainty)
        share = c.counts[2] / c.counts[0] if c.counts[0] else 0.0
        return Trusted(depth, None, fusion, TrustReport(1.0, float(share), float('nan')), depth,
                       c.relative_sigma)
    rel_cells = model.relative_sigma(features(fusion, fit_residual(fit)), fused=fused,
                                     carried=carried_correction(fusion.support, fusion.rho)
                                     if fused else None)
    rel_cells = scaled(rel_cells, fusion.support, model, sigma_scale if fused else 1.0,
                       teacher_scale)
    if fit_age > 0 and math.isfinite(fit_age):
        drift = config.filter_process_noise ** 2 * fit_age
        rel_cells = np.sqrt(rel_cells * rel_cells + np.float32(drift))
    if fused and extrinsic_shift:
        rel_cells = misaligned(rel_cells, cell_depth(depth, fusion.cell)
                               if fusion.centre_depth is None else fusion.centre_depth,
                               fusion.cell, extrinsic_shift, model)
    c = edges_reference(compose_reference(depth, rel_cells, supported, fusion.cell,
                                          config.max_relative_uncertainty), model,
                        config.max_relative_uncertainty)
    return judged(c, rel_cells, cell_depth(depth, fusion.cell), fusion, config,
                  lidar is not None, float(sigma_scale) if fused else 1.0, teacher_scale,
                  extrinsic_shift if fused else 0)


__all__ = ['compose_reference', 'edges_reference', 'trusted_depth_reference']
