"""Per-pixel uncertainty of the published depth: a calibrated model of what the data supports.

The standard deviation of the depth error is modelled as a fraction of the depth,
``sigma = z * exp(w . phi)``, with features ``phi`` per grid cell of the fusion
(:class:`depth_node.core.fusion.Fusion`) and per frame:

* ``log_support``, ``log_support_coarse``: log density of LiDAR returns near the cell (on the
  same surface: the edge-aware filter's reach) at the fine and the coarse scale;
* ``unsupported``: ``1 / (1 + support / 0.05)``, near 1 where no return is near;
* ``log_spread``: log RMS of the nearby returns' log-ratios around the field (how well the
  network agrees with the LiDAR around the cell);
* ``log_depth``: log of the depth (error grows with range);
* ``log_fit_residual``: log robust sigma of the frame's global fit residual (how far the
  network's shape is from the LiDAR's in this frame) and its product with ``unsupported``
  (what that means where nothing checks the network), as ``log_depth`` is too;
* ``log_depth_step``, ``log_support_distance``: the largest log-depth step to a neighbouring
  cell (edges and their flying pixels) and the distance in cells to the nearest support;
* ``filled``: 1 where the fusion's beam fill gave the depth (the LiDAR's own interpolation
  between two beams, whose error is the LiDAR's, not the network's), else 0.

Besides ``exp(w . phi)``, sigma / z holds in quadrature the **carried correction**
``carried * unsupported * |rho|`` (:func:`carried_correction`), ``rho`` the fusion's log
correction of the global fit at the cell. Where no return is near, that correction was carried
in from returns elsewhere along the network's shape; where the network has merged two surfaces
(a low building in front of a tall one, a truck in front of a façade) it lands on the wrong one,
and the error is then the correction itself. With ``carried`` 0.5 the 2-sigma interval of such
a cell reaches the global fit: it claims no more than that one of the two is right. It is a
rule, not a fitted weight (the weights are fitted with it in place): on the held-out streets
most of the wrong (> 20 %) pixels that sigma missed at the defaults were such cells, the
global fit right and the fusion about half the true depth (``docs/benchmarks.md``). The term
is ~0 where returns are near, so the self-check, which looks at returns, leaves it out.

At full resolution, sigma / z also holds in quadrature the **edge term** of
:mod:`depth_node.core.edge_sigma` (``edge_weight`` times the largest log-depth step within
``edge_radius`` px, from ``edge_min_step`` up): the pixels next to the depth's silhouettes,
which may lie on the wrong side of the step. Another rule, not a fitted weight; the weights
are fitted with it in place.

A calibration file written before a feature existed still loads: its ``features`` list names
its weights, and a feature it does not name gets weight 0; one without ``carried_correction``
or ``edge_weight`` has none (0).

The weights are fitted by maximum likelihood (Laplace on the log-depth error) on synthetic
drives of held-out streets across light, weather, rig and lens
(:mod:`depth_node.training.calibrate_uncertainty`), then scaled so that 95 % of the
calibration pixels fall within 2 sigma. They ship as data (``depth_node/calibration/
uncertainty.json``); a user can point ``uncertainty.calibration`` at their own file.

:func:`features` is the definition (numpy, all features stacked: what the calibration fits
on). The node computes ``sigma / z`` with :meth:`UncertaintyModel.relative_sigma_cells` on the
fusion's grid: the same features in one compiled pass per cell (the logarithms and the
exponential as whole-grid numpy calls), held to :func:`features` by the tests. A new feature
goes into both, in the order of :data:`FEATURES`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Union

import cv2
import numpy as np

from depth_node.core.cell_grid import cell_centres, grid_shape
from depth_node.core.edge_sigma import neighbour_steps
from depth_node.core.errors import ConfigError
from depth_node.core.fusion import Fusion, FusionField

from depth_node.core.jit import compiled

#: The features, in the order of the weights.
FEATURES = ('bias', 'log_support', 'log_support_coarse', 'unsupported', 'log_spread',
            'log_depth', 'log_fit_residual', 'unsupported_x_log_fit_residual',
            'unsupported_x_log_depth', 'log_depth_step', 'log_support_distance', 'filled')

#: The shipped calibration.
DEFAULT_CALIBRATION = Path(__file__).resolve().parent.parent / 'calibration' / 'uncertainty.json'

_SUPPORT_EPS = 0.01  # returns per cell added before the log
_SPREAD_EPS = 0.005  # log-ratio added before the log
_UNSUPPORTED_AT = 0.05  # returns per cell at which "unsupported" is 1/2
_STEP_EPS = 0.01  # log-depth step added before the log
_SKY_DEPTH = 1000.0  # m, cells without depth count as this far for the step


@dataclass(frozen=True)
class UncertaintyModel:
    """Weights of ``log(sigma / z) = w . phi`` for fused and for global-only depth."""

    fused: tuple[float, ...]
    global_only: tuple[float, ...]
    min_relative: float = 0.002  # sigma / z never below this
    max_relative: float = 10.0  # nor above this
    provenance: Mapping[str, object] = field(default_factory=dict)
    # Raw held-out scale of the calibration drives (pipeline.self_check); None: no self-check.
    heldout_reference: Optional[float] = None
    carried: float = 0.0  # weight of the carried correction in quadrature (module docstring)
    # The edge term in quadrature per pixel (depth_node.core.edge_sigma; weight 0: none).
    edge_weight: float = 0.0
    edge_radius: int = 2  # px
    edge_min_step: float = 0.1  # log-depth step between neighbours from which it counts

    def __post_init__(self) -> None:
        for name in ('fused', 'global_only'):
            w = getattr(self, name)
            if len(w) != len(FEATURES) or not all(math.isfinite(x) for x in w):
                raise ConfigError('uncertainty.calibration',
                                  f'{name} needs {len(FEATURES)} finite weights '
                                  f'({", ".join(FEATURES)})', list(w))
        if not (math.isfinite(self.carried) and self.carried >= 0):
            raise ConfigError('uncertainty.calibration',
                              'carried_correction must be a finite number >= 0', self.carried)
        if not (math.isfinite(self.edge_weight) and self.edge_weight >= 0):
            raise ConfigError('uncertainty.calibration',
                              'edge_weight must be a finite number >= 0', self.edge_weight)
        if not (float(self.edge_radius).is_integer() and 0 <= self.edge_radius <= 16):
            raise ConfigError('uncertainty.calibration', 'edge_radius must be an integer '
                              'in 0..16 (px)', self.edge_radius)
        if not (math.isfinite(self.edge_min_step) and self.edge_min_step >= 0):
            raise ConfigError('uncertainty.calibration',
                              'edge_min_step must be a finite number >= 0', self.edge_min_step)

    @classmethod
    def load(cls, path: Union[str, os.PathLike, None] = None) -> 'UncertaintyModel':
        """Read a calibration file (JSON; default: the shipped one)."""
        p = Path(path) if path else DEFAULT_CALIBRATION
        try:
            data = json.loads(p.read_text())
            names = data.get('features', FEATURES)
            return cls(_by_name(names, data['fused'], 'fused'),
                       _by_name(names, data['global_only'], 'global_only'),
                       float(data.get('min_relative', 0.002)),
                       float(data.get('max_relative', 10.0)), data.get('provenance', {}),
                       _optional_float(data.get('heldout_reference')),
                       float(data.get('carried_correction', 0.0)),
                       float(data.get('edge_weight', 0.0)), _integer(data.get('edge_radius', 2)),
                       float(data.get('edge_min_step', 0.1)))
        except ConfigError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError('uncertainty.calibration', f'cannot be read ({exc})',
                              str(p)) from None

    def to_json(self) -> str:
        return json.dumps({'features': list(FEATURES), 'fused': list(self.fused),
                           'global_only': list(self.global_only),
                           'min_relative': self.min_relative,
                           'max_relative': self.max_relative,
                           'heldout_reference': self.heldout_reference,
                           'carried_correction': self.carried,
                           'edge_weight': self.edge_weight,
                           'edge_radius': int(self.edge_radius),
                           'edge_min_step': self.edge_min_step,
                           'provenance': dict(self.provenance)}, indent=2)

    def relative_sigma(self, phi: np.ndarray, fused: bool = True,
                       carried: Optional[np.ndarray] = None) -> np.ndarray:
        """``sigma / z`` [gh, gw] float32 from features ``phi`` [F, gh, gw] and the
        :func:`carried_correction` [gh, gw] (None: none, as for global-only depth)."""
        w = np.asarray(self.fused if fused else self.global_only, dtype=np.float64)
        rel = np.exp(np.tensordot(w, phi, axes=1))
        if carried is not None and self.carried:
            rel = np.hypot(rel, self.carried * np.asarray(carried, np.float64))
        return np.clip(rel, self.min_relative, self.max_relative).astype(np.float32)

    def relative_sigma_cells(self, field: FusionField, fit_residual: float,
                             fused: bool = True) -> np.ndarray:
        """``sigma / z`` [gh, gw] float32 on the grid of ``field``: the compiled path.

        Equals ``relative_sigma(features(fusion, fit_residual), fused, carried_correction(
        fusion.support, fusion.rho))`` for the :class:`~depth_node.core.fusion.Fusion` of the
        same frame, to float rounding.
        """
        support = np.ascontiguousarray(field.support, np.float32)
        x = np.empty((6,) + support.shape)  # the arguments of the logarithms
        _log_args(support, np.ascontiguousarray(field.support_coarse, np.float32),
                  np.ascontiguousarray(field.spread, np.float32),
                  np.ascontiguousarray(field.centre_depth, np.float32),
                  _support_distance(support), x)
        np.log(x[:5], out=x[:5])
        _step_arg(field.centre_depth, x[3], x[5])
        np.log(x[5], out=x[5])
        w = np.asarray(self.fused if fused else self.global_only, dtype=np.float64)
        log_rel = np.empty(support.shape)
        carried = np.empty(support.shape)  # the weighted carried correction
        # Global-only depth carries no correction.
        weight = float(self.carried) if fused else 0.0
        _weighted_sum(x, support, np.ascontiguousarray(field.filled, np.float32),
                      np.ascontiguousarray(field.rho, np.float32), w,
                      _log_residual(fit_residual), weight, log_rel, carried)
        np.exp(log_rel, out=log_rel)
        if weight:
            _hypot(log_rel, carried)
        return np.clip(log_rel, self.min_relative, self.max_relative).astype(np.float32)


def _by_name(names: object, weights: object, key: str) -> tuple[float, ...]:
    """The weights of a calibration file in the order of :data:`FEATURES`, by the file's
    ``features`` names; a feature the file does not name (an older file) gets 0."""
    if not isinstance(names, (list, tuple)) or not isinstance(weights, (list, tuple)) \
            or len(names) != len(weights):
        raise ConfigError('uncertainty.calibration',
                          f'{key} needs one weight per name in features', weights)
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ConfigError('uncertainty.calibration', f'names unknown features {unknown} '
                          f'(known: {", ".join(FEATURES)})', list(names))
    given = {str(n): float(w) for n, w in zip(names, weights)}
    return tuple(given.get(n, 0.0) for n in FEATURES)


def _integer(value: object) -> int:
    """A JSON integer (``edge_radius``); a non-integer is passed on for the check to name."""
    x = float(value)  # type: ignore[arg-type]
    return int(x) if x.is_integer() else x  # type: ignore[return-value]


def _optional_float(value: object) -> Optional[float]:
    """A finite positive JSON number, or None (null, absent, or not usable)."""
    if value is None:
        return None
    x = float(value)  # type: ignore[arg-type]
    return x if math.isfinite(x) and x > 0 else None


def cell_depth(depth: np.ndarray, cell: int) -> np.ndarray:
    """``depth`` [H, W] at the cell centres of a ``cell``-pixel grid: [gh, gw]."""
    h, w = depth.shape
    gh, gw = grid_shape(h, w, cell)
    return depth[np.ix_(cell_centres(h, gh, cell), cell_centres(w, gw, cell))]


def features(fusion: Fusion, fit_residual: float) -> np.ndarray:
    """The model's features [F, gh, gw] float64 on the fusion's grid (order: :data:`FEATURES`).

    ``fit_residual`` is the global fit's robust log-depth sigma (NaN/0 -> a small value).
    """
    support = fusion.support.astype(np.float64)
    z = (cell_depth(fusion.depth, fusion.cell) if fusion.centre_depth is None
         else fusion.centre_depth).astype(np.float64)
    with np.errstate(invalid='ignore', divide='ignore'):
        log_z = np.log(np.where(np.isfinite(z) & (z > 0), z, 1.0))
    log_res = _log_residual(fit_residual)
    unsupported = unsupported_gate(support)
    step = neighbour_steps(np.where(np.isfinite(z) & (z > 0), log_z, math.log(_SKY_DEPTH)))
    far = _support_distance(support)
    return np.stack([np.ones_like(support), np.log(support + _SUPPORT_EPS),
                     np.log(fusion.support_coarse.astype(np.float64) + _SUPPORT_EPS),
                     unsupported, np.log(fusion.spread.astype(np.float64) + _SPREAD_EPS),
                     log_z, np.full_like(support, log_res), unsupported * log_res,
                     unsupported * log_z, np.log(step + _STEP_EPS),
                     np.log1p(far.astype(np.float64)), fusion.filled.astype(np.float64)])


def carried_correction(support: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """``unsupported * |rho|`` [gh, gw] float64: the fusion's log correction where no return is
    near to check it (module docstring)."""
    return unsupported_gate(support) * np.abs(np.asarray(rho, np.float64))


def unsupported_gate(support: np.ndarray) -> np.ndarray:
    """The ``unsupported`` feature, ``1 / (1 + support / 0.05)``: near 1 where no return is."""
    return 1.0 / (1.0 + np.asarray(support, np.float64) / _UNSUPPORTED_AT)


def _log_residual(fit_residual: float) -> float:
    """``log_fit_residual``: the fit's robust sigma (NaN/0 -> 0) plus a small value, logged."""
    res = fit_residual if math.isfinite(fit_residual) and fit_residual > 0 else 0.0
    return math.log(res + _SPREAD_EPS)


