"""Per-pixel uncertainty at depth edges: the step a pixel may lie on the wrong side of.

Where the published depth steps between neighbouring pixels (an object's silhouette against
what is behind it), the network's edge is soft and the LiDAR's beams are far apart, so the
depth's edge may sit a pixel or two from the true one: the pixels in between carry the other
surface's depth, wrong by the whole step. The grid model of :mod:`depth_node.core.uncertainty`
sees such edges only at the resolution of its cells (4 px), spread over them by the bilinear
upsampling: on the held-out streets most of the wrong (> 20 %) pixels that its sigma missed
with a VLP-16 and at dusk were within 3 px of a true depth edge and had LiDAR support
(``docs/benchmarks.md``, 2026-12-03).

So sigma / z holds, in quadrature, ``weight * s``: ``s`` the largest log-depth step between
two 4-neighbouring pixels with depth within ``radius`` px (a square window) of the pixel, and
only where it reaches ``min_step`` (an edge: the fusion's ``edge_step``; a slanted surface's
step between pixels stays below it and adds nothing). With ``weight`` 0.5 the 2-sigma interval
of a pixel next to an edge reaches across the step (as the carried correction's does across
the fusion's correction): it claims no more than that the pixel is on one of the two surfaces.
Next to a large step (a pole in front of a façade twice as far) sigma / z is then above
``output.max_relative_uncertainty`` and the pixels are refused: the flying pixels of the
depth's silhouettes, which a costmap would otherwise mark as obstacles in mid-air. A pixel next
to one without depth (sky, beyond ``max_depth``) gains nothing from that side.

The calibration (:mod:`depth_node.training.calibrate_uncertainty`) fits the grid weights with
this term in place, and stores ``weight``, ``radius`` and ``min_step`` with them
(``edge_weight``, ``edge_radius``, ``edge_min_step``; a file without them has none).

:func:`edge_steps_reference` is the definition (numpy and OpenCV's dilation);
:func:`edge_steps` and :func:`add_edge_sigma` (the node's pass, in place on the composed
images) are compiled and held to it by the tests. They work in ratios, not logarithms: one
vectorised pass over the rows tests each neighbour pair for a step of at least
``exp(min_step)`` (a product, no division) and lists the few pixels with one (a few % of the
image) with their largest ratio; the window's maximum and the update then visit only the
pixels within ``radius`` of those, and take a logarithm each. (Thresholding before the
window's maximum is the same as after: a maximum reaches the level only through a value
that does.)
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from depth_node.core.jit import compiled, njit


def neighbour_steps(log_z: np.ndarray) -> np.ndarray:
    """Largest ``|log z_a - log z_b|`` from each pixel (or cell) of ``log_z`` [h, w] to its 4
    neighbours, float64; a step that is not finite (no depth on one side: NaN) counts 0.
    Also the grid's ``log_depth_step`` (:func:`depth_node.core.uncertainty.features`)."""
    out = np.zeros(np.shape(log_z))
    with np.errstate(invalid='ignore'):
        dx = np.abs(np.diff(log_z, axis=1))
        dy = np.abs(np.diff(log_z, axis=0))
    dx[~np.isfinite(dx)] = 0.0
    dy[~np.isfinite(dy)] = 0.0
    out[:, 1:] = np.maximum(out[:, 1:], dx)
    out[:, :-1] = np.maximum(out[:, :-1], dx)
    out[1:] = np.maximum(out[1:], dy)
    out[:-1] = np.maximum(out[:-1], dy)
    return out


def edge_steps_reference(depth: np.ndarray, radius: int, min_step: float = 0.0) -> np.ndarray:
    """The edge step ``s`` [H, W] float32 of each pixel of ``depth`` [H, W] (metres, NaN or
    <= 0: none): the largest ``|log z_a - log z_b|`` of the 4-neighbour pairs ``a``, ``b``
    that both have depth and lie within ``radius`` px of it (square window), 0 where that is
    below ``min_step``. Plain numpy and OpenCV: the reference of :func:`edge_steps`."""
    z = np.asarray(depth, np.float64)
    good = np.isfinite(z) & (z > 0)
    s = neighbour_steps(np.log(z, where=good, out=np.full(z.shape, np.nan)))
    if radius > 0:
        s = cv2.dilate(s, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8))
    s[s < min_step] = 0.0
    return s.astype(np.float32)


