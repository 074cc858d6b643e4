"""Depth image to 3-D points in the camera optical frame.

:meth:`PointGrid.points` back-projects in numpy (organized ``[H', W', 3]`` points, the
reference); :meth:`PointGrid.packed` does the same and lays the points out as the words of an
organized point cloud (``x, y, z`` float32, then the optional PCL ``rgb`` word and ``sigma``)
in one compiled pass (numba) over the strided pixels, straight into a caller's buffer when
given one: the per-frame path of ``depth/points``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.errors import DepthNodeError

try:  # numba is a dependency; without it (a broken install) the numpy reference runs
    from numba import njit
except ImportError:  # pragma: no cover - exercised only on a broken install
    njit = None


def _pack_kernel(depth: np.ndarray, stride: int, xr: np.ndarray, yr: np.ndarray,
                 tx: np.float32, ty: np.float32, rgb: np.ndarray, has_rgb: bool,
                 sigma: np.ndarray, has_sigma: bool, out: np.ndarray,
                 words: np.ndarray) -> bool:
    """One pass over the strided pixels: x, y, z (, rgb bits) (, sigma) words per point.

    ``out`` [H' * W' * k] float32 and ``words`` its uint32 view (the rgb word's exact bits),
    ``xr`` [W'] and ``yr`` [H'] the ray slopes. Returns True when every x, y, z is finite.
    """
    k = 3 + int(has_rgb) + int(has_sigma)
    dense = True
    p = 0
    for j in range(yr.size):
        v = j * stride
        row = depth[v]
        yj = yr[j]
        for i in range(xr.size):
            z = row[i * stride]
            x = xr[i] * z - tx
            y = yj * z - ty
            out[p] = x
            out[p + 1] = y
            out[p + 2] = z
            dense &= (x - x == 0) & (y - y == 0) & (z - z == 0)  # False for NaN and inf
            if has_rgb:
                u = i * stride
                words[p + 3] = (np.uint32(rgb[v, u, 0]) << 16) \
                    | (np.uint32(rgb[v, u, 1]) << 8) | np.uint32(rgb[v, u, 2])
            if has_sigma:
                out[p + k - 1] = sigma[v, i * stride]
            p += k
    return dense


_compiled_pack = njit(cache=True, nogil=True)(_pack_kernel) if njit is not None else None


class PointGrid:
    """Back-projects depth images of one camera on a strided pixel grid.

    The ray slopes are computed once per camera and stride; each call is then two
    multiplications. Output is organized: ``[H', W', 3]`` float32 metres, NaN where depth is NaN.
    """

    def __init__(self, camera: PinholeCamera, stride: int = 1) -> None:
        if stride < 1:
            raise DepthNodeError(f'stride must be >= 1, got {stride}')
        self.camera = camera
        self.stride = stride
        xr, yr = camera.rays(stride)
        self._xr = np.ascontiguousarray(xr)  # [H', W'] float32
        self._yr = np.ascontiguousarray(yr)  # [H', W'] float32
        self._tx = np.float32(camera.tx / camera.fx)
        self._ty = np.float32(camera.ty / camera.fy)
        self._xr1 = np.ascontiguousarray(xr[0])  # [W'] float32
        self._yr1 = np.ascontiguousarray(yr[:, 0])  # [H'] float32
        self._dummy_rgb = np.zeros((1, 1, 3), np.uint8)
        self._dummy_sigma = np.zeros((1, 1), np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H', W')``: the organized cloud's height and width."""
        return self._xr.shape

    def points(self, depth: np.ndarray) -> np.ndarray:
        """Organized points [H', W', 3] float32 (metres, optical frame) from depth [H, W]."""
        if depth.shape != (self.camera.height, self.camera.width):
            raise DepthNodeError(f'depth of shape {depth.shape} does not match the camera size '
                                 f'{(self.camera.height, self.camera.width)}')
        z = depth[::self.stride, ::self.stride]
        out = np.empty(z.shape + (3,), dtype=np.float32)
        np.multiply(self._xr, z, out=out[..., 0])
        np.multiply(self._yr, z, out=out[..., 1])
        if self._tx:
            out[..., 0] -= self._tx
        if self._ty:
            out[..., 1] -= self._ty
        out[..., 2] = z
        return out

    def words(self, rgb: bool = False, sigma: bool = False) -> int:
        """Float32 words per point of :meth:`packed`: 3, plus one for rgb, one for sigma."""
        return 3 + int(bool(rgb)) + int(bool(sigma))

    def packed(self, depth: np.ndarray, rgb: Optional[np.ndarray] = None,
               sigma: Optional[np.ndarray] = None,
               out: Optional[np.ndarray] = None) -> tuple[np.ndarray, bool]:
        """Back-project and pack in one pass: the words of an organized cloud.

        Parameters
        ----------
        depth
            [H, W] float32 metres (the camera's size), NaN = no data.
        rgb
            Optional [H, W, 3] uint8 R, G, B at full size (the grid's stride is applied):
            a word ``0x00RRGGBB`` (the PCL / rviz packing) after z.
        sigma
            Optional [H, W] float32 metres at full size: a word after the others.
        out
            Optional C-contiguous float32 [H', W', k] (``k`` :meth:`words`), e.g. a view of
            a message's buffer; a new array when None.

        Returns
        -------
        tuple
            ``(words [H', W', k] float32, dense)``: x, y, z as :meth:`points` computes them
            (the same float32 operations), ``dense`` True when every x, y, z is finite.

        """
        h, w = self.camera.height, self.camera.width
        if depth.shape != (h, w):
            raise DepthNodeError(f'depth of shape {depth.shape} does not match the camera size '
                                 f'{(h, w)}')
        if rgb is not None and (rgb.shape != (h, w, 3) or rgb.dtype != np.uint8):
            raise DepthNodeError(f'rgb of shape {rgb.shape} and dtype {rgb.dtype} is not uint8 '
                                 f'{(h, w, 3)}')
        if sigma is not None and sigma.shape != (h, w):
            raise DepthNodeError(f'sigma of shape {sigma.shape} does not match the camera size '
                                 f'{(h, w)}')
        shape = self.shape + (self.words(rgb is not None, sigma is not None),)
        if out is None:
            out = np.empty(shape, np.float32)
        elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise DepthNodeError(f'out of shape {out.shape} and dtype {out.dtype} is not a '
                                 f'C-contiguous float32 array of shape {shape}')
        if _compiled_pack is None:  # pragma: no cover - numba missing
            return out, packed_reference(self, depth, rgb, sigma, out)
        dense = _compiled_pack(np.asarray(depth, np.float32), self.stride, self._xr1,
                               self._yr1, self._tx, self._ty,
                               self._dummy_rgb if rgb is None else rgb, rgb is not None,
                               self._dummy_sigma if sigma is None
                               else np.asarray(sigma, np.float32),
                               sigma is not None, out.reshape(-1),
                               out.view(np.uint32).reshape(-1))
        return out, bool(dense)


def packed_reference(grid: PointGrid, depth: np.ndarray, rgb: Optional[np.ndarray],
                     sigma: Optional[np.ndarray], out: np.ndarray) -> bool:
    """:meth:`PointGrid.packed` in numpy (points, then a copy per word): its reference.

    Writes ``out`` [H', W', k] float32 and returns whether every x, y, z is finite.
    """
    s = grid.stride
    pts = grid.points(depth)  # [H', W', 3]
    out[..., :3] = pts
    c = 3
    if rgb is not None:
        colours = rgb[::s, ::s].astype(np.uint32)
        out.view(np.uint32)[..., 3] = (colours[..., 0] << 16) | (colours[..., 1] << 8) \
            | colours[..., 2]
        c = 4
    if sigma is not None:
        out[..., c] = sigma[::s, ::s]
    return bool(np.isfinite(pts).all())


def depth_to_points(depth: np.ndarray, camera: PinholeCamera, stride: int = 1) -> np.ndarray:
    """Organized points [H', W', 3] float32 metres from depth [H, W] (see :class:`PointGrid`)."""
    return PointGrid(camera, stride).points(depth)