def _support_distance(support: np.ndarray) -> np.ndarray:
    """Distance in cells [gh, gw] float32 to the nearest supported cell (OpenCV, 3x3 mask)."""
    mask = np.asarray(support, np.float64) < _UNSUPPORTED_AT
    far = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    # No supported cell at all (a held fit, no sweep): OpenCV reports a huge distance; the
    # grid's size is as far as support can be.
    return np.minimum(far, np.float32(max(support.shape)))


def _log_args_kernel(support: np.ndarray, support_coarse: np.ndarray, spread: np.ndarray,
                     z: np.ndarray, far: np.ndarray, out: np.ndarray) -> None:
    """What :func:`features` takes the logarithm of, per cell: ``out`` [6, gh, gw] (0..4)."""
    gh, gw = support.shape
    for y in range(gh):
        for x in range(gw):
            out[0, y, x] = np.float64(support[y, x]) + _SUPPORT_EPS
            out[1, y, x] = np.float64(support_coarse[y, x]) + _SUPPORT_EPS
            out[2, y, x] = np.float64(spread[y, x]) + _SPREAD_EPS
            zz = np.float64(z[y, x])
            out[3, y, x] = zz if (zz == zz and zz > 0 and zz != np.inf) else 1.0
            out[4, y, x] = 1.0 + np.float64(far[y, x])