def _ratio(a: float, b: float) -> float:
    """``max(a, b) / min(a, b)`` of two neighbours' float32 depths: the exponential of their
    log step; 1 (no step) unless both have depth (finite, > 0). Float32 (its rounding is a
    step of 6e-8) and branch-free selects: the loops that call it vectorise."""
    one = np.float32(1.0)
    first = a >= b
    hi = a if first else b
    lo = b if first else a
    ok = (lo > 0) & (hi < np.float32(np.inf))  # NaN on either side fails one of the two
    r = hi / (lo if ok else one)
    return r if ok else one


def _hit(a: float, b: float, level: float) -> int:
    """1 (uint8) where two neighbours' float32 depths both have depth and step by a ratio of
    at least ``level`` (and above 1), else 0: a product, not a division, and selects: the
    loops that call it vectorise."""
    first = a >= b
    hi = a if first else b
    lo = b if first else a
    ok = (lo > 0) & (hi < np.float32(np.inf)) & (hi >= lo * level) & (hi > lo)
    return np.uint8(ok)


def _edges_kernel(depth: np.ndarray, level: float, xs: np.ndarray, vs: np.ndarray,
                  starts: np.ndarray, prev: np.ndarray, down: np.ndarray, across: np.ndarray,
                  q: np.ndarray) -> None:
    """The pixels of ``depth`` [H, W] whose largest neighbour ratio (:func:`_ratio` over the
    4-neighbour pairs) is at least ``level`` and above 1, row by row: row ``y``'s are
    ``xs[starts[y]:starts[y + 1]]`` (columns) with their ratios in ``vs``. Each row's pairs
    are tested first (:func:`_hit`, vectorised), and only the few pixels with a hit get
    their ratios. ``prev``, ``down``, ``across``, ``q`` [W] uint8: scratch."""
    h, w = depth.shape
    lv = np.float32(level)
    zero = np.uint8(0)
    for x in range(w):
        prev[x] = zero
    n = 0
    for y in range(h):
        row = depth[y]
        if y + 1 < h:
            nxt = depth[y + 1]
            for x in range(w):
                down[x] = _hit(row[x], nxt[x], lv)
        else:
            for x in range(w):
                down[x] = zero
        for x in range(w - 1):
            across[x] = _hit(row[x], row[x + 1], lv)
        for x in range(w):
            q[x] = max(prev[x], down[x])
        for x in range(w - 1):
            q[x] = max(q[x], across[x])
        for x in range(1, w):
            q[x] = max(q[x], across[x - 1])
        starts[y] = n
        for x in range(w):
            if q[x] > zero:
                z = row[x]
                r = np.float32(1.0)
                if y > 0:
                    r = max(r, _ratio(z, depth[y - 1, x]))
                if y + 1 < h:
                    r = max(r, _ratio(z, depth[y + 1, x]))
                if x > 0:
                    r = max(r, _ratio(z, row[x - 1]))
                if x + 1 < w:
                    r = max(r, _ratio(z, row[x + 1]))
                xs[n] = x
                vs[n] = r
                n += 1
        for x in range(w):
            prev[x] = down[x]
    starts[h] = n


def _window(y: int, radius: int, w: int, xs: np.ndarray, vs: np.ndarray, starts: np.ndarray,
            win: np.ndarray, touched: np.ndarray) -> int:
    """The largest ratio of row ``y``'s pixels over the edge pixels of :func:`_edges_kernel`
    within ``radius`` px (square window): into ``win`` [W] (all 1 before; the caller resets
    the pixels it reads to 1) at the columns ``touched[:n]``, each once; returns ``n``."""
    h = starts.size - 1
    n = 0
    for k in range(max(0, y - radius), min(h, y + radius + 1)):
        for i in range(starts[k], starts[k + 1]):
            x0, v = xs[i], vs[i]
            for x in range(max(0, x0 - radius), min(w, x0 + radius + 1)):
                if win[x] == 1.0:
                    touched[n] = x
                    n += 1
                if v > win[x]:
                    win[x] = v
    return n


def _steps_kernel(depth: np.ndarray, radius: int, level: float, out: np.ndarray) -> None:
    """:func:`edge_steps` into ``out`` [H, W] float32 (zeros before)."""
    h, w = depth.shape
    xs, vs, starts, win, touched = _edges(depth, level)
    for y in range(h):
        n = _window(y, radius, w, xs, vs, starts, win, touched)
        for i in range(n):
            x = touched[i]
            out[y, x] = np.float32(math.log(np.float64(win[x])))
            win[x] = np.float32(1.0)


