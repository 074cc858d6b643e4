"""See-through rejection: LiDAR returns that see past the edge of a nearer object.

A LiDAR mounted apart from the camera (above and behind it, as on most vehicles) sees past the
edges of foreground objects; those background returns project *inside* the foreground object in
the image, where the camera (and so the model) sees the object. :func:`reject_see_through`
drops returns that a clearly nearer return surrounds in the image, before any fit.

:func:`reject_see_through` writes the returns' inverse depths into a padded image kept per
thread (a compiled pass, numba), grows their maximum ring by ring with OpenCV's 3x3 dilation
over the band of rows the sweep covers, and tests every return after each ring (a compiled
pass over the returns). A sparse sweep (fewer returns than :data:`DILATION_DENSITY` per pixel
of that band) instead reads each return's neighbourhood, in one compiled pass.
:func:`reject_see_through_reference` is the same test with erosions of the depth image, which
the tests hold both to (identical masks: a maximum has no rounding). The dilations cost the
band's pixels, the neighbourhoods the returns' (``window`` squared each): which is cheaper
depends on the returns per pixel, and ``docs/benchmarks.md`` has both timed.
"""

from __future__ import annotations

import threading
from typing import Optional

import cv2
import numpy as np

from depth_node.core.errors import DepthNodeError
from depth_node.core.lidar import SparseDepth

try:  # numba is a dependency; without it (a broken install) the numpy reference runs
    from numba import njit
except ImportError:  # pragma: no cover - exercised only on a broken install
    njit = None

_KERNEL_3X3 = np.ones((3, 3), np.uint8)  # erosion / dilation element: a 3x3 square
#: Returns per pixel of the band of rows they cover below which each return reads its own
#: neighbourhood instead of the band being dilated (the crossover measured in
#: docs/benchmarks.md; at 640x480 a 16-beam sweep is about 0.03, a 64-beam one 0.15).
DILATION_DENSITY = 0.05


def _check(window: int, rel_gap: float, focal_px: Optional[float],
           plane_distance: float) -> None:
    if window < 3 or window % 2 != 1:
        raise DepthNodeError(f'window must be an odd number >= 3, got {window}')
    if not rel_gap >= 0:
        raise DepthNodeError(f'rel_gap must be >= 0, got {rel_gap}')
    if focal_px is not None and not (np.isfinite(focal_px) and focal_px > 0):
        raise DepthNodeError(f'focal_px must be a positive number, got {focal_px}')
    if not plane_distance > 0:
        raise DepthNodeError(f'plane_distance must be > 0, got {plane_distance}')


