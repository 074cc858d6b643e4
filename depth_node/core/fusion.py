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
   the first depth step (``extend_step``), fading with an e-fold of ``extend_reach`` cells
   into the median of all columns' lowest supported values, instead of dropping to the
   global fit within a cell or two (the disparity guide, steep on a near road, stops the
   filters going down): the surface the lowest beam hits goes on towards the vehicle, and
   the network's error there is closer to that of the road just above than to the frame's
   average. Fading into the filtered field instead (which the prior pulls to 0, the global
   fit, far from returns), in fog with a 120 deg lens the rows 18-22 cells below the lowest
   beam were published at the global fit's 1.29x the truth (``docs/benchmarks.md``,
   2026-12-03);
5. the field is upsampled bilinearly to the image;
6. between the returns of one beam and the next, the **beam fill**
   (:mod:`depth_node.core.beam_fill`): in each column band the LiDAR's own interpolation
   between beams whose depths agree, joined linearly in disparity (a plane comes out exact),
   and below the lowest beam the line of the last ones where they lie on one; not across
   depth steps, nor where the network sees something nearer between the beams, nor on a frame
   whose own returns show the network's shape predicts a beam better than the LiDAR's line;
7. where the beam fill has no value, kept returns that agree with the field within
   ``pin_tolerance`` (log-ratio) are written into the output at their pixels (the output
   equals the LiDAR there, within its noise; the fill, from cell means, is less noisy);
8. at the fused depth's edges (a log step above ``edge_step`` between neighbouring pixels),
   the **edge fill** (:mod:`depth_node.core.edge_fill`): each pixel within one of the step
   takes the disparity interpolated between the nearest return above and below it in the
   columns within ``edge_window`` px (at most ``beam_gap`` rows apart): the returns locate a
   silhouette more sharply than the network's soft edge (not on a frame where the beam
   fill's check finds the network the better predictor). Only returns that the fused depth
   of a neighbouring cell agrees with (within ``beam_step``) anchor it: fog backscatter and
   other lone near returns do not. The grid features of the uncertainty read the depth
   before this step (``centre_depth``).

Besides the depth, :class:`Fusion` keeps the per-cell support (returns under the fine and the
coarse kernel) and the local spread of the returns around the field: the features of the
per-pixel uncertainty (:mod:`depth_node.core.uncertainty`).

Cost (the node runs this on every frame): the grid work is compiled with numba and runs on
the cells only (returns summed into cells in one pass, the three filter runs sharing the
domain-transform weights of their guide, the fields combined in one pass);
:func:`fuse_field` stops there and the full-resolution step, ``z_g`` times the upsampled
``exp(rho)`` with the pins written in, is one pass (:func:`fused_depth` here, or folded with
sigma and refusal into :func:`depth_node.pipeline.trust.compose`), followed by the edge fill's
two passes over the rows the returns span (:meth:`FusionField.edge_fill`). The plain-numpy
:func:`depth_node.core.fusion_reference.fuse_reference` and :func:`recursive_filter_reference`
are the same method step by step, which the tests hold the compiled path to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from depth_node.core.cell_grid import along_rows, axis_weights, cell_centres, cell_of, \
    grid_shape, upsample_reference
from depth_node.core import edge_fill as edges
from depth_node.core import fusion_kernels as kernels
from depth_node.core.beam_fill import beam_check, checked_beam_fill, network_wins
from depth_node.core.errors import ConfigError
from depth_node.core.lidar import check_image_size, SparseDepth


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
    extend_reach: float = 16.0  # cells over which the downward fill fades (e-fold)
    beam_gap: float = 40.0  # px: returns down a column band this close are joined (0: off)
    beam_step: float = 0.2  # log-depth between joined returns above which they are not
    beam_nearer: float = 0.2  # share of disparity by which the network nearer keeps the field
    beam_reach: float = 96.0  # px the lowest beams' line goes on below them (0: not at all)
    beam_check: bool = True  # per frame, off when the network predicts beams better (beam_check)
    edge_step: float = 0.1  # log-depth step between pixels that the edge fill starts at (0: off)
    edge_window: int = 2  # px either side of a pixel's column where the edge fill seeks returns

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
                   self.extend_reach),
                  ('fusion.beam_gap', self.beam_gap >= 0, 'must be >= 0', self.beam_gap),
                  ('fusion.beam_step', self.beam_step >= 0, 'must be >= 0', self.beam_step),
                  ('fusion.beam_nearer', self.beam_nearer >= 0, 'must be >= 0',
                   self.beam_nearer),
                  ('fusion.beam_reach', self.beam_reach >= 0, 'must be >= 0',
                   self.beam_reach),
                  ('fusion.edge_step', self.edge_step >= 0, 'must be >= 0', self.edge_step),
                  ('fusion.edge_window', self.edge_window >= 0
                   and float(self.edge_window).is_integer(), 'must be an integer >= 0',
                   self.edge_window))
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
    pinned: int  # returns that agree with the field (written in where the beam fill is not)
    filled: np.ndarray  # [gh, gw] float32, 1 where the beam fill holds at the cell centre
    # [gh, gw] float32 m, the depth at the cell centres before the edge fill (what the
    # uncertainty's features read; None: ``depth`` at the centres)
    centre_depth: Optional[np.ndarray] = None


