"""When to run the keyframe teacher: every N frames, every T seconds, on a scene change.

:class:`KeyframePolicy` is pure logic that decides, frame by frame and in microseconds, whether
a frame is a keyframe candidate; :class:`~depth_node.pipeline.keyframe_worker.KeyframeWorker`
runs the teacher on the candidates. Stamps in seconds.
"""

from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.estimators.base import check_input_image

__all__ = ['KeyframePolicy']

# Slack on "every T seconds": stamps like 0.1 * k are not exact in binary.
_STAMP_EPS = 1e-6


class KeyframePolicy:
    """Decides which frames are keyframe candidates. Pure logic; one caller at a time.

    A frame triggers when any enabled criterion holds (OR):

    * ``every_n`` > 0: ``every_n`` frames after the last keyframe (frames 0, N, 2N, ...);
    * ``every_t`` > 0: at least ``every_t`` seconds after the last keyframe's stamp;
    * ``scene_change`` > 0: the scene-change score exceeds it. The score is the mean absolute
      difference, in [0, 1], between a ``thumbnail``-pixel-wide grey thumbnail (area-averaged,
      values / 255) of the frame and that of the last keyframe: 0.05 is a clearly visible
      change, a camera pan or a large object entering; sensor noise is averaged away.

    ``min_interval`` (s) suppresses any trigger that soon after the last keyframe (a scene
    change storm). The first frame triggers (``'first'``), and so does a stamp earlier than
    the last keyframe's (``'time_jump'``, e.g. a looping replay; the state restarts there).
    With every criterion off the policy never triggers (:attr:`enabled` is False).

    Parameters
    ----------
    every_n : int
        Frames between keyframes; 0 = off.
    every_t : float
        Seconds between keyframes; 0 = off.
    scene_change : float
        Score threshold in (0, 1); 0 = off.
    min_interval : float
        Seconds; no keyframe sooner than this after the last one (0 = no limit).
    thumbnail : int
        Thumbnail width in pixels (height keeps the aspect ratio), >= 4.
    """

    def __init__(self, every_n: int = 0, every_t: float = 0.0, scene_change: float = 0.0,
                 min_interval: float = 0.0, thumbnail: int = 32) -> None:
        if isinstance(every_n, bool) or not isinstance(every_n, (int, np.integer)) \
                or every_n < 0:
            raise ConfigError('keyframes.every_n', 'must be an integer >= 0 (0 = off)', every_n)
        if not (math.isfinite(every_t) and every_t >= 0):
            raise ConfigError('keyframes.every_t', 'must be a number of seconds >= 0 (0 = off)',
                              every_t)
        if not (math.isfinite(scene_change) and 0 <= scene_change < 1):
            raise ConfigError('keyframes.scene_change', 'must be in [0, 1) (0 = off)',
                              scene_change)
        if not (math.isfinite(min_interval) and min_interval >= 0):
            raise ConfigError('keyframes.min_interval', 'must be a number of seconds >= 0',
                              min_interval)
        if isinstance(thumbnail, bool) or not isinstance(thumbnail, (int, np.integer)) \
                or thumbnail < 4:
            raise ConfigError('keyframes.thumbnail', 'must be an integer >= 4 pixels',
                              thumbnail)
        self.every_n = int(every_n)
        self.every_t = float(every_t)
        self.scene_change = float(scene_change)
        self.min_interval = float(min_interval)
        self.thumbnail = int(thumbnail)
        #: Scene-change score of the last frame seen (NaN when not computed).
        self.last_score = float('nan')
        self.reset()

    @property
    def enabled(self) -> bool:
        """Whether any criterion is on."""
        return self.every_n > 0 or self.every_t > 0 or self.scene_change > 0

    def reset(self) -> None:
        """Forget the last keyframe: the next frame triggers as ``'first'``."""
        self._since = 0  # frames since the last keyframe
        self._last_stamp: Optional[float] = None
        self._last_thumb: Optional[np.ndarray] = None

    def thumbnail_of(self, rgb: np.ndarray) -> np.ndarray:
        """Grey thumbnail ``[h, thumbnail]`` float32 in [0, 1] of an RGB ``[H, W, 3]`` uint8."""
        check_input_image(rgb)
        height, width = rgb.shape[:2]
        th = max(1, int(round(self.thumbnail * height / width)))
        small = cv2.resize(rgb, (self.thumbnail, th), interpolation=cv2.INTER_AREA)
        grey = small.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return grey * np.float32(1.0 / 255.0)  # [th, thumbnail]

    def score(self, thumb: np.ndarray) -> float:
        """Scene-change score of a thumbnail against the last keyframe's (NaN: none yet)."""
        if self._last_thumb is None or self._last_thumb.shape != thumb.shape:
            return float('nan')
        return float(np.mean(np.abs(thumb - self._last_thumb)))

    def should_trigger(self, stamp: float, rgb: Optional[np.ndarray] = None) -> tuple[bool, str]:
        """Whether the frame at ``stamp`` (s) is a keyframe candidate, and why.

        ``rgb`` (``[H, W, 3]`` uint8) is needed only with ``scene_change`` on. A True answer
        records the frame as the last keyframe. Returns ``(False, '')`` or ``(True, reason)``,
        reasons among ``first``, ``time_jump``, ``every_n``, ``every_t``, ``scene_change``,
        joined by ``+`` when several hold.
        """
        if not self.enabled:
            return False, ''
        thumb = None
        if self.scene_change > 0:
            if rgb is None:
                raise DepthNodeError('KeyframePolicy.should_trigger needs the rgb image when '
                                     'keyframes.scene_change is on')
            thumb = self.thumbnail_of(rgb)
        self._since += 1
        if self._last_stamp is None:
            return self._trigger(stamp, thumb, 'first')
        if stamp < self._last_stamp:
            return self._trigger(stamp, thumb, 'time_jump')
        elapsed = stamp - self._last_stamp
        reasons = []
        if self.every_n > 0 and self._since >= self.every_n:
            reasons.append('every_n')
        if self.every_t > 0 and elapsed >= self.every_t - _STAMP_EPS:
            reasons.append('every_t')
        if thumb is not None:
            self.last_score = self.score(thumb)
            if self.last_score > self.scene_change:
                reasons.append('scene_change')
        if not reasons or elapsed < self.min_interval - _STAMP_EPS:
            return False, ''
        return self._trigger(stamp, thumb, '+'.join(reasons))

    def _trigger(self, stamp: float, thumb: Optional[np.ndarray],
                 reason: str) -> tuple[bool, str]:
        self._since = 0
        self._last_stamp = float(stamp)
        if thumb is not None:
            self._last_thumb = thumb
        return True, reason
