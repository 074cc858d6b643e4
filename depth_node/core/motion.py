"""The vehicle's motion: poses of the base in ``odom`` at stamps, and the pose at any time.

A :class:`PoseTrack` holds poses sorted by stamp (tf2's ``odom -> base_link``, an odometry
topic, a bag's ``/tf``). :meth:`PoseTrack.at` interpolates between the two poses around a time
(linear translation, slerp of the rotation); before the first or after the last pose it
extrapolates with the velocity of the two nearest poses (a constant-velocity model, the fallback
when the newest odometry is older than a LiDAR point or an image). Both are the same formula,
``q0 * (q0^-1 q1)^u`` and ``t0 + u (t1 - t0)``, with ``u`` inside or outside ``[0, 1]``.

:class:`PoseBuffer` is the bounded buffer the node fills from its motion source, in the style
of :class:`~depth_node.core.stamped.StampedCache` (first stamp kept, cleared on a jump back in
time).

Quaternions are ``(x, y, z, w)`` as in tf2; times are float64 seconds relative to a reference
stamp chosen by the caller (the image stamp), so that nanosecond stamps keep their precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from depth_node.core.errors import DepthNodeError
from depth_node.core.stamped import StampedCache
from depth_node.core.transforms import (matrix_to_quaternion, quaternion_to_matrix,
                                        RigidTransform)

#: A pose this much older than the newest one held means time jumped back, seconds.
POSE_JUMP_S = 1.0


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of quaternions [..., 4] ``(x, y, z, w)``."""
    ax, ay, az, aw = np.moveaxis(a, -1, 0)
    bx, by, bz, bw = np.moveaxis(b, -1, 0)
    return np.stack([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz], axis=-1)


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    """Inverse of unit quaternions [..., 4]."""
    return q * np.array([-1.0, -1.0, -1.0, 1.0])


def quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors [..., 3] by unit quaternions [..., 4] (broadcast): ``R(q) @ v``."""
    u, w = q[..., :3], q[..., 3:]
    c = 2.0 * np.cross(u, v)
    return v + w * c + np.cross(u, c)


def quat_power(q: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``q^u`` [..., 4] of unit quaternions [..., 4] with ``w >= 0`` and real powers [...].

    The rotation by ``u`` times q's angle about q's axis (exp of ``u log q``).
    """
    vec = q[..., :3]
    s = np.linalg.norm(vec, axis=-1)  # sin(theta / 2)
    half = np.arctan2(s, q[..., 3])  # theta / 2, in [0, pi/2] for w >= 0
    scaled = half * u
    # sin(u*half)/sin(half) -> u for small angles (no division by ~0)
    small = s < 1e-12
    ratio = np.where(small, u, np.sin(scaled) / np.where(small, 1.0, s))
    return np.concatenate([vec * ratio[..., None], np.cos(scaled)[..., None]], axis=-1)


