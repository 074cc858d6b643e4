"""Is there a picture at all? Refuse metric depth from blind, saturated, flat or noise images.

A depth network returns *something* for any input: an all-black frame (lens cap, tunnel exit
at night, a failed driver) still yields a smooth relative map that a LiDAR fit may accept, and
the node would publish made-up metres. These checks run on a small luminance copy of the image
(the mean of ``f`` x ``f`` pixel blocks, ``f`` the smallest integer that brings the longer side
to at most ``side`` pixels, at most the image's rows or columns; a remainder of fewer than ``f``
rows or columns at the far edges is left out) and name what is wrong:

* ``blind``: the 99th percentile of luminance is below ``dark_level`` (nothing is lit);
* ``saturated``: more than ``saturated_share`` of the pixels are at or above
  ``saturated_level`` (sun in the lens, exposure run away);
* ``flat``: the luminance's standard deviation is below ``flat_std`` (fog wall, a grey test
  pattern, a covered lens with light leaking in);
* ``noise``: the correlation of horizontally neighbouring pixels is below ``min_correlation``
  (a natural image is strongly correlated at this scale, sensor noise or a broken stream is
  not).

Levels are in 8-bit units of luminance (Rec. 601 weights).

Cost: :func:`assess_image` reads the image once in a compiled pass (numba) that sums the
blocks, and takes the statistics on the small copy in a second one (the 99th percentile from a
histogram, exact); :func:`assess_image_reference` is the same check in numpy, which the tests
hold it to.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np

from depth_node.core.errors import ConfigError

from depth_node.core.jit import compiled

#: Rec. 601 luminance weights of R, G, B.
_WEIGHTS = (0.299, 0.587, 0.114)
#: Histogram bins per 8-bit level for the exact percentile (luminance is in [0, 255]).
_BINS_PER_LEVEL = 16


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


def block_size(height: int, width: int, side: int) -> tuple[int, int]:
    """Rows and columns of a luminance block: ``f`` x ``f``, but no more than the image has.

    ``f`` is 1 when the image is already small; a thin image (640 x 1) keeps its one row.
    """
    f = max(1, math.ceil(max(height, width) / float(side)))
    return max(1, min(f, height)), max(1, min(f, width))


def luminance(rgb: np.ndarray, side: int) -> np.ndarray:
    """Block-mean luminance [h, w] float32 (8-bit units) of uint8 RGB, longer side <= ``side``.

    Compiled; :func:`luminance_reference` is the numpy definition.
    """
    img = np.ascontiguousarray(rgb)
    h, w = img.shape[:2]
    fy, fx = block_size(h, w, side)
    out = np.empty((h // fy, w // fx), np.float32)
    _blocks(img, fy, fx, *_WEIGHTS, out)
    return out


def luminance_reference(rgb: np.ndarray, side: int) -> np.ndarray:
    """:func:`luminance` in numpy: means of ``f`` x ``f`` blocks, then the Rec. 601 weights."""
    img = np.asarray(rgb)
    h, w = img.shape[:2]
    fy, fx = block_size(h, w, side)
    hh, ww = h // fy, w // fx
    mean = img[:hh * fy, :ww * fx].reshape(hh, fy, ww, fx, 3).mean(axis=(1, 3))  # [hh, ww, 3]
    return (_WEIGHTS[0] * mean[..., 0] + _WEIGHTS[1] * mean[..., 1]
            + _WEIGHTS[2] * mean[..., 2]).astype(np.float32)


def _verdict(p99: float, sat: float, std: float, corr: float,
             config: QualityConfig) -> ImageQuality:
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


def assess_image(rgb: np.ndarray, config: QualityConfig = QualityConfig()) -> ImageQuality:
    """Check an [H, W, 3] uint8 RGB image (see the module docstring for the rules)."""
    lum = luminance(rgb, config.side)
    stats = np.empty(4)
    _statistics(lum, float(config.saturated_level), _BINS_PER_LEVEL, stats)
    return _verdict(*(float(x) for x in stats), config)


def assess_image_reference(rgb: np.ndarray,
                           config: QualityConfig = QualityConfig()) -> ImageQuality:
    """:func:`assess_image` in numpy (the reference of the compiled passes)."""
    lum = luminance_reference(rgb, config.side)
    p99 = float(np.percentile(lum, 99))
    sat = float(np.mean(lum >= config.saturated_level))
    std = float(lum.std())
    a, b = lum[:, :-1].ravel(), lum[:, 1:].ravel()
    sa, sb = (float(a.std()), float(b.std())) if a.size else (0.0, 0.0)  # one column: no pair
    corr = float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb)) if sa > 0 and sb > 0 \
        else 1.0
    return _verdict(p99, sat, std, corr, config)


def warm_up() -> None:
    """Compile the two passes now (or load them from numba's cache), not on the first frame."""
    assess_image(np.zeros((8, 8, 3), np.uint8), QualityConfig(side=16))
    assess_image(np.zeros((40, 40, 3), np.uint8), QualityConfig(side=16))


def _blocks_kernel(img: np.ndarray, fy: int, fx: int, wr: float, wg: float, wb: float,
                   out: np.ndarray) -> None:
    """Block means of the three channels, weighted into luminance: ``out`` [h // fy, w // fx].

    Each block row adds its ``fy`` image rows into one row of integer sums (contiguous, so the
    loop vectorises), weights them into luminance per column, then sums ``fx`` columns.
    """
    hh, ww = out.shape
    acc = np.empty(ww * fx * 3, np.int32)
    lum = np.empty(ww * fx, np.float32)
    r32, g32, b32 = np.float32(wr), np.float32(wg), np.float32(wb)
    scale = 1.0 / (fy * fx)
    for i in range(hh):
        acc[:] = 0
        for k in range(fy):
            row = img[i * fy + k].ravel()
            for x in range(acc.size):
                acc[x] += row[x]
        for x in range(lum.size):
            lum[x] = r32 * acc[3 * x] + g32 * acc[3 * x + 1] + b32 * acc[3 * x + 2]
        for j in range(ww):
            total = 0.0
            for k in range(fx):
                total += lum[j * fx + k]
            out[i, j] = total * scale


def _statistics_kernel(lum: np.ndarray, saturated_level: float, per_level: int,
                       out: np.ndarray) -> None:
    """99th percentile (numpy's linear rule, exact), saturated share, std, neighbour correlation.

    The percentile's two order statistics are found through a histogram of ``per_level`` bins
    per 8-bit level: only the values in their bins are sorted.
    """
    h, w = lum.shape
    n = h * w
    if n == 0:  # no pixel (not an image the node accepts): nothing is wrong with nothing
        out[0], out[1], out[2], out[3] = 0.0, 0.0, 0.0, 1.0
        return
    flat = lum.ravel()
    bins = 256 * per_level
    hist = np.zeros(bins + 1, np.int64)
    s = ss = 0.0
    sat = 0
    for i in range(n):
        v = np.float64(flat[i])
        s += v
        ss += v * v
        sat += v >= saturated_level
        hist[min(max(int(v * per_level), 0), bins)] += 1
    pos = 0.99 * (n - 1)
    k = int(math.floor(pos))
    k1 = min(k + 1, n - 1)
    lo = cum = 0
    while cum + hist[lo] <= k:  # bin of order statistic k
        cum += hist[lo]
        lo += 1
    hi, cum_hi = lo, cum
    while cum_hi + hist[hi] <= k1:
        cum_hi += hist[hi]
        hi += 1
    picked = np.empty(cum_hi + hist[hi] - cum, np.float32)
    m = 0
    for i in range(n):
        b = min(max(int(np.float64(flat[i]) * per_level), 0), bins)
        if lo <= b <= hi:
            picked[m] = flat[i]
            m += 1
    picked.sort()
    a0, a1 = np.float64(picked[k - cum]), np.float64(picked[k1 - cum])
    out[0] = a0 + (pos - k) * (a1 - a0)
    out[1] = sat / n
    mean = s / n
    out[2] = math.sqrt(max(ss / n - mean * mean, 0.0))
    sa = sb = saa = sbb = sab = 0.0
    for y in range(h):
        for x in range(w - 1):
            a, b2 = np.float64(lum[y, x]), np.float64(lum[y, x + 1])
            sa += a
            sb += b2
            saa += a * a
            sbb += b2 * b2
            sab += a * b2
    m2 = h * (w - 1)
    if m2 == 0:
        out[3] = 1.0
        return
    ma, mb = sa / m2, sb / m2
    va, vb = saa / m2 - ma * ma, sbb / m2 - mb * mb
    out[3] = (sab / m2 - ma * mb) / math.sqrt(va * vb) if va > 1e-9 and vb > 1e-9 else 1.0


_blocks = compiled(_blocks_kernel)
_statistics = compiled(_statistics_kernel)


__all__ = ['assess_image', 'assess_image_reference', 'block_size', 'ImageQuality', 'luminance',
           'luminance_reference', 'QualityConfig', 'warm_up']
