"""Rigid transforms with the conventions of tf2 and ``static_transform_publisher``.

A transform published as ``--frame-id A --child-frame-id B`` with translation ``t`` and rotation
``R`` is the pose of frame B expressed in frame A: a point ``p_B`` in B has coordinates
``p_A = R @ p_B + t`` in A. Roll, pitch and yaw are fixed-axis X, Y, Z rotations, composed as
``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (tf2 ``Quaternion.setRPY``). Quaternions are ``x, y, z, w``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from depth_node.core.errors import DepthNodeError


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """Rotation matrix [3, 3] float64 from a quaternion ``(x, y, z, w)``; normalises it."""
    x, y, z, w = (float(v) for v in q)
    n = np.sqrt(x * x + y * y + z * z + w * w)
    if not np.isfinite(n) or n < 1e-9:
        raise DepthNodeError(
            f'quaternion (x, y, z, w) must be finite and non-zero, got {tuple(q)}')
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(rotation: np.ndarray) -> tuple[float, float, float, float]:
    """Quaternion ``(x, y, z, w)`` of a rotation matrix [3, 3] (Shepperd's method, w >= 0)."""
    r = np.asarray(rotation, dtype=np.float64)
    tr = np.trace(r)
    if tr > 0:
        s = 2.0 * np.sqrt(1.0 + tr)
        q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4]
    else:  # the largest diagonal term keeps the square root away from zero
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        q = [0.0, 0.0, 0.0, (r[k, j] - r[j, k]) / s]
        q[i] = s / 4
        q[j] = (r[j, i] + r[i, j]) / s
        q[k] = (r[k, i] + r[i, k]) / s
    qa = np.asarray(q) / np.linalg.norm(q)
    if qa[3] < 0:
        qa = -qa
    return (float(qa[0]), float(qa[1]), float(qa[2]), float(qa[3]))


def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Rotation matrix [3, 3] float64, ``Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (radians)."""
    cr, sr = np.cos(roll), np.sin(roll)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class RigidTransform:
    """Pose of a child frame in a parent frame: ``p_parent = rotation @ p_child + translation``."""

    rotation: np.ndarray  # [3, 3] float64, orthonormal
    translation: np.ndarray  # [3] float64, metres

    @classmethod
    def identity(cls) -> 'RigidTransform':
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def from_parameters(cls, translation: Sequence[float],
                        rotation: Sequence[float]) -> 'RigidTransform':
        """Build from ``[x, y, z]`` and either ``[qx, qy, qz, qw]`` or ``[roll, pitch, yaw]``."""
        t = np.asarray(translation, dtype=np.float64)
        if t.shape != (3,) or not np.all(np.isfinite(t)):
            raise DepthNodeError(
                f'translation must be 3 finite numbers [x, y, z], got {translation!r}')
        r = list(rotation)
        if len(r) == 4:
            rot = quaternion_to_matrix(r)
        elif len(r) == 3:
            if not np.all(np.isfinite(r)):
                raise DepthNodeError(f"roll, pitch, yaw must be finite, got {rotation!r}")
            rot = rpy_to_matrix(*r)
        else:
            raise DepthNodeError(
                'rotation must be [qx, qy, qz, qw] (4 numbers) or [roll, pitch, yaw] '
                f'(3 numbers, radians), got {len(r)} numbers')
        return cls(rot, t)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map points [N, 3] from the child frame to the parent frame; returns float32 [N, 3]."""
        pts = np.asarray(points, dtype=np.float32)
        out = np.empty(pts.shape, dtype=np.float32)
        # Column by column rather than `pts @ r.T`: a [N, 3] x [3, 3] product goes to BLAS,
        # whose threads stall for tens of milliseconds when the other cores are busy.
        for i in range(3):
            out[:, i] = self.row(i, pts)
        return out

    def row(self, i: int, points: np.ndarray) -> np.ndarray:
        """Coordinate ``i`` [N] float32 of child-frame points [N, 3] in the parent frame."""
        r = self.rotation[i].astype(np.float32)
        return points[:, 0] * r[0] + points[:, 1] * r[1] + points[:, 2] * r[2] \
            + np.float32(self.translation[i])

    def inverse(self) -> 'RigidTransform':
        rt = self.rotation.T
        return RigidTransform(rt, -rt @ self.translation)

    def __matmul__(self, other: 'RigidTransform') -> 'RigidTransform':
        return RigidTransform(self.rotation @ other.rotation,
                              self.rotation @ other.translation + self.translation)
