"""Compiled inner loops of the robust fit (:mod:`depth_node.core.robust`), numba.

Each function here is the arithmetic of one numpy step of the reference fit, in one pass and on
preallocated buffers: the least-median score of the start hypotheses, the whole IRLS loop on a
fixed-size subset (residuals, MAD scale by quickselect instead of a sort or ``np.partition``,
weights, the 2x2 weighted least-squares solve, the convergence test) and the final inlier
statistics over every pair. The numpy fit stays the reference (``FitConfig.fit_reference``);
the tests hold the compiled one to it within float rounding.
"""

from __future__ import annotations

import math
from typing import Optional, TYPE_CHECKING

import numpy as np

from depth_node.core.fit_data import strided_subset

if TYPE_CHECKING:  # pragma: no cover
    from depth_node.core.robust import FitConfig

try:  # numba is a dependency; without it (a broken install) the numpy reference runs
    from numba import njit
except ImportError:  # pragma: no cover - exercised only on a broken install
    njit = None

MAD_TO_SIGMA = 1.4826  # 1.4826 * MAD estimates the standard deviation of Gaussian residuals
MIN_SIGMA = 1e-5  # the robust scale never drops below this relative residual
SCALE_CUT = 4.685  # residuals beyond this many first-estimate sigmas leave the robust scale
COARSE_TOL = 1e-3  # the subset stage of IRLS stops at this relative change
# The robust scale is estimated on an evenly strided subset of this many residuals (the
# median is the costliest step of a round; 4096 residuals estimate it to ~2 %).
SCALE_POINTS = 4096


def _select(a: np.ndarray, n: int, k: int) -> float:
    """The ``k``-th smallest of ``a[:n]`` (``np.partition(a[:n], k)[k]``); reorders ``a``."""
    lo, hi = 0, n - 1
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return a[k]


