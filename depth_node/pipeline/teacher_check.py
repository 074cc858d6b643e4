"""The keyframe teacher as a check of sigma where no LiDAR return is near.

Where LiDAR supports a pixel, the held-out self-check (:mod:`depth_node.pipeline.self_check`)
tests sigma against the frame's own returns. Above the top beam, and wherever else no return
is near, nothing measured checks the student: its sigma there is the calibration's average
for such pixels. The keyframe teacher (Marigold on keyframes, :mod:`depth_node.pipeline.
keyframes`, fitted to the same LiDAR) is a second network that sees the same image, so on
each keyframe it can say whether the student's unsupported depth is further off than its
sigma allows:

1. :func:`teacher_scale`: over the pixels where the student published depth, no return is near
   (the uncertainty's ``unsupported`` gate above 1/2) and the teacher is confident (its
   ensemble uncertainty at or below its ``quantile`` over those pixels), the student's
   log-depth disagreement with the teacher in units of its own ``sigma / z``. Its 95th
   percentile, halved, is 1 when 95 % of them are within 2 sigma, as calibrated; above 1 it is
   how much wider sigma must be there, clipped to :data:`MAX_SCALE`. Below 1 it is 1: a
   teacher that agrees does not show the student to be better than calibrated (the two
   networks can share a bias; the teacher's own errors only add to the disagreement).
2. :class:`TeacherCheck`: the pipeline holds the newest keyframe's scale for
   ``uncertainty.teacher_hold`` seconds of image time after that keyframe's stamp (the scene
   a keyframe saw changes as the vehicle moves) and multiplies sigma by
   ``scale ** unsupported``: fully where no return is near, not at all where LiDAR supports
   the pixel (the self-check's share). Diagnostics: ``sigma_teacher_scale``.

The node runs it (``keyframes.enable``); without keyframes the scale is 1 and nothing changes.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Optional

import numpy as np

from depth_node.core.cell_grid import cell_of
from depth_node.core.uncertainty import unsupported_gate

#: The most a keyframe widens unsupported sigma.
MAX_SCALE = 4.0
#: Fewer pixels than this and the keyframe says nothing (scale 1).
MIN_PIXELS = 200
#: The share of checked pixels sigma should hold within 2 sigma (the calibration's).
COVERED = 0.95


@dataclass(frozen=True)
class StudentView:
    """What the student published on a keyframe candidate, for :func:`teacher_scale`."""

    depth: np.ndarray  # [H, W] float32 m, NaN where nothing was published
    sigma: np.ndarray  # [H, W] float32 m, NaN where depth is NaN
    support: np.ndarray  # [gh, gw] float32, LiDAR returns per fusion cell
    cell: int  # px, side of a fusion cell


def teacher_scale(student: StudentView, teacher_depth: np.ndarray,
                  teacher_uncertainty: Optional[np.ndarray], quantile: float = 0.5,
                  max_depth: float = 80.0) -> tuple[float, int]:
    """``(scale, pixels)``: how much wider the student's unsupported sigma must be for the
    teacher's confident depth to fall within 2 sigma as calibrated (1: no wider), and on how
    many pixels that was measured (``(1.0, n)`` with ``n`` below :data:`MIN_PIXELS`).

    ``teacher_depth`` [H, W] float32 m (NaN = none); ``teacher_uncertainty`` [H, W] (any unit
    that grows with the teacher's doubt; None: every pixel counts).
    """
    z, s = student.depth, student.sigma
    h, w = z.shape
    if teacher_depth.shape != (h, w) or s.shape != (h, w):
        raise ValueError(f'teacher_scale: shapes {z.shape}, {s.shape}, {teacher_depth.shape} '
                         'differ')
    unsupported = unsupported_gate(student.support) > 0.5  # [gh, gw]
    far = unsupported[np.ix_(cell_of(h, student.cell), cell_of(w, student.cell))]
    with np.errstate(invalid='ignore'):
        ok = far & np.isfinite(z) & (z > 0) & np.isfinite(s) & (s > 0) \
            & np.isfinite(teacher_depth) & (teacher_depth > 0) & (teacher_depth <= max_depth)
    if teacher_uncertainty is not None:
        with np.errstate(invalid='ignore'):
            ok &= np.isfinite(teacher_uncertainty)  # no doubt stated: not read
        if ok.any():
            limit = float(np.quantile(teacher_uncertainty[ok], quantile)) if quantile < 1 \
                else np.inf
            ok &= teacher_uncertainty <= limit
    n = int(ok.sum())
    if n < MIN_PIXELS:
        return 1.0, n
    zs, ss, zt = (a[ok].astype(np.float64) for a in (z, s, teacher_depth))
    units = np.abs(np.log(zs / zt)) / (ss / zs)  # disagreement in sigma units
    raw = float(np.quantile(units, COVERED)) / 2.0
    return float(min(max(raw, 1.0), MAX_SCALE)) if math.isfinite(raw) else 1.0, n


class TeacherCheck:
    """The newest keyframe's scale, held ``hold`` seconds of image time (thread-safe: the
    keyframe worker sets it, the frame thread reads it)."""

    def __init__(self, hold: float = 10.0) -> None:
        self.hold = float(hold)
        self._lock = threading.Lock()
        self._scale, self._stamp, self._pixels = 1.0, -math.inf, 0

    def update(self, scale: float, stamp: float, pixels: int = 0) -> None:
        """A keyframe of image time ``stamp`` measured ``scale`` (>= 1) on ``pixels``."""
        if not (math.isfinite(scale) and scale >= 1.0 and math.isfinite(stamp)):
            return
        with self._lock:
            if stamp >= self._stamp or not math.isfinite(self._stamp):
                self._scale, self._stamp, self._pixels = float(scale), float(stamp), int(pixels)

    def reset(self) -> None:
        with self._lock:
            self._scale, self._stamp, self._pixels = 1.0, -math.inf, 0

    def scale_at(self, stamp: float) -> float:
        """The scale for a frame of image time ``stamp``: the keyframe's while
        ``0 <= stamp - keyframe <= hold`` (a frame before it, after a jump back in time, or
        after the hold: 1)."""
        with self._lock:
            age = stamp - self._stamp
            return self._scale if 0.0 <= age <= self.hold else 1.0

    @property
    def last(self) -> tuple[float, float, int]:
        """``(scale, stamp, pixels)`` of the newest keyframe (``(1, -inf, 0)``: none yet)."""
        with self._lock:
            return self._scale, self._stamp, self._pixels


__all__ = ['COVERED', 'MAX_SCALE', 'MIN_PIXELS', 'StudentView', 'teacher_scale',
           'TeacherCheck']
