"""Sigma checked against the frame's own LiDAR: a held-out scale for the supported pixels.

The uncertainty model (:mod:`depth_node.core.uncertainty`) is calibrated on synthetic drives. A
rig or a scene unlike them (a denser LiDAR, a network that matches this street better or worse)
makes its sigma too wide or too narrow where it matters most, next to the LiDAR. Each frame's
sweep can say which: the kept returns are split into two interleaved halves by a hash of their
2-pixel cell; the fusion of half A (with the frame's own beam-check verdict, taken on all its
returns: :func:`~depth_node.core.fusion.with_verdict`) predicts depth and sigma at half B's
pixels, as it would at any pixel between returns; and the frame's **raw scale** is the 95th
percentile of ``|log(z_B / z_A)| / (sigma_A / z_A)`` over B, halved: 1.0 when the model's 2
sigma holds 95 % of B's returns.

Held-out returns sit closer to support than the average supported pixel, so the raw scale is
compared with the same figure on the calibration drives, ``heldout_reference`` of the model
(:mod:`depth_node.training.calibrate_uncertainty` measures it): their ratio, clipped to
:data:`SCALE_RANGE` and held until the next check (:class:`SelfCheck`), multiplies sigma in
proportion to the LiDAR support of a pixel (the model's ``unsupported`` gate blends it out).
Where no return is near, nothing can check the network, and sigma stays as calibrated.

A check costs one more fusion of half the returns, so it runs once per
``uncertainty.self_check_period`` seconds of image stamps (1 s; 0 = off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from depth_node.core.fusion import fuse, FusionConfig, with_verdict
from depth_node.core.lidar import SparseDepth
from depth_node.core.uncertainty import features, UncertaintyModel

#: Share of held-out returns the model's 2 sigma should hold.
QUANTILE = 0.95
#: Fewest held-out returns for a check (fewer: no check this frame).
MIN_RETURNS = 200
#: Most held-out returns used (an even subsample beyond: the quantile needs no more).
MAX_RETURNS = 4000
#: The relative scale is clipped to this range.
SCALE_RANGE = (0.5, 2.0)


def split_halves(lidar: SparseDepth) -> np.ndarray:
    """[M] bool: True for half A. Interleaved by a hash of each return's 2-pixel cell, so each
    half has returns all over the image and every B return has A neighbours."""
    key = (lidar.u.astype(np.int64) // 2) * 7919 + (lidar.v.astype(np.int64) // 2) * 104729
    return key % 2 == 0


def heldout_samples(global_depth: np.ndarray, lidar: SparseDepth, fit_residual: float,
                    config: FusionConfig = FusionConfig(),
                    max_returns: int = MAX_RETURNS) -> tuple[np.ndarray, np.ndarray]:
    """Features and log errors of half B's returns under the fusion of half A.

    Returns ``phi`` [n, F] (the model's features at the returns' cells, of the fusion of A)
    and ``err`` [n] = ``log(z_B / z_A)``; both empty when no B return has a prediction.
    The calibration stores these, so the raw scale of any weights follows
    (:func:`raw_scale_of`).
    """
    a = split_halves(lidar)
    # Half A is fused with the frame's own beam-check verdict (all its returns), not one of
    # its own: the check must test the fusion the frame publishes.
    fusion = fuse(global_depth, lidar.subset(a), with_verdict(global_depth, lidar, config))
    b = np.flatnonzero(~a)
    if b.size > max_returns:
        b = b[np.linspace(0, b.size - 1, max_returns).astype(np.int64)]
    u, v, z = lidar.u[b], lidar.v[b], lidar.z[b]
    pred = fusion.depth[v, u]
    ok = np.isfinite(pred) & (pred > 0) & np.isfinite(z) & (z > 0)
    if not ok.any():
        return np.zeros((0, 0)), np.zeros(0)
    phi = features(fusion, fit_residual)  # [F, gh, gw]
    cells = phi[:, v[ok] // fusion.cell, u[ok] // fusion.cell].T
    return cells, np.log(z[ok] / pred[ok]).astype(np.float64)


def raw_scale_of(phi: np.ndarray, err: np.ndarray, weights: np.ndarray,
                 min_relative: float = 0.002, threshold: float = math.inf) -> float:
    """The raw scale of held-out samples under ``weights`` (NaN: too few samples).

    Only samples whose sigma / z is within ``threshold`` count (the pixels that would be
    published).
    """
    if err.size == 0:
        return float('nan')
    rel = np.maximum(np.exp(phi @ np.asarray(weights, np.float64)), min_relative)
    keep = rel <= threshold
    if int(keep.sum()) < MIN_RETURNS:
        return float('nan')
    return float(np.quantile(np.abs(err[keep]) / rel[keep], QUANTILE) / 2.0)


def raw_scale(global_depth: np.ndarray, lidar: SparseDepth, fit_residual: float,
              model: UncertaintyModel, config: FusionConfig = FusionConfig(),
              threshold: float = math.inf) -> float:
    """This frame's raw scale (NaN: too few returns for a check)."""
    if lidar.count < 2 * MIN_RETURNS:
        return float('nan')
    phi, err = heldout_samples(global_depth, lidar, fit_residual, config)
    return raw_scale_of(phi, err, np.asarray(model.fused), model.min_relative, threshold)


@dataclass
class SelfCheck:
    """The relative scale over a stream of frames (one per pipeline), checked once a period.

    A check runs on the first frame with a sweep in each ``period``-second slot of the image
    stamps (slots start at multiples of the period), and its scale holds until the next check;
    a check that cannot run (too few returns) restores the calibrated sigma (1.0). The state
    thus comes from the current slot's frames alone: a replay that starts a period or more
    before a frame gives that frame the same scale (chunked evaluation,
    :mod:`depth_node.offline.chunks`).
    """

    period: float = 1.0  # s between checks (0: off)
    scale: float = 1.0  # current relative scale (1: the calibration holds)
    last_raw: float = float('nan')  # raw scale of the last check
    checks: int = 0
    _slot: Optional[int] = field(default=None, repr=False)  # slot of the last check

    def due(self, stamp: float) -> bool:
        """Whether the frame stamped ``stamp`` (one with a sweep) should run a check."""
        if not (self.period > 0 and math.isfinite(stamp)):
            return False
        slot = math.floor(stamp / self.period)
        if slot == self._slot:
            return False
        self._slot = slot
        return True

    def update(self, raw: float, reference: float) -> float:
        """Take one check's raw scale; returns the relative scale now applied."""
        self.last_raw = raw
        self.checks += 1
        if not (math.isfinite(raw) and raw > 0 and math.isfinite(reference) and reference > 0):
            self.scale = 1.0
            return self.scale
        lo, hi = SCALE_RANGE
        self.scale = min(max(raw / reference, lo), hi)
        return self.scale

    def reset(self) -> None:
        """Forget the checks (a new drive, a time jump)."""
        self.scale, self.last_raw, self.checks, self._slot = 1.0, float('nan'), 0, None


__all__ = ['heldout_samples', 'MIN_RETURNS', 'QUANTILE', 'raw_scale', 'raw_scale_of',
           'SCALE_RANGE', 'SelfCheck', 'split_halves']
