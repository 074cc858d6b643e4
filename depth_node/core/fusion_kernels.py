"""The compiled passes of the fusion (numba): what :mod:`depth_node.core.fusion` runs per frame.

Each pass is a plain Python function compiled with ``njit(cache=True, nogil=True)`` (the GIL is
released, so the node's other threads run meanwhile); without numba (a broken install) the
same functions run as Python. :mod:`depth_node.core.fusion` calls them in the method's order
and documents the method; :mod:`depth_node.core.fusion_reference` is the same method in numpy,
which the tests hold these passes to.
"""

from __future__ import annotations

import math

import numpy as np

from depth_node.core.beam_kernels import add_to_cell, fill_row, fill_value
from depth_node.core.cell_grid import lerp

from depth_node.core.jit import compiled


def _filter_kernel(out: np.ndarray, wx: np.ndarray, wy: np.ndarray) -> None:
    """Every pass of the recurrence on ``out`` [C, h, w] in place (compiled below).

    The order of the updates is the reference's; the horizontal recurrences of all rows
    advance together (rows innermost) and the vertical ones update whole rows, so neither
    waits on the latency of its own chain.
    """
    c, h, w = out.shape
    for i in range(wx.shape[0]):
        for k in range(c):
            for x in range(1, w):
                for y in range(h):
                    out[k, y, x] += wx[i, y, x - 1] * (out[k, y, x - 1] - out[k, y, x])
            for x in range(w - 2, -1, -1):
                for y in range(h):
                    out[k, y, x] += wx[i, y, x] * (out[k, y, x + 1] - out[k, y, x])
            for y in range(1, h):
                for x in range(w):
                    out[k, y, x] += wy[i, y - 1, x] * (out[k, y - 1, x] - out[k, y, x])
            for y in range(h - 2, -1, -1):
                for x in range(w):
                    out[k, y, x] += wy[i, y, x] * (out[k, y + 1, x] - out[k, y, x])


def _log_weights_kernel(g: np.ndarray, k: float, log_a: float, wx: np.ndarray,
                        wy: np.ndarray) -> None:
    """``log(a) * (1 + k |step of g|)`` along x and y: the logarithm of the last pass's weights."""
    h, w = g.shape
    for y in range(h):
        for x in range(w - 1):
            wx[y, x] = log_a * (1.0 + k * abs(g[y, x + 1] - g[y, x]))
    for y in range(h - 1):
        for x in range(w):
            wy[y, x] = log_a * (1.0 + k * abs(g[y + 1, x] - g[y, x]))


def _cell_sums_kernel(u: np.ndarray, v: np.ndarray, r: np.ndarray, row_cell: np.ndarray,
                      col_cell: np.ndarray, out: np.ndarray) -> None:
    """Add ``r``, 1 (and ``r**2`` when ``out`` has 3 channels) of each return to its cell.

    ``row_cell`` [H] / ``col_cell`` [W] is the cell of each pixel row / column (a table, not a
    division per return).
    """
    c = out.shape[0]
    for i in range(r.size):
        y, x = row_cell[v[i]], col_cell[u[i]]
        out[0, y, x] += r[i]
        out[1, y, x] += 1.0
        if c > 2:
            out[2, y, x] += r[i] * r[i]


def _outlier_kernel(u: np.ndarray, v: np.ndarray, z: np.ndarray, r: np.ndarray,
                    rho_c: np.ndarray, crow: np.ndarray, ccol: np.ndarray, frow: np.ndarray,
                    fcol: np.ndarray, tolerance: float, coarse: np.ndarray,
                    fine: np.ndarray) -> int:
    """Keep the returns within ``tolerance`` of the coarse field ``rho_c``; sum them per cell.

    The kept returns are moved to the front of ``u``, ``v``, ``z``, ``r`` (order kept);
    ``coarse`` and ``fine`` [3, ., .] get their sums (``crow``... : the coarse / fine cell of
    each pixel row and column). Returns how many were kept.
    """
    n = 0
    with_squares = coarse.shape[0] > 2, fine.shape[0] > 2
    for i in range(r.size):
        ui, vi, ri = u[i], v[i], r[i]
        cy, cx = crow[vi], ccol[ui]
        if abs(ri - rho_c[cy, cx]) <= tolerance:
            u[n], v[n], z[n], r[n] = ui, vi, z[i], ri
            n += 1
            # The cell sums of :func:`_cell_sums_kernel`, in the same order, in this pass.
            coarse[0, cy, cx] += ri
            coarse[1, cy, cx] += 1.0
            if with_squares[0]:
                coarse[2, cy, cx] += ri * ri
            fy, fx = frow[vi], fcol[ui]
            fine[0, fy, fx] += ri
            fine[1, fy, fx] += 1.0
            if with_squares[1]:
                fine[2, fy, fx] += ri * ri
    return n


