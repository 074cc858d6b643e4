"""Moving a sweep to the image stamp: the runner's deskew step and what it tells diagnostics.

When :class:`~depth_node.pipeline.runner.FrameRunner` pairs a sweep with a frame it calls
:func:`deskew_sweep` with the caller's :data:`MotionLookup` (the node: tf2 ``odom -> base``,
an odometry topic, or the poses it last received; the evaluation: the bag's ``/tf``):

* ``lidar.deskew`` false: the sweep is used as it is (``OFF``);
* per-point times (:mod:`depth_node.messages.point_time`) and the motion known over the sweep
  and the image stamp: every return is moved to the LiDAR frame at the image stamp
  (``PER_POINT``, :func:`depth_node.core.deskew.deskew`);
* no per-point time: the whole sweep is moved from its stamp (plus ``lidar.sweep_offset``,
  when the returns the camera sees were measured: half a period for a spinning LiDAR stamped
  at the start of its sweep and facing the camera half way) to the image stamp
  (``WHOLE_SWEEP``);
* no motion (no source, fewer than two poses, or poses ending more than
  ``motion.max_extrapolation`` s before the time needed): not deskewed (``NO_MOTION``).

Inside the poses held the motion is interpolated; up to ``max_extrapolation`` past them it is
extrapolated with the last two poses' velocity (:class:`~depth_node.core.motion.PoseTrack`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from depth_node.core.compat import StrEnum
from depth_node.core.deskew import deskew
from depth_node.core.errors import ConfigError
from depth_node.core.motion import PoseTrack
from depth_node.core.transforms import RigidTransform


class DeskewState(StrEnum):
    """What :func:`deskew_sweep` did with a sweep."""

    PER_POINT = 'per-point'  # every return moved from its own time to the image stamp
    WHOLE_SWEEP = 'whole sweep'  # no per-point time: moved from the sweep stamp
    NO_MOTION = 'no motion'  # not deskewed: the vehicle's motion is not known
    OFF = 'off'  # lidar.deskew false


@dataclass(frozen=True)
class DeskewSettings:
    """The ``lidar.deskew`` and ``motion.max_extrapolation`` parameters."""

    enable: bool = True
    max_extrapolation: float = 0.25  # s past the poses held that constant velocity may reach
    sweep_offset: float = 0.0  # s after its stamp that a sweep without per-point time was taken

    def __post_init__(self) -> None:
        if not (-1.0 <= self.sweep_offset <= 1.0):
            raise ConfigError('lidar.sweep_offset', 'must be in [-1, 1] s', self.sweep_offset)
        if not (0.0 <= self.max_extrapolation <= 10.0):
            raise ConfigError('motion.max_extrapolation', 'must be in [0, 10] s',
                              self.max_extrapolation)


@dataclass(frozen=True)
class SweepMotion:
    """The vehicle's motion around a sweep, as a :data:`MotionLookup` returns it."""

    track: Optional[PoseTrack]  # base in odom, times in s relative to the image stamp
    base_to_lidar: RigidTransform  # pose of the LiDAR in the base frame
    source: str = ''  # where the poses came from, for the diagnostics note


#: ``lookup(lidar_frame, start_ns, stop_ns, image_ns) -> SweepMotion``: the poses covering
#: ``[start_ns, stop_ns]`` with times relative to ``image_ns``; raises when it cannot say
#: (its message becomes the note).
MotionLookup = Callable[[str, int, int, int], SweepMotion]


@dataclass(frozen=True)
class Deskewed:
    """A sweep after :func:`deskew_sweep`."""

    xyz: np.ndarray  # [N, 3] float32 metres, LiDAR frame at the image stamp (unless not moved)
    state: DeskewState
    note: str  # why, for the diagnostics and the log


def deskew_sweep(xyz: np.ndarray, times: Optional[np.ndarray], sweep_ns: int, image_ns: int,
                 lidar_frame: str, motion: Optional[MotionLookup],
                 settings: DeskewSettings) -> Deskewed:
    """Move a sweep to the image stamp (see the module docstring for the rules).

    Parameters
    ----------
    xyz
        [N, 3] float32 metres, each return in the LiDAR frame at its own time.
    times
        [N] float64 s since ``sweep_ns`` per return, or None (no per-point time).
    sweep_ns, image_ns
        The sweep's and the image's header stamps (ns).
    lidar_frame
        The sweep's frame (the lookup finds the LiDAR's pose in the base with it).
    motion
        The caller's motion source; None: none.
    settings
        ``lidar.deskew``, ``motion.max_extrapolation``.
    """
    if not settings.enable:
        return Deskewed(xyz, DeskewState.OFF, 'lidar.deskew is false')
    if motion is None:
        return Deskewed(xyz, DeskewState.NO_MOTION, 'no motion source (no tf2, no '
                        'motion.odometry_topic)')
    if times is not None and len(times):
        start = sweep_ns + int(np.floor(float(np.min(times)) * 1e9))
        stop = sweep_ns + int(np.ceil(float(np.max(times)) * 1e9))
    else:
        start = stop = sweep_ns + int(round(settings.sweep_offset * 1e9))
    lo, hi = min(start, image_ns), max(stop, image_ns)
    try:
        got = motion(lidar_frame, lo, hi, image_ns)
    except Exception as exc:  # tf2's lookup errors have no common base
        return Deskewed(xyz, DeskewState.NO_MOTION, f'no motion: {exc}')
    what = f' ({got.source})' if got.source else ''
    if got.track is None:
        return Deskewed(xyz, DeskewState.NO_MOTION, f'fewer than two poses of the vehicle{what}')
    reach = got.track.extrapolation((lo - image_ns) * 1e-9, (hi - image_ns) * 1e-9)
    if reach > settings.max_extrapolation:
        return Deskewed(xyz, DeskewState.NO_MOTION, f'the poses{what} end {reach:.3f} s from '
                        f'the time needed (more than motion.max_extrapolation '
                        f'{settings.max_extrapolation:g} s)')
    offset = (sweep_ns - image_ns) * 1e-9
    if times is None:
        moved = deskew(xyz, offset + settings.sweep_offset, got.track, got.base_to_lidar)
        return Deskewed(moved, DeskewState.WHOLE_SWEEP, f'no per-point time: the sweep moved '
                        f'by the motion from its stamp{what}')
    moved = deskew(xyz, offset + np.asarray(times, dtype=np.float64), got.track,
                   got.base_to_lidar)
    return Deskewed(moved, DeskewState.PER_POINT, f'every return moved to the image stamp{what}')


__all__ = ['deskew_sweep', 'Deskewed', 'DeskewSettings', 'DeskewState', 'MotionLookup',
           'SweepMotion']