def reject_see_through(sparse: SparseDepth, window: int = 7, rel_gap: float = 0.1,
                       focal_px: Optional[float] = None,
                       plane_distance: float = 1.5) -> np.ndarray:
    """Mask [M] bool of LiDAR pixels to keep: False for likely see-through returns.

    A return at depth ``z`` is see-through when another return within a ``window`` x
    ``window`` pixel neighbourhood (Chebyshev distance ``d <= window // 2``) is clearly
    nearer, i.e. its depth ``z_n`` satisfies::

        1 / z_n - 1 / z > rel_gap / z + d / (focal_px * plane_distance)

    The first term is a relative depth gap: with ``rel_gap = 0.1`` the neighbour must be more
    than ~9 % nearer (``z_n < z / 1.1``). The second term, used only when ``focal_px`` is
    given, tolerates surfaces seen at a grazing angle: on a plane at distance ``h`` from the
    camera, inverse depth changes by at most ``1 / (focal_px * h)`` per pixel, so with
    ``plane_distance`` below the camera's height above the road the ground is never taken for
    an occluder (without it, far ground returns next to the nearer returns of the beam below
    are rejected). Legitimate background returns right next to a foreground edge are rejected
    too; they are few, and near depth edges the model's prediction is unreliable anyway.
    See-through returns farther from every foreground return than ``window // 2`` pixels (the
    parallax of an edge is about ``focal_px * baseline * (1/z_near - 1/z_far)`` pixels) stay,
    as do small gaps; the robust fit handles those.

    Parameters
    ----------
    sparse : SparseDepth
        Projected LiDAR, one return per pixel (``M`` pixels).
    window : int
        Odd neighbourhood size in pixels, >= 3. About two LiDAR beam spacings in the image
        works well (7 at 640x480 for a 64-beam sensor with 0.4 deg between beams).
    rel_gap : float
        Relative depth gap (>= 0) above which a nearer neighbour counts as an occluder.
    focal_px : float, optional
        Focal length of the camera in pixels; enables the grazing-surface allowance.
    plane_distance : float
        Metres (> 0): sloped surfaces at least this far from the camera are never taken for
        their own occluders. A little below the camera's height above the road (1.5 m for a
        car roof camera at 1.65 m) keeps the road and rejects the most see-through returns.

    Returns
    -------
    numpy.ndarray
        [M] bool, True for returns to keep.

    Notes
    -----
    A compiled pass writes the returns into a padded inverse-depth image; then, for each
    radius, an OpenCV 3x3 dilation of the band of rows they cover and a compiled pass that
    tests every return (a sparse sweep: one pass that reads each return's neighbourhood);
    ``benchmark pipeline`` times it (docs/benchmarks.md).
    """
    _check(window, rel_gap, focal_px, plane_distance)
    m = sparse.count
    if m < 2 or _compiled_scatter is None:
        if m >= 2:  # pragma: no cover - numba missing
            return reject_see_through_reference(sparse, window, rel_gap, focal_px,
                                                plane_distance)
        return np.ones(m, dtype=bool)
    radius = window // 2
    step = np.float32(0.0 if focal_px is None else 1.0 / (focal_px * plane_distance))
    inv = _BUFFERS.image(sparse.height + 2 * radius, sparse.width + 2 * radius)
    # The types the kernels are compiled for at warm-up (no copy when they already are).
    u, v = np.ascontiguousarray(sparse.u, np.int32), np.ascontiguousarray(sparse.v, np.int32)
    z = np.ascontiguousarray(sparse.z, np.float32)
    lo, hi = _compiled_scatter(u, v, z, radius, inv)
    if lo < 0:  # a depth <= 0 or NaN: the erosions' min semantics, not the kernel's max
        return reject_see_through_reference(sparse, window, rel_gap, focal_px, plane_distance)
    gain = np.float32(1.0 + rel_gap)
    try:
        if m < DILATION_DENSITY * (hi - lo) * inv.shape[1]:
            # A sparse sweep: reading each return's neighbourhood costs less than dilating
            # the band.
            keep = np.empty(m, dtype=bool)
            _compiled_neighbourhood(u, v, z, radius, gain, step, inv, keep)
            return keep
        keep = np.ones(m, dtype=bool)
        near, pair = inv[lo:hi], _BUFFERS.near
        for d in range(1, radius + 1):
            # Dilating d times with a 3x3 square is the max-filter of (Chebyshev) radius d;
            # outside the band, as in the padding, there is no return (0).
            out = pair[d % 2][lo:hi]
            cv2.dilate(near, _KERNEL_3X3, dst=out, borderType=cv2.BORDER_CONSTANT,
                       borderValue=0.0)
            _compiled_ring(u, v, z, radius, d, gain, step, out, lo, keep)
            near = out
    finally:
        _compiled_clear(u, v, radius, inv)
    return keep


def reject_see_through_reference(sparse: SparseDepth, window: int = 7, rel_gap: float = 0.1,
                                 focal_px: Optional[float] = None,
                                 plane_distance: float = 1.5) -> np.ndarray:
    """:func:`reject_see_through` with OpenCV erosions (numpy): the compiled pass's reference.

    Erodes a float image of the band of rows the points cover ``window // 2`` times with a 3x3
    square (a min-filter of growing radius, so that each radius gets its own allowance).
    """
    _check(window, rel_gap, focal_px, plane_distance)
    m = sparse.count
    keep = np.ones(m, dtype=bool)
    if m < 2:
        return keep
    radius = window // 2
    # Work on the band of rows the LiDAR covers (a sweep rarely fills the whole image).
    v0 = max(int(sparse.v.min()) - radius, 0)
    v1 = min(int(sparse.v.max()) + radius + 1, sparse.height)
    rows = sparse.v - v0
    cols = sparse.u
    img = np.full((v1 - v0, sparse.width), np.inf, dtype=np.float32)  # [H', W'] metres
    img[rows, cols] = sparse.z
    inv_z = 1.0 / sparse.z.astype(np.float32)  # [M] 1/m
    base = np.float32(1.0 + rel_gap) * inv_z
    step = np.float32(0.0 if focal_px is None else 1.0 / (focal_px * plane_distance))
    near: np.ndarray = img
    for d in range(1, radius + 1):
        # Eroding d times with a 3x3 square is the min-filter of (Chebyshev) radius d.
        near = cv2.erode(near, _KERNEL_3X3, borderType=cv2.BORDER_CONSTANT, borderValue=np.inf)
        z_near = near[rows, cols]  # [M], inf where no return within d
        keep &= np.float32(1.0) / z_near <= base + d * step
    return keep


