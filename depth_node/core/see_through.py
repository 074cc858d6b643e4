"""See-through rejection: LiDAR returns that see past the edge of a nearer object.

A LiDAR mounted apart from the camera (above and behind it, as on most vehicles) sees past the
edges of foreground objects; those background returns project *inside* the foreground object in
the image, where the camera (and so the model) sees the object. :func:`reject_see_through`
drops returns that a clearly nearer return surrounds in the image, before any fit.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from depth_node.core.errors import DepthNodeError
from depth_node.core.lidar import SparseDepth

_KERNEL_3X3 = np.ones((3, 3), np.uint8)  # erosion element: a 3x3 square


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
    Cost is a few 3x3 erosions of a float image over the rows the points cover (a min-filter
    of growing radius, so that each radius gets its own allowance); ``benchmark pipeline``
    times it (docs/benchmarks.md).
    """
    if window < 3 or window % 2 != 1:
        raise DepthNodeError(f'window must be an odd number >= 3, got {window}')
    if not rel_gap >= 0:
        raise DepthNodeError(f'rel_gap must be >= 0, got {rel_gap}')
    if focal_px is not None and not (np.isfinite(focal_px) and focal_px > 0):
        raise DepthNodeError(f'focal_px must be a positive number, got {focal_px}')
    if not plane_distance > 0:
        raise DepthNodeError(f'plane_distance must be > 0, got {plane_distance}')
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
