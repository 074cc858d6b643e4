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

from depth_node.core.cell_grid import lerp

try:  # numba is a dependency; without it (a broken install) the kernels run as Python
    from numba import njit
except ImportError:  # pragma: no cover - exercised only on a broken install
    njit = None


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
    for i in range(r.size):
        if abs(r[i] - rho_c[crow[v[i]], ccol[u[i]]]) <= tolerance:
            u[n], v[n], z[n], r[n] = u[i], v[i], z[i], r[i]
            n += 1
    cell_sums(u[:n], v[:n], r[:n], crow, ccol, coarse)
    cell_sums(u[:n], v[:n], r[:n], frow, fcol, fine)
    return n


def _ratio_kernel(zg: np.ndarray, u: np.ndarray, v: np.ndarray, z: np.ndarray,
                  q: np.ndarray) -> None:
    """``q = z / z_g`` at each return (float32, as :func:`log_ratios` divides)."""
    for i in range(z.size):
        q[i] = z[i] / zg[v[i], u[i]]


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


def _beam_cells_kernel(zg: np.ndarray, u: np.ndarray, v: np.ndarray, z: np.ndarray,
                       row_cell: np.ndarray, col_cell: np.ndarray, sums: np.ndarray) -> None:
    """Per cell the count, row sum, disparity sum of its returns and the sum of the network's
    disparity at their pixels, into ``sums`` [4, gh, gw] (zeros)."""
    for i in range(z.size):
        y, x = row_cell[v[i]], col_cell[u[i]]
        sums[0, y, x] += 1.0
        sums[1, y, x] += v[i]
        sums[2, y, x] += 1.0 / np.float64(z[i])
        sums[3, y, x] += 1.0 / np.float64(zg[v[i], u[i]])


def _beam_errors_kernel(sums: np.ndarray, max_gap: float, max_step: float, stride: int,
                        lin: np.ndarray, net: np.ndarray) -> int:
    """The held-out test of the beam fill: for every middle one of three consecutive
    supported cells of a band that the fill would join (first to last within ``max_gap``
    px), the log error of predicting its disparity from the outer two by the LiDAR's line
    (``lin``) and by the network's shape (its log-ratio to the network interpolated,
    ``net``; the network read at the same returns' pixels), on every ``stride``-th band.
    Returns how many were written."""
    gh, gw = sums.shape[1], sums.shape[2]
    k = 0
    for x in range(0, gw, stride):
        a = b = -1
        for c in range(gh):
            if sums[0, c, x] == 0:
                continue
            if a >= 0:
                va, vb, vc = (sums[1, a, x] / sums[0, a, x], sums[1, b, x] / sums[0, b, x],
                              sums[1, c, x] / sums[0, c, x])
                da, db, dc = (sums[2, a, x] / sums[0, a, x], sums[2, b, x] / sums[0, b, x],
                              sums[2, c, x] / sums[0, c, x])
                ga, gb, gc = (sums[3, a, x] / sums[0, a, x], sums[3, b, x] / sums[0, b, x],
                              sums[3, c, x] / sums[0, c, x])
                if vc - va <= max_gap and abs(math.log(da / db)) <= max_step \
                        and abs(math.log(db / dc)) <= max_step and ga == ga and gb == gb \
                        and gc == gc and 0 < ga < np.inf and 0 < gb < np.inf \
                        and 0 < gc < np.inf:
                    t = (vb - va) / (vc - va)
                    lin[k] = abs(math.log(db / (da + t * (dc - da))))
                    ra, rc = math.log(da / ga), math.log(dc / gc)
                    net[k] = abs(math.log(db / gb) - (ra + t * (rc - ra)))
                    k += 1
            a, b = b, c
    return k


