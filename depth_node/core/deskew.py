"""Deskew: re-express every LiDAR return in the LiDAR frame at one instant (the image stamp).

A spinning LiDAR takes ~100 ms per sweep and its driver publishes each return in the LiDAR
frame *at the time the return was measured* (``t``/``time``/``timestamp`` per point, see
:mod:`depth_node.messages.point_time`). While the vehicle moves, those frames differ: at 20 m/s
the first and last returns of a sweep are 2 m apart. With the base's motion in ``odom``
(:class:`~depth_node.core.motion.PoseTrack`) and the pose of the LiDAR in the base (the
extrinsic ``base -> lidar``), the LiDAR's pose at time ``t`` is ``L(t) = B(t) @ E`` and a
return ``p`` measured at ``t_i`` is, in the LiDAR frame at ``t_c``::

    p' = L(t_c)^-1 @ L(t_i) @ p

A sweep without per-point time is moved as a whole, from its stamp to ``t_c``, the same way.

Speed: the relative pose is computed exactly (slerp) at :data:`KNOTS` times evenly spread over
the sweep's time span and linearly interpolated per point (12 numbers per point, no per-point
trigonometry) by a numba kernel: over 100 ms / 256 the rotation changes by ~0.2 mrad at
0.5 rad/s, so the interpolated matrix is off by ~5e-9 (micrometres at 100 m). Short sweeps are
done exactly per point in numpy. :func:`deskew_reference` is the one-point-at-a-time reference,
``_knots_numpy`` the kernel's numpy twin.
"""

from __future__ import annotations

from typing import Union

import numpy as np

try:  # numba is a dependency; without it (a broken install) the numpy version runs
    from numba import njit
except ImportError:  # pragma: no cover - exercised only on a broken install
    njit = None

from depth_node.core.errors import DepthNodeError
from depth_node.core.motion import (PoseTrack, quat_conjugate, quat_multiply, quat_rotate)
from depth_node.core.transforms import matrix_to_quaternion, quaternion_to_matrix, \
    RigidTransform

#: Exact relative poses over a sweep's time span; the points in between are interpolated.
KNOTS = 257


def quat_matrices(q: np.ndarray) -> np.ndarray:
    """Rotation matrices [N, 3, 3] of unit quaternions [N, 4] ``(x, y, z, w)``."""
    x, y, z, w = q.T
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                     2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                     2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
                    axis=-1).reshape(-1, 3, 3)


