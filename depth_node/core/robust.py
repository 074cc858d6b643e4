"""Robust alignment of a relative prediction to LiDAR: the robust scale/shift fit.

Two steps guard the scale/shift fit of :mod:`depth_node.core.align` against bad LiDAR pixels:

1. :func:`depth_node.core.see_through.reject_see_through` drops returns that see past the
   edges of foreground objects (see that module).
2. :func:`fit_affine_robust` fits ``scale, shift`` by iteratively reweighted least squares
   (Tukey or Huber weights, MAD scale) from a deterministic least-median start, or by RANSAC.
   It rejects what step 1 misses (see-through behind thin objects, LiDAR noise, model errors).

Residuals are **log-depth** errors: ``rho = log(y_fit / y)`` where ``y`` is the fit target
(``1/z`` in disparity space, ``z`` in depth space), i.e. ``rho = log(z / z_fit)`` for disparity
and ``log(z_fit / z)`` for depth; ``|rho|`` is the relative depth error to first order. A point
60 m away counts as much as one 3 m away, and the thresholds (``max_residual``, the RANSAC
threshold, the robust sigma) are fractions of depth in either space. A plain residual in
disparity would let near points dominate (their disparity is large) and make far see-through
returns nearly invisible; a plain residual in depth would do the opposite. The log is symmetric:
the relative residual ``y_fit / y - 1`` is bounded below by -1 but not above, so a monotone loss
(Huber) on it is pulled towards shrinking the whole map when many returns lie far behind their
pixel. Each IRLS step stays a closed-form 2x2 weighted least-squares solve of the linear relative
residual ``s * (x / y) + t / y - 1`` with weights chosen so that its fixed point is the
M-estimate of the log residual (see ``_log_weights``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from depth_node.core.align import AffineFit, OutputKind
from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.core import robust_kernels as kernels
from depth_node.core.fit_data import (draw_pairs, FitData, start_hypotheses,
                                      strided_subset)
# Re-exported: callers that imported it from here before the split keep working.

# Default tuning constants, in robust standard deviations: 95 % Gaussian efficiency each.
_TUNING = {'tukey': 4.685, 'huber': 1.345}
# The scale's constants are the kernels' (their comments say what each is).
_MAD_TO_SIGMA, _MIN_SIGMA, _SCALE_CUT = kernels.MAD_TO_SIGMA, kernels.MIN_SIGMA, kernels.SCALE_CUT
_COARSE_TOL, _SCALE_POINTS = kernels.COARSE_TOL, kernels.SCALE_POINTS


@dataclass(frozen=True)
class FitConfig:
    """Options of :func:`fit_affine_robust`; validated on construction (:class:`ConfigError`).

    Residuals, ``max_residual`` and ``ransac_threshold`` are log-depth errors (``0.05``: about
    5 % of depth), in either fit space.
    """

    method: str = 'irls'  # 'irls' (robust M-estimate) or 'ransac'
    loss: str = 'tukey'  # IRLS weight function: 'tukey' (redescending) or 'huber'
    tuning: Optional[float] = None  # loss constant in robust sigmas; None: 4.685 / 1.345
    min_points: int = 20  # fewer usable pairs: refused
    max_residual: float = 0.25  # robust residual sigma (log depth) above this: refused
    min_inlier_fraction: float = 0.3  # fewer inliers than this fraction: refused
    inlier_sigmas: float = 3.0  # inlier: |rho| <= inlier_sigmas * sigma
    max_iter: int = 30  # IRLS iterations (or RANSAC refinement rounds)
    tol: float = 1e-4  # stop when no inlier's fitted depth moves more than this (relative)
    hypotheses: int = 64  # 2-point samples of the least-median start / RANSAC
    score_points: int = 256  # points each sample is scored on (strided subset)
    ransac_threshold: float = 0.05  # RANSAC inlier: |rho| <= this (log depth)
    seed: int = 0  # sampling is deterministic for a given input and seed
    coarse_points: int = 4096  # IRLS first converges on this many points (strided subset)
    max_points: int = 8192  # the final IRLS rounds use at most this many (strided); the
    # inlier count and abs_rel cover every point. 8k points pin scale and shift far below the
    # frame-to-frame noise; more only costs time.

    def __post_init__(self) -> None:
        if self.method not in ('irls', 'ransac'):
            raise ConfigError('fit.method', "must be 'irls' or 'ransac'", self.method)
        if self.loss not in _TUNING:
            raise ConfigError('fit.loss', "must be 'tukey' or 'huber'", self.loss)
        if self.tuning is not None and not (math.isfinite(self.tuning) and self.tuning > 0):
            raise ConfigError('fit.tuning', 'must be a positive number or None', self.tuning)
        if not isinstance(self.min_points, int) or self.min_points < 2:
            raise ConfigError('fit.min_points', 'must be an integer >= 2', self.min_points)
        if not self.max_residual > 0:
            raise ConfigError('fit.max_residual', 'must be > 0', self.max_residual)
        if not 0 <= self.min_inlier_fraction <= 1:
            raise ConfigError('fit.min_inlier_fraction', 'must be in [0, 1]',
                              self.min_inlier_fraction)
        if not self.inlier_sigmas > 0:
            raise ConfigError('fit.inlier_sigmas', 'must be > 0', self.inlier_sigmas)
        if not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ConfigError('fit.max_iter', 'must be an integer >= 1', self.max_iter)
        if not self.tol > 0:
            raise ConfigError('fit.tol', 'must be > 0', self.tol)
        if not isinstance(self.hypotheses, int) or self.hypotheses < 1:
            raise ConfigError('fit.hypotheses', 'must be an integer >= 1', self.hypotheses)
        if not isinstance(self.coarse_points, int) or self.coarse_points < 10:
            raise ConfigError('fit.coarse_points', 'must be an integer >= 10',
                              self.coarse_points)
        if not isinstance(self.max_points, int) or self.max_points < self.coarse_points:
            raise ConfigError('fit.max_points', 'must be an integer >= coarse_points',
                              self.max_points)
        if not isinstance(self.score_points, int) or self.score_points < 10:
            raise ConfigError('fit.score_points', 'must be an integer >= 10', self.score_points)
        if not self.ransac_threshold > 0:
            raise ConfigError('fit.ransac_threshold', 'must be > 0', self.ransac_threshold)

    @property
    def tuning_constant(self) -> float:
        """The loss constant in robust sigmas (the default of ``loss`` when unset)."""
        return _TUNING[self.loss] if self.tuning is None else float(self.tuning)

    def fit(self, prediction: np.ndarray, z: np.ndarray, space: OutputKind,
            weights: Optional[np.ndarray] = None) -> AffineFit:
        """:func:`fit_affine_robust` with these options."""
        return _fit(prediction, z, space, weights, self, compiled=True)

    def fit_reference(self, prediction: np.ndarray, z: np.ndarray, space: OutputKind,
                      weights: Optional[np.ndarray] = None) -> AffineFit:
        """:meth:`fit` as numpy array operations: the reference of the compiled inner loops."""
        return _fit(prediction, z, space, weights, self, compiled=False)


def fit_affine_robust(prediction: np.ndarray, z: np.ndarray, space: OutputKind,
                      method: str = 'irls', loss: str = 'tukey', min_points: int = 20,
                      max_residual: float = 0.25, max_iter: int = 30,
                      weights: Optional[np.ndarray] = None, **options: object) -> AffineFit:
    """Robust ``scale, shift`` mapping ``prediction`` [N] onto metric depth ``z`` [N] (m).

    The model is that of :func:`depth_node.core.align.fit_affine`: ``1/z ≈ s·d + t`` in
    disparity space, ``z ≈ s·m + t`` in depth space. Residuals are log-depth errors ``rho``
    (module docstring), so near and far points count alike.

    ``method='irls'``: start from the best of ``hypotheses`` seeded 2-point samples by least
    median of ``|rho|`` (breakdown point 50 %), then iterate weighted least squares with
    ``loss`` weights at ``tuning`` robust sigmas, sigma = 1.4826 x median ``|rho|`` (over the
    points within 4.685 first-estimate sigmas) re-estimated each round; with many points the
    iteration first converges on an evenly strided subset of ``coarse_points``.
    ``method='ransac'``: the sample with the most points within ``ransac_threshold``, refined
    by least squares of the log residual on its inliers.

    Parameters
    ----------
    prediction : numpy.ndarray
        [N] relative prediction at the LiDAR pixels (unitless).
    z : numpy.ndarray
        [N] LiDAR depth in metres. Pairs with a non-finite value or ``z <= 0`` are ignored.
    space : OutputKind
        What the prediction is: disparity or depth.
    method, loss, min_points, max_residual, max_iter
        See :class:`FitConfig`.
    weights : numpy.ndarray, optional
        [N] non-negative prior weights (e.g. LiDAR confidence); pairs with weight 0 are ignored.
    **options
        Any other :class:`FitConfig` field (``tuning``, ``seed``, ``ransac_threshold``, ...).

    Returns
    -------
    AffineFit
        ``residual`` is the robust sigma of the log-depth residual (dimensionless, 0.03: about
        3 % of depth; unlike :func:`~depth_node.core.align.fit_affine`, whose residual is in
        the units of the space), ``inliers`` the number of pairs with
        ``|rho| <= inlier_sigmas * sigma`` (RANSAC: within the threshold), ``abs_rel`` the
        mean ``|z_fit - z| / z`` over the inliers, ``points`` the number of usable pairs.
        Refused (``ok=False``, ``reason`` says why) with fewer than ``min_points`` usable
        pairs, a constant prediction, a non-positive scale, a residual sigma above
        ``max_residual`` or fewer inliers than ``min_inlier_fraction`` of the pairs.

    Raises
    ------
    ConfigError
        An option is invalid.
    DepthNodeError
        ``prediction``, ``z`` and ``weights`` differ in length.
    """
    cfg = FitConfig(method=method, loss=loss, min_points=min_points, max_residual=max_residual,
                    max_iter=max_iter, **options)  # type: ignore[arg-type]
    return _fit(prediction, z, space, weights, cfg, compiled=True)


def _fit(prediction: np.ndarray, z: np.ndarray, space: OutputKind,
         weights: Optional[np.ndarray], cfg: FitConfig, compiled: bool) -> AffineFit:
    space = OutputKind(space)
    if compiled and cfg.method == 'irls' and kernels.compiled_irls is not None:
        return _fit_compiled(prediction, z, space, weights, cfg)
    pred = np.asarray(prediction, dtype=np.float64).reshape(-1)
    zz = np.asarray(z, dtype=np.float64).reshape(-1)
    _check_lengths(pred, zz, weights)
    good = np.isfinite(pred) & np.isfinite(zz) & (zz > 0)
    w0 = None
    if weights is not None:
        w0 = np.asarray(weights, dtype=np.float64).reshape(-1)
        good &= np.isfinite(w0) & (w0 > 0)
    n = int(good.sum())
    if n < cfg.min_points:
        return AffineFit.refused(space, n, f'too few points ({n} < {cfg.min_points})')
    x = pred[good]
    zg = zz[good]
    # Relative spread test, as in fit_affine: a prediction flat to rounding carries no scale.
    if not float(np.std(x)) > 1e-6 * max(float(np.abs(x).mean()), 1e-30):
        return AffineFit.refused(space, n, 'prediction is constant over the LiDAR points')
    y = 1.0 / zg if space is OutputKind.DISPARITY else zg
    prior = None if w0 is None else w0[good] / w0[good].max()
    data = FitData(x, y, prior)

    start = _sample_start(data, cfg)
    if start is None:
        return AffineFit.refused(space, n, 'non-positive scale (no sample of positive scale)')
    if cfg.method == 'ransac':
        s, t, inl = _ransac_refine(start[0], start[1], data, cfg)
        sigma = _robust_sigma(data.log_residual(s, t)[inl]) if inl.any() else float('inf')
    else:
        s, t = start
        if n > 2 * cfg.coarse_points:
            # Converge on an evenly strided subset first; the full set then needs a round or
            # two from there instead of five or more.
            coarse = data.subset(strided_subset(n, cfg.coarse_points))
            s, t = _irls(s, t, coarse, cfg, _COARSE_TOL)
        final = data if n <= cfg.max_points else data.subset(strided_subset(n, cfg.max_points))
        s, t = _irls(s, t, final, cfg, cfg.tol)
        rho = data.log_residual(s, t)
        sigma = _robust_sigma(rho[strided_subset(n, _SCALE_POINTS)])
        inl = np.abs(rho) <= cfg.inlier_sigmas * sigma
    k = int(inl.sum())
    abs_rel = math.nan
    if k:
        mapped = s * x[inl] + t  # > 0 for inliers (finite log residual)
        z_fit = 1.0 / mapped if space is OutputKind.DISPARITY else mapped
        abs_rel = float(np.mean(np.abs(z_fit - zg[inl]) / zg[inl]))
    return _verdict(s, t, sigma, k, abs_rel, space, n, cfg)


def _check_lengths(pred: np.ndarray, z: np.ndarray, weights: Optional[np.ndarray]) -> None:
    if pred.shape != z.shape:
        raise DepthNodeError(f'prediction and z must have the same length, got {pred.size} '
                             f'and {z.size}')
    if weights is not None and np.size(weights) != z.size:
        raise DepthNodeError(f'weights must have the length of z ({z.size}), got '
                             f'{np.size(weights)}')


def _floats(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The arrays as the kernels are compiled for them at warm-up: all float32 (the pipeline's
    prediction and LiDAR depth) or all float64, native, contiguous, writable; copies only where
    needed. No compilation happens on a frame."""
    dtype = np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64
    return tuple(a if a.dtype == dtype and a.dtype.isnative and a.flags.c_contiguous
                 and a.flags.writeable else np.array(a, dtype=dtype) for a in arrays)


