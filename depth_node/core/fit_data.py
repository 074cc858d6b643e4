"""The pairs of one robust fit and the arithmetic every step of it needs.

:class:`FitData` holds the usable (prediction, target) pairs of one fit of
:mod:`depth_node.core.robust` with the derived arrays (log target, the linear relative
residual's coefficients), the residuals of a candidate ``(s, t)`` and the closed-form 2x2
weighted least-squares solve that each IRLS / RANSAC step makes.
"""

from __future__ import annotations

import math
import threading
from typing import Optional

import numpy as np


def strided_subset(n: int, size: int) -> np.ndarray:
    """Evenly strided indices: deterministic and spread over the sweep."""
    return np.arange(n) if n <= size else (np.arange(size) * n) // size


class FitData:
    """Usable pairs of one fit and the derived arrays every step needs (all [n] float64)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, prior: Optional[np.ndarray]) -> None:
        self.x = x  # prediction
        self.y = y  # target: 1/z or z
        self.log_y = np.log(y)
        self.prior = prior  # None: all 1
        lo, hi = np.percentile(x[strided_subset(x.size, 4096)], [1.0, 99.0])
        self.x_range = (float(lo), float(hi))
        # The relative residual s·fx + t·fy - 1 = y_fit / y - 1 is linear in (s, t).
        self.fy = 1.0 / y
        self.fx = x * self.fy

    def moved(self, s0: float, t0: float, s1: float, t1: float) -> float:
        """Largest relative change of the fitted value between two maps over the data.

        ``y_fit`` is linear in ``x``, so the ratio of two maps is monotone in ``x`` wherever
        both are positive: its extremes over the central 98 % of ``x`` are at the ends.
        """
        out = 0.0
        for x in self.x_range:
            a, b = s0 * x + t0, s1 * x + t1
            if not (a > 0 and b > 0):
                return math.inf
            out = max(out, abs(math.log(b / a)))
        return out

    def subset(self, idx: np.ndarray) -> 'FitData':
        """The pairs at ``idx``."""
        return FitData(self.x[idx], self.y[idx], None if self.prior is None else self.prior[idx])

    def residuals(self, s: float, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Relative ``r = y_fit / y - 1`` and log ``rho = log1p(r)`` residuals, [n] each.

        ``rho`` is +inf where ``y_fit <= 0`` (no valid depth there: a gross outlier).
        """
        r = s * self.fx + t * self.fy
        r -= 1.0
        with np.errstate(divide='ignore', invalid='ignore'):
            rho = np.log1p(r)
        rho[~(r > -1.0)] = np.inf
        return r, rho

    def log_residual(self, s: float, t: float) -> np.ndarray:
        """``log(y_fit / y)`` [n]; +inf where ``y_fit <= 0``."""
        return self.residuals(s, t)[1]

    def solve(self, w: np.ndarray) -> tuple[float, float]:
        """Weighted least squares of ``s·fx + t·fy ≈ 1`` (2x2 normal equations)."""
        if self.prior is not None:
            w = w * self.prior
        wx = w * self.fx
        wy = w * self.fy
        # einsum, not np.dot: a BLAS dot may wake BLAS threads, whose start-up costs more
        # than the sum itself at this size and jitters under load.
        a = float(np.einsum('i,i->', wx, self.fx))
        b = float(np.einsum('i,i->', wx, self.fy))
        c = float(np.einsum('i,i->', wy, self.fy))
        e = float(wx.sum())
        f = float(wy.sum())
        det = a * c - b * b
        if not det > 1e-12 * a * c:
            return float('nan'), float('nan')
        return (c * e - b * f) / det, (a * f - b * e) / det


class _Seeded(threading.local):
    """Per thread: a generator for each seed and its state when freshly seeded, so that a
    fit need not seed one again (``np.random.default_rng`` hashes the seed every time)."""

    def __init__(self) -> None:
        self.generators: dict[int, tuple[np.random.Generator, dict]] = {}

    def fresh(self, seed: int) -> np.random.Generator:
        """The generator of ``seed`` in the state ``np.random.default_rng(seed)`` starts in."""
        entry = self.generators.get(seed)
        if entry is None:
            if len(self.generators) > 16:  # a few seeds are in use; never grow without bound
                self.generators.clear()
            rng = np.random.default_rng(seed)
            entry = self.generators[seed] = (rng, rng.bit_generator.state)
        rng, state = entry
        rng.bit_generator.state = state
        return rng


_SEEDED = _Seeded()


def draw_pairs(n: int, prior: Optional[np.ndarray], seed: int,
               hypotheses: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``hypotheses`` index pairs ``(i, j)`` [K] int64 into ``n`` points of the robust
    fit's start, seeded by ``seed``: uniform, or drawn in proportion to ``prior`` [n]."""
    rng = _SEEDED.fresh(seed)
    if prior is None:
        i, j = rng.integers(0, n, (2, hypotheses))
    else:  # points with larger prior weights are drawn proportionally more often
        p = prior / prior.sum()
        i, j = rng.choice(n, (2, hypotheses), p=p)
    return i, j


def start_hypotheses(x: np.ndarray, y: np.ndarray, prior: Optional[np.ndarray], seed: int,
                     hypotheses: int, score_points: int, inverse: bool = False
                     ) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Seeded 2-point samples of the robust fit's start: ``(s [K], t [K])`` of positive scale
    (from ``hypotheses`` drawn, prior-weighted when ``prior`` is given) and the strided subset
    of ``score_points`` they are scored on; None when no sample has a positive scale.

    ``y`` [n] is the target, or with ``inverse`` its inverse ``1 / y`` (read at the drawn pairs
    only).
    """
    n = x.size
    i, j = draw_pairs(n, prior, seed, hypotheses)
    dx = x[i] - x[j]
    yi, yj = (1.0 / y[i], 1.0 / y[j]) if inverse else (y[i], y[j])
    with np.errstate(divide='ignore', invalid='ignore'):  # dx = 0: dropped below
        s = (yi - yj) / dx  # [K]
        t = yi - s * x[i]
    # Pairs too close in prediction give a noise-dominated slope; drop them, and s <= 0.
    sub = strided_subset(n, score_points)
    lo, hi = np.percentile(x[sub], [10.0, 90.0])
    ok = np.isfinite(s) & (s > 0) & (np.abs(dx) > 0.05 * max(hi - lo, 1e-12))
    if not ok.any():
        return None
    return s[ok], t[ok], sub