def _mad_sigma(a: np.ndarray, n: int) -> float:
    """1.4826 x the upper median of ``a[:n]`` (absolute residuals), at least MIN_SIGMA."""
    if n == 0:
        return math.inf
    return max(MAD_TO_SIGMA * _select(a, n, n // 2), MIN_SIGMA)


def _robust_sigma(a: np.ndarray, n: int, scratch: np.ndarray) -> float:
    """The reference's two-stage scale of ``a[:n]`` = |rho| (``scratch`` as long as ``a``)."""
    for i in range(n):
        scratch[i] = a[i]
    first = _mad_sigma(scratch, n)
    cut = SCALE_CUT * first
    m = 0
    for i in range(n):
        if a[i] <= cut:
            scratch[m] = a[i]
            m += 1
    return _mad_sigma(scratch, m)


def _residual(s: float, t: float, fx: float, fy: float) -> tuple[float, float]:
    """Relative ``r`` and log ``rho`` residual of one pair (rho = +inf where y_fit <= 0)."""
    r = s * fx + t * fy
    r -= 1.0
    return r, (math.log1p(r) if r > -1.0 else math.inf)


def median_scores(s: np.ndarray, t: np.ndarray, x: np.ndarray, log_y: np.ndarray,
                  scratch: np.ndarray, out: np.ndarray) -> None:
    """``out[k]`` = upper median over the pairs of ``|log(s_k x + t_k) - log_y|`` (inf if <= 0)."""
    n = x.size
    for k in range(s.size):
        for i in range(n):
            mapped = s[k] * x[i] + t[k]
            scratch[i] = abs(math.log(mapped) - log_y[i]) if mapped > 0 else math.inf
        out[k] = _select(scratch, n, n // 2)


def irls(s: float, t: float, fx: np.ndarray, fy: np.ndarray, prior: np.ndarray,
         sub: np.ndarray, x_lo: float, x_hi: float, tuning: float, tukey: bool,
         max_iter: int, tol: float, buffers: np.ndarray) -> tuple[float, float]:
    """The reference ``_irls`` loop from ``(s, t)``: returns the fitted ``(s, t)``.

    ``fx``, ``fy`` [n] are the linear coefficients of the relative residual (``x / y``,
    ``1 / y``), ``prior`` [n] the prior weights or empty (all 1), ``sub`` the strided indices the
    robust scale is taken on, ``x_lo``, ``x_hi`` the 1st / 99th percentiles of the prediction
    (the convergence test), ``buffers`` [4, n] float64 scratch.
    """
    n = fx.size
    r_buf, rho_buf, a_buf, scratch = buffers[0], buffers[1], buffers[2], buffers[3]
    has_prior = prior.size == n
    for i in range(n):
        r_buf[i], rho_buf[i] = _residual(s, t, fx[i], fy[i])
    for _ in range(max_iter):
        for k in range(sub.size):
            a_buf[k] = abs(rho_buf[sub[k]])
        sigma = _robust_sigma(a_buf, sub.size, scratch)
        scale = 1.0 / (tuning * sigma)
        sa = sb = sc = se = sf = 0.0
        for i in range(n):
            r, rho = r_buf[i], rho_buf[i]
            if not math.isfinite(rho):
                continue  # weight 0
            u = abs(rho) * scale
            if tukey:
                w = max(1.0 - u * u, 0.0)
                w *= w
            else:
                w = 1.0 / max(u, 1.0)
            if abs(r) < 1e-9:
                g = 1.0
            else:
                g = rho / (r * (1.0 + r))
            w *= g
            if has_prior:
                w *= prior[i]
            wx = w * fx[i]
            wy = w * fy[i]
            sa += wx * fx[i]
            sb += wx * fy[i]
            sc += wy * fy[i]
            se += wx
            sf += wy
        det = sa * sc - sb * sb
        if not det > 1e-12 * sa * sc:
            break
        s_new = (sc * se - sb * sf) / det
        t_new = (sa * sf - sb * se) / det
        if not (math.isfinite(s_new) and math.isfinite(t_new)):
            break
        moved = 0.0
        for xv in (x_lo, x_hi):
            a0, b0 = s * xv + t, s_new * xv + t_new
            if not (a0 > 0 and b0 > 0):
                moved = math.inf
                break
            moved = max(moved, abs(math.log(b0 / a0)))
        s, t = s_new, t_new
        if not moved > tol:
            break
        for i in range(n):
            r_buf[i], rho_buf[i] = _residual(s, t, fx[i], fy[i])
    return s, t


def final_stats(s: float, t: float, x: np.ndarray, y: np.ndarray, z: np.ndarray,
                sub: np.ndarray, inlier_sigmas: float, disparity: bool,
                buffers: np.ndarray) -> tuple[float, int, float]:
    """Robust sigma (on ``sub``), inlier count and inlier AbsRel of ``(s, t)`` over all pairs.

    ``x`` [n] prediction, ``y`` [n] target (1/z or z), ``z`` [n] metres; ``buffers`` [2, >= n]
    float64 scratch. Returns ``(sigma, inliers, abs_rel)`` as the reference computes them.
    """
    a_buf, scratch = buffers[0], buffers[1]
    for k in range(sub.size):
        i = sub[k]
        fy = 1.0 / y[i]
        a_buf[k] = abs(_residual(s, t, x[i] * fy, fy)[1])
    sigma = _robust_sigma(a_buf, sub.size, scratch)
    limit = inlier_sigmas * sigma
    count = 0
    total = 0.0
    for i in range(x.size):
        fy = 1.0 / y[i]
        if abs(_residual(s, t, x[i] * fy, fy)[1]) <= limit:
            mapped = s * x[i] + t
            z_fit = 1.0 / mapped if disparity else mapped
            total += abs(z_fit - z[i]) / z[i]
            count += 1
    return sigma, count, (total / count if count else math.nan)


def fit_irls(x: np.ndarray, y: np.ndarray, zg: np.ndarray, prior: Optional[np.ndarray],
             hypotheses: tuple[np.ndarray, np.ndarray, np.ndarray], cfg: 'FitConfig',
             disparity: bool) -> tuple[float, float, float, int, float]:
    """The IRLS fit of ``robust._fit`` with its loops compiled.

    Same steps, same subsets: the least-median start, IRLS on ``coarse_points`` then on at
    most ``max_points`` strided pairs, the scale and the inliers over every pair. Returns
    ``(s, t, sigma, inliers, abs_rel)``. ``x`` [n] prediction, ``y`` [n] target (1/z or z),
    ``zg`` [n] metres, ``prior`` [n] or None, ``hypotheses`` the start samples ``(s [K], t [K],
    scored indices)``.
    """
    n = x.size
    s_k, t_k, sub = hypotheses
    scores = np.empty(s_k.size)
    compiled_median_scores(s_k, t_k, x[sub], np.log(y[sub]), np.empty(sub.size), scores)
    best = int(np.argmin(scores))
    s, t = float(s_k[best]), float(t_k[best])
    buffers = np.empty((4, min(n, cfg.max_points)))
    tukey = cfg.loss == 'tukey'
    stages = [(cfg.max_points, cfg.tol)]
    if n > 2 * cfg.coarse_points:
        stages.insert(0, (cfg.coarse_points, COARSE_TOL))
    for size, tol in stages:
        idx = strided_subset(n, size)
        xs, ys = x[idx], y[idx]
        fy = 1.0 / ys
        lo, hi = np.percentile(xs[strided_subset(xs.size, 4096)], [1.0, 99.0])
        s, t = compiled_irls(
            s, t, xs * fy, fy, np.empty(0) if prior is None else prior[idx],
            strided_subset(xs.size, SCALE_POINTS), float(lo), float(hi),
            cfg.tuning_constant, tukey, cfg.max_iter, tol, buffers)
    sigma, k, abs_rel = compiled_final_stats(
        s, t, x, y, zg, strided_subset(n, SCALE_POINTS), cfg.inlier_sigmas,
        disparity, buffers)
    return s, t, sigma, k, abs_rel


if njit is not None:
    _jit = njit(cache=True, nogil=True)
    _select = _jit(_select)
    _mad_sigma = _jit(_mad_sigma)
    _robust_sigma = _jit(_robust_sigma)
    _residual = _jit(_residual)
    compiled_median_scores = _jit(median_scores)
    compiled_irls = _jit(irls)
    compiled_final_stats = _jit(final_stats)
else:  # pragma: no cover - numba missing: robust.py runs its numpy reference
    compiled_median_scores = compiled_irls = compiled_final_stats = None

__all__ = ['compiled_final_stats', 'compiled_irls', 'compiled_median_scores', 'final_stats',
           'fit_irls', 'irls', 'median_scores']