def _fit_compiled(prediction: np.ndarray, z: np.ndarray, space: OutputKind,
                  weights: Optional[np.ndarray], cfg: FitConfig) -> AffineFit:
    """The IRLS fit with its loops compiled (:mod:`depth_node.core.robust_kernels`)."""
    pred = np.asarray(prediction).reshape(-1)
    zz = np.asarray(z).reshape(-1)
    _check_lengths(pred, zz, weights)
    pred, zz = _floats(pred, zz)
    w = np.empty(0) if weights is None else _floats(np.asarray(weights).reshape(-1),
                                                    np.empty(0))[0]
    pairs = kernels.pairs_buffer(zz.size)
    disparity = space is OutputKind.DISPARITY
    n, std, mean_abs = kernels.compiled_usable_pairs(pred, zz, w, disparity, pairs)
    if n < cfg.min_points:
        return AffineFit.refused(space, n, f'too few points ({n} < {cfg.min_points})')
    if not std > 1e-6 * max(mean_abs, 1e-30):
        return AffineFit.refused(space, n, 'prediction is constant over the LiDAR points')
    has_prior = weights is not None
    # start_hypotheses' samples: the same draws, the rest in one compiled pass.
    i, j = draw_pairs(n, pairs[4, :n] if has_prior else None, cfg.seed, cfg.hypotheses)
    sub = strided_subset(n, cfg.score_points)
    s_k, t_k = np.empty(i.size), np.empty(i.size)
    kept = kernels.compiled_start_samples(pairs[0, :n], pairs[2, :n], i, j, sub, True, s_k,
                                          t_k)
    if not kept:
        return AffineFit.refused(space, n, 'non-positive scale (no sample of positive scale)')
    s_k, t_k = s_k[:kept], t_k[:kept]
    best = kernels.compiled_median_scores(s_k, t_k, pairs[0], pairs[2], sub,
                                          np.empty(sub.size))
    s, t, sigma, k, abs_rel = kernels.fit_irls(float(s_k[best]), float(t_k[best]), pairs, n,
                                               has_prior, cfg, disparity)
    return _verdict(s, t, sigma, k, abs_rel, space, n, cfg)


