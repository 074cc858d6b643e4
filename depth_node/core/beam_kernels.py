"""The compiled passes of the beam fill (numba): what :mod:`depth_node.core.beam_fill` runs.

Compiled with ``njit(cache=True, nogil=True)`` like :mod:`depth_node.core.fusion_kernels`
(without numba, a broken install, they run as Python). :func:`fill_value` and :func:`fill_row`
read a pixel's fill from the ``[H, gw]`` band grid; the fusion's per-pixel passes
(:mod:`depth_node.core.fusion_kernels`, :func:`depth_node.pipeline.trust.compose`) call them.
:mod:`depth_node.core.fusion_reference` holds the numpy reference these are tested against.
"""

from __future__ import annotations

import math

import numpy as np

from depth_node.core.jit import compiled, njit


def _add_to_cell(sums: np.ndarray, y: int, x: int, row: int, z: float, zg: float) -> None:
    """One return (pixel row ``row``, depth ``z``, the network's ``zg`` there) into cell
    ``y``, ``x`` of the beam fill's sums: count, row, disparity, the network's disparity."""
    sums[0, y, x] += 1.0
    sums[1, y, x] += row
    sums[2, y, x] += 1.0 / np.float64(z)
    sums[3, y, x] += 1.0 / np.float64(zg)


add_to_cell = njit(inline='always')(_add_to_cell) if njit is not None else _add_to_cell


def _beam_cells_kernel(zg: np.ndarray, u: np.ndarray, v: np.ndarray, z: np.ndarray,
                       row_cell: np.ndarray, col_cell: np.ndarray, sums: np.ndarray) -> None:
    """Per cell the count, row sum, disparity sum of its returns and the sum of the network's
    disparity at their pixels, into ``sums`` [4, gh, gw] (zeros)."""
    for i in range(z.size):
        add_to_cell(sums, row_cell[v[i]], col_cell[u[i]], v[i], z[i], zg[v[i], u[i]])


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
    """The beam fill (see :func:`depth_node.core.beam_fill.beam_fill`): ``out`` [H, gw] disparity.

    ``sums`` [4, gh, gw]: :func:`_beam_cells_kernel`'s; every value of ``out`` is written
    (NaN: none). ``centre_x`` [gw]: the pixel column of each band where the network's shape is
    read. Each band works down its own column: the network's column and the band's fill are
    copied to contiguous rows first (``net``, ``fill`` [gw, H]), and the fill back at the end.
    """
    h, gw = out.shape
    gh = sums.shape[1]
    net = np.empty((gw, h), np.float32)
    for r in range(h):
        for x in range(gw):
            net[x, r] = zg[r, centre_x[x]]
    fill = np.full((gw, h), np.nan, np.float32)
    nearer = 1.0 + max_nearer
    pv = np.empty(line_points)  # the chain's last control points: row, disparity, network's
    pd = np.empty(line_points)
    pg = np.empty(line_points)
    for x in range(gw):
        zc, o = net[x], fill[x]
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
                    ga = 1.0 / np.float64(zc[min(int(va + 0.5), h - 1)])
                    gb = 1.0 / np.float64(zc[min(int(vb + 0.5), h - 1)])
                    r0, r1 = int(math.floor(va)), min(int(math.ceil(vb)), h - 1)
                    for r in range(r0, r1 + 1):
                        if o[r] != o[r]:  # the segment above keeps its end row
                            t = (r - va) / (vb - va)
                            g = 1.0 / np.float64(zc[r])
                            if not g > nearer * (ga + t * (gb - ga)):  # no object in front
                                o[r] = np.float32(da + t * (db - da))
            chain = chain + 1 if joined else 1
            k = (chain - 1) % line_points
            pv[k], pd[k] = vb, db
            pg[k] = 1.0 / np.float64(zc[min(int(vb + 0.5), h - 1)])
            a = y
        if a >= 0 and reach > 0 and chain >= min_points:
            _continue_line(zc, min(chain, line_points), pv, pd, pg,
                           sums[1, a, x] / sums[0, a, x], reach, line_tolerance, edge_step,
                           nearer, o)
    for r in range(h):
        for x in range(gw):
            out[r, x] = fill[x, r]


