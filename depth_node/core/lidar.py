"""Project LiDAR points into a camera image as sparse depth.

Points are moved into the camera optical frame (z forward, x right, y down; REP 103), points
with ``z <= min_depth`` or ``z > max_depth`` or non-finite coordinates are dropped, the rest are
projected with the pinhole model and rounded to the nearest pixel centre. Where several returns
land on one pixel the nearest wins (z-buffer), as in depth_image_proc's ``register``.

:func:`project_points` runs all of it in one compiled pass over the points (numba) with
image-sized z-buffers kept per thread and reused across frames; :func:`project_points_reference`
is the same computation as numpy array operations, which the tests hold the compiled one to
(identical results, point order included).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.errors import DepthNodeError
from depth_node.core.transforms import RigidTransform

try:  # numba is a dependency; without it (a broken install) the numpy reference runs
    from numba import njit
except ImportError:  # pragma: no cover - exercised only on a broken install
    njit = None

# No LiDAR reaches 10 km; the bound keeps the z-buffer sort key exact.
_MAX_RANGE = 9999.0


@dataclass(frozen=True)
class SparseDepth:
    """LiDAR depth at the pixels it hit, one entry per pixel (nearest return)."""

    u: np.ndarray  # [M] int32, column
    v: np.ndarray  # [M] int32, row
    z: np.ndarray  # [M] float32, metres along the optical axis
    width: int
    height: int

    @property
    def count(self) -> int:
        return int(self.z.size)

    def to_image(self) -> np.ndarray:
        """Dense [H, W] float32 metres, NaN where no return landed."""
        img = np.full((self.height, self.width), np.nan, dtype=np.float32)
        img[self.v, self.u] = self.z
        return img

    def sample(self, image: np.ndarray) -> np.ndarray:
        """Values of an [H, W] image at the hit pixels: [M], the image's dtype."""
        if image.shape[:2] != (self.height, self.width):
            raise DepthNodeError(f'image of shape {image.shape[:2]} does not match the sparse '
                                 f'depth size {(self.height, self.width)}')
        if _compiled_gather is not None and _warmed(image, self.u, self.v):
            out = np.empty(self.u.size, image.dtype)
            if _compiled_gather(image, self.u, self.v, out):
                return out
        return image[self.v, self.u]  # other layouts, or a pixel outside (numpy's error)

    def subset(self, mask: np.ndarray) -> 'SparseDepth':
        return SparseDepth(self.u[mask], self.v[mask], self.z[mask], self.width, self.height)


def check_image_size(image: np.ndarray, sparse: SparseDepth, name: str) -> tuple[int, int]:
    """``(H, W)`` of ``image`` (named ``name`` in errors) when it is [H, W] and ``sparse`` is
    of the same size; :class:`DepthNodeError` otherwise."""
    if image.ndim != 2:
        raise DepthNodeError(f'{name} must be [H, W], got shape {image.shape}')
    h, w = image.shape
    if (sparse.height, sparse.width) != (h, w):
        raise DepthNodeError(f'sparse depth is {sparse.width}x{sparse.height} but the '
                             f'{name} is {w}x{h}')
    return h, w