def _verdict(s: float, t: float, sigma: float, k: int, abs_rel: float, space: OutputKind,
             n: int, cfg: FitConfig) -> AffineFit:
    """The fit, or its refusal: scale, residual sigma and inlier count against the limits."""
    if not (np.isfinite(s) and s > 0):
        return AffineFit.refused(space, n, f'non-positive scale {s:.4g}')
    if not sigma <= cfg.max_residual:
        return AffineFit.refused(space, n, f'residual {sigma:.3g} above max_residual '
                                           f'{cfg.max_residual:.3g} (log-depth)')
    if k < max(cfg.min_inlier_fraction * n, 2):
        return AffineFit.refused(space, n, f'only {k} of {n} points are inliers '
                                           f'(min_inlier_fraction {cfg.min_inlier_fraction})')
    return AffineFit(float(s), float(t), space, n, float(sigma), abs_rel, inliers=k)


def _mad_sigma(a: np.ndarray) -> float:
    """1.4826 x median of ``a`` (absolute residuals); inf when empty."""
    if a.size == 0:
        return math.inf
    k = a.size // 2  # the upper median: np.partition is several times faster than np.median
    return max(_MAD_TO_SIGMA * float(np.partition(a, k)[k]), _MIN_SIGMA)


def _robust_sigma(rho: np.ndarray) -> float:
    """Standard deviation of the inlier residuals, robustly.

    1.4826 x median |rho| over all points is inflated by the outliers (with 20 % of them, by
    a third: the median moves up the inliers' distribution); it is recomputed once over the
    points within ``_SCALE_CUT`` of that first estimate, which a Gaussian inlier set barely
    notices (it loses 3e-6 of its mass) while gross outliers drop out.
    """
    a = np.abs(rho)
    first = _mad_sigma(a)
    return _mad_sigma(a[a <= _SCALE_CUT * first])


