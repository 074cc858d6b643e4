"""Colour maps for depth previews (rgb8)."""

from __future__ import annotations

import cv2
import numpy as np


def colorize_depth(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """RGB preview [H, W, 3] uint8 of metric depth [H, W]: turbo on inverse depth.

    Near is red, far is blue; the fixed range keeps colours stable from frame to frame (an
    auto range flickers). NaN and out-of-range-invalid pixels are black.
    """
    inv = 1.0 / np.clip(depth, min_depth, max_depth)
    lo, hi = 1.0 / max_depth, 1.0 / min_depth
    norm = (inv - lo) / (hi - lo)
    return colorize_normalized(norm)


def colorize_relative(values: np.ndarray) -> np.ndarray:
    """RGB preview [H, W, 3] uint8 of a relative map, normalised by its 2nd-98th percentiles."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape + (3,), dtype=np.uint8)
    lo, hi = np.percentile(finite, [2, 98])
    return colorize_normalized((values - lo) / max(hi - lo, 1e-12))


def colorize_normalized(norm: np.ndarray) -> np.ndarray:
    """Turbo colours [H, W, 3] uint8 RGB for values in [0, 1]; NaN is black."""
    nan = ~np.isfinite(norm)
    idx = (np.clip(np.nan_to_num(norm, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    rgb = cv2.applyColorMap(idx, cv2.COLORMAP_TURBO)[..., ::-1]
    rgb = np.ascontiguousarray(rgb)
    rgb[nan] = 0
    return rgb
