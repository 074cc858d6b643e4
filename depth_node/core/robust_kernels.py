"""Compiled inner loops of the robust IRLS fit (:mod:`depth_node.core.robust`), numba.

The same steps as the numpy reference (``FitConfig.fit_reference``), on the same strided
subsets, each in one pass over preallocated buffers, and with the work that does not change the
answer left out:

* medians of ``|rho|`` (the MAD scale, the least-median score of the start hypotheses) are taken
  by quickselect on ``q = exp(|rho|) - 1``, which orders the pairs as ``|rho|`` does and needs
  no logarithm (``|log1p(r)| = log1p(r)`` for ``r >= 0`` and ``log1p(-r / (1 + r))`` below):
  one ``log1p`` per median instead of one per pair;
* the inlier test ``|rho| <= L`` is ``expm1(-L) <= r <= expm1(L)``;
* the IRLS weights need ``rho`` itself: ``log1p`` is the series of ``2 atanh(r / (2 + r))``
  where ``|r| < 0.1`` (within 2 ulp), the C library elsewhere.

The results agree with the reference to float rounding (the tests hold them to it).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from depth_node.core.robust import FitConfig

try:  # numba is a dependency; without it (a broken install) the numpy reference runs
    from numba import njit
except ImportError:  # pragma: no cover - exercised only on a broken install
    njit = None

MAD_TO_SIGMA = 1.4826  # 1.4826 * MAD estimates the standard deviation of Gaussian residuals
MIN_SIGMA = 1e-5  # the scale never drops below this (exact data: no 0/0 weights)
SCALE_CUT = 4.685  # residuals beyond this many first-estimate sigmas leave the robust scale
COARSE_TOL = 1e-3  # the subset stage of IRLS stops at this relative change
# The robust scale is estimated on an evenly strided subset of this many residuals (the
# median is the costliest step of a round; 4096 residuals estimate it to ~2 %).
SCALE_POINTS = 4096


def _strided(k: int, n: int, size: int) -> int:
    """Index ``k`` of ``fit_data.strided_subset(n, size)``."""
    return k if n <= size else (k * n) // size


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


def _log1p(r: float) -> float:
    """``log1p(r)``: the atanh series where ``|r| < 0.1`` (2 ulp), the C library elsewhere."""
    if -0.1 < r < 0.1:
        w = r / (2.0 + r)
        w2 = w * w
        return 2.0 * w * (1.0 + w2 * (1.0 / 3 + w2 * (1.0 / 5 + w2 * (
            1.0 / 7 + w2 * (1.0 / 9 + w2 * (1.0 / 11 + w2 * (1.0 / 13)))))))
    return math.log1p(r)


def _order_key(r: float) -> float:
    """``expm1(|log1p(r)|)`` >= 0, monotone in ``|rho|``; +inf where ``r <= -1``."""
    if r >= 0.0:
        return r
    if r > -1.0:
        return -r / (1.0 + r)
    return math.inf


def _robust_sigma(q: np.ndarray, n: int) -> float:
    """The reference's two-stage scale of ``|rho|`` from the order keys ``q[:n]`` (reordered).

    The second median (of the keys within the cut, which lies above the first median) is among
    the ``n // 2 + 1`` smallest keys, which the first selection left at the front.
    """
    if n == 0:
        return math.inf
    k = n // 2
    first = max(MAD_TO_SIGMA * math.log1p(_select(q, n, k)), MIN_SIGMA)
    cut = math.expm1(SCALE_CUT * first)  # |rho| <= SCALE_CUT * first
    m = k + 1  # q[:k + 1] <= q[k] <= cut
    for i in range(k + 1, n):
        if q[i] <= cut:
            m += 1
    return max(MAD_TO_SIGMA * math.log1p(_select(q, k + 1, m // 2)), MIN_SIGMA)


def usable_pairs(prediction: np.ndarray, z: np.ndarray, weights: np.ndarray, disparity: bool,
                 out: np.ndarray) -> tuple[int, float, float]:
    """The finite pairs with ``z > 0`` (and weight > 0) into ``out`` [5, N].

    Rows: x (prediction), ``fx = x / y`` and ``fy = 1 / y`` (the relative residual is
    ``s fx + t fy - 1``; ``y`` is the target, 1/z or z), z (m), prior (the weight over the
    largest; written only when ``weights`` is not empty). Returns ``(n, std(x), mean(|x|))``.
    """
    has_w = weights.size > 0
    n = 0
    w_max = 0.0
    for i in range(z.size):
        xi, zi = float(prediction[i]), float(z[i])
        if not (math.isfinite(xi) and math.isfinite(zi) and zi > 0):
            continue
        if has_w:
            wi = float(weights[i])
            if not (math.isfinite(wi) and wi > 0):
                continue
            out[4, n] = wi
            w_max = max(w_max, wi)
        fy = zi if disparity else 1.0 / zi
        out[0, n] = xi
        out[1, n] = xi * fy
        out[2, n] = fy
        out[3, n] = zi
        n += 1
    if has_w:
        for i in range(n):
            out[4, i] /= w_max
    total = total_abs = 0.0
    for i in range(n):
        total += out[0, i]
        total_abs += abs(out[0, i])
    mean = total / n if n else 0.0
    var = 0.0
    for i in range(n):
        d = out[0, i] - mean
        var += d * d
    return n, (math.sqrt(var / n) if n else 0.0), (total_abs / n if n else 0.0)


def median_scores(s: np.ndarray, t: np.ndarray, x: np.ndarray, fy: np.ndarray,
                  sub: np.ndarray, scratch: np.ndarray) -> int:
    """Index of the hypothesis ``(s_k, t_k)`` of least median ``|log((s x + t) fy)|`` on ``sub``
    (the reference's least-median start; the first of equal scores; ``fy = 1 / y``)."""
    best, best_score = 0, math.inf
    for k in range(s.size):
        for j in range(sub.size):
            i = sub[j]
            mapped = s[k] * x[i] + t[k]
            scratch[j] = _order_key(mapped * fy[i] - 1.0) if mapped > 0 else math.inf
        score = _select(scratch, sub.size, sub.size // 2)
        if score < best_score:
            best, best_score = k, score
    return best


def _percentile(a: np.ndarray, n: int, p: float) -> float:
    """``np.percentile(a[:n], p)`` (linear) to the last bit, numpy's interpolation included
    (from the upper neighbour when the weight is 0.5 or more); reorders ``a``."""
    virtual = (n - 1) * (p / 100.0)
    lo = min(max(int(math.floor(virtual)), 0), n - 1)
    hi = min(lo + 1, n - 1)
    gamma = virtual - math.floor(virtual)
    low = _select(a, n, lo)
    high = _select(a, n, hi) if hi != lo else low
    diff = high - low
    return high - diff * (1.0 - gamma) if gamma >= 0.5 else low + diff * gamma


def start_samples(x: np.ndarray, y: np.ndarray, i: np.ndarray, j: np.ndarray,
                  sub: np.ndarray, inverse: bool, s_out: np.ndarray,
                  t_out: np.ndarray) -> int:
    """The 2-point samples ``(i, j)`` of :func:`depth_node.core.fit_data.start_hypotheses`
    that it keeps (positive, finite slope; predictions at least 5 % of the 10-90 percentile
    range of ``x[sub]`` apart), in order, into ``s_out``, ``t_out``; returns their count.
    The same float64 arithmetic, so the same samples."""
    xs = np.empty(sub.size)
    for k in range(sub.size):
        xs[k] = x[sub[k]]
    lo = _percentile(xs, xs.size, 10.0)
    hi = _percentile(xs, xs.size, 90.0)
    min_dx = 0.05 * max(hi - lo, 1e-12)
    m = 0
    for k in range(i.size):
        a, b = i[k], j[k]
        dx = x[a] - x[b]
        ya, yb = (1.0 / y[a], 1.0 / y[b]) if inverse else (y[a], y[b])
        if dx == 0.0:
            continue  # numpy's slope is inf or NaN there: never kept
        s = (ya - yb) / dx
        if math.isfinite(s) and s > 0 and abs(dx) > min_dx:
            s_out[m] = s
            t_out[m] = ya - s * x[a]
            m += 1
    return m


def irls(s: float, t: float, pairs: np.ndarray, n: int, size: int, has_prior: bool,
         tuning: float, tukey: bool, max_iter: int, tol: float,
         buffers: np.ndarray) -> tuple[float, float]:
    """The reference ``_irls`` from ``(s, t)`` on the ``size`` strided pairs of ``pairs[:, :n]``.

    ``pairs`` [5, >= n] as :func:`usable_pairs` fills it; ``buffers`` [5, >= size] float64
    scratch. Returns the fitted ``(s, t)``.
    """
    m = min(n, size)
    fx, fy, prior, r_buf, q = buffers[0], buffers[1], buffers[2], buffers[3], buffers[4]
    for k in range(m):
        i = _strided(k, n, size)
        fx[k] = pairs[1, i]
        fy[k] = pairs[2, i]
        prior[k] = pairs[4, i] if has_prior else 1.0
    n_scale = min(m, SCALE_POINTS)
    for k in range(n_scale):  # the data's x range: the convergence test
        q[k] = pairs[0, _strided(_strided(k, m, SCALE_POINTS), n, size)]
    x_lo = _percentile(q, n_scale, 1.0)
    x_hi = _percentile(q, n_scale, 99.0)
    for _ in range(max_iter):
        for k in range(m):
            r_buf[k] = s * fx[k] + t * fy[k] - 1.0
        for k in range(n_scale):
            q[k] = _order_key(r_buf[_strided(k, m, SCALE_POINTS)])
        sigma = _robust_sigma(q, n_scale)
        scale = 1.0 / (tuning * sigma)
        r_lo, r_hi = math.expm1(-tuning * sigma), math.expm1(tuning * sigma)
        sa = sb = sc = se = sf = 0.0
        for k in range(m):
            r = r_buf[k]
            if not r > -1.0:
                continue  # rho = inf: weight 0
            if tukey and not r_lo < r < r_hi:
                continue  # |rho| >= tuning * sigma: Tukey weight 0
            if -0.1 < r < 0.1:  # rho by the series of _log1p, sharing its one division
                d = 1.0 / ((2.0 + r) * (1.0 + r))
                w_ = r * (1.0 + r) * d  # r / (2 + r)
                w2 = w_ * w_
                p = 1.0 + w2 * (1.0 / 3 + w2 * (1.0 / 5 + w2 * (1.0 / 7 + w2 * (
                    1.0 / 9 + w2 * (1.0 / 11 + w2 * (1.0 / 13))))))
                rho = 2.0 * w_ * p
                g = 1.0 if abs(r) < 1e-9 else 2.0 * p * d  # rho / (r (1 + r))
            else:
                rho = math.log1p(r)
                g = rho / (r * (1.0 + r))
            u = abs(rho) * scale
            if tukey:
                w = 1.0 - u * u
                w *= w
            else:
                w = 1.0 / max(u, 1.0)
            w *= g * prior[k]
            wx = w * fx[k]
            wy = w * fy[k]
            sa += wx * fx[k]
            sb += wx * fy[k]
            sc += wy * fy[k]
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
    return s, t


def final_stats(s: float, t: float, pairs: np.ndarray, n: int, inlier_sigmas: float,
                disparity: bool, scratch: np.ndarray) -> tuple[float, int, float]:
    """Robust sigma (on the strided scale subset), inlier count and inlier AbsRel over all
    ``n`` pairs of ``(s, t)``, as the reference computes them.

    With ``1 + r = y_fit / y``, the relative depth error ``|z_fit - z| / z`` is ``|r| / (1 + r)``
    in disparity space (``z_fit = z / (1 + r)``) and ``|r|`` in depth space.
    """
    n_scale = min(n, SCALE_POINTS)
    for k in range(n_scale):
        i = _strided(k, n, SCALE_POINTS)
        scratch[k] = _order_key(s * pairs[1, i] + t * pairs[2, i] - 1.0)
    sigma = _robust_sigma(scratch, n_scale)
    r_lo, r_hi = math.expm1(-inlier_sigmas * sigma), math.expm1(inlier_sigmas * sigma)
    count = 0
    total = 0.0
    for i in range(n):
        r = s * pairs[1, i] + t * pairs[2, i] - 1.0
        if r_lo <= r <= r_hi and r > -1.0:
            total += abs(r) / (1.0 + r) if disparity else abs(r)
            count += 1
    return sigma, count, (total / count if count else math.nan)


def fit_irls(s: float, t: float, pairs: np.ndarray, n: int, has_prior: bool,
             cfg: 'FitConfig', disparity: bool) -> tuple[float, float, float, int, float]:
    """IRLS from the start ``(s, t)``: ``coarse_points`` first (when ``n`` is over twice
    that), then at most ``max_points`` strided pairs; the scale and inliers over every pair.

    Returns ``(s, t, sigma, inliers, abs_rel)``.
    """
    buffers = _scratch(6, max(min(n, cfg.max_points), SCALE_POINTS))
    tukey = cfg.loss == 'tukey'
    if n > 2 * cfg.coarse_points:
        s, t = compiled_irls(s, t, pairs, n, cfg.coarse_points, has_prior, cfg.tuning_constant,
                             tukey, cfg.max_iter, COARSE_TOL, buffers)
    s, t = compiled_irls(s, t, pairs, n, cfg.max_points, has_prior, cfg.tuning_constant, tukey,
                         cfg.max_iter, cfg.tol, buffers)
    sigma, k, abs_rel = compiled_final_stats(s, t, pairs, n, cfg.inlier_sigmas, disparity,
                                             buffers[0])
    return s, t, sigma, k, abs_rel


_BUFFERS: dict[tuple[int, int], np.ndarray] = {}


def _scratch(rows: int, cols: int) -> np.ndarray:
    """[rows, >= cols] float64 scratch, reused across fits of the same thread (grown only)."""
    import threading
    key = (threading.get_ident(), rows)
    buf = _BUFFERS.get(key)
    if buf is None or buf.shape[1] < cols:
        if len(_BUFFERS) > 64:  # threads come and go: never let the cache grow without bound
            _BUFFERS.clear()
        buf = _BUFFERS[key] = np.empty((rows, cols))
    return buf


def pairs_buffer(count: int) -> np.ndarray:
    """[5, >= count] float64 buffer for :func:`usable_pairs`, reused across fits."""
    return _scratch(5, count)


if njit is not None:
    _jit = njit(cache=True, nogil=True)
    _inline = njit(cache=True, nogil=True, inline='always')  # small helpers of hot loops
    _strided = _inline(_strided)
    _select = _jit(_select)
    _log1p = _inline(_log1p)
    _order_key = _inline(_order_key)
    _robust_sigma = _jit(_robust_sigma)
    _percentile = _jit(_percentile)
    compiled_start_samples = _jit(start_samples)
    compiled_usable_pairs = _jit(usable_pairs)
    compiled_median_scores = _jit(median_scores)
    compiled_irls = _jit(irls)
    compiled_final_stats = _jit(final_stats)
else:  # pragma: no cover - numba missing: robust.py runs its numpy reference
    compiled_usable_pairs = compiled_median_scores = compiled_irls = None
    compiled_final_stats = compiled_start_samples = None


def warm_up() -> None:
    """Compile (or load from numba's cache) the fit kernels now, not on the first frame."""
    from depth_node.core.align import OutputKind
    from depth_node.core.robust import FitConfig
    z = np.linspace(2.0, 40.0, 64)
    for z_in in (z, z.astype(np.float32)):  # all float32 (the pipeline's) or all float64
        FitConfig(min_points=4).fit(1.0 / z_in, z_in, OutputKind.DISPARITY)
    FitConfig(min_points=4).fit(z, z, OutputKind.DEPTH, weights=np.ones(64))


__all__ = ['compiled_final_stats', 'compiled_irls', 'compiled_median_scores',
           'compiled_start_samples', 'compiled_usable_pairs', 'final_stats', 'fit_irls',
           'irls', 'median_scores', 'pairs_buffer', 'start_samples', 'usable_pairs',
           'warm_up']
