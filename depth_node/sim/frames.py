"""Sequences of synthetic frames: camera image, exact depth and LiDAR sweep per frame."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.transforms import RigidTransform
from depth_node.sim.scene import (default_camera, default_extrinsic, lidar_sweep, LidarModel,
                                  render_camera, Scene)


@dataclass(frozen=True)
class SimFrame:
    """One synthetic frame. ``lidar`` is in the LiDAR body frame."""

    index: int
    stamp: float  # s
    rgb: np.ndarray  # [H, W, 3] uint8
    depth: np.ndarray  # [H, W] float32, metres, inf = sky
    lidar: np.ndarray  # [N, 3] float32, metres


@dataclass
class SimRig:
    """Scene, camera, LiDAR model and extrinsic of a synthetic drive."""

    scene: Scene
    camera: PinholeCamera
    lidar: LidarModel
    lidar_to_camera: RigidTransform

    @classmethod
    def default(cls, width: int = 640, height: int = 480, seed: int = 0,
                lidar: LidarModel | None = None) -> 'SimRig':
        return cls(Scene.street(seed), default_camera(width, height), lidar or LidarModel(),
                   default_extrinsic())

    def frames(self, count: int, speed: float = 8.0, rate: float = 10.0,
               start: float = 0.0, seed: int = 0) -> Iterator[SimFrame]:
        """``count`` frames driving along +z at ``speed`` m/s, ``rate`` frames per second."""
        for i in range(count):
            t = start + i / rate
            pos = (0.0, 0.0, speed * (t - start))
            cam = render_camera(self.scene, self.camera, pos)
            pts = lidar_sweep(self.scene, self.lidar, self.lidar_to_camera, pos, seed + i)
            yield SimFrame(i, t, cam.rgb, cam.depth, pts)


def save_frames(folder: str | Path, frames: Sequence[SimFrame]) -> Path:
    """Write frames as ``frame_NNNN.npz`` (rgb, depth, lidar, stamp); returns the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for f in frames:
        np.savez(out / f'frame_{f.index:04d}.npz', rgb=f.rgb, depth=f.depth, lidar=f.lidar,
                 stamp=f.stamp)
    return out


def load_frames(folder: str | Path) -> list[SimFrame]:
    """Read frames written by :func:`save_frames`, in index order."""
    frames = []
    for i, path in enumerate(sorted(Path(folder).glob('frame_*.npz'))):
        with np.load(path) as d:
            frames.append(SimFrame(i, float(d['stamp']), d['rgb'], d['depth'], d['lidar']))
    return frames
