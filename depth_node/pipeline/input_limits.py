"""What one frame may ask of the network: image aspect ratio and pixel count (``input.*``).

Depth Anything resizes an image so that its *shorter* side is the network's input size: a valid
640x1 image becomes a 196x125440 network input, whose attention over 125 000 patches stalls the
worker for minutes and takes gigabytes, and a 48-megapixel image costs a gigabyte before the
network even runs. :class:`InputLimits` bounds both, before the estimator sees the image:

* ``max_pixels``: an image with more pixels is refused (it also bounds what one frame
  allocates: decoding, pre-processing, outputs);
* ``max_aspect`` (longer side / shorter side): a thinner image is letterboxed - padded, centred,
  with black to that aspect, so the network input is at most ``max_aspect`` input sizes long,
  and the prediction cropped back to the image - or refused (``oversize: 'refuse'``).

A refused frame raises :class:`InputRefused` (a :class:`DepthNodeError` that names the
parameter and the image size); the runner counts it as ``dropped_input_limits``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from depth_node.core.errors import ConfigError, DepthNodeError

#: ``input.oversize`` choices.
OVERSIZE = ('letterbox', 'refuse')


class InputRefused(DepthNodeError):
    """An image outside the ``input.*`` limits (the message names the limit and the size)."""


@dataclass(frozen=True)
class InputLimits:
    """The ``input.*`` parameters."""

    max_aspect: float = 4.0  # longer / shorter image side (input.max_aspect)
    max_pixels: int = 16_777_216  # width * height, 4096 x 4096 (input.max_pixels)
    oversize: str = 'letterbox'  # beyond max_aspect: 'letterbox' or 'refuse' (input.oversize)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad value."""
        if not self.max_aspect >= 1.0:
            raise ConfigError('input.max_aspect', 'must be >= 1', self.max_aspect)
        if self.max_pixels < 1:
            raise ConfigError('input.max_pixels', 'must be >= 1', self.max_pixels)
        if self.oversize not in OVERSIZE:
            raise ConfigError('input.oversize', "must be 'letterbox' or 'refuse'", self.oversize)

    def letterbox_shape(self, height: int, width: int) -> Optional[tuple[int, int]]:
        """``None`` when a ``height x width`` image is within the limits, else the padded
        ``(height, width)`` it is letterboxed to.

        Raises
        ------
        InputRefused
            No pixels, more than ``max_pixels``, or (``oversize: 'refuse'``, or a letterbox
            that would exceed ``max_pixels``) thinner than ``max_aspect``.
        """
        size = f'{width}x{height}'
        if height < 1 or width < 1:
            raise InputRefused(f'image {size} has no pixels')
        if height * width > self.max_pixels:
            raise InputRefused(f'image {size} has {height * width} pixels, more than '
                               f'input.max_pixels ({self.max_pixels})')
        long_side, short_side = max(height, width), min(height, width)
        aspect = long_side / short_side
        if aspect <= self.max_aspect:
            return None
        if self.oversize == 'refuse':
            raise InputRefused(f'image {size} has aspect ratio {aspect:.4g}, more than '
                               f'input.max_aspect ({self.max_aspect:g}; input.oversize is '
                               "'refuse')")
        short = min(long_side, math.ceil(long_side / self.max_aspect))
        shape = (short, width) if height < width else (height, short)
        if shape[0] * shape[1] > self.max_pixels:
            raise InputRefused(f'image {size} has aspect ratio {aspect:.4g}, more than '
                               f'input.max_aspect ({self.max_aspect:g}), and letterboxed to '
                               f'{shape[1]}x{shape[0]} it would have more than '
                               f'input.max_pixels ({self.max_pixels})')
        return shape


def letterboxed(predict: Callable[[np.ndarray], np.ndarray], rgb: np.ndarray,
                shape: tuple[int, int]) -> np.ndarray:
    """``predict`` on ``rgb`` [H, W, 3] uint8 padded (black, centred) to ``shape``; the
    prediction ``[shape]`` cropped back to ``[H, W]`` (a contiguous copy)."""
    h, w = rgb.shape[:2]
    top, left = (shape[0] - h) // 2, (shape[1] - w) // 2
    padded = np.zeros((shape[0], shape[1], 3), np.uint8)  # [h', w', 3]
    padded[top:top + h, left:left + w] = rgb
    pred = np.asarray(predict(padded))
    if pred.shape != shape:
        raise DepthNodeError(f'estimator returned shape {pred.shape} for a letterboxed input of '
                             f'{shape}')
    return np.ascontiguousarray(pred[top:top + h, left:left + w])  # [H, W]


__all__ = ['InputLimits', 'InputRefused', 'letterboxed', 'OVERSIZE']