def _add_kernel(depth: np.ndarray, radius: int, level: float, weight: float,
                threshold: float, max_relative: float, rel: np.ndarray, published: np.ndarray,
                sigma: np.ndarray) -> int:
    """:func:`add_edge_sigma`'s pass; returns how many published pixels it refused."""
    h, w = depth.shape
    nan = np.float32(np.nan)
    refused = 0
    xs, vs, starts, win, touched = _edges(depth, level)
    for y in range(h):
        n = _window(y, radius, w, xs, vs, starts, win, touched)
        for i in range(n):
            x = touched[i]
            e = weight * math.log(np.float64(win[x]))
            win[x] = np.float32(1.0)
            r0 = np.float64(rel[y, x])
            r = np.float32(min(math.sqrt(r0 * r0 + e * e), max_relative))
            rel[y, x] = r
            z = published[y, x]
            if z == z:
                if r <= threshold:
                    sigma[y, x] = z * r
                else:
                    published[y, x] = nan
                    sigma[y, x] = nan
                    refused += 1
    return refused


def _edges_of(depth: np.ndarray, level: float) -> tuple:
    """The edge pixels of ``depth`` (:func:`_edges_kernel`) and the window's buffers."""
    h, w = depth.shape
    xs = np.empty(h * w, np.int32)  # filled from the start: only the pages used are touched
    vs = np.empty(h * w, np.float32)
    starts = np.empty(h + 1, np.int64)
    scratch = np.empty((4, w), np.uint8)
    _edges_kernel(depth, level, xs, vs, starts, scratch[0], scratch[1], scratch[2], scratch[3])
    return xs, vs, starts, np.ones(w, np.float32), np.empty(w, np.int64)


_ratio = njit(inline='always')(_ratio) if njit is not None else _ratio
_hit = njit(inline='always')(_hit) if njit is not None else _hit
_edges_kernel = compiled(_edges_kernel)
_window = compiled(_window)
_edges = compiled(_edges_of)
_steps = compiled(_steps_kernel)
_add = compiled(_add_kernel)


def _depth32(depth: np.ndarray) -> np.ndarray:
    """``depth`` as a C-contiguous float32 [H, W] array (no copy when it is one)."""
    return np.ascontiguousarray(depth, dtype=np.float32)


def _level(min_step: float) -> float:
    """The neighbour ratio from which a step counts: ``exp(min_step)``."""
    return math.exp(float(min_step))


def edge_steps(depth: np.ndarray, radius: int, min_step: float = 0.0) -> np.ndarray:
    """Compiled :func:`edge_steps_reference` (same arguments, same result to float rounding)."""
    z = _depth32(depth)
    out = np.zeros(z.shape, np.float32)
    _steps(z, int(radius), _level(min_step), out)
    return out


def add_edge_sigma(depth: np.ndarray, radius: int, min_step: float, weight: float,
                   threshold: float, max_relative: float, rel: np.ndarray,
                   published: np.ndarray, sigma: np.ndarray) -> int:
    """Add the edge term of ``depth`` [H, W] in place: ``rel`` (sigma / z before refusal)
    becomes ``min(hypot(rel, weight * s), max_relative)`` with ``s`` the
    :func:`edge_steps_reference` of ``depth``; a pixel of ``published`` whose new ``rel``
    exceeds ``threshold`` is refused (NaN there and in ``sigma``), the others' ``sigma`` is
    ``published * rel``. All [H, W] float32 and C-contiguous. Returns how many published
    pixels it refused (0 with ``weight`` 0: nothing changes)."""
    if weight <= 0:
        return 0
    return int(_add(_depth32(depth), int(radius), _level(min_step), float(weight),
                    float(threshold), float(max_relative), rel, published, sigma))


def warm_up() -> None:
    """Compile (or load from numba's cache) the passes now, not on the first frame."""
    z = np.array([[1.0, 2.0], [np.nan, 2.0]], np.float32)
    edge_steps(z, 1, 0.1)
    rel = np.full(z.shape, 0.1, np.float32)
    add_edge_sigma(z, 1, 0.1, 0.5, 0.2, 10.0, rel, z.copy(), rel.copy())


__all__ = ['add_edge_sigma', 'edge_steps', 'edge_steps_reference', 'neighbour_steps',
           'warm_up']
