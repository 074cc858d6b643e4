"""Affine alignment of relative depth predictions to sparse metric depth.

A relative model predicts either affine-invariant **disparity** (inverse depth, e.g. Depth
Anything V2) or affine-invariant **depth** (e.g. Marigold). The fit happens in the space the
model predicts, so that the affine model is the right one:

* disparity: ``1/z ≈ s·d + t``, metric ``z = 1/(s·d + t)``, invalid where ``s·d + t <= 0``;
* depth: ``z ≈ s·m + t``, invalid where ``s·m + t <= 0``.

Metric outputs are passed through unchanged (``s = 1, t = 0``) in their own space.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

import numpy as np

from depth_node.core.errors import DepthNodeError

try:  # numba is a dependency; without it (a broken install) the numpy reference runs
    from numba import njit
except ImportError:  # pragma: no cover - exercised only on a broken install
    njit = None


class OutputKind(str, enum.Enum):
    """What a depth estimator's numbers mean."""

    DISPARITY = 'disparity'
    DEPTH = 'depth'


@dataclass(frozen=True)
class OutputSpec:
    """Declared semantics of an estimator's output: kind and whether it is metric."""

    kind: OutputKind
    metric: bool = False

    @classmethod
    def parse(cls, kind: str, metric: bool = False) -> 'OutputSpec':
        try:
            return cls(OutputKind(kind), bool(metric))
        except ValueError:
            raise DepthNodeError(
                f"output kind must be 'disparity' or 'depth', got {kind!r}") from None


@dataclass(frozen=True)
class AffineFit:
    """Result of a scale/shift fit.

    ``scale`` and ``shift`` act in the fit ``space`` (1/m for disparity, m for depth).
    ``residual`` is the RMS of the fit residual in that space; ``abs_rel`` the mean of
    ``|z_fit - z| / z`` over the points used, in metres (comparable across spaces).
    ``ok`` is False when the fit was refused; ``reason`` then says why. ``inliers`` is the
    number of points a robust fit kept (-1: every usable point was used).
    """

    scale: float
    shift: float
    space: OutputKind
    points: int
    residual: float
    abs_rel: float
    ok: bool = True
    reason: str = ''
    inliers: int = -1

    @classmethod
    def refused(cls, space: OutputKind, points: int, reason: str) -> 'AffineFit':
        return cls(float('nan'), float('nan'), space, points, float('nan'), float('nan'),
                   False, reason)


def _to_target(z: np.ndarray, space: OutputKind) -> np.ndarray:
    return 1.0 / z if space is OutputKind.DISPARITY else z


def fit_affine(prediction: np.ndarray, z: np.ndarray, space: OutputKind,
               weights: Optional[np.ndarray] = None, min_points: int = 10) -> AffineFit:
    """Least-squares ``scale, shift`` mapping ``prediction`` [N] onto metric depth ``z`` [N].

    Pairs with a non-finite value or ``z <= 0`` are ignored. The fit is refused (``ok=False``)
    with fewer than ``min_points`` usable pairs, when the prediction is constant over them
    (scale is then undetermined), or when the fitted scale is not positive (the prediction is
    anti-correlated with the measurement: a broken model or a wrong extrinsic).
    """
    pred = np.asarray(prediction, dtype=np.float64).reshape(-1)
    zz = np.asarray(z, dtype=np.float64).reshape(-1)
    if pred.shape != zz.shape:
        raise DepthNodeError(f'prediction and z must have the same length, got {pred.size} '
                             f'and {zz.size}')
    w = None if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w is not None and w.shape != zz.shape:
        raise DepthNodeError(f'weights must have the length of z ({zz.size}), got {w.size}')
    good = np.isfinite(pred) & np.isfinite(zz) & (zz > 0)
    if w is not None:
        good &= np.isfinite(w) & (w > 0)
    n = int(good.sum())
    if n < max(min_points, 2):
        return AffineFit.refused(space, n, f'too few points ({n} < {max(min_points, 2)})')
    x = pred[good]
    y = _to_target(zz[good], space)
    ww = np.ones_like(x) if w is None else w[good]
    sw = ww.sum()
    mx = (ww * x).sum() / sw
    my = (ww * y).sum() / sw
    dx = x - mx
    var = (ww * dx * dx).sum() / sw
    # Relative test: a prediction whose spread is at rounding level carries no scale.
    if not var > (1e-12 * max(mx * mx, 1e-30)) or var == 0.0:
        return AffineFit.refused(space, n, 'prediction is constant over the LiDAR points')
    scale = (ww * dx * (y - my)).sum() / sw / var
    shift = my - scale * mx
    if not scale > 0:
        return AffineFit.refused(space, n, f'non-positive scale {scale:.4g}')
    res = scale * x + shift - y
    rms = float(np.sqrt((ww * res * res).sum() / sw))
    z_fit = _from_fit(scale * x + shift, space)
    with np.errstate(invalid='ignore'):
        rel = np.abs(z_fit - zz[good]) / zz[good]
    abs_rel = float(np.nanmean(np.where(np.isfinite(rel), rel, np.nan))) \
        if np.isfinite(rel).any() else float('inf')
    return AffineFit(float(scale), float(shift), space, n, rms, abs_rel)


