"""The static transform tree of a bag (``/tf_static``) and lookups between two of its frames;
the vehicle's poses from its ``/tf`` (:func:`add_poses`).

Pure code over decoded ``tf2_msgs/TFMessage`` objects (rosbags' or rclpy's alike): each child
frame has one parent and the pose of the child in it, as tf2's static buffer keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from depth_node.core.errors import DepthNodeError
from depth_node.core.motion import PoseBuffer
from depth_node.core.transforms import quaternion_to_matrix, RigidTransform


def frame_name(name: str) -> str:
    """A tf2 frame name (no leading '/')."""
    return str(name).lstrip('/')


@dataclass
class StaticTree:
    """Static transforms (child -> (parent, pose of the child in the parent))."""

    parents: dict[str, tuple[str, RigidTransform]] = field(default_factory=dict)

    def add(self, msg: Any) -> None:
        """Add the transforms of one TFMessage (a later one for a child replaces it)."""
        for t in msg.transforms:
            tr = t.transform
            pose = RigidTransform(
                quaternion_to_matrix([tr.rotation.x, tr.rotation.y, tr.rotation.z,
                                      tr.rotation.w]),
                np.array([tr.translation.x, tr.translation.y, tr.translation.z]))
            self.parents[frame_name(t.child_frame_id)] = (frame_name(t.header.frame_id), pose)

    def _to_root(self, frame: str) -> tuple[str, RigidTransform]:
        pose = RigidTransform.identity()
        seen = {frame}
        while frame in self.parents:
            parent, p = self.parents[frame]
            pose = p @ pose
            frame = parent
            if frame in seen:
                raise DepthNodeError(f'/tf_static has a loop through {frame!r}')
            seen.add(frame)
        return frame, pose

    def lookup(self, target: str, source: str) -> Optional[RigidTransform]:
        """Pose of ``source`` in ``target``, or None when they are not connected."""
        rt, t_pose = self._to_root(frame_name(target))
        rs, s_pose = self._to_root(frame_name(source))
        if rt != rs:
            return None
        return t_pose.inverse() @ s_pose


def add_poses(poses: PoseBuffer, msg: Any, parent: str, child: str) -> int:
    """Keep the ``parent -> child`` transforms of a ``/tf`` TFMessage (e.g. ``odom ->
    base_link``, the vehicle's motion) in ``poses``, at their header stamps; returns how many."""
    kept = 0
    for t in msg.transforms:
        if frame_name(t.header.frame_id) != parent or frame_name(t.child_frame_id) != child:
            continue
        tr, stamp = t.transform, t.header.stamp
        kept += poses.add(int(stamp.sec) * 10**9 + int(stamp.nanosec),
                          np.array([tr.translation.x, tr.translation.y, tr.translation.z]),
                          np.array([tr.rotation.x, tr.rotation.y, tr.rotation.z,
                                    tr.rotation.w]))
    return kept


__all__ = ['add_poses', 'frame_name', 'StaticTree']
