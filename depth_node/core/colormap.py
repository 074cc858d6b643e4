"""Colour maps for depth previews (rgb8)."""

from __future__ import annotations

import cv2
import numpy as np


def colorize_depth(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """RGB preview [H, W, 3] uint8 of metric depth [H, W]: turbo on inverse depth.

    Near is red, far is blue; the fixed range keeps colours stable from frame to frame (an
    auto range flickers). NaN and out-of-range-invalid pixels are black.
    """
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