def _beam_fill_kernel(zg: np.ndarray, sums: np.ndarray, centre_x: np.ndarray,
                      max_gap: float, max_step: float, max_nearer: float, reach: float,
                      line_points: int, min_points: int, line_tolerance: float,
                      edge_step: float, out: np.ndarray) -> None:
    """The beam fill (see :func:`depth_node.core.fusion.beam_fill`): ``out`` [H, gw] disparity.

    ``sums`` [3, gh, gw]: :func:`_beam_cells_kernel`'s; ``out`` is filled with NaN here
    first. ``centre_x`` [gw]: the pixel column of each band where the network's shape is read.
    """
    h, gw = out.shape
    gh = sums.shape[1]
    out[:] = np.nan
    nearer = 1.0 + max_nearer
    pv = np.empty(line_points)  # the chain's last control points: row, disparity, network's
    pd = np.empty(line_points)
    pg = np.empty(line_points)
    for x in range(gw):
        xc = centre_x[x]
        a = -1  # the last supported cell of the column
        chain = 0  # control points in the joined chain that ends at cell a
        for y in range(gh):
            n = sums[0, y, x]
            if n == 0:
                continue
            vb, db = sums[1, y, x] / n, sums[2, y, x] / n
            joined = False
            if a >= 0:
                na = sums[0, a, x]
                va, da = sums[1, a, x] / na, sums[2, a, x] / na
                joined = vb - va <= max_gap and abs(math.log(da / db)) <= max_step
                if joined:
                    # The network's disparity at the two ends, for its shape between them.
                    ga = 1.0 / np.float64(zg[min(int(va + 0.5), h - 1), xc])
                    gb = 1.0 / np.float64(zg[min(int(vb + 0.5), h - 1), xc])
                    r0, r1 = int(math.floor(va)), min(int(math.ceil(vb)), h - 1)
                    for r in range(r0, r1 + 1):
                        if out[r, x] != out[r, x]:  # the segment above keeps its end row
                            t = (r - va) / (vb - va)
                            g = 1.0 / np.float64(zg[r, xc])
                            if not g > nearer * (ga + t * (gb - ga)):  # no object in front
                                out[r, x] = np.float32(da + t * (db - da))
            chain = chain + 1 if joined else 1
            k = (chain - 1) % line_points
            pv[k], pd[k] = vb, db
            pg[k] = 1.0 / np.float64(zg[min(int(vb + 0.5), h - 1), xc])
            a = y
        if a >= 0 and reach > 0 and chain >= min_points:
            _continue_line(zg, x, xc, min(chain, line_points), pv, pd, pg,
                           sums[1, a, x] / sums[0, a, x], reach, line_tolerance, edge_step,
                           nearer, out)


def _continue_line(zg: np.ndarray, x: int, xc: int, m: int, pv: np.ndarray, pd: np.ndarray,
                   pg: np.ndarray, v_last: float, reach: float, tolerance: float,
                   edge_step: float, nearer: float, out: np.ndarray) -> None:
    """Below band ``x``'s lowest return: the least-squares line of the chain's ``m`` last
    control points continued down ``reach`` px, if they are on it (RMS within ``tolerance``
    of their mean disparity), until the network steps by more than ``edge_step`` (log)
    between rows; rows where the network is ``nearer`` than its own line keep the field."""
    h = out.shape[0]
    sv = sd = sg = svv = svd = svg = 0.0
    for i in range(m):
        if not pg[i] == pg[i] or pg[i] == np.inf:
            return  # no network depth at a control point
        sv += pv[i]
        sd += pd[i]
        sg += pg[i]
        svv += pv[i] * pv[i]
        svd += pv[i] * pd[i]
        svg += pv[i] * pg[i]
    var = svv - sv * sv / m
    if var <= 0:
        return
    slope = (svd - sv * sd / m) / var
    icpt = (sd - slope * sv) / m
    g_slope = (svg - sv * sg / m) / var
    g_icpt = (sg - g_slope * sv) / m
    res = 0.0
    for i in range(m):
        e = pd[i] - (icpt + slope * pv[i])
        res += e * e
    if math.sqrt(res / m) > tolerance * sd / m:
        return  # not one plane: a road meets a kerb, a wall, ...
    prev = 1.0 / np.float64(zg[min(int(v_last + 0.5), h - 1), xc])
    for r in range(int(math.ceil(v_last)), min(h - 1, int(v_last + reach)) + 1):
        g = 1.0 / np.float64(zg[r, xc])
        if not (g == g and g != np.inf and g > 0) or abs(math.log(g / prev)) > edge_step:
            return  # a depth edge, or no depth
        prev = g
        d = icpt + slope * r
        if d <= 0:
            return
        if g > nearer * (g_icpt + g_slope * r):
            continue  # an object in front of the line
        if out[r, x] != out[r, x]:
            out[r, x] = np.float32(d)


