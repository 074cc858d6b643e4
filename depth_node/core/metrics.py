"""Depth accuracy metrics, computed as the Marigold evaluation computes them.

Each metric is computed per image over its valid pixels (ground truth in ``(min_depth,
max_depth]`` and a finite positive prediction), then averaged over images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Optional

import math

import numpy as np

from depth_node.core.align import apply_affine, fit_affine, OutputKind
from depth_node.core.errors import DepthNodeError
from depth_node.core.robust import fit_affine_robust

METRIC_NAMES = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'delta1', 'delta2', 'delta3')


@dataclass(frozen=True)
class DepthMetrics:
    """Errors of metric depth against ground truth (metres; deltas are fractions in [0, 1])."""

    abs_rel: float
    sq_rel: float
    rmse: float
    rmse_log: float
    delta1: float
    delta2: float
    delta3: float
    valid: int  # pixels evaluated (summed over images when averaged)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def depth_metrics(pred: np.ndarray, gt: np.ndarray, min_depth: float = 1e-3,
                  max_depth: float = 80.0, mask: Optional[np.ndarray] = None) -> DepthMetrics:
    """Metrics of one image: ``pred`` and ``gt`` [H, W] (or [N]) metres.

    A prediction that is NaN or not positive where ground truth is valid counts as a miss
    for no metric: such pixels are excluded, and ``valid`` tells how many remained.
    """
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if p.shape != g.shape:
        raise DepthNodeError(f'pred shape {p.shape} differs from gt shape {g.shape}')
    valid = np.isfinite(g) & (g > min_depth) & (g <= max_depth) & np.isfinite(p) & (p > 0)
    if mask is not None:
        valid &= mask
    n = int(valid.sum())
    if n == 0:
        nan = float('nan')
        return DepthMetrics(nan, nan, nan, nan, nan, nan, nan, 0)
    p, g = p[valid], g[valid]
    diff = p - g
    ratio = np.maximum(p / g, g / p)
    return DepthMetrics(
        abs_rel=float(np.mean(np.abs(diff) / g)),
        sq_rel=float(np.mean(diff * diff / g)),
        rmse=float(np.sqrt(np.mean(diff * diff))),
        rmse_log=float(np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2))),
        delta1=float(np.mean(ratio < 1.25)),
        delta2=float(np.mean(ratio < 1.25 ** 2)),
        delta3=float(np.mean(ratio < 1.25 ** 3)),
        valid=n,
    )


def mean_metrics(per_image: Iterable[DepthMetrics]) -> DepthMetrics:
    """Average of per-image metrics over images that had valid pixels."""
    items = [m for m in per_image if m.valid > 0]
    if not items:
        nan = float('nan')
        return DepthMetrics(nan, nan, nan, nan, nan, nan, nan, 0)
    vals = {k: float(np.mean([getattr(m, k) for m in items])) for k in METRIC_NAMES}
    return DepthMetrics(**vals, valid=sum(m.valid for m in items))


def dense_oracle_fit(prediction: np.ndarray, depth: np.ndarray, space: OutputKind,
                     max_depth: float, stride: int = 2) -> np.ndarray:
    """Metric depth of the best global affine map fitted on all pixels with exact depth.

    "Best" is the lower AbsRel of a dense least-squares and a dense robust (log-depth) fit,
    both on every ``stride``-th pixel with ground truth in ``(0, max_depth]``.
    """
    valid = np.isfinite(depth) & (depth > 0) & (depth <= max_depth)
    sub = np.zeros_like(valid)
    sub[::stride, ::stride] = valid[::stride, ::stride]
    x, z = prediction[sub], depth[sub]
    best, best_err = None, math.inf
    for fit in (fit_affine(x, z, space), fit_affine_robust(x, z, space, min_points=2)):
        if not fit.ok:
            continue
        out = apply_affine(prediction, fit.scale, fit.shift, space, max_depth)
        err = depth_metrics(out, depth, max_depth=max_depth).abs_rel
        if err < best_err:
            best, best_err = out, err
    if best is None:
        return np.full(depth.shape, np.nan, np.float32)
    return best
