"""The fusion in plain numpy, step by step: the reference of :mod:`depth_node.core.fusion`.

:func:`fuse_reference` is the method of :mod:`depth_node.core.fusion` written as directly as
numpy allows (``bincount`` cell sums, the reference recursive filter, OpenCV's bilinear
upsampling at full resolution). The node runs the compiled :func:`~depth_node.core.fusion.fuse`
/ :func:`~depth_node.core.fusion.fuse_field`; the tests hold them to this one. A change of the
method is made here first, then in the compiled passes.
"""

from __future__ import annotations

import numpy as np

from depth_node.core.cell_grid import grid_shape, upsample_reference
from depth_node.core.fusion import extend_down, Fusion, FusionConfig, guide, log_ratios, \
    recursive_filter_reference
from depth_node.core.lidar import check_image_size, SparseDepth


def cell_sums_reference(u: np.ndarray, v: np.ndarray, r: np.ndarray, cell: int, gh: int,
                        gw: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell sums of ``r``, 1 and ``r**2`` ([3, gh, gw] float64) and the cell of each return."""
    idx = (v // cell) * gw + (u // cell)
    sums = np.stack([np.bincount(idx, weights=wt, minlength=gh * gw).reshape(gh, gw)
                     for wt in (r, np.ones_like(r), r * r)])
    return sums, idx


def fuse_reference(global_depth: np.ndarray, lidar: SparseDepth,
                   config: FusionConfig = FusionConfig()) -> Fusion:
    """:func:`depth_node.core.fusion.fuse` in plain numpy (same arguments, same result)."""
    zg = np.asarray(global_depth, dtype=np.float32)
    h, w = check_image_size(zg, lidar, 'global depth')
    c = config
    cell, ccell = int(c.cell), int(c.cell) * int(c.coarse_factor)
    gh, gw = grid_shape(h, w, cell)
    ch, cw_ = grid_shape(h, w, ccell)
    zero = np.zeros((gh, gw), np.float32)
    u, v, z, r = log_ratios(zg, lidar)
    if not r.size:
        return Fusion(zg.copy(), zero, zero, zero.copy(), zero.copy(), cell, 0, 0)
    coarse_guide = guide(zg, ccell, ch, cw_)
    coarse_sigma = c.coarse_sigma / c.coarse_factor  # in coarse cells
    sums, cidx = cell_sums_reference(u, v, r, ccell, ch, cw_)
    first = recursive_filter_reference(sums[:2], coarse_guide, coarse_sigma, c.edge_sigma,
                                       c.iterations)
    rho_c = first[0] / (first[1] + c.prior)
    keep = np.abs(r - rho_c.reshape(-1)[cidx]) <= c.outlier_log_ratio
    if not keep.all():
        u, v, z, r = u[keep], v[keep], z[keep], r[keep]
        sums, _ = cell_sums_reference(u, v, r, ccell, ch, cw_)
    coarse = recursive_filter_reference(sums, coarse_guide, coarse_sigma, c.edge_sigma,
                                        c.iterations)
    area = float(c.coarse_factor) ** 2
    coarse_up = np.stack([upsample_reference(g, c.coarse_factor, gh, gw) for g in coarse]) \
        / area
    fine_sums, idx = cell_sums_reference(u, v, r, cell, gh, gw)
    fine_guide = guide(zg, cell, gh, gw)
    fine = recursive_filter_reference(fine_sums, fine_guide, c.fine_sigma, c.edge_sigma,
                                      c.iterations)
    rho_c = coarse_up[0] / (coarse_up[1] + c.prior)
    num = fine[0] + c.coarse_weight * rho_c
    den = fine[1] + c.coarse_weight
    rho = num / den
    w_f = fine[1] / den
    sq_f = fine[2] / np.maximum(fine[1], 1e-12)
    sq_c = coarse_up[2] / np.maximum(coarse_up[1], 1e-12)
    spread = np.sqrt(np.maximum(w_f * sq_f + (1.0 - w_f) * sq_c - rho * rho, 0.0))
    rho = extend_down(rho, fine[1], fine_guide, c.extend_support, c.extend_step,
                      c.extend_reach)
    depth = zg * upsample_reference(np.exp(rho), cell, h, w)
    pinned = 0
    if c.pin_tolerance > 0:
        pin = (np.abs(r - rho.reshape(-1)[idx]) <= c.pin_tolerance) & np.isfinite(depth[v, u])
        depth[v[pin], u[pin]] = z[pin]
        pinned = int(pin.sum())
    return Fusion(depth, rho.astype(np.float32), fine[1].astype(np.float32),
                  coarse_up[1].astype(np.float32), spread.astype(np.float32), cell,
                  int(r.size), pinned)


__all__ = ['cell_sums_reference', 'fuse_reference']