def _from_fit(values: np.ndarray, space: OutputKind) -> np.ndarray:
    if space is OutputKind.DISPARITY:
        with np.errstate(divide='ignore', invalid='ignore'):
            return np.where(values > 0, 1.0 / values, np.nan)
    return np.where(values > 0, values, np.nan)


def apply_affine_reference(prediction: np.ndarray, scale: float, shift: float,
                           space: OutputKind, max_depth: float = float('inf')) -> np.ndarray:
    """:func:`apply_affine` in numpy (four passes): the reference of the compiled kernel."""
    mapped = np.asarray(prediction, dtype=np.float32) * np.float32(scale) + np.float32(shift)
    with np.errstate(divide='ignore', invalid='ignore'):
        if space is OutputKind.DISPARITY:
            depth = np.float32(1.0) / mapped
        else:
            depth = mapped
    # Comparisons with NaN are False, so non-finite inputs end up invalid as well.
    valid = (mapped > 0) & (depth <= max_depth)
    return np.where(valid, depth, np.float32(np.nan)).astype(np.float32, copy=False)


def _affine_kernel(pred: np.ndarray, scale: np.float32, shift: np.float32, inverse: bool,
                   max_depth: float, out: np.ndarray) -> None:
    """One pass: ``s·p + t``, its inverse for disparity, NaN where invalid (flat arrays)."""
    one = np.float32(1.0)
    nan = np.float32(np.nan)
    for i in range(pred.size):
        m = pred[i] * scale + shift
        if m > 0:  # False for NaN
            z = one / m if inverse else m
            out[i] = z if z <= max_depth else nan
        else:
            out[i] = nan


_compiled_affine = njit(cache=True, nogil=True)(_affine_kernel) if njit is not None else None


def apply_affine(prediction: np.ndarray, scale: float, shift: float, space: OutputKind,
                 max_depth: float = float('inf'), out: Optional[np.ndarray] = None) -> np.ndarray:
    """Metric depth [H, W] float32 (metres, NaN = invalid) from a relative prediction [H, W].

    Invalid where the mapped value is not positive, not finite, or the depth exceeds
    ``max_depth``. One compiled pass (numba) over the pixels, the same numbers as
    :func:`apply_affine_reference`; ``out`` (float32, C-contiguous, the prediction's shape) is
    written and returned when given, else a new array.
    """
    pred = np.ascontiguousarray(prediction, dtype=np.float32)
    if _compiled_affine is None:  # pragma: no cover - numba missing
        depth = apply_affine_reference(pred, scale, shift, space, max_depth)
        if out is None:
            return depth
        np.copyto(out, depth)
        return out
    if out is None:
        out = np.empty(pred.shape, np.float32)
    elif out.shape != pred.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise DepthNodeError(f'out of shape {out.shape} and dtype {out.dtype} is not a '
                             f'C-contiguous float32 array of shape {pred.shape}')
    _compiled_affine(pred.reshape(-1), np.float32(scale), np.float32(shift),
                     space is OutputKind.DISPARITY, float(max_depth), out.reshape(-1))
    return out