def _step_arg_kernel(z: np.ndarray, log_z: np.ndarray, out: np.ndarray) -> None:
    """``log_depth_step`` before its logarithm: the
    :func:`~depth_node.core.edge_sigma.neighbour_steps` of the log depth + eps. The log
    depth with the sky's in place first, then each direction in a loop of its own (no
    branch, no loop-carried write: they vectorise)."""
    gh, gw = z.shape
    sky = math.log(_SKY_DEPTH)
    a = np.empty((gh, gw))
    for y in range(gh):
        for x in range(gw):
            zz = z[y, x]
            a[y, x] = log_z[y, x] if (zz == zz and zz > 0 and zz != np.inf) else sky
    for y in range(gh):
        row, o = a[y], out[y]
        for x in range(gw):
            o[x] = 0.0
        for x in range(gw - 1):
            o[x] = max(o[x], abs(row[x + 1] - row[x]))
        for x in range(1, gw):
            o[x] = max(o[x], abs(row[x] - row[x - 1]))
        if y > 0:
            up = a[y - 1]
            for x in range(gw):
                o[x] = max(o[x], abs(row[x] - up[x]))
        if y + 1 < gh:
            down = a[y + 1]
            for x in range(gw):
                o[x] = max(o[x], abs(down[x] - row[x]))
        for x in range(gw):
            o[x] += _STEP_EPS


