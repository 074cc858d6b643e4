"""Relative "oracle" predictions made from exact depth, with controllable corruptions.

They stand in for a relative depth model when the question is about the metric path rather
than the model: the true disparity (or depth) under an affine map the aligner does not know,
optionally with the errors real models make:

* ``distortion``: a smooth low-frequency multiplicative field (1 + a·sin·cos across the image),
  the kind of error a global affine fit cannot remove and local alignment can;
* ``noise``: per-pixel multiplicative Gaussian noise (relative sigma);
* ``blur``: Gaussian blur of the prediction (sigma in pixels), which smears depth edges the way
  a network's upsampling does.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from depth_node.core.align import OutputKind
from depth_node.core.errors import DepthNodeError


@dataclass(frozen=True)
class Corruption:
    """How an oracle prediction departs from the truth (all zero: exact up to the affine map)."""

    distortion: float = 0.0  # amplitude of the smooth multiplicative field
    distortion_periods: float = 1.0  # periods of the field across the image width
    noise: float = 0.0  # relative sigma of per-pixel multiplicative noise
    blur: float = 0.0  # Gaussian sigma in pixels

    def __post_init__(self) -> None:
        for name in ('distortion', 'noise', 'blur'):
            if not getattr(self, name) >= 0:
                raise DepthNodeError(f'Corruption.{name} must be >= 0, got {getattr(self, name)}')
        if self.distortion >= 1:
            raise DepthNodeError(f'Corruption.distortion must be < 1, got {self.distortion}')


def distortion_field(height: int, width: int, amplitude: float,
                     periods: float = 1.0) -> np.ndarray:
    """Smooth field [H, W] float32 around 1: ``1 + a·sin(2π·p·x)·cos(π·p·y)``."""
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    return (1.0 + amplitude * np.sin(2 * np.pi * periods * x + 0.3)
            * np.cos(np.pi * periods * y + 0.2)).astype(np.float32)


def oracle_prediction(depth: np.ndarray, kind: OutputKind = OutputKind.DISPARITY,
                      scale: float = 0.37, shift: float = 0.05,
                      corruption: Corruption = Corruption(), seed: int = 0) -> np.ndarray:
    """Relative prediction [H, W] float32 from exact depth [H, W] (metres, inf = sky).

    Disparity: ``scale · c(1/z) + shift`` (sky has disparity 0). Depth: ``scale · c(z) + shift``
    with sky at the largest finite depth, as a depth model saturates. ``c`` applies the
    corruptions, in the order distortion, noise, blur.
    """
    if not scale > 0:
        raise DepthNodeError(f'oracle scale must be > 0, got {scale}')
    z = np.asarray(depth, dtype=np.float32)
    finite = np.isfinite(z) & (z > 0)
    if kind is OutputKind.DISPARITY:
        base = np.where(finite, 1.0 / np.where(finite, z, 1.0), 0.0).astype(np.float32)
    else:
        far = float(z[finite].max()) if finite.any() else 1.0
        base = np.where(finite, z, far).astype(np.float32)
    c = corruption
    if c.distortion:
        base = base * distortion_field(*z.shape, c.distortion, c.distortion_periods)
    if c.noise:
        rng = np.random.default_rng(seed)
        base = base * (1.0 + c.noise * rng.standard_normal(z.shape, dtype=np.float32))
    if c.blur:
        base = cv2.GaussianBlur(base, (0, 0), c.blur)
    return (scale * base + shift).astype(np.float32)
