"""Depth accuracy metrics, computed as the Marigold evaluation computes them.

Each metric is computed per image over its valid pixels (ground truth in ``(min_depth,
max_depth]`` and a finite positive prediction), then averaged over images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Optional

import numpy as np

from depth_node.core.errors import DepthNodeError

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
