"""The fusion in plain numpy, step by step: the reference of :mod:`depth_node.core.fusion`.

:func:`fuse_reference` is the method of :mod:`depth_node.core.fusion` written as directly as
numpy allows (``bincount`` cell sums, the reference recursive filter, OpenCV's bilinear
upsampling at full resolution). The node runs the compiled :func:`~depth_node.core.fusion.fuse`
/ :func:`~depth_node.core.fusion.fuse_field`; the tests hold them to this one. A change of the
method is made here first, then in the compiled passes.
"""

from __future__ import annotations

import math

import numpy as np

from depth_node.core.cell_grid import cell_centres, grid_shape, upsample_reference
from depth_node.core.beam_fill import check_stride, LINE_MIN_POINTS, LINE_POINTS, \
    LINE_TOLERANCE, network_wins
from depth_node.core.edge_fill import edge_fill_reference
from depth_node.core.fusion import Fusion, FusionConfig, guide, log_ratios, \
    recursive_filter_reference
from depth_node.core.lidar import check_image_size, SparseDepth


def cell_sums_reference(u: np.ndarray, v: np.ndarray, r: np.ndarray, cell: int, gh: int,
                        gw: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell sums of ``r``, 1 and ``r**2`` ([3, gh, gw] float64) and the cell of each return."""
    idx = (v // cell) * gw + (u // cell)
    sums = np.stack([np.bincount(idx, weights=wt, minlength=gh * gw).reshape(gh, gw)
                     for wt in (r, np.ones_like(r), r * r)])
    return sums, idx


def extend_down_reference(rho: np.ndarray, support: np.ndarray, guide: np.ndarray,
                          min_support: float, max_step: float,
                          reach: float = np.inf) -> np.ndarray:
    """:func:`depth_node.core.fusion.extend_down` in numpy (whole-grid array operations)."""
    gh, gw = rho.shape
    has = support >= min_support
    any_col = has.any(axis=0)
    if not any_col.any():
        return np.array(rho, np.float64)
    last = gh - 1 - np.argmax(has[::-1], axis=0)  # [gw], lowest supported row
    with np.errstate(divide='ignore', invalid='ignore'):
        step = np.abs(np.diff(np.log(guide), axis=0))  # [gh-1, gw]
    ok = np.zeros((gh, gw), bool)
    ok[1:] = (guide[1:] > 0) & (guide[:-1] > 0) & (step <= max_step)
    rows = np.arange(gh)[:, None]
    below = (rows > last[None, :]) & any_col[None, :]
    filled = below & (np.cumsum(below & ~ok, axis=0) == 0)
    fade = np.exp(-(rows - last[None, :]) / reach) if np.isfinite(reach) else 1.0
    top = rho[last, np.arange(gw)]
    middle = np.median(top[any_col])  # the columns' lowest supported values
    return np.where(filled, middle + (top[None, :] - middle) * fade, rho)


def beam_fill_reference(global_depth: np.ndarray, u: np.ndarray, v: np.ndarray,
                        z: np.ndarray, cell: int, max_gap: float, max_step: float,
                        max_nearer: float = np.inf, reach: float = 0.0,
                        edge_step: float = 0.1) -> np.ndarray:
    """:func:`depth_node.core.beam_fill.beam_fill` in numpy (a loop over the column bands)."""
    height, width = global_depth.shape
    gh, gw = grid_shape(height, width, cell)
    out = np.full((height, gw), np.nan, np.float32)
    if max_gap <= 0 or not z.size:
        return out
    idx = (v // cell) * gw + (u // cell)
    n, sv, sd = (np.bincount(idx, weights=wt, minlength=gh * gw).reshape(gh, gw)
                 for wt in (np.ones(z.size), v.astype(np.float64), 1.0 / z.astype(np.float64)))
    with np.errstate(divide='ignore', invalid='ignore'):
        mv, md = sv / n, sd / n
        inv = 1.0 / np.asarray(global_depth, np.float64)
    at = lambda row: min(int(row + 0.5), height - 1)  # noqa: E731 - the row of a mean
    for x in range(gw):
        xc = min(x * cell + cell // 2, width - 1)
        rows = np.flatnonzero(n[:, x])
        chain = [rows[0]] if rows.size else []  # the joined run ending at the current cell
        for a, b in zip(rows[:-1], rows[1:]):
            va, vb, da, db = mv[a, x], mv[b, x], md[a, x], md[b, x]
            if vb - va > max_gap or abs(np.log(da / db)) > max_step:
                chain = [b]
                continue
            chain.append(b)
            r = np.arange(int(np.floor(va)), min(int(np.ceil(vb)), height - 1) + 1)
            t = (r - va) / (vb - va)
            ga, gb = inv[at(va), xc], inv[at(vb), xc]
            with np.errstate(invalid='ignore'):
                front = inv[r, xc] > (1.0 + max_nearer) * (ga + t * (gb - ga))
            seg = out[r, x]
            out[r, x] = np.where(np.isfinite(seg) | front, seg, da + t * (db - da))
        if reach > 0 and len(chain) >= LINE_MIN_POINTS:
            last = chain[-LINE_POINTS:]
            pv, pd = mv[last, x], md[last, x]
            pg = inv[[at(r) for r in pv], xc]
            if not np.all(np.isfinite(pg)):
                continue
            line, g_line = np.polyfit(pv, pd, 1), np.polyfit(pv, pg, 1)
            if np.sqrt(np.mean((pd - np.polyval(line, pv)) ** 2)) > LINE_TOLERANCE * pd.mean():
                continue
            prev = inv[at(pv[-1]), xc]
            for r in range(int(np.ceil(pv[-1])), min(height - 1, int(pv[-1] + reach)) + 1):
                g = inv[r, xc]
                if not (np.isfinite(g) and g > 0) or abs(np.log(g / prev)) > edge_step:
                    break
                prev = g
                d = np.polyval(line, r)
                if d <= 0:
                    break
                if g <= (1.0 + max_nearer) * np.polyval(g_line, r) and np.isnan(out[r, x]):
                    out[r, x] = d
    return out


def beam_check_reference(global_depth: np.ndarray, u: np.ndarray, v: np.ndarray,
                         z: np.ndarray, cell: int, max_gap: float,
                         max_step: float) -> tuple[float, float, int]:
    """:func:`depth_node.core.beam_fill.beam_check` in numpy (a loop over the column bands)."""
    height, width = global_depth.shape
    gh, gw = grid_shape(height, width, cell)
    idx = (v // cell) * gw + (u // cell)
    with np.errstate(divide='ignore', invalid='ignore'):
        inv = 1.0 / np.asarray(global_depth, np.float64)
    n, sv, sd, sg = (np.bincount(idx, weights=wt, minlength=gh * gw).reshape(gh, gw)
                     for wt in (np.ones(z.size), v.astype(np.float64),
                                1.0 / z.astype(np.float64), inv[v, u]))
    with np.errstate(divide='ignore', invalid='ignore'):
        mv, md, mg = sv / n, sd / n, sg / n
    lin, net = [], []
    for x in range(0, gw, check_stride(gw)):
        rows = np.flatnonzero(n[:, x])
        for a, b, c in zip(rows[:-2], rows[1:-1], rows[2:]):
            (va, vb, vc), (da, db, dc) = mv[[a, b, c], x], md[[a, b, c], x]
            g = mg[[a, b, c], x]
            if vc - va > max_gap or abs(np.log(da / db)) > max_step \
                    or abs(np.log(db / dc)) > max_step or not np.all(np.isfinite(g) & (g > 0)):
                continue
            t = (vb - va) / (vc - va)
            lin.append(abs(np.log(db / (da + t * (dc - da)))))
            ra, rc = np.log(da / g[0]), np.log(dc / g[2])
            net.append(abs(np.log(db / g[1]) - (ra + t * (rc - ra))))
    if not lin:
        return float('nan'), float('nan'), 0
    return float(np.median(lin)), float(np.median(net)), len(lin)


def fill_pixels_reference(fill: np.ndarray, cell: int, depth: np.ndarray,
                          step: float) -> np.ndarray:
    """The beam fill [H, gw] at every pixel [H, W] of the field's ``depth``: bands
    interpolated along x (OpenCV's convention) where they agree within ``step`` (log), across
    a larger step the band nearer ``depth``, a lone band's value up to half way, NaN
    elsewhere."""
    gw = fill.shape[1]
    width = depth.shape[1]
    src = np.clip((np.arange(width) + 0.5) / cell - 0.5, 0.0, gw - 1.0)
    x0 = src.astype(np.int64)
    x1 = np.minimum(x0 + 1, gw - 1)
    t = (src - x0).astype(np.float32)
    p0, p1 = fill[:, x0], fill[:, x1]
    with np.errstate(divide='ignore', invalid='ignore'):
        agree = np.abs(np.log(p0 / p1)) <= step
        nearer0 = np.abs(np.log(p0 * depth)) <= np.abs(np.log(p1 * depth))
    both = np.isfinite(p0) & np.isfinite(p1)
    edge = np.where(np.isfinite(depth), np.where(nearer0, p0, p1), np.nan)
    lone = np.where(t < 0.5, p0, p1)
    return np.where(both, np.where(agree, p0 + t * (p1 - p0), edge), lone).astype(np.float32)


def fuse_reference(global_depth: np.ndarray, lidar: SparseDepth,
                   config: FusionConfig = FusionConfig()) -> Fusion:
    """:func:`depth_node.core.fusion.fuse` in plain numpy (same arguments, same result)."""
    zg = np.asarray(global_depth, dtype=np.float32)
    h, w = check_image_size(zg, lidar, 'global depth')
    c = config
    cell, ccell = int(c.cell), int(c.cell) * int(c.coarse_factor)
    gh, gw = grid_shape(h, w, cell)
    ch, cw_ = grid_shape(h, w, ccell)
    zero = np.zeros((gh, gw), np.float32)
    u, v, z, r = log_ratios(zg, lidar)
    if not r.size:
        return Fusion(zg.copy(), zero, zero, zero.copy(), zero.copy(), cell, 0, 0, zero.copy())
    coarse_guide = guide(zg, ccell, ch, cw_)
    coarse_sigma = c.coarse_sigma / c.coarse_factor  # in coarse cells
    sums, cidx = cell_sums_reference(u, v, r, ccell, ch, cw_)
    first = recursive_filter_reference(sums[:2], coarse_guide, coarse_sigma, c.edge_sigma,
                                       c.iterations)
    rho_c = first[0] / (first[1] + c.prior)
    bands = beam_fill_reference(zg, u, v, z, cell, c.beam_gap, c.beam_step, c.beam_nearer,
                                c.beam_reach, c.extend_step)
    network_better = False
    if c.beam_check:
        network_better = c.beam_gap > 0 and network_wins(
            *beam_check_reference(zg, u, v, z, cell, c.beam_gap, c.beam_step))
        if network_better:  # the network predicts beams better: no beam fill, no edge fill
            bands[:] = np.nan
    keep = np.abs(r - rho_c.reshape(-1)[cidx]) <= c.outlier_log_ratio
    if not keep.all():
        u, v, z, r = u[keep], v[keep], z[keep], r[keep]
        sums, _ = cell_sums_reference(u, v, r, ccell, ch, cw_)
    coarse = recursive_filter_reference(sums, coarse_guide, coarse_sigma, c.edge_sigma,
                                        c.iterations)
    area = float(c.coarse_factor) ** 2
    coarse_up = np.stack([upsample_reference(g, c.coarse_factor, gh, gw) for g in coarse]) \
        / area
    fine_sums, idx = cell_sums_reference(u, v, r, cell, gh, gw)
    fine_guide = guide(zg, cell, gh, gw)
    fine = recursive_filter_reference(fine_sums, fine_guide, c.fine_sigma, c.edge_sigma,
                                      c.iterations)
    rho_c = coarse_up[0] / (coarse_up[1] + c.prior)
    num = fine[0] + c.coarse_weight * rho_c
    den = fine[1] + c.coarse_weight
    rho = num / den
    w_f = fine[1] / den
    sq_f = fine[2] / np.maximum(fine[1], 1e-12)
    sq_c = coarse_up[2] / np.maximum(coarse_up[1], 1e-12)
    spread = np.sqrt(np.maximum(w_f * sq_f + (1.0 - w_f) * sq_c - rho * rho, 0.0))
    rho = extend_down_reference(rho, fine[1], fine_guide, c.extend_support, c.extend_step,
                                c.extend_reach)
    depth = zg * upsample_reference(np.exp(rho), cell, h, w)
    fill = fill_pixels_reference(bands, cell, depth, c.beam_step)
    with np.errstate(divide='ignore', invalid='ignore'):
        filled = np.isfinite(depth) & (fill > 0)
        depth = np.where(filled, np.float32(1.0) / fill, depth).astype(np.float32)
    filled_cells = filled[np.ix_(cell_centres(h, gh, cell), cell_centres(w, gw, cell))]
    pinned = 0
    if c.pin_tolerance > 0:
        pin = (np.abs(r - rho.reshape(-1)[idx]) <= c.pin_tolerance) & np.isfinite(depth[v, u])
        pinned = int(pin.sum())
        pin &= ~(fill[v, u] > 0)  # the beam fill holds there
        depth[v[pin], u[pin]] = z[pin]
    centre = depth[np.ix_(cell_centres(h, gh, cell), cell_centres(w, gw, cell))].copy()
    good = np.isfinite(lidar.z) & (lidar.z > 0)  # every kept return (not only where zg is)
    # ... that a neighbouring cell's fused depth agrees with (or has no depth)
    # (a depth of 0 beyond the grid's border: finite, and never within a ratio of a return)
    padded = np.pad(centre.astype(np.float64), 1, constant_values=0.0)
    near_ok = np.zeros(lidar.count, bool)
    ratio = math.exp(c.beam_step)
    cy, cx = lidar.v // cell + 1, lidar.u // cell + 1
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            zc = padded[cy + dy, cx + dx]
            with np.errstate(invalid='ignore'):
                agrees = (lidar.z < ratio * zc) & (zc < ratio * lidar.z)
            near_ok |= ~np.isfinite(zc) | agrees
    good &= near_ok
    if not network_better:
        depth = edge_fill_reference(depth, lidar.u[good], lidar.v[good], lidar.z[good],
                                    c.edge_step, int(c.edge_window), c.beam_gap,
                                    c.beam_nearer)
    return Fusion(depth, rho.astype(np.float32), fine[1].astype(np.float32),
                  coarse_up[1].astype(np.float32), spread.astype(np.float32), cell,
                  int(r.size), pinned, filled_cells.astype(np.float32), centre)


__all__ = ['beam_check_reference', 'beam_fill_reference', 'cell_sums_reference',
           'fill_pixels_reference', 'fuse_reference']
