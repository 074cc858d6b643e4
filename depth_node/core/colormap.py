"""Colour maps for depth previews (rgb8).

:func:`colorize_depth` (the ``depth/colored`` preview, every frame) is one compiled pass
(numba): depth to a uint8 index of a 256-entry turbo table (a branch-free loop that
vectorises), the table's three bytes written into the output buffer, four pixels as three
32-bit words. :func:`colorize_depth_reference` is the same preview in numpy and
OpenCV, its reference.
"""

from __future__ import annotations

import sys
from typing import Optional

import cv2
import numpy as np

from depth_node.core.errors import DepthNodeError

try:  # numba is a dependency; without it (a broken install) the numpy reference runs
    from numba import njit
except ImportError:  # pragma: no cover - exercised only on a broken install
    njit = None


def colorize_depth_reference(depth: np.ndarray, min_depth: float,
                             max_depth: float) -> np.ndarray:
    """:func:`colorize_depth` in numpy and OpenCV: the reference of the compiled pass."""
    lo, hi = np.float32(1.0 / max_depth), np.float32(1.0 / min_depth)
    inv = np.float32(1.0) / np.clip(depth, np.float32(min_depth), np.float32(max_depth))
    return colorize_normalized((inv - lo) / (hi - lo))


def colorize_relative(values: np.ndarray) -> np.ndarray:
    """RGB preview [H, W, 3] uint8 of a relative map, normalised by its 2nd-98th percentiles."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape + (3,), dtype=np.uint8)
    lo, hi = np.percentile(finite, [2, 98])
    return colorize_normalized((values - lo) / max(hi - lo, 1e-12))


def _turbo_lut() -> np.ndarray:
    """[256, 1, 3] uint8 user colour map: entry 0 black (no data), 1..255 turbo, RGB order."""
    turbo = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(-1, 1),
                              cv2.COLORMAP_TURBO)[:, 0, ::-1]  # [256, 3] RGB
    lut = np.zeros((256, 1, 3), dtype=np.uint8)
    lut[1:, 0] = turbo[np.round(np.linspace(0, 255, 255)).astype(int)]
    return lut


_LUT = _turbo_lut()


def colorize_normalized(norm: np.ndarray) -> np.ndarray:
    """Turbo colours [H, W, 3] uint8 RGB for values in [0, 1]; NaN is black."""
    # Valid values map to LUT entries 1..255 and NaN to entry 0 (black), so no mask pass over
    # the colour image is needed.
    scaled = np.where(np.isfinite(norm), np.clip(norm, 0.0, 1.0) * np.float32(254.0) + 1.0,
                      np.float32(0.0))
    idx = cv2.convertScaleAbs(scaled.astype(np.float32, copy=False))  # [H, W] uint8, rounded
    return cv2.applyColorMap(idx, _LUT)


def _colorize_kernel(depth: np.ndarray, min_depth: np.float32, max_depth: np.float32,
                     lo: np.float32, scale: np.float32, lut: np.ndarray, words: np.ndarray,
                     out: np.ndarray) -> None:
    """LUT index per pixel, then the table's bytes out, in chunks that stay in cache.

    The index loop has no branch (it vectorises): clamp, inverse, ``index = v + 1.5``
    truncated (1..255; 0, black, for NaN). With ``words`` (``out`` as uint32, the pixel count
    a multiple of 4) four pixels go out as three 32-bit stores of ``lut``'s packed ``0BGR``
    entries; else byte by byte.
    """
    one = np.float32(1.0)
    top = np.float32(255.5)
    chunk = 4096  # a multiple of 4
    idx = np.empty(chunk, np.uint8)
    n = depth.size
    wide = words.size * 4 == out.size
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        for i in range(s, e):
            z = depth[i]
            zc = min(max(z, min_depth), max_depth)
            k = np.int32(min((one / zc - lo) * scale + np.float32(1.5), top))
            idx[i - s] = np.uint8(k) if z == z else np.uint8(0)
        if wide:
            q0 = s // 4
            for q in range((e - s) // 4):
                c0, c1 = lut[idx[4 * q], 3], lut[idx[4 * q + 1], 3]
                c2, c3 = lut[idx[4 * q + 2], 3], lut[idx[4 * q + 3], 3]
                w = 3 * (q0 + q)
                words[w] = c0 | (c1 << 24)
                words[w + 1] = (c1 >> 8) | (c2 << 16)
                words[w + 2] = (c2 >> 16) | (c3 << 8)
        else:
            for i in range(s, e):
                k = idx[i - s]
                out[3 * i] = lut[k, 0]
                out[3 * i + 1] = lut[k, 1]
                out[3 * i + 2] = lut[k, 2]


_compiled_colorize = njit(cache=True, nogil=True, error_model='numpy')(_colorize_kernel) \
    if njit is not None else None
# [256, 4] uint32: R, G, B and the three packed as 0x00BBGGRR (bytes R, G, B in memory on a
# little-endian host; big-endian hosts take the byte path).
_RGB_LUT = np.zeros((256, 4), np.uint32)
_RGB_LUT[:, :3] = _LUT[:, 0]
_RGB_LUT[:, 3] = _RGB_LUT[:, 0] | (_RGB_LUT[:, 1] << 8) | (_RGB_LUT[:, 2] << 16)


def colorize_depth(depth: np.ndarray, min_depth: float, max_depth: float,
                   out: Optional[np.ndarray] = None) -> np.ndarray:
    """RGB preview [H, W, 3] uint8 of metric depth [H, W]: turbo on inverse depth.

    Near is red, far is blue; the fixed range keeps colours stable from frame to frame (an
    auto range flickers). NaN pixels are black. ``out`` (uint8 [H, W, 3], C-contiguous), when
    given, is written and returned, e.g. a message's buffer. The colours are those of
    :func:`colorize_depth_reference` to one LUT step (float rounding at an index boundary).
    """
    z = np.ascontiguousarray(depth, dtype=np.float32)
    if _compiled_colorize is None:  # pragma: no cover - numba missing
        colours = colorize_depth_reference(z, min_depth, max_depth)
        if out is None:
            return colours
        np.copyto(out, colours)
        return out
    shape = z.shape + (3,)
    if out is None:
        out = np.empty(shape, np.uint8)
    elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise DepthNodeError(f'out of shape {out.shape} and dtype {out.dtype} is not a '
                             f'C-contiguous uint8 array of shape {shape}')
    lo, hi = np.float32(1.0 / max_depth), np.float32(1.0 / min_depth)
    flat = out.reshape(-1)
    wide = z.size % 4 == 0 and flat.ctypes.data % 4 == 0 and sys.byteorder == 'little'
    words = flat.view(np.uint32) if wide else _NO_WORDS
    _compiled_colorize(z.reshape(-1), np.float32(min_depth), np.float32(max_depth), lo,
                       np.float32(254.0) / (hi - lo), _RGB_LUT, words, flat)
    return out


_NO_WORDS = np.zeros(0, np.uint32)