def _weighted_sum_kernel(logs: np.ndarray, support: np.ndarray, filled: np.ndarray,
                         rho: np.ndarray, w: np.ndarray, log_res: float, weight: float,
                         out: np.ndarray, carried: np.ndarray) -> None:
    """``w . phi`` per cell, phi in the order of :data:`FEATURES` from the logarithms; and
    ``weight *`` :func:`carried_correction` into ``carried``."""
    gh, gw = support.shape
    for y in range(gh):
        for x in range(gw):
            unsupported = 1.0 / (1.0 + np.float64(support[y, x]) / _UNSUPPORTED_AT)
            carried[y, x] = weight * unsupported * abs(np.float64(rho[y, x]))
            log_z = logs[3, y, x]
            out[y, x] = (w[0] + w[1] * logs[0, y, x] + w[2] * logs[1, y, x]
                         + w[3] * unsupported + w[4] * logs[2, y, x] + w[5] * log_z
                         + w[6] * log_res + w[7] * (unsupported * log_res)
                         + w[8] * (unsupported * log_z) + w[9] * logs[5, y, x]
                         + w[10] * logs[4, y, x] + w[11] * np.float64(filled[y, x]))


def _hypot_kernel(rel: np.ndarray, extra: np.ndarray) -> None:
    """``rel`` [gh, gw] with ``extra`` added in quadrature, in place (a vectorised pass)."""
    gh, gw = rel.shape
    for y in range(gh):
        for x in range(gw):
            rel[y, x] = math.sqrt(rel[y, x] * rel[y, x] + extra[y, x] * extra[y, x])


_log_args = compiled(_log_args_kernel)
_hypot = compiled(_hypot_kernel)
_step_arg = compiled(_step_arg_kernel)
_weighted_sum = compiled(_weighted_sum_kernel)

__all__ = ['carried_correction', 'cell_depth', 'DEFAULT_CALIBRATION', 'FEATURES', 'features',
           'UncertaintyModel', 'unsupported_gate']