def point_pixels(points: np.ndarray, camera: PinholeCamera, lidar_to_camera: RigidTransform,
                 min_depth: float = 0.1, max_depth: float = float('inf')
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Where each LiDAR point [N, 3] lands: flat pixel ``v * width + u`` and depth.

    Returns ``pixel`` [N] int64 (-1 where the point is dropped: non-finite, outside
    ``(min_depth, max_depth]`` or outside the image) and ``z`` [N] float32 metres (optical Z;
    meaningful where ``pixel >= 0``). :func:`project_points` is this plus the z-buffer.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise DepthNodeError(f'points must have shape [N, 3], got {pts.shape}')
    pts = pts.astype(np.float32, copy=False)
    # Depth first: most of a 360-degree sweep is behind the camera, so transform the rest only.
    z_all = lidar_to_camera.row(2, pts)  # [N] float32, optical Z
    # The limits and the camera in float64 whatever their Python type: a float32 array with a
    # Python float computes in float32, with a numpy float64 in float64, and the same camera
    # must not project a point half a pixel apart in one pixel or the next.
    z_min, z_max = np.float64(min_depth), np.float64(min(max_depth, _MAX_RANGE))
    fx, fy, cx, cy, tx, ty = (np.float64(camera.fx), np.float64(camera.fy),
                              np.float64(camera.cx), np.float64(camera.cy),
                              np.float64(camera.tx), np.float64(camera.ty))
    # NaN compares False, so this also drops non-finite points.
    keep = (z_all > z_min) & (z_all <= z_max)
    front = np.compress(keep, pts, axis=0)
    z = np.compress(keep, z_all)
    inv_z = np.float32(1.0) / z  # [M] float32
    x = lidar_to_camera.row(0, front)
    y = lidar_to_camera.row(1, front)
    u = np.rint((fx * x + tx) * inv_z + cx)  # [M] float64
    v = np.rint((fy * y + ty) * inv_z + cy)
    inside = (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    pix = np.full(u.shape, -1, dtype=np.int64)
    pix[inside] = v[inside].astype(np.int64) * camera.width + u[inside].astype(np.int64)
    pixel = np.full(pts.shape[0], -1, dtype=np.int64)
    pixel[np.flatnonzero(keep)] = pix
    return pixel, z_all


def project_points_reference(points: np.ndarray, camera: PinholeCamera,
                             lidar_to_camera: RigidTransform, min_depth: float = 0.1,
                             max_depth: float = float('inf')) -> SparseDepth:
    """:func:`project_points` as numpy array operations: the reference of the compiled pass."""
    pixel, z_all = point_pixels(points, camera, lidar_to_camera, min_depth, max_depth)
    hit = np.flatnonzero(pixel >= 0)
    pix = pixel[hit]
    z = z_all[hit]
    # z-buffer: the nearest depth per pixel by an unbuffered minimum (O(N), no sort), then one
    # winner per pixel among the returns at that depth (exact ties keep the last one).
    zbuf = np.full(camera.width * camera.height, np.inf, dtype=np.float32)
    np.minimum.at(zbuf, pix, z)
    nearest = np.flatnonzero(z == zbuf[pix])
    owner = np.empty(zbuf.size, dtype=np.int64)
    owner[pix[nearest]] = nearest
    sel = nearest[owner[pix[nearest]] == nearest]
    win = pix[sel]
    return SparseDepth((win % camera.width).astype(np.int32),
                       (win // camera.width).astype(np.int32), z[sel].astype(np.float32),
                       camera.width, camera.height)


def _project_kernel(pts: np.ndarray, rot: np.ndarray, trans: np.ndarray, intr: np.ndarray,
                    limits: np.ndarray, width: int, height: int, zbuf: np.ndarray,
                    owner: np.ndarray, hit_idx: np.ndarray, hit_pix: np.ndarray,
                    out_u: np.ndarray, out_v: np.ndarray, out_z: np.ndarray) -> int:
    """One pass: transform, depth limits, projection and z-buffer; returns the hit count M.

    The arithmetic is that of :func:`project_points_reference`, in the same precision (the
    transform in float32; limits and camera, ``limits`` and ``intr``, float64) and the same
    order, so the results are identical. ``zbuf`` [H*W] float32 must be +inf everywhere on
    entry and is again on return (only the pixels hit are written, then reset); ``owner``
    [H*W] int32 needs no initial value. ``hit_idx``, ``hit_pix`` [N] int32 are scratch;
    ``out_u``, ``out_v`` [N] int32 and ``out_z`` [N] float32 receive the M winners in point
    order.
    """
    r00, r01, r02 = rot[0, 0], rot[0, 1], rot[0, 2]
    r10, r11, r12 = rot[1, 0], rot[1, 1], rot[1, 2]
    r20, r21, r22 = rot[2, 0], rot[2, 1], rot[2, 2]
    t0, t1, t2 = trans[0], trans[1], trans[2]
    fx, fy, cx, cy, tx, ty = intr[0], intr[1], intr[2], intr[3], intr[4], intr[5]
    z_min, z_max = limits[0], limits[1]
    one = np.float32(1.0)
    hits = 0
    for i in range(pts.shape[0]):
        px, py, pz = pts[i, 0], pts[i, 1], pts[i, 2]
        z = px * r20 + py * r21 + pz * r22 + t2
        if not (z > z_min and z <= z_max):  # NaN fails both: non-finite points drop here
            continue
        inv_z = one / z
        x = px * r00 + py * r01 + pz * r02 + t0
        y = px * r10 + py * r11 + pz * r12 + t1
        u = np.rint((fx * x + tx) * inv_z + cx)
        v = np.rint((fy * y + ty) * inv_z + cy)
        if not (u >= 0 and u < width and v >= 0 and v < height):
            continue
        p = int(v) * width + int(u)
        if z <= zbuf[p]:  # the nearest wins; of equal depths, the last point (as numpy)
            zbuf[p] = z
            owner[p] = i
        hit_idx[hits] = i
        hit_pix[hits] = p
        hits += 1
    m = 0
    for k in range(hits):
        p = hit_pix[k]
        if owner[p] == hit_idx[k]:
            out_u[m] = p % width
            out_v[m] = p // width
            out_z[m] = zbuf[p]
            m += 1
            zbuf[p] = np.inf
    return m


_compiled_project = njit(cache=True, nogil=True)(_project_kernel) if njit is not None else None


def _gather_kernel(image: np.ndarray, u: np.ndarray, v: np.ndarray, out: np.ndarray) -> bool:
    """``out = image[v, u]`` in one pass (numpy's two-index gather is slower:
    docs/benchmarks.md); False, ``out`` unfinished, when a pixel lies outside ``image``."""
    h, w = image.shape
    for i in range(u.size):
        x, y = u[i], v[i]
        if not (0 <= x < w and 0 <= y < h):
            return False
        out[i] = image[y, x]
    return True


#: Image dtypes :meth:`SparseDepth.sample` gathers compiled (those warm-up compiles).
_GATHERED = (np.dtype(np.float32), np.dtype(np.float64))


def _warmed(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> bool:
    """Whether the compiled gather has (after :func:`warm_up`) a specialisation for these
    arrays, so that a frame never waits for a compilation: a writeable float image, any
    strides, and contiguous writeable int32 pixels; others take numpy's gather."""
    return image.ndim == 2 and image.dtype in _GATHERED and image.flags.writeable \
        and all(a.dtype == np.int32 and a.flags.c_contiguous and a.flags.writeable
                for a in (u, v))


_compiled_gather = njit(cache=True, nogil=True)(_gather_kernel) if njit is not None else None


class _Buffers(threading.local):
    """Per-thread scratch of the compiled pass, kept across frames (grown, never shrunk)."""

    def __init__(self) -> None:
        self.pixels = 0
        self.zbuf = np.empty(0, np.float32)  # [H*W], +inf between calls
        self.owner = np.empty(0, np.int32)  # [H*W]
        self.points = np.empty((5, 0), np.int32)  # hit_idx, hit_pix, out_u, out_v, out_z bits

    def image(self, pixels: int) -> tuple[np.ndarray, np.ndarray]:
        if self.pixels < pixels:
            self.zbuf = np.full(pixels, np.inf, np.float32)
            self.owner = np.empty(pixels, np.int32)
            self.pixels = pixels
        return self.zbuf, self.owner

    def per_point(self, n: int) -> np.ndarray:
        if self.points.shape[1] < n:
            self.points = np.empty((5, max(n, 2 * self.points.shape[1])), np.int32)
        return self.points


_BUFFERS = _Buffers()


def project_points(points: np.ndarray, camera: PinholeCamera,
                   lidar_to_camera: RigidTransform, min_depth: float = 0.1,
                   max_depth: float = float('inf')) -> SparseDepth:
    """Project LiDAR points [N, 3] (LiDAR frame, metres) to sparse depth in ``camera``.

    ``lidar_to_camera`` is the pose of the LiDAR in the camera optical frame. ``points`` may
    be any [N, 3] float32 array, strided views of a message's bytes included, and may hold
    non-finite points (they are dropped). The returns come in point order, one per pixel:
    the same :class:`SparseDepth` as :func:`project_points_reference`.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise DepthNodeError(f'points must have shape [N, 3], got {pts.shape}')
    if _compiled_project is None:  # pragma: no cover - numba missing
        return project_points_reference(pts, camera, lidar_to_camera, min_depth, max_depth)
    if pts.dtype != np.float32 or not pts.flags.aligned:
        pts = pts.astype(np.float32)
    n = pts.shape[0]
    zbuf, owner = _BUFFERS.image(camera.width * camera.height)
    scratch = _BUFFERS.per_point(n)
    intr = np.array([camera.fx, camera.fy, camera.cx, camera.cy, camera.tx, camera.ty],
                    np.float64)
    limits = np.array([min_depth, min(max_depth, _MAX_RANGE)], np.float64)
    out_z = scratch[4].view(np.float32)
    m = _compiled_project(pts, lidar_to_camera.rotation.astype(np.float32),
                          lidar_to_camera.translation.astype(np.float32), intr, limits,
                          camera.width, camera.height, zbuf, owner, scratch[0], scratch[1],
                          scratch[2], scratch[3], out_z)
    return SparseDepth(scratch[2, :m].copy(), scratch[3, :m].copy(), out_z[:m].copy(),
                       camera.width, camera.height)


def warm_up() -> None:
    """Compile (or load from numba's cache) the projection pass now, not on the first frame."""
    cam = PinholeCamera(4, 4, 2.0, 2.0, 1.5, 1.5)
    pts = np.array([[0.0, 0.0, 2.0, 0.0], [np.nan, 0.0, 1.0, 0.0]], np.float32)
    # Each array kind is its own compiled specialisation: contiguous, strided (a view of a
    # message's bytes), and both read-only (the decoder hands out read-only views).
    sparse = SparseDepth(np.array([1], np.int32), np.array([2], np.int32),
                         np.array([3.0], np.float32), 4, 4)
    for dtype in _GATHERED:  # the pipeline's float32 prediction; float64 images
        image = np.zeros((4, 4), dtype)
        sparse.sample(image)
        sparse.sample(image[:, ::-1])  # a strided view is its own specialisation
    for view in (pts[:, :3].copy(), pts[:, :3]):
        project_points(view, cam, RigidTransform.identity())
        view.flags.writeable = False
        project_points(view, cam, RigidTransform.identity())