def _sample_start(data: FitData, cfg: FitConfig) -> Optional[tuple[float, float]]:
    """Best 2-point hypothesis ``(s, t)``: least median (IRLS) or most inliers (RANSAC)."""
    hypotheses = start_hypotheses(data.x, data.y, data.prior, cfg.seed, cfg.hypotheses,
                                  cfg.score_points)
    if hypotheses is None:
        return None
    s, t, sub = hypotheses
    x = data.x
    mapped = s[:, None] * x[sub][None, :] + t[:, None]  # [K, S]
    with np.errstate(divide='ignore', invalid='ignore'):
        rho = np.abs(np.log(mapped) - data.log_y[sub][None, :])
    rho[~(mapped > 0)] = np.inf
    if cfg.method == 'ransac':
        inside = rho <= cfg.ransac_threshold
        score = -(inside.sum(axis=1) if data.prior is None
                  else (inside * data.prior[sub][None, :]).sum(axis=1))
    else:
        half = sub.size // 2
        score = np.partition(rho, half, axis=1)[:, half]
    best = int(np.argmin(score))
    return float(s[best]), float(t[best])


def _log_weights(r: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """``rho / (r * (1 + r))`` [n]: 1 at 0, 0 where ``rho`` is not finite.

    Weighted least squares of the relative residual ``r`` with weights
    ``W = psi(rho) / rho * _log_weights(r, rho)`` has at its fixed point the stationarity
    condition of ``sum(loss(rho))``: per point ``W * r / y = psi(rho) / y_fit`` (because
    ``1 + r = y_fit / y``), the gradient of the loss of the log residual.
    """
    den = r * (1.0 + r)
    small = np.abs(r) < 1e-9
    with np.errstate(divide='ignore', invalid='ignore'):
        g = rho / np.where(small, 1.0, den)
    g[small] = 1.0
    g[~np.isfinite(rho)] = 0.0
    return g


def _irls(s: float, t: float, data: FitData, cfg: FitConfig,
          tol: float) -> tuple[float, float]:
    """Iteratively reweighted least squares of the log residual from ``(s, t)``."""
    c = cfg.tuning_constant
    sub = strided_subset(data.x.size, _SCALE_POINTS)
    r, rho = data.residuals(s, t)
    for _ in range(cfg.max_iter):
        sigma = _robust_sigma(rho[sub])
        u = np.abs(rho)
        u *= 1.0 / (c * sigma)
        if cfg.loss == 'tukey':  # psi(rho) / rho
            w = np.maximum(1.0 - u * u, 0.0)
            w *= w
        else:
            w = 1.0 / np.maximum(u, 1.0)
        w *= _log_weights(r, rho)
        s_new, t_new = data.solve(w)
        if not (np.isfinite(s_new) and np.isfinite(t_new)):
            break
        moved = data.moved(s, t, s_new, t_new)
        s, t = s_new, t_new
        if not moved > tol:
            break
        r, rho = data.residuals(s, t)
    return s, t


def _ransac_refine(s: float, t: float, data: FitData,
                   cfg: FitConfig) -> tuple[float, float, np.ndarray]:
    """Least squares of the log residual on the inliers of ``(s, t)``, until they settle."""
    inl = np.abs(data.log_residual(s, t)) <= cfg.ransac_threshold
    for _ in range(cfg.max_iter):
        if inl.sum() < 2:
            break
        r, rho = data.residuals(s, t)
        s_new, t_new = data.solve(np.where(inl, _log_weights(r, rho), 0.0))
        if not (np.isfinite(s_new) and np.isfinite(t_new)):
            break
        s, t = s_new, t_new
        new = np.abs(data.log_residual(s, t)) <= cfg.ransac_threshold
        if np.array_equal(new, inl):
            break
        inl = new
    return s, t, inl
