"""The coarse grid of the trust stage: ``cell`` x ``cell`` pixel cells, their centres, upsampling.

Fusion (:mod:`depth_node.core.fusion`) and uncertainty (:mod:`depth_node.core.uncertainty`)
work on a grid of cells; the published images are per pixel. One convention links them, the
one OpenCV's ``resize(..., INTER_LINEAR)`` uses for an integer upscale of ``cell``: the value of
cell ``i`` sits at pixel ``(i + 0.5) * cell - 0.5`` and pixels between centres interpolate
bilinearly (clamped at the borders). Per-cell features read the image at the *sampled* centre
``min(i * cell + cell // 2, n - 1)``.

:func:`upsample_reference` is OpenCV's resize (the numpy-side reference); the compiled
per-pixel passes agree with it to float32 rounding: the grid rows are interpolated along x
once per frame (:func:`along_rows`, OpenCV), then each pixel is :func:`lerp` along y between
the two rows around it (:func:`axis_weights`).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

try:  # numba is a dependency; without it (a broken install) lerp stays a Python function
    from numba import njit
except ImportError:  # pragma: no cover - exercised only on a broken install
    njit = None


@functools.lru_cache(maxsize=16)
def axis_weights(n: int, cells: int, cell: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear source cells ``i0``, ``i1`` [n] int64 and weight of ``i1`` [n] float32.

    OpenCV's INTER_LINEAR convention for an upscale by ``cell``, clamped at both ends. Cached
    per size (read-only arrays): a frame's passes do not rebuild them.
    """
    src = np.clip((np.arange(n) + 0.5) / cell - 0.5, 0.0, cells - 1.0)
    i0 = src.astype(np.int64)
    return _frozen(i0), _frozen(np.minimum(i0 + 1, cells - 1)), \
        _frozen((src - i0).astype(np.float32))


@functools.lru_cache(maxsize=16)
def cell_of(n: int, cell: int) -> np.ndarray:
    """The cell of each of ``n`` pixel rows (or columns): [n] int64, cached, read-only."""
    return _frozen(np.arange(int(n)) // int(cell))


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def grid_shape(height: int, width: int, cell: int) -> tuple[int, int]:
    """``(gh, gw)``: cells covering an image of ``height`` x ``width`` pixels."""
    return -(-int(height) // int(cell)), -(-int(width) // int(cell))


@functools.lru_cache(maxsize=16)
def cell_centres(n: int, cells: int, cell: int) -> np.ndarray:
    """Sampled centre pixel of each of ``cells`` cells along an axis of ``n`` pixels: [cells].

    Cached per size, read-only.
    """
    return _frozen(np.minimum(np.arange(cells) * int(cell) + int(cell) // 2, n - 1))


def upsample_reference(grid: np.ndarray, cell: int, height: int, width: int) -> np.ndarray:
    """Bilinear [gh, gw] -> [height, width] float32 (OpenCV): the numpy-side reference."""
    gh, gw = grid.shape
    out: np.ndarray = cv2.resize(np.ascontiguousarray(grid, dtype=np.float32),
                                 (gw * cell, gh * cell), interpolation=cv2.INTER_LINEAR)
    return out[:height, :width]


def _lerp(a: float, b: float, t: float) -> float:
    """``a + t (b - a)``: the one interpolation formula of the compiled passes."""
    return a + t * (b - a)


lerp = njit(inline='always')(_lerp) if njit is not None else _lerp


def along_rows(grid: np.ndarray, cell: int, width: int) -> np.ndarray:
    """The grid interpolated along x only: [gh, gw] -> [gh, width] float32 (OpenCV).

    The first half of :func:`upsample_reference`: a pixel's value is then ``lerp`` along y
    between two of these rows (:func:`axis_weights` of the rows).
    """
    gh, gw = grid.shape
    out: np.ndarray = cv2.resize(np.ascontiguousarray(grid, dtype=np.float32), (gw * cell, gh),
                                 interpolation=cv2.INTER_LINEAR)
    return out[:, :width]


__all__ = ['along_rows', 'axis_weights', 'cell_centres', 'cell_of', 'grid_shape', 'lerp',
           'upsample_reference']
