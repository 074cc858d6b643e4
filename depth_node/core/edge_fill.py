"""The edge fill: at the fused depth's edges, the LiDAR's own interpolation down each column.

Step 8 of the fusion (:mod:`depth_node.core.fusion`), on the fused depth at full resolution.
Where that depth steps by more than ``step`` (log) between two neighbouring pixels (an object's
silhouette; a pixel with depth next to one without counts too), the pixels within one pixel of
the step take the disparity interpolated linearly between the nearest return above and the
nearest return below them, each searched in the columns within ``window`` px, when the two are
at most ``max_gap`` rows apart, unless the depth there is more than ``max_nearer`` nearer than
both (an object between them that neither hits). Pixels without depth stay without.

Why: the network's silhouettes are soft and a few pixels off, and the field that carries the
LiDAR's scale has nothing sharper to follow, so next to an edge the fused depth is worse than
the LiDAR interpolated on its own (on the tele lens, 3 % of the LiDAR's pixels near edges held
half the fused error). The returns' own rows locate an edge to within the beam spacing; the
beam fill (:mod:`depth_node.core.beam_fill`) does not join returns across a step, and the
filtered field blurs it over a cell. Only returns that the fused depth of a neighbouring cell
agrees with anchor it (:func:`anchored`), so fog backscatter and other lone near returns are
not drawn out along their column. Not on a frame where the beam fill's check finds the
network the better predictor (a network with sharp, right edges keeps them). On the scenario
table's frames (hull AbsRel as a share of LiDAR-only, without -> with): tele 0.97 -> 0.76,
open road 0.87 -> 0.79, 128 beams 0.57 -> 0.55, default 0.49 -> 0.48, fog 0.32 -> 0.33
(docs/benchmarks.md).

Compiled (numba): :func:`by_column` sorts the returns into columns once per frame (counting
sorts: by row with the fusion's ``by_row`` unless they come in row order, then by column),
and :func:`apply` makes two passes over the rows the returns span (the step test, then the
interpolation at the marked pixels, each column's nearest returns found once per row by a
pointer that only moves down): about 1-2 ms per 640x480 frame on this machine's scenario
frames. :func:`edge_fill_reference` is the same in
numpy, which the tests hold the compiled passes to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from depth_node.core import fusion_kernels
from depth_node.core.cell_grid import cell_of
from depth_node.core.jit import compiled, njit


@dataclass(frozen=True)
class Columns:
    """Returns sorted by column, rows ascending within one: ``start`` [W + 1] indexes ``rows``
    and ``disparity`` [n] (1/m) of column ``x`` as ``start[x]:start[x + 1]``."""

    start: np.ndarray  # [W + 1] int64
    rows: np.ndarray  # [n] int32
    disparity: np.ndarray  # [n] float32, 1 / z

    @classmethod
    def empty(cls, width: int) -> 'Columns':
        return cls(np.zeros(int(width) + 1, np.int64), np.zeros(0, np.int32),
                   np.zeros(0, np.float32))


def _by_column_kernel(u: np.ndarray, v: np.ndarray, z: np.ndarray, start: np.ndarray,
                      rows: np.ndarray, disparity: np.ndarray) -> None:
    """A stable counting sort by column of returns that come in row order, into ``start``
    [W + 1] (zeros), ``rows`` and ``disparity``: rows ascend within each column."""
    width = start.size - 1
    for i in range(z.size):
        start[u[i] + 1] += 1
    for x in range(width):
        start[x + 1] += start[x]
    fill = start[:width].copy()
    for i in range(z.size):
        k = fill[u[i]]
        rows[k] = v[i]
        disparity[k] = np.float32(1.0) / z[i]
        fill[u[i]] = k + 1


def _anchored_kernel(u: np.ndarray, v: np.ndarray, z: np.ndarray, centre: np.ndarray,
                     row_cell: np.ndarray, col_cell: np.ndarray, ratio: float,
                     keep: np.ndarray) -> None:
    """``keep`` [n] bool: the returns whose depth is within the factor ``ratio`` of the fused
    depth at one of the 3 x 3 cell centres around their cell (``centre`` [gh, gw]), or next to
    a centre without depth (see :func:`anchored`)."""
    gh, gw = centre.shape
    for i in range(z.size):
        y, x, zi = row_cell[v[i]], col_cell[u[i]], z[i]
        zc = centre[y, x]  # its own cell first: there most returns agree, and need no more
        ok = not zc == zc or (zi < ratio * zc and zc < ratio * zi)
        y_lo, y_hi, x_lo, x_hi = max(y - 1, 0), min(y + 1, gh - 1), max(x - 1, 0), \
            min(x + 1, gw - 1)
        yy = y_lo
        while not ok and yy <= y_hi:
            for xx in range(x_lo, x_hi + 1):
                zc = centre[yy, xx]
                if not zc == zc or (zi < ratio * zc and zc < ratio * zi):
                    ok = True
                    break
            yy += 1
        keep[i] = ok


def _differ(a: float, b: float, ratio: float) -> bool:
    """Whether depths ``a`` and ``b`` (NaN: none) are across an edge: one more than the factor
    ``ratio`` off the other, or depth on one side only. Branch-free."""
    return (a > ratio * b) | (b > ratio * a) | ((a == a) != (b == b))


def _row_marks(depth: np.ndarray, y: int, ratio: float, out: np.ndarray) -> None:
    """``out`` [W] uint8: 1 at each pixel of row ``y`` that has a step (:func:`_differ`) to
    a 4-neighbour. Each pixel reads its own neighbours (no loop-carried write), so the loops
    vectorise."""
    h, w = depth.shape
    r = np.float32(ratio)
    row = depth[y]
    above = depth[y - 1] if y > 0 else row
    below = depth[y + 1] if y + 1 < h else row
    if w == 1:
        out[0] = _differ(row[0], above[0], r) | _differ(row[0], below[0], r)
        return
    out[0] = _differ(row[0], row[1], r) | _differ(row[0], above[0], r) \
        | _differ(row[0], below[0], r)
    for x in range(1, w - 1):
        a = row[x]
        out[x] = _differ(a, row[x - 1], r) | _differ(a, row[x + 1], r) \
            | _differ(a, above[x], r) | _differ(a, below[x], r)
    a = row[w - 1]
    out[w - 1] = _differ(a, row[w - 2], r) | _differ(a, above[w - 1], r) \
        | _differ(a, below[w - 1], r)


def _near_kernel(depth: np.ndarray, ratio: float, top: int, bottom: int,
                 near: np.ndarray) -> int:
    """``near`` [H, W] uint8, rows ``top`` to ``bottom`` (the returns' span; other rows are
    not written): 1 at every pixel with depth within one pixel (3 x 3) of a pixel with a step
    (:func:`_row_marks`). Rows of marks are kept in a ring of three. Returns how many pixels
    are near."""
    h, w = depth.shape
    top, bottom = max(top, 0), min(bottom, h - 1)
    count = 0
    if top > bottom:
        return 0
    ring = np.zeros((3, w), np.uint8)
    col = np.empty(w, np.uint8)
    if top > 0:
        _row_marks(depth, top - 1, ratio, ring[(top - 1) % 3])
    _row_marks(depth, top, ratio, ring[top % 3])
    for y in range(top, bottom + 1):
        if y + 1 < h:
            _row_marks(depth, y + 1, ratio, ring[(y + 1) % 3])
        else:
            ring[(y + 1) % 3, :] = 0
        above, here, below = ring[(y - 1) % 3], ring[y % 3], ring[(y + 1) % 3]
        for x in range(w):
            col[x] = above[x] | here[x] | below[x]
        row, out = depth[y], near[y]
        for x in range(w):
            left = col[x - 1] if x > 0 else 0
            right = col[x + 1] if x + 1 < w else 0
            v = (left | col[x] | right) & (row[x] == row[x])
            out[x] = v
            count += v
    return count


def _apply_kernel(depth: np.ndarray, near: np.ndarray, top: int, bottom: int,
                  start: np.ndarray, rows: np.ndarray,
                  disparity: np.ndarray, window: int, max_gap: float, nearer: float,
                  published: np.ndarray, sigma: np.ndarray, rel: np.ndarray,
                  composed: bool) -> int:
    """The interpolation at every pixel marked ``near`` in rows ``top`` to ``bottom`` (the
    returns' span: outside it no pixel has a return above and below), in place on
    ``depth``; with ``composed`` also on ``published`` (where it has a value) and ``sigma``
    (``depth * rel``). Returns how many pixels changed."""
    h, w = depth.shape
    ptr = start[:w].copy()  # per column: the first return at or below the current row
    # Per column, at the row it was last read (``seen``): the nearest return at or above it
    # and at or below it (row, disparity; rows -1 / h + 1: none).
    seen = np.full(w, -1, np.int64)
    up_row = np.empty(w, np.int64)
    dn_row = np.empty(w, np.int64)
    up_d = np.empty(w, np.float64)
    dn_d = np.empty(w, np.float64)
    changed = 0
    one = np.float32(1.0)
    for y in range(max(top, 0), min(bottom, h - 1) + 1):
        flags = near[y]
        for x in range(w):
            if not flags[x]:
                continue
            up, dn = -1, h + 1
            d_up = d_dn = 0.0
            for k in range(2 * window + 1):  # columns x, x+1, x-1, x+2, x-2, ...
                off = (k + 1) // 2 if k % 2 else -(k // 2)
                c = x + off
                if c < 0 or c >= w:
                    continue
                if seen[c] != y:
                    seen[c] = y
                    p, end = ptr[c], start[c + 1]
                    while p < end and rows[p] < y:
                        p += 1
                    ptr[c] = p
                    q = p  # the last of the returns on rows[p]'s pixel (the one that counts)
                    while q + 1 < end and rows[q + 1] == rows[p]:
                        q += 1
                    if p < end and rows[p] == y:
                        up_row[c], up_d[c], dn_row[c], dn_d[c] = y, disparity[q], y, \
                            disparity[q]
                    else:
                        up_row[c], up_d[c] = (rows[p - 1], disparity[p - 1]) \
                            if p > start[c] else (-1, 0.0)
                        dn_row[c], dn_d[c] = (rows[p], disparity[q]) if p < end \
                            else (h + 1, 0.0)
                if up_row[c] > up:
                    up, d_up = up_row[c], up_d[c]
                if dn_row[c] < dn:
                    dn, d_dn = dn_row[c], dn_d[c]
            if up < 0 or dn > h or dn - up > max_gap:
                continue
            t = (y - up) / (dn - up) if dn > up else 0.0
            d = d_up + t * (d_dn - d_up)
            if not d > 0 or depth[y, x] * max(d_up, d_dn) * nearer < 1.0:
                continue  # no value, or the network sees something nearer than both returns
            z = one / np.float32(d)
            depth[y, x] = z
            changed += 1
            if composed and published[y, x] == published[y, x]:
                published[y, x] = z
                sigma[y, x] = z * rel[y, x]
    return changed


anchored_kernel = compiled(_anchored_kernel)
_differ = njit(inline='always')(_differ) if njit is not None else _differ
_row_marks = compiled(_row_marks)
by_column_kernel = compiled(_by_column_kernel)
near_kernel = compiled(_near_kernel)
apply_kernel = compiled(_apply_kernel)


def by_column(u: np.ndarray, v: np.ndarray, z: np.ndarray, width: int, height: int) -> Columns:
    """The returns (pixels ``u``, ``v``, depth ``z``) sorted by column (:class:`Columns`);
    a return whose depth is not finite and positive is left out."""
    z = np.asarray(z)
    good = np.isfinite(z) & (z > 0)
    if not good.all():
        u, v, z = np.asarray(u)[good], np.asarray(v)[good], z[good]
    n = int(z.size)
    out = Columns(np.zeros(int(width) + 1, np.int64), np.empty(n, np.int32),
                  np.empty(n, np.float32))
    if n:
        u, v = np.ascontiguousarray(u, np.int32), np.ascontiguousarray(v, np.int32)
        z = np.ascontiguousarray(z, np.float32)
        if not fusion_kernels.ascending(v):  # the projection gives row order; else sort
            by_row = np.empty_like(u), np.empty_like(v), np.empty_like(z)
            fusion_kernels.by_row(u, v, z, int(height), *by_row)
            u, v, z = by_row
        by_column_kernel(u, v, z, out.start, out.rows, out.disparity)
    return out


def anchored(u: np.ndarray, v: np.ndarray, z: np.ndarray, centre: np.ndarray, cell: int,
             ratio: float, height: int, width: int) -> np.ndarray:
    """[n] bool: the returns that may anchor the edge fill: their depth is within the factor
    ``ratio`` of the fused depth (before the edge fill) at one of the 3 x 3 cell centres
    around their ``cell``-pixel cell, or one of those centres has no depth (beyond the
    network's range). A return that nothing near it agrees with (fog backscatter a few metres
    out, a spurious near return) would otherwise be drawn out along its column; a return on
    the near side of a misplaced silhouette has the object's own cells next to it."""
    n = int(np.asarray(z).size)
    keep = np.ones(n, bool)
    if n and math.isfinite(ratio):
        anchored_kernel(np.ascontiguousarray(u, np.int32), np.ascontiguousarray(v, np.int32),
                        np.ascontiguousarray(z, np.float32),
                        np.ascontiguousarray(centre, np.float32),
                        cell_of(height, cell), cell_of(width, cell), float(ratio), keep)
    return keep


def apply(depth: np.ndarray, columns: Columns, step: float, window: int, max_gap: float,
          max_nearer: float = np.inf, published: Optional[np.ndarray] = None,
          sigma: Optional[np.ndarray] = None, rel: Optional[np.ndarray] = None) -> int:
    """The edge fill in place on ``depth`` [H, W] float32 (m, NaN = none); returns how many
    pixels it changed. A pixel where the depth is more than ``max_nearer`` (a share of
    disparity) nearer than both returns keeps it: an object between them that neither hits.
    With ``published``, ``sigma`` and ``rel`` (sigma / z), the composed images of
    :func:`depth_node.pipeline.trust.compose` follow. ``step`` or ``max_gap`` 0: off."""
    if step <= 0 or max_gap <= 0 or not columns.rows.size:
        return 0
    h, w = depth.shape
    near = np.empty((h, w), np.uint8)
    top, bottom = int(columns.rows.min()), int(columns.rows.max())
    if not near_kernel(depth, math.exp(step), top, bottom, near):
        return 0
    composed = published is not None
    dummy = np.empty((0, 0), np.float32)
    return int(apply_kernel(depth, near, top, bottom, columns.start, columns.rows,
                            columns.disparity, int(window), float(max_gap),
                            1.0 + float(max_nearer),
                            published if composed else dummy,
                            sigma if composed else dummy, rel if composed else dummy,
                            composed))


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel here, both ways :func:`apply` runs
    (on the fusion's depth alone and with the composed images), on a tiny scene with a step."""
    depth = np.full((6, 6), 10.0, np.float32)
    depth[3:] = 4.0
    anchored(np.array([2], np.int32), np.array([1], np.int32), np.array([10.0], np.float32),
             depth[::2, ::2], 2, 1.2, 6, 6)
    cols = by_column(np.array([2, 2], np.int32), np.array([1, 4], np.int32),
                     np.array([10.0, 4.0], np.float32), 6, 6)
    apply(depth.copy(), cols, 0.1, 1, 8.0)
    rel = np.full((6, 6), 0.1, np.float32)
    apply(depth.copy(), cols, 0.1, 1, 8.0, 0.2, depth.copy(), depth * rel, rel)


def edge_fill_reference(depth: np.ndarray, u: np.ndarray, v: np.ndarray, z: np.ndarray,
                        step: float, window: int, max_gap: float,
                        max_nearer: float = np.inf) -> np.ndarray:
    """The edge fill in numpy (a new array): the reference of :func:`apply`.

    The returns are drawn into a disparity image; each pixel's column takes, row by row, the
    return of the nearest column within ``window`` (x, x+1, x-1, ...); the nearest such row
    at or above and at or below the pixel are interpolated. Of two returns on one pixel the
    later one counts.
    """
    d = np.asarray(depth, np.float32)
    h, w = d.shape
    out = d.copy()
    if step <= 0 or max_gap <= 0 or not np.asarray(z).size:
        return out
    has = np.isfinite(d)
    log_d = np.log(np.where(has, d, 1.0))
    with np.errstate(invalid='ignore'):
        dx = (np.abs(np.diff(log_d, axis=1)) > step) | (has[:, 1:] != has[:, :-1])
        dy = (np.abs(np.diff(log_d, axis=0)) > step) | (has[1:] != has[:-1])
    dx &= has[:, 1:] | has[:, :-1]
    dy &= has[1:] | has[:-1]
    marks = np.zeros((h, w), bool)
    marks[:, 1:] |= dx
    marks[:, :-1] |= dx
    marks[1:] |= dy
    marks[:-1] |= dy
    padded = np.pad(marks, 1)
    near = np.zeros((h, w), bool)
    for oy in range(3):
        for ox in range(3):
            near |= padded[oy:oy + h, ox:ox + w]
    # One return per pixel: the last one given there.
    flat = np.asarray(v, np.int64) * w + np.asarray(u, np.int64)
    _, last = np.unique(flat[::-1], return_index=True)
    last = flat.size - 1 - last
    image = np.full(h * w, np.nan)
    image[flat[last]] = 1.0 / np.asarray(z, np.float32)[last]
    image = image.reshape(h, w)
    merged = image.copy()
    for off in sorted(range(-window, window + 1), key=lambda s: (abs(s), -s))[1:]:
        shifted = np.full((h, w), np.nan)
        if off > 0:
            shifted[:, :-off] = image[:, off:]
        else:
            shifted[:, -off:] = image[:, :off]
        merged = np.where(np.isnan(merged), shifted, merged)
    row = np.arange(h)[:, None] * np.ones((1, w), np.int64)
    col = np.ones((h, 1), np.int64) * np.arange(w)[None, :]
    found = np.isfinite(merged)
    up = np.maximum.accumulate(np.where(found, row, -1), axis=0)
    dn = np.minimum.accumulate(np.where(found, row, h + 1)[::-1], axis=0)[::-1]
    ok = (up >= 0) & (dn <= h) & (dn - up <= max_gap)
    d_up = merged[np.clip(up, 0, h - 1), col]
    d_dn = merged[np.clip(dn, 0, h - 1), col]
    t = np.where(dn > up, (row - up) / np.maximum(dn - up, 1), 0.0)
    disp = d_up + t * (d_dn - d_up)
    with np.errstate(invalid='ignore', divide='ignore'):
        behind = d * np.maximum(d_up, d_dn) * (1.0 + max_nearer) >= 1.0
        take = near & has & ok & (disp > 0) & behind
        out[take] = (np.float32(1.0) / disp[take].astype(np.float32))
    return out


__all__ = ['anchored', 'apply', 'by_column', 'Columns', 'edge_fill_reference', 'warm_up']