def _scatter_kernel(u: np.ndarray, v: np.ndarray, z: np.ndarray, radius: int,
                    inv: np.ndarray) -> tuple[int, int]:
    """The returns' inverse depths into ``inv`` [H + 2r, W + 2r] float32 (0 everywhere on
    entry) at their pixels, offset by the padding ``r`` (the last of equal pixels wins, as in
    the reference). Returns the band ``[lo, hi)`` of padded rows that holds every return and
    the ``r`` rows on either side; ``(-1, -1)``, with ``inv`` cleared again, when a depth is
    not > 0 or a pixel lies outside the image (the reference then decides)."""
    one = np.float32(1.0)
    height, width = inv.shape[0] - 2 * radius, inv.shape[1] - 2 * radius
    lo, hi = height, 0
    for i in range(z.size):
        zi = z[i]
        if not (zi > 0 and 0 <= u[i] < width and 0 <= v[i] < height):  # clear, give up
            for k in range(i):
                inv[v[k] + radius, u[k] + radius] = 0.0
            return -1, -1
        inv[v[i] + radius, u[i] + radius] = one / np.float32(zi)
        lo = min(lo, v[i])
        hi = max(hi, v[i])
    return lo, hi + 2 * radius + 1


def _ring_kernel(u: np.ndarray, v: np.ndarray, z: np.ndarray, radius: int, d: int,
                 gain: np.float32, step: np.float32, near: np.ndarray, row0: int,
                 keep: np.ndarray) -> None:
    """Radius ``d`` of the test: a kept return stays kept when ``near`` (the largest inverse
    depth within Chebyshev distance ``d``, its own pixel included; padded rows from ``row0``
    on) at its pixel is at most ``gain / z + d * step``. That is the reference's test, since
    ``1 / min(z)`` is ``max(1 / z)`` (float rounding is monotone) and empty pixels are 0."""
    one = np.float32(1.0)
    allowance = np.float32(d) * step
    for i in range(z.size):
        if keep[i] and not (near[v[i] + radius - row0, u[i] + radius]
                            <= gain * (one / np.float32(z[i])) + allowance):
            keep[i] = False


def _neighbourhood_kernel(u: np.ndarray, v: np.ndarray, z: np.ndarray, radius: int,
                          gain: np.float32, step: np.float32, inv: np.ndarray,
                          keep: np.ndarray) -> None:
    """Every radius of the test at once, for a sparse sweep: each return reads its own
    neighbourhood of ``inv`` (as :func:`_scatter_kernel` wrote it), ring by ring, and stops
    at the first radius that rejects it."""
    one = np.float32(1.0)
    for i in range(z.size):
        r0, c0 = v[i] + radius, u[i] + radius
        base = gain * (one / np.float32(z[i]))
        near = inv[r0, c0]  # largest inverse depth within distance d, grown ring by ring
        keep[i] = True
        for d in range(1, radius + 1):  # ring d: its four sides in independent maxima
            top, bottom, left, right = r0 - d, r0 + d, c0 - d, c0 + d
            a, b = inv[top, left], inv[bottom, left]
            c, e = inv[top, right], inv[bottom, right]
            for col in range(left + 1, right):
                a = max(a, inv[top, col])
                b = max(b, inv[bottom, col])
            for row in range(top + 1, bottom):
                c = max(c, inv[row, left])
                e = max(e, inv[row, right])
            near = max(max(near, max(a, b)), max(c, e))
            if not near <= base + np.float32(d) * step:
                keep[i] = False
                break


def _clear_kernel(u: np.ndarray, v: np.ndarray, radius: int, inv: np.ndarray) -> None:
    """``inv`` back to 0 at the returns' pixels (what :func:`_scatter_kernel` wrote)."""
    for i in range(u.size):
        inv[v[i] + radius, u[i] + radius] = 0.0


if njit is not None:
    _compiled_scatter = njit(cache=True, nogil=True)(_scatter_kernel)
    _compiled_ring = njit(cache=True, nogil=True)(_ring_kernel)
    _compiled_clear = njit(cache=True, nogil=True)(_clear_kernel)
    _compiled_neighbourhood = njit(cache=True, nogil=True)(_neighbourhood_kernel)
else:  # pragma: no cover - numba missing: the reference runs instead
    _compiled_scatter = _compiled_ring = _compiled_clear = _compiled_neighbourhood = None


class _Buffers(threading.local):
    """Per-thread padded inverse-depth image (0 between frames) and the two images its
    dilations alternate between, kept across frames."""

    def __init__(self) -> None:
        self.inv = np.zeros((0, 0), np.float32)
        self.near = (self.inv, self.inv)

    def image(self, rows: int, cols: int) -> np.ndarray:
        if self.inv.shape != (rows, cols):
            self.inv = np.zeros((rows, cols), np.float32)
            self.near = (np.empty((rows, cols), np.float32), np.empty((rows, cols), np.float32))
        return self.inv


_BUFFERS = _Buffers()


def warm_up() -> None:
    """Compile (or load from numba's cache) the see-through passes now, not on the first
    frame: a dense sweep (the dilations) and a sparse one (the neighbourhoods)."""
    u, v = np.array([1, 2], np.int32), np.array([1, 1], np.int32)
    z = np.array([5.0, 9.0], np.float32)
    reject_see_through(SparseDepth(u, v, z, 4, 4), window=3, focal_px=2.0)
    reject_see_through(SparseDepth(u, v, z, 400, 4), window=3, focal_px=2.0)
