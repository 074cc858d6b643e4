"""Colour maps for depth previews (rgb8).

:func:`colorize_depth` (the ``depth/colored`` preview, every frame) is one compiled pass
(numba): depth to a uint8 index of a 256-entry turbo table, the table's three bytes written
into the output buffer. :func:`colorize_depth_reference` is the same preview in numpy and
OpenCV, its reference.
"""

from __future__ import annotations

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
                     lo: np.float32, scale: np.float32, lut: np.ndarray,
                     out: np.ndarray) -> None:
    """One pass: clamp, inverse, LUT index 1..255 (0, black, for NaN), three bytes out."""
    one = np.float32(1.0)
    for i in range(depth.size):
        z = depth[i]
        k = 0
        if z == z:  # not NaN (inf is clamped to the far end, as np.clip does)
            z = min(max(z, min_depth), max_depth)
            v = (one / z - lo) * scale  # 0..254 from far to near
            v = min(max(v, np.float32(0.0)), np.float32(254.0))
            k = int(np.rint(v)) + 1  # round half to even, as cv2.convertScaleAbs
        out[i, 0] = lut[k, 0]
        out[i, 1] = lut[k, 1]
        out[i, 2] = lut[k, 2]


_compiled_colorize = njit(cache=True, nogil=True)(_colorize_kernel) if njit is not None \
    else None
_RGB_LUT = np.ascontiguousarray(_LUT[:, 0])  # [256, 3] uint8 RGB, entry 0 black


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
    _compiled_colorize(z.reshape(-1), np.float32(min_depth), np.float32(max_depth), lo,
                       np.float32(254.0) / (hi - lo), _RGB_LUT, out.reshape(-1, 3))
    return out
