"""Render a synthetic drive into a rosbag2 (mcap or sqlite3) with exact depth ground truth.

``make_bag OUT`` drives the synthetic street (KITTI-like camera, 64-beam LiDAR 0.3 m above and
behind it) and writes camera images, camera info, LiDAR clouds (at the camera stamps), the
static transforms, ego poses and dense ground-truth depth; see
:mod:`depth_node.offline.drive_bag` for the topics. Deterministic by ``--seed``. Needs no ROS.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

from depth_node.core.errors import DepthNodeError
from depth_node.offline.drive_bag import STORAGES, write_drive
from depth_node.sim.frames import SimRig
from depth_node.sim.scene import LidarModel

# Scene length beyond the distance driven: what the camera and LiDAR see ahead.
_LOOKAHEAD_M = 160.0


def _parse(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='make_bag', description=__doc__.split('\n\n')[0])
    p.add_argument('out', help='rosbag2 folder to create (must not exist)')
    p.add_argument('--storage', choices=STORAGES, default='mcap')
    p.add_argument('--seconds', type=float, default=6.0, help='drive length (default 6 s)')
    p.add_argument('--rate', type=float, default=5.0,
                   help='camera frames per second; one LiDAR sweep per frame (default 5)')
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--seed', type=int, default=0, help='scene and noise seed')
    p.add_argument('--speed', type=float, default=8.0, help='ego speed in m/s (default 8)')
    p.add_argument('--lidar-azimuth-step', type=float, default=LidarModel().azimuth_step_deg,
                   help='LiDAR azimuth resolution in degrees (default %(default)s)')
    p.add_argument('--lidar-fov', type=float, default=360.0,
                   help='horizontal field of view of the published sweep in degrees, centred '
                        'on forward (default 360; e.g. 90 keeps what the camera sees)')
    p.add_argument('--no-gt', action='store_true', help='leave out /camera/depth_gt')
    p.add_argument('--compress', action='store_true',
                   help='zstd: mcap chunk compression, or per-message for sqlite3')
    args = p.parse_args(argv)
    if Path(args.out).exists():
        p.error(f'{args.out} exists already; choose a new folder (bags are never overwritten)')
    if not args.seconds > 0 or not args.rate > 0:
        p.error(f'--seconds and --rate must be > 0, got {args.seconds} and {args.rate}')
    if args.width < 1 or args.height < 1:
        p.error(f'--width and --height must be >= 1, got {args.width} and {args.height}')
    if not args.speed >= 0:
        p.error(f'--speed must be >= 0 m/s, got {args.speed}')
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = _parse(argv)
    count = max(1, int(round(args.seconds * args.rate)))
    try:
        lidar = LidarModel(azimuth_step_deg=args.lidar_azimuth_step, fov_deg=args.lidar_fov)
        rig = SimRig.default(args.width, args.height, args.seed, lidar,
                             length=args.speed * count / args.rate + _LOOKAHEAD_M)
        t0 = time.perf_counter()
        summary = write_drive(args.out, rig.frames(count, speed=args.speed, rate=args.rate,
                                                   seed=args.seed),
                              rig.camera, rig.lidar_to_camera, storage=args.storage,
                              compress=args.compress, ground_truth=not args.no_gt,
                              camera_height=rig.camera_height)
    except (DepthNodeError, ValueError) as exc:
        print(f'make_bag: error: {exc}', file=sys.stderr)
        return 1
    print(summary.describe())
    print(f'{count} frames of {args.width}x{args.height} at {args.rate:g} Hz, '
          f'{args.speed:g} m/s, seed {args.seed}, written in {time.perf_counter() - t0:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
