"""What reading a bag yields: raw messages, assembled camera frames, and the problems met.

Shared by :mod:`depth_node.offline.reader` (the one bag reader) and
:mod:`depth_node.offline.recovery` (damaged MCAP files), so neither imports the other's
internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.errors import DepthNodeError
from depth_node.core.motion import PoseTrack
from depth_node.core.transforms import RigidTransform


class BagMessage(NamedTuple):
    """One raw message of a bag."""

    topic: str
    msgtype: str  # e.g. 'sensor_msgs/msg/Image'
    log_ns: int  # bag (receive) time, ns since the epoch
    data: bytes  # CDR


@dataclass(frozen=True)
class BagIssue:
    """A problem met while reading a bag: what could not be read, and where."""

    bag: str
    topic: Optional[str]  # None: the bag as a whole, or topics unknown
    message: str

    def __str__(self) -> str:
        return f'{self.bag}: {self.topic}: {self.message}' if self.topic \
            else f'{self.bag}: {self.message}'


#: How the evaluation's issue for a misaligned LiDAR (the extrinsic check) begins: one per
#: bag, also when each of its chunks saw it (:func:`depth_node.offline.chunks.merge_chunks`).
MISALIGNED_ISSUE = 'LiDAR and camera misaligned'


class BagReadError(DepthNodeError):
    """Nothing of a bag can be read (not a bag, unreadable file, unknown storage)."""


@dataclass(frozen=True)
class DriveFrame:
    """One camera frame read back from a drive bag, with what goes with it.

    ``lidar`` is the sweep nearest in time (within the reader's tolerance), in its own frame;
    ``lidar_to_camera`` is the pose of that frame in the camera frame, from ``/tf_static``.
    Absent parts are None.
    """

    index: int
    stamp_ns: int  # camera header stamp
    frame_id: str
    rgb: np.ndarray  # [H, W, 3] uint8
    camera: Optional[PinholeCamera]
    depth: Optional[np.ndarray]  # [H, W] float32, metres along optical Z, NaN = no data
    lidar: Optional[np.ndarray]  # [N, 3] float32, metres, LiDAR frame
    intensity: Optional[np.ndarray]  # [N] float32, or None when the cloud has none
    lidar_stamp_ns: Optional[int]
    lidar_frame_id: Optional[str]
    lidar_to_camera: Optional[RigidTransform]
    log_ns: Optional[int] = None  # the image's bag (receive) time
    # What depth/camera_info copies from the input camera_info.
    distortion_model: str = 'plumb_bob'
    distortion_count: int = 5
    # The sweep's per-point times ([N] float64 s since lidar_stamp_ns; None: none), the
    # vehicle's poses around it from the bag's /tf (odom -> base_link, times relative to the
    # image stamp; None: fewer than two) and the LiDAR's pose in the base (/tf_static).
    lidar_times: Optional[np.ndarray] = None
    vehicle_poses: Optional[PoseTrack] = None
    lidar_in_base: Optional[RigidTransform] = None

    @property
    def stamp(self) -> float:
        """Camera stamp in seconds (float64: sub-microsecond near today's epoch)."""
        return self.stamp_ns * 1e-9

    @property
    def lidar_stamp(self) -> Optional[float]:
        """LiDAR sweep stamp in seconds, None without a sweep."""
        return None if self.lidar_stamp_ns is None else self.lidar_stamp_ns * 1e-9


__all__ = ['BagIssue', 'BagMessage', 'BagReadError', 'DriveFrame', 'MISALIGNED_ISSUE']