def _continue_line(zc: np.ndarray, m: int, pv: np.ndarray, pd: np.ndarray,
                   pg: np.ndarray, v_last: float, reach: float, tolerance: float,
                   edge_step: float, nearer: float, out: np.ndarray) -> None:
    """Below a band's lowest return (``zc`` [H]: the network's depth down the band's
    centre column, ``out`` [H]: the band's fill): the least-squares line of the chain's ``m`` last
    control points continued down ``reach`` px, if they are on it (RMS within ``tolerance``
    of their mean disparity), until the network steps by more than ``edge_step`` (log)
    between rows; rows where the network is ``nearer`` than its own line keep the field."""
    h = out.size
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
    prev = 1.0 / np.float64(zc[min(int(v_last + 0.5), h - 1)])
    for r in range(int(math.ceil(v_last)), min(h - 1, int(v_last + reach)) + 1):
        g = 1.0 / np.float64(zc[r])
        if not (g == g and g != np.inf and g > 0) or abs(math.log(g / prev)) > edge_step:
            return  # a depth edge, or no depth
        prev = g
        d = icpt + slope * r
        if d <= 0:
            return
        if g > nearer * (g_icpt + g_slope * r):
            continue  # an object in front of the line
        if out[r] != out[r]:
            out[r] = np.float32(d)


def _fill_value(p0: float, p1: float, t: float, z: float, ratio: float) -> float:
    """A pixel's beam-fill disparity from its two column bands (``t``: weight of ``p1``),
    NaN for none.

    Between two filled bands whose disparities are within a factor ``ratio`` (``exp`` of the
    log step), linear; across a larger step (a vertical edge between the bands: a pole's
    side), the band nearer the field's depth ``z`` at the pixel (the network's shape tells
    which side it is on); next to one filled band, its value up to half way.
    """
    if p0 == p0 and p1 == p1:
        if joined(p0, p1, ratio):
            return p0 + t * (p1 - p0)
        if not z == z:
            return np.nan
        return nearer_band(p0, p1, z)
    return p0 if t < 0.5 else p1


def _joined(p0: float, p1: float, ratio: float) -> bool:
    """Whether two filled bands' disparities are within the factor ``ratio``: linear between
    them (:func:`fill_value`)."""
    q = p0 / p1
    return q <= ratio and q * ratio >= 1.0


def _nearer_band(p0: float, p1: float, z: float) -> float:
    """Of two bands across a vertical edge, the one nearer the field's depth ``z`` in log."""
    a, b = p0 * z, p1 * z  # fill / field; the nearer is the one nearer 1 in log
    return p0 if max(a, 1.0 / a) <= max(b, 1.0 / b) else p1


joined = njit(inline='always')(_joined) if njit is not None else _joined
nearer_band = njit(inline='always')(_nearer_band) if njit is not None else _nearer_band
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
    # What fill_value decides per pixel, decided once per pair of bands (x1 follows x0): a
    # run of pixels between two band centres shares it; the pixel's own part is the weight.
    pair = -1
    p0 = p1 = np.float32(np.nan)
    both = linear = False
    for x in range(row.size):
        if x0[x] != pair:
            pair = x0[x]
            p0, p1 = bands[pair], bands[x1[x]]
            both = p0 == p0 and p1 == p1
            linear = both and joined(p0, p1, ratio)
        z = row[x]
        if not z == z:
            continue
        if linear:
            d = p0 + fx[x] * (p1 - p0)
        elif both:  # across a vertical edge
            d = nearer_band(p0, p1, z)
        else:
            d = p0 if fx[x] < 0.5 else p1
        if d > 0:
            row[x] = one / d


fill_row = njit(nogil=True)(_fill_row) if njit is not None else _fill_row


def _medians_kernel(a: np.ndarray, b: np.ndarray, n: int) -> tuple[float, float]:
    """``np.median`` of ``a[:n]`` and of ``b[:n]`` (n > 0), in one call."""
    return np.median(a[:n]), np.median(b[:n])


_continue_line = compiled(_continue_line)
medians = compiled(_medians_kernel)
beam_cells = compiled(_beam_cells_kernel)
beam_errors = compiled(_beam_errors_kernel)
beam_fill = compiled(_beam_fill_kernel)

__all__ = ['add_to_cell', 'beam_cells', 'beam_errors', 'beam_fill', 'fill_row', 'fill_value',
           'joined', 'medians', 'nearer_band']
