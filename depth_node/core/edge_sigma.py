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
images) are compiled and held to it by the tests.
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


def _step(a: float, b: float) -> float:
    """``|a - b|`` of two neighbours' log depths, 0 unless both are finite (a select, no
    branch: the loops that call it vectorise)."""
    d = abs(a - b)
    return d if d < np.float32(np.inf) else np.float32(0.0)


def _row_steps(log_z: np.ndarray, y: int, radius: int, q: np.ndarray, across: np.ndarray,
               out: np.ndarray) -> None:
    """Row ``y``: the largest log step of the 4-neighbour pairs with depth at each pixel of
    ``log_z`` [H, W] (not finite: no depth), its maximum over ``radius`` px along x into
    ``out`` [W] (float32). ``q`` [W], ``across`` [W]: scratch."""
    h, w = log_z.shape
    row = log_z[y]
    for x in range(w):
        q[x] = np.float32(0.0)
    if y > 0:
        above = log_z[y - 1]
        for x in range(w):
            q[x] = max(q[x], _step(row[x], above[x]))
    if y + 1 < h:
        below = log_z[y + 1]
        for x in range(w):
            q[x] = max(q[x], _step(row[x], below[x]))
    for x in range(w - 1):
        across[x] = _step(row[x], row[x + 1])
    for x in range(w - 1):
        q[x] = max(q[x], across[x])
    for x in range(1, w):
        q[x] = max(q[x], across[x - 1])
    for x in range(w):
        out[x] = q[x]
    for k in range(1, radius + 1):
        for x in range(k, w):
            out[x] = max(out[x], q[x - k])
        for x in range(w - k):
            out[x] = max(out[x], q[x + k])


def _window(log_z: np.ndarray, y: int, radius: int, ring: np.ndarray, made: int,
            scratch: np.ndarray, out: np.ndarray) -> int:
    """The edge step of row ``y`` before its level, into ``out`` [W]: the maximum of the
    rows' steps along x over ``radius`` rows either side. Those rows are made once each, in
    order, into ``ring`` [2 radius + 1, W] (``made``: rows made so far; returned updated), so
    the pass over the image stays in the cache. ``scratch`` [2, W]."""
    h = log_z.shape[0]
    n = ring.shape[0]
    while made < min(h, y + radius + 1):
        _row_steps(log_z, made, radius, scratch[0], scratch[1], ring[made % n])
        made += 1
    out[:] = ring[y % n]
    for k in range(max(0, y - radius), min(h, y + radius + 1)):
        src = ring[k % n]
        for x in range(out.size):
            out[x] = max(out[x], src[x])
    return made


def _steps_kernel(log_z: np.ndarray, radius: int, min_step: float, ring: np.ndarray,
                  scratch: np.ndarray, out: np.ndarray) -> None:
    """:func:`edge_steps` into ``out`` [H, W] float32 (``ring``, ``scratch``: as
    :func:`_window`'s)."""
    h, w = log_z.shape
    m = np.empty(w, np.float32)
    made = 0
    for y in range(h):
        made = _window(log_z, y, radius, ring, made, scratch, m)
        dst = out[y]
        for x in range(w):
            dst[x] = m[x] if m[x] >= min_step else np.float32(0.0)


def _add_kernel(log_z: np.ndarray, radius: int, min_step: float, weight: float,
                threshold: float, max_relative: float, ring: np.ndarray, scratch: np.ndarray,
                rel: np.ndarray, published: np.ndarray, sigma: np.ndarray) -> int:
    """:func:`add_edge_sigma`'s pass; returns how many published pixels it refused."""
    h, w = log_z.shape
    nan = np.float32(np.nan)
    refused = 0
    window = np.empty(w, np.float32)
    made = 0
    for y in range(h):
        made = _window(log_z, y, radius, ring, made, scratch, window)
        for x in range(w):
            m = window[x]
            if not (m >= min_step and m > 0):
                continue
            e = weight * np.float64(m)
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


_step = njit(inline='always')(_step) if njit is not None else _step
_row_steps = compiled(_row_steps)
_window = compiled(_window)
_steps = compiled(_steps_kernel)
_add = compiled(_add_kernel)


def _log_depth(depth: np.ndarray) -> np.ndarray:
    """``log(depth)`` [H, W] float32, not finite where there is no depth (NaN or <= 0):
    numpy's vectorised logarithm, one per pixel."""
    z = np.asarray(depth, dtype=np.float32)
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.log(z)  # -inf at 0, NaN below: the steps with those are not finite


def _scratch(shape: tuple[int, int], radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Scratch of the passes (float32): the ring of rows and two rows of :func:`_window`."""
    return np.empty((2 * int(radius) + 1, shape[1]), np.float32), \
        np.empty((2, shape[1]), np.float32)


def edge_steps(depth: np.ndarray, radius: int, min_step: float = 0.0) -> np.ndarray:
    """Compiled :func:`edge_steps_reference` (same arguments, same result to float rounding)."""
    log_z = _log_depth(depth)
    out = np.empty(log_z.shape, np.float32)
    _steps(log_z, int(radius), float(min_step), *_scratch(log_z.shape, radius), out)
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
    log_z = _log_depth(depth)
    return int(_add(log_z, int(radius), float(min_step), float(weight), float(threshold),
                    float(max_relative), *_scratch(log_z.shape, radius), rel, published,
                    sigma))


def warm_up() -> None:
    """Compile (or load from numba's cache) the passes now, not on the first frame."""
    z = np.array([[1.0, 2.0], [np.nan, 2.0]], np.float32)
    edge_steps(z, 1, 0.1)
    rel = np.full(z.shape, 0.1, np.float32)
    add_edge_sigma(z, 1, 0.1, 0.5, 0.2, 10.0, rel, z.copy(), rel.copy())


__all__ = ['add_edge_sigma', 'edge_steps', 'edge_steps_reference', 'neighbour_steps',
           'warm_up']