@dataclass
class FusionField:
    """The fusion of one frame on its grid ([gh, gw], ``cell`` px each), before the pixels.

    What :func:`fuse_field` solves: the fields of :class:`Fusion` plus what the one
    full-resolution pass needs (``gain`` along x, the pins) and the fused depth at the sampled cell
    centres (:func:`depth_node.core.cell_grid.cell_centres`, pins included), which the
    uncertainty reads.
    """

    rho: np.ndarray  # [gh, gw] float32, log(fused / global)
    gain: np.ndarray  # [gh, gw] float32, exp(rho): fused = global * upsampled gain
    gain_rows: np.ndarray  # [gh, W] float32, the gain interpolated along x (along_rows)
    support: np.ndarray  # [gh, gw] float32, returns per cell (fine kernel)
    support_coarse: np.ndarray  # [gh, gw] float32, returns per cell (coarse kernel)
    spread: np.ndarray  # [gh, gw] float32, log-ratio RMS
    centre_depth: np.ndarray  # [gh, gw] float32 m, fused depth at the cell centres
    fill: np.ndarray  # [H, gw] float32 1/m, the beam fill's disparity per row and band (NaN: none)
    fill_ratio: float  # disparity ratio of two bands above which a pixel takes one, not both
    filled: np.ndarray  # [gh, gw] float32, 1 where the beam fill holds at the cell centre
    pin_u: np.ndarray  # [P] int32, column of each return written into the output (row order)
    pin_v: np.ndarray  # [P] int32, row
    pin_z: np.ndarray  # [P] float32, metres
    cell: int
    returns: int  # returns used (after the outlier test)
    columns: edges.Columns  # the returns by column, for the edge fill (depth_node.core.edge_fill)
    edge_step: float = 0.0  # the edge fill's options (FusionConfig); 0: off
    edge_window: int = 2
    edge_gap: float = 40.0  # px, most rows between the two returns it interpolates (0: off)
    edge_nearer: float = 0.2  # share of disparity nearer than both returns that keeps a pixel

    def edge_fill(self, depth: np.ndarray, published: Optional[np.ndarray] = None,
                  sigma: Optional[np.ndarray] = None,
                  rel: Optional[np.ndarray] = None) -> int:
        """Step 8 in place on the full-resolution ``depth`` (and the composed images):
        :func:`depth_node.core.edge_fill.apply` with this frame's returns and options."""
        return edges.apply(depth, self.columns, self.edge_step, self.edge_window,
                           self.edge_gap, self.edge_nearer, published, sigma, rel)

    @property
    def pinned(self) -> int:
        return int(self.pin_z.size)


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


