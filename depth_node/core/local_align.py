"""Local alignment: a smooth, spatially varying scale on top of a global scale/shift fit.

A relative model's errors are not only a global affine map: its depth is often stretched or
compressed in parts of the image (low-frequency distortion). Where LiDAR covers the image, the
residual of the global fit shows that distortion, and a smooth correction removes it.

Method. At each kept LiDAR pixel ``i`` the log-ratio ``rho_i = log(z_i / z_global_i)`` between
the LiDAR depth and the globally aligned depth is taken. Its smooth field is estimated by
normalized convolution with a wide Gaussian (``sigma`` x the image's larger side) on a grid
``~sigma / 4`` coarser than the image, shrunk towards 0 (the global fit) where few points are
near::

    rho_field = G * sum(rho_i) / (G * count + prior_points / (2 pi sigma_cells^2))

``G *`` is the Gaussian blur; the prior acts like ``prior_points`` LiDAR points with residual 0
under the kernel's peak, so the correction fades out away from the LiDAR (e.g. above the
top beam) instead of being extrapolated. A second pass drops points more than ``outlier_sigmas``
robust sigmas from the first field (see-through returns that rejection missed, edge pixels).
The metric depth is ``z_global * exp(rho_field)``, upsampled bilinearly from the grid.

The correction is multiplicative in depth, so it applies alike to disparity- and depth-space
fits; it cannot fix errors finer than ``sigma`` (those need the model) and it cannot correct where
there is no LiDAR.
"""

from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np

from depth_node.core.align import AffineFit, apply_affine
from depth_node.core.errors import DepthNodeError
from depth_node.core.lidar import check_image_size, SparseDepth

_MAD_TO_SIGMA = 1.4826


def align_local(prediction: np.ndarray, sparse: SparseDepth, keep_mask: Optional[np.ndarray],
                global_fit: AffineFit, sigma: float = 0.06, prior_points: float = 20.0,
                outlier_sigmas: float = 3.0, max_depth: float = float('inf')) -> np.ndarray:
    """Metric depth [H, W] float32 (metres, NaN = invalid) with a locally varying scale.

    Parameters
    ----------
    prediction : numpy.ndarray
        [H, W] relative prediction (disparity or depth, as ``global_fit.space`` says).
    sparse : SparseDepth
        Projected LiDAR of the same image size (``M`` pixels).
    keep_mask : numpy.ndarray, optional
        [M] bool, LiDAR pixels to use (e.g. from
        :func:`depth_node.core.see_through.reject_see_through`); None: all.
    global_fit : AffineFit
        The global fit the correction refines; when refused (``ok=False``) the result is all
        NaN.
    sigma : float
        Gaussian standard deviation of the scale field, as a fraction of the image's larger
        side (0.06: 38 px at 640x480). Larger is smoother and fills gaps further.
    prior_points : float
        Strength (>= 0) of the pull towards the global fit, in LiDAR points under the kernel
        peak.
    outlier_sigmas : float
        Points farther than this many robust sigmas from the first-pass field are dropped.
    max_depth : float
        Metres; deeper output is NaN.

    Returns
    -------
    numpy.ndarray
        [H, W] float32 metres, NaN where the global map is invalid or beyond ``max_depth``.
    """
    pred = np.asarray(prediction)
    h, w = check_image_size(pred, sparse, 'prediction')
    if not (math.isfinite(sigma) and sigma > 0):
        raise DepthNodeError(f'sigma must be a positive fraction of the image size, got {sigma}')
    if not prior_points >= 0:
        raise DepthNodeError(f'prior_points must be >= 0, got {prior_points}')
    if not outlier_sigmas > 0:
        raise DepthNodeError(f'outlier_sigmas must be > 0, got {outlier_sigmas}')
    if not global_fit.ok:
        return np.full((h, w), np.nan, dtype=np.float32)
    depth = apply_affine(pred, global_fit.scale, global_fit.shift, global_fit.space)  # [H, W]
    if keep_mask is not None:
        keep = np.asarray(keep_mask, dtype=bool)
        if keep.shape != (sparse.count,):
            raise DepthNodeError(f'keep_mask must have shape ({sparse.count},), '
                                 f'got {keep.shape}')
        sparse = sparse.subset(keep)
    z_glob = sparse.sample(depth)  # [M'] metres, NaN where the global map is invalid
    with np.errstate(divide='ignore', invalid='ignore'):
        rho = np.log(sparse.z / z_glob)  # [M'] log-ratio LiDAR / global
    ok = np.isfinite(rho)
    if ok.sum() < 2:
        return _finish(depth, max_depth)
    u, v, rho = sparse.u[ok], sparse.v[ok], rho[ok].astype(np.float64)

    sigma_px = sigma * max(h, w)
    cell = max(1, int(round(sigma_px / 4.0)))
    gh, gw = -(-h // cell), -(-w // cell)
    sigma_cells = sigma_px / cell
    idx = (v // cell) * gw + (u // cell)  # [M'] grid cell of each point
    prior = prior_points / (2.0 * math.pi * sigma_cells ** 2)

    # First pass: drop gross outliers against the global median, then estimate the field.
    med = float(np.median(rho))
    spread = max(_MAD_TO_SIGMA * float(np.median(np.abs(rho - med))), 1e-3)
    use = np.abs(rho - med) <= 2.0 * outlier_sigmas * spread
    field = _field(idx[use], rho[use], gh, gw, sigma_cells, prior)
    # Second pass: drop points far from the first field (local outliers), re-estimate.
    resid = rho - field.reshape(-1)[idx]
    spread = max(_MAD_TO_SIGMA * float(np.median(np.abs(resid[use]))), 1e-3)
    use = np.abs(resid) <= outlier_sigmas * spread
    field = _field(idx[use], rho[use], gh, gw, sigma_cells, prior)

    gain = np.exp(field).astype(np.float32)  # [gh, gw] multiplicative correction
    # Cell centres sit at cell * (i + 0.5) - 0.5, which is where INTER_LINEAR puts them when
    # the grid is resized by exactly `cell`; crop the overhang afterwards.
    gain = cv2.resize(gain, (gw * cell, gh * cell), interpolation=cv2.INTER_LINEAR)[:h, :w]
    return _finish(depth * gain, max_depth)


def _field(idx: np.ndarray, rho: np.ndarray, gh: int, gw: int, sigma_cells: float,
           prior: float) -> np.ndarray:
    """Normalized convolution of ``rho`` at grid cells ``idx``: [gh, gw] float64 log-ratio."""
    num = np.bincount(idx, weights=rho, minlength=gh * gw).reshape(gh, gw)  # sum of rho
    den = np.bincount(idx, minlength=gh * gw).astype(np.float64).reshape(gh, gw)  # count
    num_b: np.ndarray = cv2.GaussianBlur(num, (0, 0), sigma_cells,
                                         borderType=cv2.BORDER_CONSTANT)
    den_b: np.ndarray = cv2.GaussianBlur(den, (0, 0), sigma_cells,
                                         borderType=cv2.BORDER_CONSTANT)
    return num_b / (den_b + max(prior, 1e-12))


def _finish(depth: np.ndarray, max_depth: float) -> np.ndarray:
    out = np.asarray(depth, dtype=np.float32)
    with np.errstate(invalid='ignore'):
        bad = ~(out <= max_depth)
    out[bad] = np.nan
    return out