def _ratio_kernel(zg: np.ndarray, u: np.ndarray, v: np.ndarray, z: np.ndarray,
                  q: np.ndarray, row_cell: np.ndarray, col_cell: np.ndarray,
                  sums: np.ndarray) -> None:
    """``q = z / z_g`` at each return (float32, as :func:`log_ratios` divides); for the
    returns whose log-ratio is finite, also the beam fill's cell sums into ``sums`` [4, gh,
    gw] (zeros; :func:`depth_node.core.beam_kernels.beam_cells`: count, row, disparity and the
    network's disparity), while the image is read there anyway."""
    for i in range(z.size):
        g = zg[v[i], u[i]]
        qi = z[i] / g
        q[i] = qi
        if qi == qi and qi > 0 and qi != np.inf:
            add_to_cell(sums, row_cell[v[i]], col_cell[u[i]], v[i], z[i], g)


def _finite_kernel(u: np.ndarray, v: np.ndarray, z: np.ndarray, logq: np.ndarray,
                   out_u: np.ndarray, out_v: np.ndarray, out_z: np.ndarray,
                   out_r: np.ndarray) -> int:
    """The returns whose log-ratio is finite, in order: ``r`` as float64. Returns the count."""
    n = 0
    for i in range(z.size):
        if np.isfinite(logq[i]):
            out_u[n], out_v[n], out_z[n], out_r[n] = u[i], v[i], z[i], logq[i]
            n += 1
    return n


def _combine_kernel(fine: np.ndarray, coarse_up: np.ndarray, prior: float, weight: float,
                    rho: np.ndarray, spread: np.ndarray) -> None:
    """The cascade of the two scales and the returns' spread, per fine cell (see the module).

    Same arithmetic and precision as the reference: the upsampled coarse densities are
    float32 and so is their field.
    """
    prior32, weight32, tiny32 = np.float32(prior), np.float32(weight), np.float32(1e-12)
    _, gh, gw = fine.shape
    for y in range(gh):
        for x in range(gw):
            rho_c = coarse_up[0, y, x] / (coarse_up[1, y, x] + prior32)
            den = fine[1, y, x] + weight
            r = (fine[0, y, x] + weight32 * rho_c) / den
            w_f = fine[1, y, x] / den
            sq_f = fine[2, y, x] / max(fine[1, y, x], 1e-12)
            sq_c = coarse_up[2, y, x] / max(coarse_up[1, y, x], tiny32)
            rho[y, x] = r
            spread[y, x] = math.sqrt(max(w_f * sq_f + (1.0 - w_f) * sq_c - r * r, 0.0))


def _pins_kernel(u: np.ndarray, v: np.ndarray, z: np.ndarray, r: np.ndarray, rho: np.ndarray,
                 row_cell: np.ndarray, col_cell: np.ndarray, tolerance: float,
                 pin_u: np.ndarray, pin_v: np.ndarray, pin_z: np.ndarray) -> int:
    """The returns within ``tolerance`` (log-ratio) of the field: written into the output."""
    n = 0
    for i in range(r.size):
        if abs(r[i] - rho[row_cell[v[i]], col_cell[u[i]]]) <= tolerance:
            pin_u[n], pin_v[n], pin_z[n] = u[i], v[i], z[i]
            n += 1
    return n


def _centre_kernel(zg: np.ndarray, gain_rows: np.ndarray, cy: np.ndarray, cx: np.ndarray,
                   y0: np.ndarray, y1: np.ndarray, fy: np.ndarray, fill: np.ndarray,
                   x0: np.ndarray, x1: np.ndarray, fx: np.ndarray, ratio: float,
                   pin_u: np.ndarray,
                   pin_v: np.ndarray, pin_z: np.ndarray, row_cell: np.ndarray,
                   col_cell: np.ndarray, out: np.ndarray, filled: np.ndarray) -> None:
    """Fused depth at the sampled cell centres, as the per-pixel pass computes it, pins in;
    ``filled`` 1.0 where the beam fill gave it, else 0.0."""
    one = np.float32(1.0)
    for i in range(cy.size):
        y = cy[i]
        a0, a1, ty = y0[y], y1[y], fy[y]
        for j in range(cx.size):
            x = cx[j]
            z = zg[y, x] * lerp(gain_rows[a0, x], gain_rows[a1, x], ty)
            d = fill_value(fill[y, x0[x]], fill[y, x1[x]], fx[x], z, ratio)
            hit = d > 0 and z == z
            out[i, j] = one / d if hit else z
            filled[i, j] = one if hit else np.float32(0.0)
    for p in range(pin_z.size):
        i, j = row_cell[pin_v[p]], col_cell[pin_u[p]]
        if cy[i] == pin_v[p] and cx[j] == pin_u[p] and out[i, j] == out[i, j] \
                and filled[i, j] == 0:
            out[i, j] = pin_z[p]


