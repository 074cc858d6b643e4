"""Is there a picture at all? Refuse metric depth from blind, saturated, flat or noise images.

A depth network returns *something* for any input: an all-black frame (lens cap, tunnel exit
at night, a failed driver) still yields a smooth relative map that a LiDAR fit may accept, and
the node would publish made-up metres. These checks run on a small luminance copy of the image
(area-averaged to at most ``side`` pixels on its longer side, so they cost well under a
millisecond) and name what is wrong:

* ``blind``: the 99th percentile of luminance is below ``dark_level`` (nothing is lit);
* ``saturated``: more than ``saturated_share`` of the pixels are at or above
  ``saturated_level`` (sun in the lens, exposure run away);
* ``flat``: the luminance's standard deviation is below ``flat_std`` (fog wall, a grey test
  pattern, a covered lens with light leaking in);
* ``noise``: the correlation of horizontally neighbouring pixels is below ``min_correlation``
  (a natural image is strongly correlated at this scale, sensor noise or a broken stream is
  not).

Levels are in 8-bit units of luminance (Rec. 601 weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from depth_node.core.errors import ConfigError


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of :func:`assess_image` (the node's ``refusal.*`` parameters)."""

    enable: bool = True
    dark_level: float = 12.0  # 8-bit: p99 luminance below this is "blind"
    saturated_level: float = 250.0  # 8-bit
    saturated_share: float = 0.6  # share of pixels at/above saturated_level
    flat_std: float = 3.0  # 8-bit: luminance std below this is "flat"
    min_correlation: float = 0.3  # neighbour correlation below this is "noise"
    side: int = 160  # px, longer side of the luminance copy

    def validate(self) -> None:
        for name, ok, rule in (('dark_level', 0 <= self.dark_level <= 255, 'in 0..255'),
                               ('saturated_level', 0 < self.saturated_level <= 255, 'in (0, 255]'),
                               ('saturated_share', 0 < self.saturated_share <= 1, 'in (0, 1]'),
                               ('flat_std', self.flat_std >= 0, '>= 0'),
                               ('min_correlation', -1 <= self.min_correlation <= 1,
                                'in [-1, 1]'),
                               ('side', self.side >= 16, '>= 16')):
            if not ok:
                raise ConfigError(f'refusal.{name}', f'must be {rule}', getattr(self, name))


@dataclass(frozen=True)
class ImageQuality:
    """What :func:`assess_image` measured; ``problem`` is '' for a usable image."""

    problem: str  # '', 'blind', 'saturated', 'flat' or 'noise'
    message: str  # human-readable, with the figures
    p99: float  # 8-bit luminance
    saturated: float  # share of pixels at/above the saturated level
    std: float  # 8-bit luminance
    correlation: float  # horizontal neighbour correlation

    @property
    def ok(self) -> bool:
        return not self.problem


def luminance(rgb: np.ndarray, side: int) -> np.ndarray:
    """Area-averaged luminance [h, w] float32 (8-bit units), longer side at most ``side``."""
    img = np.asarray(rgb)
    h, w = img.shape[:2]
    f = max(h, w) / float(side)
    if f > 1:
        img = cv2.resize(img, (max(2, int(round(w / f))), max(2, int(round(h / f)))),
                         interpolation=cv2.INTER_AREA)
    img = img.astype(np.float32)
    return 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]


def assess_image(rgb: np.ndarray, config: QualityConfig = QualityConfig()) -> ImageQuality:
    """Check an [H, W, 3] uint8 RGB image (see the module docstring for the rules)."""
    lum = luminance(rgb, config.side)
    p99 = float(np.percentile(lum, 99))
    sat = float(np.mean(lum >= config.saturated_level))
    std = float(lum.std())
    a, b = lum[:, :-1].ravel(), lum[:, 1:].ravel()
    sa, sb = float(a.std()), float(b.std())
    corr = float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb)) if sa > 0 and sb > 0 \
        else 1.0
    problem, message = '', ''
    if not config.enable:
        pass
    elif p99 < config.dark_level:
        problem = 'blind'
        message = f'image is dark (99th percentile luminance {p99:.1f}/255 < ' \
                  f'{config.dark_level:g}): camera blind, covered or unexposed'
    elif sat > config.saturated_share:
        problem = 'saturated'
        message = f'image is saturated ({100 * sat:.0f} % of pixels >= ' \
                  f'{config.saturated_level:g}/255)'
    elif std < config.flat_std:
        problem = 'flat'
        message = f'image is flat (luminance std {std:.2f}/255 < {config.flat_std:g})'
    elif corr < config.min_correlation:
        problem = 'noise'
        message = f'image looks like noise (neighbour correlation {corr:.2f} < ' \
                  f'{config.min_correlation:g})'
    return ImageQuality(problem, message, p99, sat, std, corr)


__all__ = ['assess_image', 'ImageQuality', 'luminance', 'QualityConfig']
