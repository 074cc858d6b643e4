"""After the global fit: fusion with the LiDAR, per-pixel uncertainty, and refusal.

:func:`trusted_depth` turns the globally fitted depth of a frame into what the node publishes:

1. **fusion** (:func:`depth_node.core.fusion.fuse`, ``fusion.enable``): the network's shape
   pinned to the LiDAR returns the fit kept;
2. **uncertainty** (:mod:`depth_node.core.uncertainty`): sigma in metres per pixel from the
   calibrated model, on the fusion's support, spread and depth and the fit's residual, with
   the correction the fusion carried onto cells no return supports in quadrature; scaled
   where LiDAR supports the pixel by the frame's held-out self-check
   (:mod:`depth_node.pipeline.self_check`) and where it does not by the keyframe teacher's
   check (:mod:`depth_node.pipeline.teacher_check`); per pixel, next to the depth's edges,
   the step the pixel may lie on the wrong side of in quadrature
   (:mod:`depth_node.core.edge_sigma`);
3. **refusal per pixel**: where ``sigma / z`` exceeds ``output.max_relative_uncertainty`` the
   depth (and sigma) is NaN, so ``depth`` and ``depth/points`` carry only supported metres;
4. **refusal per frame**: when this frame's sweep supports less than
   ``refusal.min_lidar_share`` of the pixels that have depth, the frame publishes no metric
   depth at all (the fit then rests on a corner of the image and says nothing of the rest). A
   frame without a sweep (its fit held, within ``fit.hold_time``) is not refused as a whole:
   its pixels carry the sigma of unsupported depth.

The image itself is checked before (:mod:`depth_node.core.image_quality`, in
:meth:`~depth_node.pipeline.frame.DepthPipeline.process`).

Cost: everything up to sigma / z runs on the fusion's grid (:func:`~depth_node.core.fusion.
fuse_field`, :meth:`~depth_node.core.uncertainty.UncertaintyModel.relative_sigma_cells`); the
full-resolution work is one compiled pass, :func:`compose`: the fused depth (global depth
times the upsampled gain, LiDAR pins written in), sigma / z upsampled, refusal, sigma and the
counts of the report; then the fusion's edge fill (:mod:`depth_node.core.edge_fill`) on the
pixels next to the fused depth's edges, and the edge term of sigma (one compiled pass that
refuses in place, :func:`~depth_node.core.edge_sigma.add_edge_sigma`).
:mod:`depth_node.pipeline.trust_reference` is the
same stage in numpy, step by step, which the tests hold this one to. With a ``timings``
dict, :func:`trusted_depth` writes the milliseconds of its parts (:data:`PARTS`) into it
(``benchmark pipeline`` prints them).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from depth_node.core.align import AffineFit
from depth_node.core.cell_grid import along_rows, axis_weights, lerp
from depth_node.core.fusion import Fusion, fuse_field, FusionConfig, FusionField
from depth_node.core import edge_fill, edge_sigma
from depth_node.core import beam_kernels
from depth_node.core.beam_kernels import fill_row, fill_value
from depth_node.core.extrinsic_check import misalignment_sigma
from depth_node.core.jit import compiled
from depth_node.core.lidar import SparseDepth
from depth_node.core.uncertainty import cell_depth, FEATURES, UncertaintyModel, unsupported_gate
from depth_node.pipeline.config import PipelineConfig

try:  # numba is a dependency; without it (a broken install) the numpy step runs
    from numba import njit
except ImportError:  # pragma: no cover
    njit = None

#: Returns per cell (under the fine kernel) from which a cell counts as LiDAR-supported.
SUPPORTED_DENSITY = 0.05
#: The parts of :func:`trusted_depth` it times (ms) into its ``timings`` (``benchmark
#: pipeline`` prints them): the fusion's grid, sigma / z on it, the per-pixel pass with the
#: edge fill, the edge term of sigma, the frame's report.
PARTS = ('trust.field', 'trust.sigma_cells', 'trust.compose', 'trust.edge_sigma',
         'trust.report')


@dataclass(frozen=True)
class TrustReport:
    """Per-frame figures of the published depth (the node's diagnostics)."""

    coverage: float  # share of the pixels with depth whose sigma/z is within the threshold
    lidar_share: float  # share of the pixels with depth that LiDAR supports
    median_relative_sigma: float  # median sigma/z over the published pixels (NaN: none)
    refused: str = ''  # why the frame's metric depth was refused ('' = published)
    sigma_scale: float = 1.0  # held-out scale applied to supported sigma (self_check)
    teacher_scale: float = 1.0  # keyframe teacher's scale of unsupported sigma (teacher_check)
    extrinsic_shift: int = 0  # px, the LiDAR's misalignment in sigma (extrinsic_check; 0: none)


@dataclass
class Trusted:
    """What :func:`trusted_depth` made of one frame."""

    depth: Optional[np.ndarray]  # [H, W] float32 m, NaN where refused; None: frame refused
    sigma: Optional[np.ndarray]  # [H, W] float32 m, NaN where depth is NaN
    fusion: Union[FusionField, Fusion]  # the grids (the reference keeps a Fusion)
    report: TrustReport
    unrefused: np.ndarray  # [H, W] float32 m: the depth before any refusal
    relative_sigma: np.ndarray  # [H, W] float32 sigma / z before any refusal


def empty_support(height: int, width: int) -> SparseDepth:
    """No LiDAR returns (a frame whose fit is held from an earlier sweep)."""
    none = np.zeros(0, np.int32)
    return SparseDepth(none, none, np.zeros(0, np.float32), width, height)


def fit_residual(fit: AffineFit) -> float:
    """The fit's log-depth residual sigma (robust fits report it; least squares: from abs_rel)."""
    if fit.inliers >= 0:
        return float(fit.residual)
    return math.sqrt(math.pi / 2.0) * float(fit.abs_rel)


@dataclass
class Composed:
    """What the per-pixel pass :func:`compose` writes ([H, W] float32 each)."""

    depth: np.ndarray  # m, the depth before refusal (fused or global), NaN = none
    published: np.ndarray  # m, NaN where sigma / z > threshold
    sigma: np.ndarray  # m, NaN where published is NaN
    relative_sigma: np.ndarray  # sigma / z, before refusal
    counts: np.ndarray  # [3] int64: pixels with depth, published, LiDAR-supported with depth


def trusted_depth(global_depth: np.ndarray, lidar: Optional[SparseDepth], fit: AffineFit,
                  config: PipelineConfig, model: Optional[UncertaintyModel],
                  fit_age: float = 0.0, sigma_scale: float = 1.0,
                  teacher_scale: float = 1.0, extrinsic_shift: int = 0,
                  timings: Optional[dict] = None) -> Trusted:
    """Fuse, attach sigma and refuse (see the module docstring).

    Parameters
    ----------
    global_depth
        [H, W] float32 metres from the applied fit (NaN = none).
    lidar
        The kept returns of this frame's sweep (None: no sweep this frame).
    fit
        The applied fit (its residual is a feature of the uncertainty).
    config
        ``fusion`` / ``fusion_options()``, ``max_relative_uncertainty``, ``min_lidar_share``.
    model
        The calibrated uncertainty model; None (``uncertainty.enable`` false): fusion only, no
        sigma and no refusal.
    fit_age
        Seconds since the applied fit was made (a held fit): its scale may have drifted by the
        temporal filter's random walk, ``filter_process_noise * sqrt(age)`` in log scale,
        which adds to sigma / z in quadrature.
    sigma_scale
        The held-out scale of :mod:`depth_node.pipeline.self_check` (1: as calibrated): sigma
        is multiplied by ``sigma_scale ** (1 - unsupported)``, i.e. fully where LiDAR supports
        a cell and not at all where none is near. Not applied to a frame without a sweep.
    teacher_scale
        The keyframe teacher's scale of :mod:`depth_node.pipeline.teacher_check` (1: none):
        sigma is multiplied by ``teacher_scale ** unsupported``, fully where no return is near.
    extrinsic_shift
        The LiDAR's misalignment with the image in px (:mod:`depth_node.core.extrinsic_check`;
        0: aligned or unknown): on a frame with a sweep, sigma / z gains the depth change of
        such a shift in quadrature (:func:`misaligned`).
    timings
        If given, the milliseconds of each part (:data:`PARTS`) are written into it.
    """
    clock = [time.perf_counter()]
    zg = np.ascontiguousarray(global_depth, dtype=np.float32)
    h, w = zg.shape
    field = fuse_field(zg, lidar if lidar is not None else empty_support(h, w),
                       config.fusion_options())
    clock.append(time.perf_counter())
    fused = config.fusion and lidar is not None  # without a sweep nothing was fused
    if model is None:
        rel_cells = np.full(field.rho.shape, np.nan, np.float32)
    else:
        rel_cells = model.relative_sigma_cells(field, fit_residual(fit), fused=fused)
        rel_cells = scaled(rel_cells, field.support, model, sigma_scale if fused else 1.0,
                           teacher_scale)
        if fit_age > 0 and math.isfinite(fit_age):
            drift = config.filter_process_noise ** 2 * fit_age
            rel_cells = np.sqrt(rel_cells * rel_cells + np.float32(drift))
        if fused and extrinsic_shift:
            rel_cells = misaligned(rel_cells, field.centre_depth, field.cell, extrinsic_shift,
                                   model)
    supported = (field.support >= SUPPORTED_DENSITY).astype(np.float32)
    clock.append(time.perf_counter())
    c = compose(zg, rel_cells, supported, field.cell, config.max_relative_uncertainty,
                field if fused else None)
    clock.append(time.perf_counter())
    if model is None:
        n_depth, _, n_supported = (int(k) for k in c.counts)
        lidar_share = n_supported / n_depth if n_depth else 0.0
        _record(timings, clock)
        return Trusted(c.depth, None, field, TrustReport(1.0, lidar_share, float('nan')),
                       c.depth, c.relative_sigma)
    with_edges(c, model, config.max_relative_uncertainty)
    clock.append(time.perf_counter())
    centres = field.centre_depth if fused else cell_depth(zg, field.cell)
    out = judged(c, rel_cells, centres, field, config, lidar is not None,
                 float(sigma_scale) if fused else 1.0, teacher_scale,
                 extrinsic_shift if fused else 0)
    clock.append(time.perf_counter())
    _record(timings, clock)
    return out


def _record(timings: Optional[dict], clock: list) -> None:
    """The parts' milliseconds from the ``clock`` readings (one more than the parts that
    ran; a part that did not run is left out) into ``timings`` (None: nothing)."""
    if timings is not None:
        for name, t0, t1 in zip(PARTS, clock, clock[1:]):
            timings[name] = (t1 - t0) * 1e3


def with_edges(c: Composed, model: UncertaintyModel, threshold: float) -> Composed:
    """``c`` with the model's edge term of sigma added in place (its published pixels whose
    sigma / z now exceeds ``threshold`` refused, the count of published pixels updated;
    :func:`~depth_node.core.edge_sigma.add_edge_sigma`)."""
    c.counts[1] -= edge_sigma.add_edge_sigma(
        c.depth, model.edge_radius, model.edge_min_step, model.edge_weight, threshold,
        model.max_relative, c.relative_sigma, c.published, c.sigma)
    return c


def misaligned(rel_cells: np.ndarray, centres: np.ndarray, cell: int, shift: int,
               model: UncertaintyModel) -> np.ndarray:
    """``rel_cells`` with the depth change of a ``shift``-px misplaced LiDAR added in
    quadrature (:func:`~depth_node.core.extrinsic_check.misalignment_sigma` of the cells'
    depth ``centres``); clipped to the model's range."""
    extra = misalignment_sigma(centres, cell, shift)
    out = np.sqrt(rel_cells.astype(np.float64) ** 2 + extra * extra)
    return np.clip(out, model.min_relative, model.max_relative).astype(np.float32)


def _usable(scale: float) -> float:
    """A scale as :func:`scaled` applies it: 1 unless finite and positive."""
    return float(scale) if math.isfinite(scale) and scale > 0 else 1.0


def scaled(rel_cells: np.ndarray, support: np.ndarray, model: UncertaintyModel,
           sigma_scale: float, teacher_scale: float = 1.0) -> np.ndarray:
    """``rel_cells`` times ``sigma_scale ** (1 - unsupported)`` (the self-check's scale,
    where LiDAR supports the cell) and ``teacher_scale ** unsupported`` (the keyframe
    teacher's, where it does not); clipped to the model's range."""
    s, k = _usable(sigma_scale), _usable(teacher_scale)
    if s == 1.0 and k == 1.0:
        return rel_cells
    log_s, log_k = math.log(s), math.log(k)
    gain = np.exp(log_s + (log_k - log_s) * unsupported_gate(support)).astype(np.float32)
    return np.clip(rel_cells * gain, model.min_relative, model.max_relative).astype(np.float32)


def judged(c: Composed, rel_cells: np.ndarray, centres: np.ndarray,
           fusion: Union[FusionField, Fusion], config: PipelineConfig, had_sweep: bool,
           sigma_scale: float = 1.0, teacher_scale: float = 1.0,
           extrinsic_shift: int = 0) -> Trusted:
    """The frame's report and refusal from the composed pixels (shared with the reference)."""
    n_depth, n_keep, n_supported = (int(k) for k in c.counts)
    lidar_share = n_supported / n_depth if n_depth else 0.0
    coverage = n_keep / n_depth if n_depth else 0.0
    # Median sigma/z of the published pixels, on the grid (a cell per 16 pixels).
    median = float(_published_median(np.ascontiguousarray(rel_cells, np.float32),
                                     np.ascontiguousarray(centres, np.float32),
                                     float(config.max_relative_uncertainty)))
    refused = ''
    if had_sweep and n_depth and lidar_share < config.min_lidar_share:
        refused = f'LiDAR supports only {100 * lidar_share:.1f} % of the image ' \
                  f'(refusal.min_lidar_share {100 * config.min_lidar_share:g} %)'
    elif not n_keep:
        refused = 'no pixel within output.max_relative_uncertainty ' \
                  f'{config.max_relative_uncertainty:g}'
    report = TrustReport(coverage, lidar_share, median, refused, sigma_scale,
                         _usable(teacher_scale), int(extrinsic_shift))
    if refused:
        return Trusted(None, None, fusion, report, c.depth, c.relative_sigma)
    return Trusted(c.published, c.sigma, fusion, report, c.depth, c.relative_sigma)


def warm_up() -> None:
    """Compile the numba kernels (fusion, uncertainty, per-pixel step) now, not on a frame.

    The first call in a process compiles them, or loads them from numba's cache (``cache=True``,
    next to the package or in the user's cache); without this the first frame of a node would
    take that time on top of its own and newer frames would be dropped meanwhile.
    """
    depth = np.full((8, 8), 10.0, np.float32)
    lidar = SparseDepth(np.array([1, 5], np.int32), np.array([2, 6], np.int32),
                        np.array([9.0, 11.0], np.float32), 8, 8)
    field = fuse_field(depth, lidar, FusionConfig(cell=2, coarse_factor=2))
    UncertaintyModel((0.0,) * len(FEATURES), (0.0,) * len(FEATURES),
                     carried=0.5).relative_sigma_cells(field, 0.1)
    rel = np.full(field.rho.shape, 0.1, np.float32)
    for f in (field, None):
        compose(depth, rel, np.ones(field.rho.shape, np.float32), 2, 0.2, f)
    _published_median(rel, field.centre_depth, 0.2)
    beam_kernels.medians(np.ones(2), np.ones(2), 2)
    edge_fill.warm_up()  # its kernels run only on frames with an edge
    edge_sigma.warm_up()


def _compose_kernel(zg: np.ndarray, gain_rows: np.ndarray, rel_rows: np.ndarray,
                    sup_rows: np.ndarray, y0: np.ndarray, y1: np.ndarray, fy: np.ndarray,
                    fill: np.ndarray, x0: np.ndarray, x1: np.ndarray, fx: np.ndarray,
                    ratio: float, threshold: float, pin_u: np.ndarray, pin_v: np.ndarray,
                    pin_z: np.ndarray, depth: np.ndarray, out: np.ndarray, sigma: np.ndarray,
                    rel: np.ndarray, counts: np.ndarray) -> None:
    """One pass over the pixels: fused depth, pins, sigma / z, refusal, sigma, counts.

    The grids come interpolated along x (``*_rows`` [gh, W],
    :func:`~depth_node.core.cell_grid.along_rows`; a gain of ones when nothing is fused);
    each pixel interpolates between two rows along y. The beam fill ``fill`` [H, gw]
    (all NaN when nothing is fused) replaces the fused depth where it has a value.
    """
    h, w = zg.shape
    nan = np.float32(np.nan)
    thr = np.float32(threshold)
    half = np.float32(0.5)
    n_depth = n_keep = n_sup = 0
    p = 0  # next pin
    for y in range(h):
        a0, a1, ty = y0[y], y1[y], fy[y]
        g0, g1, r0, r1 = gain_rows[a0], gain_rows[a1], rel_rows[a0], rel_rows[a1]
        s0, s1 = sup_rows[a0], sup_rows[a1]
        zrow, drow, orow, srow, rrow = zg[y], depth[y], out[y], sigma[y], rel[y]
        frow = fill[y]
        for x in range(w):  # the field (no branch: the loop vectorises)
            drow[x] = zrow[x] * lerp(g0[x], g1[x], ty)  # gain 1 exactly when not fused
        fill_row(drow, frow, x0, x1, fx, ratio)  # the beam fill, in the rows that have one
        # Refusal without a branch on the depth (a NaN depth stays NaN either way), the
        # counts in int32 per row (docs/benchmarks.md: the kernel ~10 % faster than with both).
        row_depth = row_keep = row_sup = np.int32(0)
        for x in range(w):
            z = drow[x]
            r = lerp(r0[x], r1[x], ty)
            rrow[x] = r
            o = z if r <= thr else nan
            orow[x] = o
            srow[x] = o * r
            has = z == z  # finite (max_depth caps the depth, so never inf)
            row_depth += np.int32(has)
            row_keep += np.int32(o == o)
            row_sup += np.int32(has & (lerp(s0[x], s1[x], ty) >= half))
        n_depth += row_depth
        n_keep += row_keep
        n_sup += row_sup
        # The LiDAR where it agrees with the field and the beam fill has no value (fused
        # only; pins come in row order, so this row is still in the cache).
        while p < pin_z.size and pin_v[p] == y:
            u, z = pin_u[p], pin_z[p]
            zf = zrow[u] * lerp(g0[u], g1[u], ty)  # the field's depth there
            if zf == zf and not fill_value(frow[x0[u]], frow[x1[u]], fx[u], zf, ratio) > 0:
                drow[u] = z
                if orow[u] == orow[u]:
                    orow[u] = z
                    srow[u] = z * rrow[u]
            p += 1
    counts[0], counts[1], counts[2] = n_depth, n_keep, n_sup


def _published_median_kernel(rel: np.ndarray, centres: np.ndarray, threshold: float) -> float:
    """Median of ``rel`` over the cells within ``threshold`` whose centre has depth (NaN:
    none), as ``np.median`` of them."""
    kept = np.empty(rel.size, np.float32)
    n = 0
    r, c, thr = rel.ravel(), centres.ravel(), np.float32(threshold)
    for i in range(r.size):
        if r[i] <= thr and np.isfinite(c[i]):
            kept[n] = r[i]
            n += 1
    return np.median(kept[:n]) if n else np.nan


_published_median = compiled(_published_median_kernel)


@functools.lru_cache(maxsize=4)
def _ones(rows: int, width: int) -> np.ndarray:
    """A gain of exactly 1 (no fusion), read-only and shared."""
    out = np.ones((rows, width), np.float32)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=4)