def _fill_value(p0: float, p1: float, t: float, z: float, ratio: float) -> float:
    """A pixel's beam-fill disparity from its two column bands (``t``: weight of ``p1``),
    NaN for none.

    Between two filled bands whose disparities are within a factor ``ratio`` (``exp`` of the
    log step), linear; across a larger step (a vertical edge between the bands: a pole's
    side), the band nearer the field's depth ``z`` at the pixel (the network's shape tells
    which side it is on); next to one filled band, its value up to half way.
    """
    if p0 == p0 and p1 == p1:
        q = p0 / p1
        if q <= ratio and q * ratio >= 1.0:
            return p0 + t * (p1 - p0)
        if not z == z:
            return np.nan
        a, b = p0 * z, p1 * z  # fill / field; the nearer is the one nearer 1 in log
        return p0 if max(a, 1.0 / a) <= max(b, 1.0 / b) else p1
    return p0 if t < 0.5 else p1


fill_value = njit(inline='always')(_fill_value) if njit is not None else _fill_value


def _fill_row(row: np.ndarray, bands: np.ndarray, x0: np.ndarray, x1: np.ndarray,
              fx: np.ndarray, ratio: float) -> None:
    """The beam fill over one row of the field's depths ``row`` [W] (in place), from that
    row's bands ``bands`` [gw]; a row without any fill is left as it is at once (the field's
    own loop stays free of branches)."""
    filled = False
    for b in range(bands.size):
        if bands[b] == bands[b]:
            filled = True
            break
    if not filled:
        return
    one = np.float32(1.0)
    for x in range(row.size):
        z = row[x]
        d = fill_value(bands[x0[x]], bands[x1[x]], fx[x], z, ratio)
        if d > 0 and z == z:
            row[x] = one / d


fill_row = njit(nogil=True)(_fill_row) if njit is not None else _fill_row


def _guide_kernel(zg: np.ndarray, cy: np.ndarray, cx: np.ndarray, out: np.ndarray) -> None:
    """:func:`guide` at the sampled centres ``cy`` x ``cx``: disparity, 0 where no depth."""
    for i in range(cy.size):
        for j in range(cx.size):
            z = np.float64(zg[cy[i], cx[j]])
            out[i, j] = 1.0 / z if (z == z and z > 0 and z != np.inf) else 0.0


def _extend_down_kernel(support: np.ndarray, guide: np.ndarray, min_support: float,
                        max_step: float, reach: float, out: np.ndarray) -> None:
    """:func:`depth_node.core.fusion.extend_down` in place on ``out`` (the field, float64):
    per column, from the lowest supported cell down while the guide holds."""
    gh, gw = out.shape
    fade_each = math.isfinite(reach)
    for x in range(gw):
        last = -1
        for y in range(gh - 1, -1, -1):
            if support[y, x] >= min_support:
                last = y
                break
        if last < 0:
            continue
        top = out[last, x]
        for y in range(last + 1, gh):
            g0, g1 = guide[y - 1, x], guide[y, x]
            if not (g1 > 0 and g0 > 0 and abs(math.log(g1) - math.log(g0)) <= max_step):
                break
            fade = math.exp(-(y - last) / reach) if fade_each else 1.0
            out[y, x] = out[y, x] + (top - out[y, x]) * fade


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


def _compile(fn):  # type: ignore[no-untyped-def]
    return njit(cache=True, nogil=True)(fn) if njit is not None else fn


filter_passes = _compile(_filter_kernel)
ascending = _compile(_ascending_kernel)
extend_down = _compile(_extend_down_kernel)
by_row = _compile(_by_row_kernel)
log_weights = _compile(_log_weights_kernel)
guide_at = _compile(_guide_kernel)
ratios = _compile(_ratio_kernel)
finite = _compile(_finite_kernel)
cell_sums = _compile(_cell_sums_kernel)  # also called from outliers
outliers = _compile(_outlier_kernel)
combine = _compile(_combine_kernel)
pins = _compile(_pins_kernel)
centres = _compile(_centre_kernel)
fused = _compile(_fused_kernel)
_continue_line = _compile(_continue_line)
beam_cells = _compile(_beam_cells_kernel)
beam_errors = _compile(_beam_errors_kernel)
beam_fill = _compile(_beam_fill_kernel)


__all__ = ['ascending', 'beam_cells', 'beam_errors', 'beam_fill', 'by_row', 'cell_sums',
           'extend_down',
           'centres', 'combine', 'fill_row', 'fill_value', 'filter_passes', 'finite', 'fused',
           'guide_at', 'log_weights', 'outliers', 'pins', 'ratios']