def _fused_kernel(zg: np.ndarray, gain_rows: np.ndarray, y0: np.ndarray, y1: np.ndarray,
                  fy: np.ndarray, fill: np.ndarray, x0: np.ndarray, x1: np.ndarray,
                  fx: np.ndarray, ratio: float, pin_u: np.ndarray, pin_v: np.ndarray,
                  pin_z: np.ndarray, out: np.ndarray) -> None:
    """Fused depth per pixel: ``zg`` times the bilinear gain, or the beam fill where it has
    a value (and ``zg`` has depth); pins written in where there is no fill."""
    h, w = zg.shape
    for y in range(h):
        g0, g1, ty, zrow, orow = gain_rows[y0[y]], gain_rows[y1[y]], fy[y], zg[y], out[y]
        frow = fill[y]
        for x in range(w):  # the field (no branch: the loop vectorises)
            orow[x] = zrow[x] * lerp(g0[x], g1[x], ty)
        fill_row(orow, frow, x0, x1, fx, ratio)
    for p in range(pin_z.size):
        y, x = pin_v[p], pin_u[p]
        z = zg[y, x] * lerp(gain_rows[y0[y], x], gain_rows[y1[y], x], fy[y])
        if z == z and not fill_value(fill[y, x0[x]], fill[y, x1[x]], fx[x], z, ratio) > 0:
            out[y, x] = pin_z[p]


def _guide_kernel(zg: np.ndarray, cy: np.ndarray, cx: np.ndarray, out: np.ndarray) -> None:
    """:func:`guide` at the sampled centres ``cy`` x ``cx``: disparity, 0 where no depth."""
    for i in range(cy.size):
        for j in range(cx.size):
            z = np.float64(zg[cy[i], cx[j]])
            out[i, j] = 1.0 / z if (z == z and z > 0 and z != np.inf) else 0.0


def _extend_down_kernel(support: np.ndarray, guide: np.ndarray, min_support: float,
                        max_step: float, reach: float, out: np.ndarray) -> None:
    """:func:`depth_node.core.fusion.extend_down` in place on ``out`` (the field, float64):
    per column, from the lowest supported cell down while the guide holds, its value fading
    into the median of all columns' lowest supported values."""
    gh, gw = out.shape
    fade_each = math.isfinite(reach)
    last = np.full(gw, -1, np.int64)
    tops = np.empty(gw)
    n = 0
    for x in range(gw):
        for y in range(gh - 1, -1, -1):
            if support[y, x] >= min_support:
                last[x] = y
                tops[n] = out[y, x]
                n += 1
                break
    if n == 0:
        return
    middle = np.median(tops[:n])
    for x in range(gw):
        low = last[x]
        if low < 0:
            continue
        top = out[low, x]
        for y in range(low + 1, gh):
            g0, g1 = guide[y - 1, x], guide[y, x]
            if not (g1 > 0 and g0 > 0 and abs(math.log(g1) - math.log(g0)) <= max_step):
                break
            fade = math.exp(-(y - low) / reach) if fade_each else 1.0
            out[y, x] = middle + (top - middle) * fade


def _ascending_kernel(a: np.ndarray) -> bool:
    """Whether ``a`` never decreases."""
    for i in range(1, a.size):
        if a[i] < a[i - 1]:
            return False
    return True


def _by_row_kernel(u: np.ndarray, v: np.ndarray, z: np.ndarray, height: int,
                   out_u: np.ndarray, out_v: np.ndarray, out_z: np.ndarray) -> None:
    """The returns in row order (a stable counting sort on ``v``, O(n + height))."""
    start = np.zeros(height + 1, np.int64)
    for i in range(v.size):
        start[v[i] + 1] += 1
    for y in range(height):
        start[y + 1] += start[y]
    for i in range(v.size):
        k = start[v[i]]
        out_u[k], out_v[k], out_z[k] = u[i], v[i], z[i]
        start[v[i]] = k + 1


filter_passes = compiled(_filter_kernel)
ascending = compiled(_ascending_kernel)
extend_down = compiled(_extend_down_kernel)
by_row = compiled(_by_row_kernel)
log_weights = compiled(_log_weights_kernel)
guide_at = compiled(_guide_kernel)
ratios = compiled(_ratio_kernel)
finite = compiled(_finite_kernel)
cell_sums = compiled(_cell_sums_kernel)
outliers = compiled(_outlier_kernel)
combine = compiled(_combine_kernel)
pins = compiled(_pins_kernel)
centres = compiled(_centre_kernel)
fused = compiled(_fused_kernel)


__all__ = ['ascending', 'by_row', 'cell_sums', 'centres', 'combine', 'extend_down',
           'filter_passes', 'finite', 'fused', 'guide_at', 'log_weights', 'outliers', 'pins',
           'ratios']
