"""LiDAR–network fusion: the network's shape, pinned to the LiDAR, with edge-aware fill.

The global fit (:mod:`depth_node.core.robust`) gives metric depth ``z_g`` whose error is the
network's. Where LiDAR returns exist, the log-ratio ``r_i = log(z_i / z_g(u_i, v_i))`` measures
that error; fusion spreads it over the image as a field ``rho`` and publishes
``z_g * exp(rho)``: next to dense LiDAR it follows the LiDAR, between returns the network's shape
carries the LiDAR's scale, and far from any return ``rho`` fades to 0, i.e. to the global fit.

Method (normalised convolution with an edge-aware recursive filter, on a coarse grid):

1. the image is cut into ``cell`` x ``cell`` pixel cells; each cell sums the log-ratios of the
   returns in it (``num``), counts them (``den``) and sums their squares;
2. the three grids are smoothed with the domain-transform recursive filter (Gastal & Oliveira,
   "Domain transform for edge-aware image and video processing", SIGGRAPH 2011), whose guide is
   the globally fitted *disparity* ``1 / z_g`` (m⁻¹) of each cell: disparity is linear in the
   pixel coordinates on any plane, so roads and façades are smooth in the guide and only depth
   discontinuities (object edges) stop the filter. It runs at two scales, ``fine_sigma`` and
   ``coarse_sigma`` cells; the coarse one is weighted by ``coarse_weight``;
3. ``rho = (num_f + w num_c) / (den_f + w den_c + prior)`` (the filter has unit gain, so the
   grids are densities per cell): the ``prior`` (returns per cell) pulls the field to 0 where
   little support is near;
4. below the lowest supported cell of each column (the near road under the LiDAR's lowest
   beam, which a roof-mounted sensor never sees) the field continues that cell's value down to
   the first depth step (``extend_step``), fading into the filtered field over
   ``extend_reach`` cells, instead of dropping to the global fit within a cell or two (the
   disparity guide, steep on a near road, stops the filters going down): the surface the
   lowest beam hits goes on towards the vehicle, and the network's error there is closer to
   that of the road just above than to the frame's average;
5. the field is upsampled bilinearly to the image, and kept returns that agree with it within
   ``pin_tolerance`` (log-ratio) are written into the output at their pixels (the output equals
   the LiDAR there, within its noise).

Besides the depth, :class:`Fusion` keeps the per-cell support (returns under the fine and the
coarse kernel) and the local spread of the returns around the field: the features of the
per-pixel uncertainty (:mod:`depth_node.core.uncertainty`).

The recursive filter is compiled with numba; :func:`recursive_filter_reference` is the same
recurrence in plain numpy, which the tests hold the compiled one to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from depth_node.core.errors import ConfigError
from depth_node.core.lidar import check_image_size, SparseDepth

try:  # numba is a dependency; without it (a broken install) the numpy recurrence runs
    from numba import njit
except ImportError:  # pragma: no cover - exercised only on a broken install
    njit = None

_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class FusionConfig:
    """Options of :func:`fuse` (the node's ``fusion.*`` parameters)."""

    cell: int = 4  # px, side of a grid cell
    fine_sigma: float = 1.0  # cells, spatial scale of the fine filter
    coarse_sigma: float = 16.0  # cells, spatial scale of the coarse filter
    coarse_factor: int = 4  # the coarse filter runs on cells this many times larger
    coarse_weight: float = 0.05  # weight of the coarse filter's densities
    edge_sigma: float = 0.005  # m⁻¹ of disparity between neighbouring cells: reach shrinks
    prior: float = 0.003  # returns per cell of pull towards the global fit
    iterations: int = 3  # recursive filter passes (horizontal + vertical each)
    pin_tolerance: float = 0.05  # log-ratio within which a return is written into the output
    outlier_log_ratio: float = 0.7  # returns this far (log) from the coarse field are dropped
    extend_support: float = 0.5  # returns per cell from which a cell starts the downward fill
    extend_step: float = 0.1  # log-depth step between cells that ends the downward fill
    extend_reach: float = 16.0  # cells over which the downward fill fades (e-fold) to 0

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad value."""
        checks = (('fusion.cell', self.cell >= 1 and float(self.cell).is_integer(),
                   'must be an integer >= 1', self.cell),
                  ('fusion.fine_sigma', self.fine_sigma > 0, 'must be > 0', self.fine_sigma),
                  ('fusion.coarse_sigma', self.coarse_sigma > 0, 'must be > 0',
                   self.coarse_sigma),
                  ('fusion.coarse_weight', self.coarse_weight >= 0, 'must be >= 0',
                   self.coarse_weight),
                  ('fusion.edge_sigma', self.edge_sigma > 0, 'must be > 0', self.edge_sigma),
                  ('fusion.prior', self.prior > 0, 'must be > 0', self.prior),
                  ('fusion.iterations', 1 <= self.iterations <= 10, 'must be in 1..10',
                   self.iterations),
                  ('fusion.pin_tolerance', self.pin_tolerance >= 0, 'must be >= 0',
                   self.pin_tolerance),
                  ('fusion.coarse_factor', self.coarse_factor >= 1
                   and float(self.coarse_factor).is_integer(), 'must be an integer >= 1',
                   self.coarse_factor),
                  ('fusion.outlier_log_ratio', self.outlier_log_ratio > 0, 'must be > 0',
                   self.outlier_log_ratio),
                  ('fusion.extend_support', self.extend_support > 0, 'must be > 0',
                   self.extend_support),
                  ('fusion.extend_step', self.extend_step >= 0, 'must be >= 0',
                   self.extend_step),
                  ('fusion.extend_reach', self.extend_reach > 0, 'must be > 0',
                   self.extend_reach))
        for name, ok, rule, value in checks:
            if not (ok and math.isfinite(float(value))):
                raise ConfigError(name, rule, value)


@dataclass
class Fusion:
    """What :func:`fuse` made of one frame.

    ``depth`` is the fused metric depth; the per-cell grids ([gh, gw], ``cell`` px each) are the
    features of the uncertainty: ``support`` (returns under the fine kernel, on the same
    surface), ``support_coarse`` (under the coarse kernel) and ``spread`` (RMS log-ratio of the
    nearby returns around the field).
    """

    depth: np.ndarray  # [H, W] float32, metres, NaN where the global fit is NaN
    rho: np.ndarray  # [gh, gw] float32, log(fused / global)
    support: np.ndarray  # [gh, gw] float32, returns per cell
    support_coarse: np.ndarray  # [gh, gw] float32, returns per cell
    spread: np.ndarray  # [gh, gw] float32, log-ratio RMS
    cell: int
    returns: int  # returns used (after the outlier test)
    pinned: int  # returns written into the output


def recursive_filter_reference(grids: np.ndarray, guide: np.ndarray, sigma_s: float,
                               sigma_r: float, iterations: int) -> np.ndarray:
    """Domain-transform recursive filter of ``grids`` [C, h, w] guided by ``guide`` [h, w].

    Plain numpy (a loop over rows and columns): the reference for the compiled
    :func:`recursive_filter`. ``sigma_s`` in cells, ``sigma_r`` in guide units.
    """
    out = np.array(grids, dtype=np.float64, copy=True)
    dx, dy = _domain_steps(guide, sigma_s, sigma_r)
    for i in range(iterations):
        a = _feedback(sigma_s, i, iterations)
        wx, wy = a ** dx, a ** dy  # [h, w-1], [h-1, w]
        for x in range(1, out.shape[2]):
            out[:, :, x] += wx[None, :, x - 1] * (out[:, :, x - 1] - out[:, :, x])
        for x in range(out.shape[2] - 2, -1, -1):
            out[:, :, x] += wx[None, :, x] * (out[:, :, x + 1] - out[:, :, x])
        for y in range(1, out.shape[1]):
            out[:, y, :] += wy[None, y - 1, :] * (out[:, y - 1, :] - out[:, y, :])
        for y in range(out.shape[1] - 2, -1, -1):
            out[:, y, :] += wy[None, y, :] * (out[:, y + 1, :] - out[:, y, :])
    return out


def _domain_steps(guide: np.ndarray, sigma_s: float,
                  sigma_r: float) -> tuple[np.ndarray, np.ndarray]:
    """Domain-transform distances between neighbouring cells: [h, w-1] and [h-1, w]."""
    g = np.asarray(guide, dtype=np.float64)
    k = sigma_s / sigma_r
    return 1.0 + k * np.abs(np.diff(g, axis=1)), 1.0 + k * np.abs(np.diff(g, axis=0))


def _feedback(sigma_s: float, i: int, iterations: int) -> float:
    """Feedback coefficient of pass ``i``: the passes' sigmas add up to ``sigma_s``."""
    sigma_i = sigma_s * math.sqrt(3.0) * 2.0 ** (iterations - i - 1) \
        / math.sqrt(4.0 ** iterations - 1.0)
    return math.exp(-math.sqrt(2.0) / sigma_i)


def _filter_passes(out: np.ndarray, wx: np.ndarray, wy: np.ndarray) -> None:
    """One horizontal and one vertical pass of the recurrence, in place (compiled below).

    Rows are walked along their contiguous axis in both passes (the vertical one updates a
    whole row from its neighbour row), which keeps the compiled loops vectorisable.
    """
    c, h, w = out.shape
    for k in range(c):
        for y in range(h):
            for x in range(1, w):
                out[k, y, x] += wx[y, x - 1] * (out[k, y, x - 1] - out[k, y, x])
            for x in range(w - 2, -1, -1):
                out[k, y, x] += wx[y, x] * (out[k, y, x + 1] - out[k, y, x])
        for y in range(1, h):
            for x in range(w):
                out[k, y, x] += wy[y - 1, x] * (out[k, y - 1, x] - out[k, y, x])
        for y in range(h - 2, -1, -1):
            for x in range(w):
                out[k, y, x] += wy[y, x] * (out[k, y + 1, x] - out[k, y, x])


_compiled_passes = njit(cache=True, nogil=True)(_filter_passes) \
    if njit is not None else None


def recursive_filter(grids: np.ndarray, guide: np.ndarray, sigma_s: float, sigma_r: float,
                     iterations: int) -> np.ndarray:
    """Compiled :func:`recursive_filter_reference` (same arguments, same result)."""
    if _compiled_passes is None:  # pragma: no cover
        return recursive_filter_reference(grids, guide, sigma_s, sigma_r, iterations)
    out = np.array(grids, dtype=np.float64, copy=True)
    dx, dy = _domain_steps(guide, sigma_s, sigma_r)
    for i in range(iterations):
        a = _feedback(sigma_s, i, iterations)
        _compiled_passes(out, a ** dx, a ** dy)
    return out


def _cell_sums(u: np.ndarray, v: np.ndarray, r: np.ndarray, cell: int, gh: int,
               gw: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell sums of ``r``, 1 and ``r**2`` ([3, gh, gw] float64) and the cell of each return."""
    idx = (v // cell) * gw + (u // cell)
    sums = np.stack([np.bincount(idx, weights=wt, minlength=gh * gw).reshape(gh, gw)
                     for wt in (r, np.ones_like(r), r * r)])
    return sums, idx


def _guide(depth: np.ndarray, cell: int, gh: int, gw: int) -> np.ndarray:
    """Disparity (m⁻¹) of ``depth`` at the cell centres, 0 where it has none (sky)."""
    h, w = depth.shape
    cy = np.minimum(np.arange(gh) * cell + cell // 2, h - 1)
    cx = np.minimum(np.arange(gw) * cell + cell // 2, w - 1)
    zc = depth[np.ix_(cy, cx)]
    good = np.isfinite(zc) & (zc > 0)
    return np.where(good, 1.0 / np.where(good, zc, 1.0), 0.0)


def _upsample(grid: np.ndarray, cell: int, h: int, w: int) -> np.ndarray:
    """Bilinear [gh, gw] -> [h, w]: cell centres stay where :func:`_guide` sampled them."""
    gh, gw = grid.shape
    out: np.ndarray = cv2.resize(np.ascontiguousarray(grid, dtype=np.float32),
                                 (gw * cell, gh * cell), interpolation=cv2.INTER_LINEAR)
    return out[:h, :w]


def extend_down(rho: np.ndarray, support: np.ndarray, guide: np.ndarray, min_support: float,
                max_step: float, reach: float = np.inf) -> np.ndarray:
    """``rho`` [gh, gw] with each column's lowest cell of ``support >= min_support`` continued
    down (blended into the field there with weight ``exp(-rows below / reach)``) to the first
    cell whose guide (disparity) is missing or steps by more than ``max_step`` in log from the
    cell above (a depth edge). Returns a new array."""
    gh, gw = rho.shape
    has = support >= min_support
    any_col = has.any(axis=0)
    last = gh - 1 - np.argmax(has[::-1], axis=0)  # [gw], lowest supported row
    with np.errstate(divide='ignore', invalid='ignore'):
        step = np.abs(np.diff(np.log(guide), axis=0))  # [gh-1, gw]
    ok = np.zeros((gh, gw), bool)
    ok[1:] = (guide[1:] > 0) & (guide[:-1] > 0) & (step <= max_step)
    rows = np.arange(gh)[:, None]
    below = (rows > last[None, :]) & any_col[None, :]
    filled = below & (np.cumsum(below & ~ok, axis=0) == 0)
    fade = np.exp(-(rows - last[None, :]) / reach) if np.isfinite(reach) else 1.0
    top = rho[last, np.arange(gw)][None, :]
    return np.where(filled, rho + (top - rho) * fade, rho)


def fuse(global_depth: np.ndarray, lidar: SparseDepth,
         config: FusionConfig = FusionConfig()) -> Fusion:
    """Fuse globally fitted depth [H, W] (metres, NaN = none) with kept LiDAR returns.

    ``lidar`` holds the returns the fit used (the see-through test's kept ones), of the same
    image size. Returns a :class:`Fusion`; with no usable return the depth is the global one.
    """
    zg = np.asarray(global_depth, dtype=np.float32)
    h, w = check_image_size(zg, lidar, 'global depth')
    c = config
    cell, ccell = int(c.cell), int(c.cell) * int(c.coarse_factor)
    gh, gw = -(-h // cell), -(-w // cell)
    ch, cw_ = -(-h // ccell), -(-w // ccell)
    zero = np.zeros((gh, gw), np.float32)
    with np.errstate(divide='ignore', invalid='ignore'):
        r = np.log(lidar.z / zg[lidar.v, lidar.u]).astype(np.float64)
    ok = np.isfinite(r)
    if not ok.any():
        return Fusion(zg.copy(), zero, zero, zero.copy(), zero.copy(), cell, 0, 0)
    u, v, z, r = lidar.u[ok], lidar.v[ok], lidar.z[ok], r[ok]
    coarse_guide = _guide(zg, ccell, ch, cw_)
    coarse_sigma = c.coarse_sigma / c.coarse_factor  # in coarse cells
    # Outliers: returns far from the coarse field of all returns (spurious near returns,
    # a see-through return the test missed) would pull the fine field locally.
    sums, cidx = _cell_sums(u, v, r, ccell, ch, cw_)
    first = recursive_filter(sums[:2], coarse_guide, coarse_sigma, c.edge_sigma, c.iterations)
    rho_c = first[0] / (first[1] + c.prior)
    keep = np.abs(r - rho_c.reshape(-1)[cidx]) <= c.outlier_log_ratio
    if not keep.all():
        u, v, z, r = u[keep], v[keep], z[keep], r[keep]
        sums, _ = _cell_sums(u, v, r, ccell, ch, cw_)
    coarse = recursive_filter(sums, coarse_guide, coarse_sigma, c.edge_sigma, c.iterations)
    # The coarse densities are per coarse cell: per fine cell they are 1 / factor**2 of that.
    area = float(c.coarse_factor) ** 2
    coarse_up = np.stack([_upsample(g, c.coarse_factor, gh, gw) for g in coarse]) / area
    fine_sums, idx = _cell_sums(u, v, r, cell, gh, gw)
    fine_guide = _guide(zg, cell, gh, gw)
    fine = recursive_filter(fine_sums, fine_guide, c.fine_sigma, c.edge_sigma, c.iterations)
    # A cascade: the coarse field (pulled to 0 by the prior where it has little support)
    # fills in where the fine one has little support.
    rho_c = coarse_up[0] / (coarse_up[1] + c.prior)
    num = fine[0] + c.coarse_weight * rho_c
    den = fine[1] + c.coarse_weight
    rho = num / den
    # Spread of the returns around the field, from both scales as they are mixed.
    w_f = fine[1] / den
    sq_f = fine[2] / np.maximum(fine[1], 1e-12)
    sq_c = coarse_up[2] / np.maximum(coarse_up[1], 1e-12)
    spread = np.sqrt(np.maximum(w_f * sq_f + (1.0 - w_f) * sq_c - rho * rho, 0.0))
    rho = extend_down(rho, fine[1], fine_guide, c.extend_support, c.extend_step,
                      c.extend_reach)
    depth = zg * _upsample(np.exp(rho), cell, h, w)
    pinned = 0
    if c.pin_tolerance > 0:
        pin = (np.abs(r - rho.reshape(-1)[idx]) <= c.pin_tolerance) & np.isfinite(depth[v, u])
        depth[v[pin], u[pin]] = z[pin]
        pinned = int(pin.sum())
    return Fusion(depth, rho.astype(np.float32), fine[1].astype(np.float32),
                  coarse_up[1].astype(np.float32), spread.astype(np.float32), cell,
                  int(r.size), pinned)


__all__ = ['extend_down', 'Fusion', 'FusionConfig', 'fuse', 'recursive_filter',
           'recursive_filter_reference']