def domain_weights(guide: np.ndarray, sigma_s: float, sigma_r: float,
                   iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Feedback weights ``a_i ** d`` of every pass: [it, h, w-1] and [it, h-1, w] float64.

    Pass ``i`` runs at twice the sigma of pass ``i + 1``, so ``a_i = sqrt(a_(i+1))``: one
    exponential for the last pass and square roots for the others (the same weights as
    :func:`recursive_filter_reference`'s ``a ** d`` to float rounding). Filters on one guide
    with one ``sigma_s`` share them.
    """
    g = np.ascontiguousarray(guide, dtype=np.float64)
    h, w = g.shape
    wx = np.empty((iterations, h, max(w - 1, 0)))
    wy = np.empty((iterations, max(h - 1, 0), w))
    log_a = math.log(_feedback(sigma_s, iterations - 1, iterations))
    kernels.log_weights(g, sigma_s / sigma_r, log_a, wx[-1], wy[-1])
    np.exp(wx[-1], out=wx[-1])
    np.exp(wy[-1], out=wy[-1])
    for i in range(iterations - 2, -1, -1):
        np.sqrt(wx[i + 1], out=wx[i])
        np.sqrt(wy[i + 1], out=wy[i])
    return wx, wy


def recursive_filter(grids: np.ndarray, guide: np.ndarray, sigma_s: float, sigma_r: float,
                     iterations: int) -> np.ndarray:
    """Compiled :func:`recursive_filter_reference` (same arguments, same result)."""
    out = np.array(grids, dtype=np.float64, copy=True)
    kernels.filter_passes(out, *domain_weights(guide, sigma_s, sigma_r, iterations))
    return out


def guide(depth: np.ndarray, cell: int, gh: int, gw: int) -> np.ndarray:
    """Disparity (m⁻¹) of ``depth`` at the cell centres, 0 where it has none (sky): [gh, gw]."""
    h, w = depth.shape
    zc = depth[np.ix_(cell_centres(h, gh, cell), cell_centres(w, gw, cell))]
    good = np.isfinite(zc) & (zc > 0)
    return np.where(good, 1.0 / np.where(good, zc, 1.0), 0.0)


def log_ratios(global_depth: np.ndarray,
               lidar: SparseDepth) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``u``, ``v``, ``z`` and ``r = log(z / z_g)`` (float64) of the returns where r is finite."""
    with np.errstate(divide='ignore', invalid='ignore'):
        r = np.log(lidar.z / global_depth[lidar.v, lidar.u]).astype(np.float64)
    ok = np.isfinite(r)
    return lidar.u[ok], lidar.v[ok], lidar.z[ok], r[ok]


def extend_down(rho: np.ndarray, support: np.ndarray, guide: np.ndarray, min_support: float,
                max_step: float, reach: float = np.inf) -> np.ndarray:
    """``rho`` [gh, gw] with each column's lowest cell of ``support >= min_support`` continued
    down to the first cell whose guide (disparity) is missing or steps by more than
    ``max_step`` in log from the cell above (a depth edge): ``m + (top - m) * exp(-rows below /
    reach)``, ``top`` the column's lowest supported value and ``m`` the median of all columns'
    (the correction the lowest beam found along the whole road, not one column's noise).
    Returns a new float64 array. Compiled (one pass per column);
    :func:`depth_node.core.fusion_reference.extend_down_reference` is the numpy reference."""
    out = np.array(rho, dtype=np.float64, copy=True)
    kernels.extend_down(np.ascontiguousarray(support, np.float64),
                        np.ascontiguousarray(guide, np.float64), float(min_support),
                        float(max_step), float(reach), out)
    return out


def _finite_log_ratios(zg: np.ndarray, lidar: SparseDepth, cell: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`log_ratios` in two compiled passes around numpy's (vectorised) logarithm, and
    the beam fill's cell sums of those returns on the ``cell``-pixel grid (the first pass
    reads the image at the returns anyway; :func:`depth_node.core.beam_fill.beam_cells`).

    Fresh arrays (int32, int32, float32, float64): the passes below reorder them in place.
    """
    u = np.ascontiguousarray(lidar.u, dtype=np.int32)
    v = np.ascontiguousarray(lidar.v, dtype=np.int32)
    z = np.ascontiguousarray(lidar.z, dtype=np.float32)
    h, w = zg.shape
    q = np.empty(z.size, np.float32)
    sums = np.zeros((4,) + grid_shape(h, w, cell))
    kernels.ratios(zg, u, v, z, q, cell_of(h, cell), cell_of(w, cell), sums)
    with np.errstate(divide='ignore', invalid='ignore'):
        np.log(q, out=q)
    out = (np.empty(z.size, np.int32), np.empty(z.size, np.int32), np.empty(z.size, np.float32),
           np.empty(z.size, np.float64))
    n = kernels.finite(u, v, z, q, *out)
    return out[0][:n], out[1][:n], out[2][:n], out[3][:n], sums


def in_row_order(lidar: SparseDepth) -> SparseDepth:
    """``lidar`` with its returns in row order, the order within a row kept (a counting
    sort, O(n + H)); the same returns as they are when they already come so."""
    u = np.ascontiguousarray(lidar.u, dtype=np.int32)
    v = np.ascontiguousarray(lidar.v, dtype=np.int32)
    z = np.ascontiguousarray(lidar.z, dtype=np.float32)
    if kernels.ascending(v):
        return SparseDepth(u, v, z, lidar.width, lidar.height)
    out = np.empty_like(u), np.empty_like(v), np.empty_like(z)
    kernels.by_row(u, v, z, int(lidar.height), *out)
    return SparseDepth(*out, lidar.width, lidar.height)


def fuse_field(global_depth: np.ndarray, lidar: SparseDepth,
               config: FusionConfig = FusionConfig()) -> FusionField:
    """The fusion on its grid (everything of :func:`fuse` but the per-pixel depth).

    ``global_depth`` [H, W] float32 metres (NaN = none); ``lidar`` the returns the fit kept
    (the see-through test's kept ones), of the same image size.
    """
    zg = np.ascontiguousarray(global_depth, dtype=np.float32)
    h, w = check_image_size(zg, lidar, 'global depth')
    c = config
    cell, ccell = int(c.cell), int(c.cell) * int(c.coarse_factor)
    gh, gw = grid_shape(h, w, cell)
    ch, cw_ = grid_shape(h, w, ccell)
    # Row order (a stable counting sort when the returns come in sweep order): the passes
    # below read the image and the grids forwards, the pins come out in the order the
    # per-pixel pass takes them and the edge fill's columns need no sort of their own.
    lidar = in_row_order(lidar)
    u, v, z, r, beam_sums = _finite_log_ratios(zg, lidar, cell)
    cy, cx = cell_centres(h, gh, cell), cell_centres(w, gw, cell)
    if not r.size:
        zero = np.zeros((gh, gw), np.float32)
        none = np.zeros(0, np.int32)
        return FusionField(zero, np.ones((gh, gw), np.float32), np.ones((gh, w), np.float32),
                           zero, zero.copy(), zero.copy(), zg[np.ix_(cy, cx)],
                           np.full((h, gw), np.nan, np.float32), math.exp(c.beam_step),
                           zero.copy(), none, none,
                           np.zeros(0, np.float32), cell, 0, edges.Columns.empty(w))
    # The beam fill joins all returns the see-through test kept: the outlier test below is
    # against a field that the network's shape errors bend (dropping good returns where the
    # network is far off), and a return that disagrees with the next one down is not joined.
    fill, network_better = checked_beam_fill(zg, u, v, z, cell, c.beam_gap, c.beam_step,
                                             c.beam_nearer, c.beam_reach, c.extend_step,
                                             check=c.beam_check, sums=beam_sums)
    crow, ccol, frow, fcol = cell_of(h, ccell), cell_of(w, ccell), cell_of(h, cell), \
        cell_of(w, cell)  # the cell of each pixel row / column, coarse and fine
    coarse_sigma = c.coarse_sigma / c.coarse_factor  # in coarse cells
    g = np.empty((ch, cw_))
    kernels.guide_at(zg, cell_centres(h, ch, ccell), cell_centres(w, cw_, ccell), g)
    cwx, cwy = domain_weights(g, coarse_sigma, c.edge_sigma, c.iterations)
    # Outliers: returns far from the coarse field of all returns (spurious near returns,
    # a see-through return the test missed) would pull the fine field locally.
    first = np.zeros((2, ch, cw_))
    kernels.cell_sums(u, v, r, crow, ccol, first)
    kernels.filter_passes(first, cwx, cwy)
    rho_c = first[0] / (first[1] + c.prior)
    coarse, fine = np.zeros((3, ch, cw_)), np.zeros((3, gh, gw))
    n = kernels.outliers(u, v, z, r, rho_c, crow, ccol, frow, fcol, float(c.outlier_log_ratio),
                         coarse, fine)
    u, v, z, r = u[:n], v[:n], z[:n], r[:n]
    kernels.filter_passes(coarse, cwx, cwy)
    # The coarse densities are per coarse cell: per fine cell they are 1 / factor**2 of that.
    area = float(c.coarse_factor) ** 2
    coarse_up = np.stack([upsample_reference(g, c.coarse_factor, gh, gw) for g in coarse]) \
        / area
    fine_guide = np.empty((gh, gw))
    kernels.guide_at(zg, cy, cx, fine_guide)
    kernels.filter_passes(fine, *domain_weights(fine_guide, c.fine_sigma, c.edge_sigma,
                                                c.iterations))
    # A cascade: the coarse field (pulled to 0 by the prior where it has little support)
    # fills in where the fine one has little support.
    rho, spread = np.empty((gh, gw)), np.empty((gh, gw), np.float32)
    kernels.combine(fine, coarse_up, float(c.prior), float(c.coarse_weight), rho, spread)
    rho = extend_down(rho, fine[1], fine_guide, c.extend_support, c.extend_step,
                      c.extend_reach)
    gain = np.exp(rho).astype(np.float32)
    pin_u, pin_v = np.empty(n, np.int32), np.empty(n, np.int32)
    pin_z = np.empty(n, np.float32)
    pinned = kernels.pins(u, v, z, r, rho, frow, fcol, float(c.pin_tolerance), pin_u, pin_v,
                          pin_z) if c.pin_tolerance > 0 else 0
    pin_u, pin_v, pin_z = pin_u[:pinned], pin_v[:pinned], pin_z[:pinned]  # in row order
    gain_rows = along_rows(gain, cell, w)
    centre, filled = np.empty((gh, gw), np.float32), np.empty((gh, gw), np.float32)
    kernels.centres(zg, gain_rows, cy, cx, *axis_weights(h, gh, cell), fill,
                    *axis_weights(w, gw, cell), math.exp(c.beam_step), pin_u, pin_v, pin_z,
                    frow, fcol, centre, filled)
    # The edge fill reads the kept returns that the fused depth near them agrees with (or
    # where the network has no depth, beyond max_depth: those still anchor the pixels
    # between them and a nearer return). Not on a frame whose returns show the network's
    # shape the better predictor (its edges too).
    columns = edges.Columns.empty(w)
    if c.edge_step > 0 and not network_better:
        ok = edges.anchored(lidar.u, lidar.v, lidar.z, centre, cell, math.exp(c.beam_step), h, w)
        columns = edges.by_column(lidar.u[ok], lidar.v[ok], lidar.z[ok], w, h)
    return FusionField(rho.astype(np.float32), gain, gain_rows, fine[1].astype(np.float32),
                       np.ascontiguousarray(coarse_up[1]), spread, centre, fill,
                       math.exp(c.beam_step), filled, pin_u, pin_v, pin_z, cell, int(n),
                       columns, float(c.edge_step), int(c.edge_window), float(c.beam_gap),
                       float(c.beam_nearer))


def with_verdict(global_depth: np.ndarray, lidar: SparseDepth,
                 config: FusionConfig = FusionConfig()) -> FusionConfig:
    """``config`` with the frame's beam check decided on ``lidar``'s returns and fixed.

    A fusion of a subset of the returns (the self-check's half) would otherwise make its own
    verdict, and where it differs from the frame's (the fills off in the half, on in the
    frame) the subset's errors say nothing of the frame's. The verdict is taken on the same
    returns :func:`fuse_field` takes it on (those where the global depth is finite): the fills
    on (``beam_check`` False) when the LiDAR's line wins, both fills off (``beam_gap`` and
    ``edge_step`` 0) when the network's shape does.
    """
    if not config.beam_check or config.beam_gap <= 0:
        return config
    zg = np.ascontiguousarray(global_depth, dtype=np.float32)
    check_image_size(zg, lidar, 'global depth')
    u, v, z, _, sums = _finite_log_ratios(zg, lidar, int(config.cell))
    if not z.size:
        return config
    if network_wins(*beam_check(zg, u, v, z, int(config.cell), config.beam_gap,
                                config.beam_step, sums)):
        return replace(config, beam_check=False, beam_gap=0.0, edge_step=0.0)
    return replace(config, beam_check=False)


def fused_depth(global_depth: np.ndarray, field: FusionField) -> np.ndarray:
    """The fused depth [H, W] float32 metres of ``field`` (one compiled pass over the pixels)."""
    zg = np.ascontiguousarray(global_depth, dtype=np.float32)
    out = np.empty(zg.shape, np.float32)
    h, w = zg.shape
    gh, gw = field.gain.shape
    kernels.fused(zg, field.gain_rows, *axis_weights(h, gh, field.cell), field.fill,
                  *axis_weights(w, gw, field.cell), field.fill_ratio, field.pin_u, field.pin_v,
                  field.pin_z, out)
    field.edge_fill(out)
    return out


def fuse(global_depth: np.ndarray, lidar: SparseDepth,
         config: FusionConfig = FusionConfig()) -> Fusion:
    """Fuse globally fitted depth [H, W] (metres, NaN = none) with kept LiDAR returns.

    ``lidar`` holds the returns the fit used (the see-through test's kept ones), of the same
    image size. Returns a :class:`Fusion`; with no usable return the depth is the global one.
    """
    f = fuse_field(global_depth, lidar, config)
    return Fusion(fused_depth(global_depth, f), f.rho, f.support, f.support_coarse, f.spread,
                  f.cell, f.returns, f.pinned, f.filled, f.centre_depth)


__all__ = ['domain_weights', 'extend_down', 'fuse', 'fuse_field', 'fused_depth', 'Fusion',
           'FusionConfig', 'FusionField', 'guide', 'in_row_order', 'log_ratios',
           'recursive_filter', 'recursive_filter_reference', 'with_verdict']