def lidar_motion(track: PoseTrack, base_to_lidar: RigidTransform, times: np.ndarray,
                 target: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Relative poses ``L(target)^-1 @ L(t)`` for each of ``times``.

    Parameters
    ----------
    track
        Poses of the base in ``odom``; times in seconds relative to the caller's reference.
    base_to_lidar
        Pose of the LiDAR in the base frame (``p_base = R @ p_lidar + t``).
    times
        [N] float64 s, same reference as the track.
    target
        The instant to express the points at (s, same reference; 0: the reference itself).

    Returns
    -------
    tuple
        Quaternions [N, 4] ``(x, y, z, w)`` and translations [N, 3] float64 metres of the LiDAR
        at ``times`` in the LiDAR frame at ``target``.
    """
    t = np.asarray(times, dtype=np.float64)
    qs, ps = track.at(np.concatenate([np.array([target], dtype=np.float64), t]))
    q_e = np.asarray(matrix_to_quaternion(base_to_lidar.rotation))
    t_e = np.asarray(base_to_lidar.translation, dtype=np.float64)
    ps = ps - ps[:1]  # relative to the base at the target: small numbers, full precision
    q_l = quat_multiply(qs, q_e[None, :])  # [N+1, 4]  L(t) = B(t) @ E
    p_l = quat_rotate(qs, t_e[None, :]) + ps  # [N+1, 3]
    inv = quat_conjugate(q_l[:1])  # [1, 4]
    q_rel = quat_multiply(np.broadcast_to(inv, q_l[1:].shape), q_l[1:])
    p_rel = quat_rotate(np.broadcast_to(inv, q_l[1:].shape), p_l[1:] - p_l[:1])
    return q_rel, p_rel


def deskew(xyz: np.ndarray, times: Union[np.ndarray, float], track: PoseTrack,
           base_to_lidar: RigidTransform, target: float = 0.0) -> np.ndarray:
    """Returns ``xyz`` measured at ``times`` re-expressed in the LiDAR frame at ``target``.

    Parameters
    ----------
    xyz
        [N, 3] float32 metres, each point in the LiDAR frame at its own time.
    times
        [N] float64 s per point, or one time for the whole sweep (no per-point time: the sweep
        stamp), relative to the same reference as ``track`` and ``target``.
    track, base_to_lidar, target
        As in :func:`lidar_motion`.

    Returns
    -------
    np.ndarray
        [N, 3] float32 metres in the LiDAR frame at ``target``.

    Raises
    ------
    DepthNodeError
        ``times`` does not have one value per point, or is not finite.
    """
    pts = np.asarray(xyz, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise DepthNodeError(f'deskew: xyz must be [N, 3], got shape {pts.shape}')
    t = np.asarray(times, dtype=np.float64)
    if t.ndim == 0:
        q, p = lidar_motion(track, base_to_lidar, t.reshape(1), target)
        return RigidTransform(quaternion_to_matrix(q[0]), p[0]).apply(pts)
    if t.shape != (pts.shape[0],):
        raise DepthNodeError(f'deskew: times must have one value per point ({pts.shape[0]}), '
                             f'got shape {t.shape}')
    if not np.all(np.isfinite(t)):
        raise DepthNodeError('deskew: per-point times must be finite')
    if pts.shape[0] <= 4 * KNOTS:
        q, p = lidar_motion(track, base_to_lidar, t, target)
        return (quat_rotate(q, pts.astype(np.float64)) + p).astype(np.float32)
    lo, hi = float(t.min()), float(t.max())
    if hi - lo < 1e-9:
        return deskew(pts, lo, track, base_to_lidar, target)
    knots = np.linspace(lo, hi, KNOTS)
    q, p = lidar_motion(track, base_to_lidar, knots, target)
    table = np.concatenate([quat_matrices(q).reshape(KNOTS, 9), p], axis=1)  # [K, 12] R, t
    f = (t - lo) * ((KNOTS - 1) / (hi - lo))  # [N] position of each time among the knots
    out = np.empty_like(pts)
    if _compiled_knots is not None:
        _compiled_knots(np.ascontiguousarray(pts), f, table, out)
    else:  # pragma: no cover - a broken install without numba
        _knots_numpy(pts, f, table, out)
    return out


def _apply_knots(pts: np.ndarray, f: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    """``out[n] = R(f[n]) @ pts[n] + t(f[n])``, the pose linearly interpolated in ``table``
    ([K, 12]: R row-major, then t) at the fractional knot index ``f[n]`` (numba-compiled)."""
    last = table.shape[0] - 2
    for n in range(pts.shape[0]):
        i = int(f[n])
        if i > last:
            i = last
        w = f[n] - i
        x, y, z = pts[n, 0], pts[n, 1], pts[n, 2]
        for r in range(3):
            a = table[i, 3 * r] + w * (table[i + 1, 3 * r] - table[i, 3 * r])
            b = table[i, 3 * r + 1] + w * (table[i + 1, 3 * r + 1] - table[i, 3 * r + 1])
            c = table[i, 3 * r + 2] + w * (table[i + 1, 3 * r + 2] - table[i, 3 * r + 2])
            d = table[i, 9 + r] + w * (table[i + 1, 9 + r] - table[i, 9 + r])
            out[n, r] = a * x + b * y + c * z + d


_compiled_knots = njit(cache=True, nogil=True)(_apply_knots) if njit is not None else None


def _knots_numpy(pts: np.ndarray, f: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    """:func:`_apply_knots` in numpy (the fallback without numba, and its test reference)."""
    i = np.minimum(f.astype(np.intp), table.shape[0] - 2)
    w = (f - i)[:, None]
    m = table[i] + w * (table[i + 1] - table[i])  # [N, 12]
    for r in range(3):
        out[:, r] = (m[:, 3 * r] * pts[:, 0] + m[:, 3 * r + 1] * pts[:, 1]
                     + m[:, 3 * r + 2] * pts[:, 2] + m[:, 9 + r])


def warm_up() -> None:
    """Compile the deskew kernel now (or load it from numba's cache), not on the first sweep."""
    track = PoseTrack(np.array([0.0, 1.0]), np.zeros((2, 3)), np.tile([0, 0, 0, 1.0], (2, 1)))
    n = 4 * KNOTS + 1
    deskew(np.zeros((n, 3), np.float32), np.linspace(0.0, 1.0, n), track,
           RigidTransform.identity())


def deskew_reference(xyz: np.ndarray, times: np.ndarray, track: PoseTrack,
                     base_to_lidar: RigidTransform, target: float = 0.0) -> np.ndarray:
    """:func:`deskew` one point at a time with 4x4 matrices (the reference for the tests)."""
    def lidar_pose(time: float) -> np.ndarray:
        b = track.pose(time)
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = b.rotation, b.translation
        e = np.eye(4)
        e[:3, :3], e[:3, 3] = base_to_lidar.rotation, base_to_lidar.translation
        return m @ e

    inv = np.linalg.inv(lidar_pose(target))
    out = np.empty((len(xyz), 3))
    for i, (point, time) in enumerate(zip(np.asarray(xyz, np.float64), times)):
        out[i] = (inv @ lidar_pose(float(time)) @ np.append(point, 1.0))[:3]
    return out.astype(np.float32)


__all__ = ['deskew', 'deskew_reference', 'KNOTS', 'lidar_motion', 'quat_matrices', 'warm_up']