@dataclass(frozen=True)
class PoseTrack:
    """Poses of the base in ``odom`` at increasing times.

    Attributes
    ----------
    times
        [K] float64 seconds (relative to the caller's reference), strictly increasing, K >= 2.
    translations
        [K, 3] float64 metres, the base's origin in ``odom``.
    quaternions
        [K, 4] float64 ``(x, y, z, w)``, the base's orientation in ``odom``.
    """

    times: np.ndarray
    translations: np.ndarray
    quaternions: np.ndarray

    def __post_init__(self) -> None:
        t = np.asarray(self.times, dtype=np.float64)
        p = np.asarray(self.translations, dtype=np.float64)
        q = np.asarray(self.quaternions, dtype=np.float64)
        if t.ndim != 1 or t.size < 2:
            raise DepthNodeError(f'a pose track needs at least 2 poses, got {t.size}')
        if p.shape != (t.size, 3) or q.shape != (t.size, 4):
            raise DepthNodeError(f'pose track shapes: times {t.shape}, translations {p.shape} '
                                 f'(want [{t.size}, 3]), quaternions {q.shape} '
                                 f'(want [{t.size}, 4])')
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
            raise DepthNodeError('pose track values must be finite')
        if np.any(np.diff(t) <= 0):
            raise DepthNodeError('pose track times must be strictly increasing')
        norm = np.linalg.norm(q, axis=1, keepdims=True)
        if np.any(norm < 1e-9):
            raise DepthNodeError('pose track quaternions must be non-zero')
        q = q / norm
        # Same hemisphere as the previous one: interpolation takes the short way round.
        flips = np.cumprod(np.where(np.sum(q[1:] * q[:-1], axis=1) < 0, -1.0, 1.0))
        q[1:] *= flips[:, None]
        object.__setattr__(self, 'times', t)
        object.__setattr__(self, 'translations', p)
        object.__setattr__(self, 'quaternions', q)

    @classmethod
    def from_transforms(cls, times: np.ndarray,
                        poses: list[RigidTransform]) -> 'PoseTrack':
        """A track from poses of the base in ``odom`` (sorted by ``times``)."""
        return cls(np.asarray(times, dtype=np.float64),
                   np.array([p.translation for p in poses], dtype=np.float64),
                   np.array([matrix_to_quaternion(p.rotation) for p in poses]))

    def at(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pose of the base at ``times`` [N] float64 s: quaternions [N, 4] and translations
        [N, 3] (interpolated inside the track, constant velocity outside it)."""
        t = np.asarray(times, dtype=np.float64)
        i1 = np.clip(np.searchsorted(self.times, t, side='right'), 1, self.times.size - 1)
        i0 = i1 - 1
        t0, t1 = self.times[i0], self.times[i1]
        u = (t - t0) / (t1 - t0)  # outside [0, 1]: extrapolation from the nearest two
        q0 = self.quaternions[i0]
        delta = quat_multiply(quat_conjugate(q0), self.quaternions[i1])
        delta *= np.where(delta[..., 3:] < 0, -1.0, 1.0)
        q = quat_multiply(q0, quat_power(delta, u))
        p0 = self.translations[i0]
        p = p0 + u[..., None] * (self.translations[i1] - p0)
        return q, p

    def pose(self, time: float) -> RigidTransform:
        """:meth:`at` one time, as a :class:`RigidTransform`."""
        q, p = self.at(np.array([time]))
        return RigidTransform(quaternion_to_matrix(q[0]), p[0])

    def extrapolation(self, start: float, stop: float) -> float:
        """How far (s) ``[start, stop]`` reaches outside the track's times (0: inside)."""
        return max(0.0, self.times[0] - start, stop - self.times[-1])


class PoseBuffer:
    """The latest ``capacity`` poses of the base in ``odom``, keyed by stamp (int ns).

    Not thread-safe: callers hold their own lock. A pose more than :data:`POSE_JUMP_S` older
    than the newest one held clears the buffer first (a replay restarted), as tf2 does.
    """

    def __init__(self, capacity: int) -> None:
        self._cache: StampedCache[tuple[np.ndarray, np.ndarray]] = StampedCache(capacity)

    def __len__(self) -> int:
        return len(self._cache)

    def add(self, stamp_ns: int, translation: np.ndarray, quaternion: np.ndarray) -> bool:
        """Keep a pose (translation [3] m, quaternion [4] ``x, y, z, w``); False for a
        duplicate stamp or a non-finite pose. Returns True when it was kept."""
        p = np.asarray(translation, dtype=np.float64).reshape(3)
        q = np.asarray(quaternion, dtype=np.float64).reshape(4)
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))) or np.linalg.norm(q) < 1e-9:
            return False
        newest = self._cache.newest()
        if newest is not None and stamp_ns < newest[0] - int(POSE_JUMP_S * 1e9):
            self._cache.clear()
        return self._cache.add(int(stamp_ns), (p, q))

    def clear(self) -> None:
        """Forget every pose."""
        self._cache.clear()

    def prune_before(self, stamp_ns: int) -> int:
        """Forget the poses older than ``stamp_ns``; returns how many."""
        return self._cache.prune_before(int(stamp_ns))

    def track(self, reference_ns: int, start_ns: int, stop_ns: int) -> Optional[PoseTrack]:
        """The poses needed for times ``[start_ns, stop_ns]``: those inside it plus one on
        each side when held (else the nearest two, for extrapolation), with times in seconds
        relative to ``reference_ns``; None when fewer than two poses are held."""
        stamps = self._cache.stamps()
        if len(stamps) < 2:
            return None
        lo = max(0, int(np.searchsorted(stamps, start_ns, side='right')) - 1)
        hi = min(len(stamps), int(np.searchsorted(stamps, stop_ns, side='left')) + 1)
        if hi - lo < 2:  # a window on one pose, or past either end: two around it
            lo = min(lo, len(stamps) - 2)
            hi = lo + 2
        chosen = stamps[lo:hi]
        items = [self._cache.get(s) for s in chosen]
        return PoseTrack(np.array([(s - reference_ns) * 1e-9 for s in chosen]),
                         np.array([it[0] for it in items if it is not None]),
                         np.array([it[1] for it in items if it is not None]))


__all__ = ['POSE_JUMP_S', 'PoseBuffer', 'PoseTrack', 'quat_conjugate', 'quat_multiply',
           'quat_power', 'quat_rotate']