def _no_fill(rows: int, bands: int) -> np.ndarray:
    """No beam fill (nothing fused): all NaN, read-only and shared."""
    out = np.full((rows, bands), np.nan, np.float32)
    out.flags.writeable = False
    return out


_compiled_compose = njit(cache=True, nogil=True)(_compose_kernel) if njit is not None \
    else _compose_kernel


def compose(global_depth: np.ndarray, rel_cells: np.ndarray, supported: np.ndarray, cell: int,
            threshold: float, field: Optional[FusionField] = None) -> Composed:
    """The per-pixel step, compiled (reference: ``trust_reference.compose_reference``).

    ``global_depth`` [H, W] float32 m; ``rel_cells`` [gh, gw] sigma / z and ``supported``
    [gh, gw] (1.0 / 0.0) on the ``cell``-pixel grid, upsampled bilinearly. With ``field`` the
    depth is fused (times its upsampled gain, its pins written in); without, it is
    ``global_depth``. Pixels whose sigma / z exceeds ``threshold`` are NaN in ``published``.
    """
    zg = np.ascontiguousarray(global_depth, dtype=np.float32)
    h, w = zg.shape
    none = np.zeros(0, np.int32)
    gh, gw = rel_cells.shape
    gain, fill, pins = (field.gain_rows, field.fill, (field.pin_u, field.pin_v, field.pin_z)) \
        if field is not None else (_ones(gh, w), _no_fill(h, gw),
                                   (none, none, np.zeros(0, np.float32)))
    ratio = field.fill_ratio if field is not None else 1.0
    # One allocation for the four images (one block of pages to map, not four).
    c = Composed(*np.empty((4, h, w), np.float32), np.zeros(3, np.int64))
    _compiled_compose(zg, gain, along_rows(rel_cells, cell, w),
                      along_rows(supported, cell, w), *axis_weights(h, gh, cell), fill,
                      *axis_weights(w, gw, cell), float(ratio), float(threshold), *pins, c.depth,
                      c.published, c.sigma, c.relative_sigma, c.counts)
    if field is not None:  # at the fused depth's edges, the returns' own interpolation
        field.edge_fill(c.depth, c.published, c.sigma, c.relative_sigma)
    return c


__all__ = ['compose', 'Composed', 'empty_support', 'fit_residual', 'judged', 'misaligned',
           'PARTS', 'scaled', 'with_edges',
           'SUPPORTED_DENSITY',
           'Trusted', 'trusted_depth', 'TrustReport', 'warm_up']
