"""Render a synthetic drive into a rosbag2 (mcap or sqlite3) with exact depth ground truth.

``make_bag OUT`` drives the synthetic street (KITTI-like camera, 64-beam LiDAR 0.3 m above and
behind it) and writes camera images, camera info, LiDAR clouds (at the camera stamps, or
``--lidar-offset`` s later), the static transforms, ego poses and dense ground-truth depth;
see :mod:`depth_node.offline.drive_bag` for the topics. Deterministic by ``--seed``. Needs no
ROS.

A moving vehicle: ``--yaw-rate`` turns it (deg/s, + left); ``--sweep rotating`` fires each
LiDAR column at its own time across the sweep (``--lidar-rate`` Hz, from
``--sweep-start-azimuth``), the sweep stamped at its start; ``--time-field`` writes the
per-point time as Ouster (``t``), Velodyne (``time``) or Hesai (``timestamp``) drivers do;
``--tf-rate`` publishes ``odom -> base_link`` at that rate (0: once per camera frame) with
``--odom-noise-m`` / ``--odom-noise-yaw-deg`` drift, and ``--odom-topic`` as
``nav_msgs/Odometry`` too.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

from depth_node.core.errors import DepthNodeError
from depth_node.offline.drive_bag import STORAGES, TIME_FIELDS, write_drive
from depth_node.sim.frames import SimRig
from depth_node.sim.lidar import SWEEPS
from depth_node.sim.motion import odometry, OdometryNoise
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
    p.add_argument('--yaw-rate', type=float, default=0.0,
                   help='ego yaw rate in deg/s, + turns left (default 0: straight)')
    p.add_argument('--sweep', choices=SWEEPS, default='instant',
                   help='instant: every LiDAR point at the sweep stamp (default); rotating: '
                        'each column at its own time across the sweep, stamp = sweep start')
    p.add_argument('--lidar-rate', type=float, default=LidarModel().rate_hz,
                   help='LiDAR rotation rate in Hz: the sweep lasts 1/rate s '
                        '(default %(default)s)')
    p.add_argument('--sweep-start-azimuth', type=float, default=LidarModel().start_azimuth_deg,
                   help='azimuth fired first, deg counter-clockwise from forward; the sensor '
                        'spins clockwise (default %(default)s: straight back)')
    p.add_argument('--lidar-offset', type=float, default=0.0,
                   help='each sweep is taken (a rotating one: starts) this many seconds after '
                        'its camera frame (default 0; e.g. -0.05 centres a 10 Hz rotating '
                        "sweep's forward sector on the image stamp)")
    p.add_argument('--time-field', choices=TIME_FIELDS, default=None,
                   help="per-point time field: ouster ('t' uint32 ns since the stamp), "
                        "velodyne ('time' float32 s since the stamp) or hesai ('timestamp' "
                        'float64 absolute s); default: none')
    p.add_argument('--tf-rate', type=float, default=0.0,
                   help='odom -> base_link rate on /tf in Hz (e.g. 50; default 0: once per '
                        'camera frame)')
    p.add_argument('--odom-noise-m', type=float, default=0.0,
                   help='odometry position drift, m per sqrt(s) random walk (needs --tf-rate)')
    p.add_argument('--odom-noise-yaw-deg', type=float, default=0.0,
                   help='odometry yaw drift, deg per sqrt(s) random walk (needs --tf-rate)')
    p.add_argument('--odom-topic', default=None,
                   help='also write the odometry as nav_msgs/Odometry on this topic (needs '
                        '--tf-rate)')
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
    if not args.tf_rate >= 0:
        p.error(f'--tf-rate must be >= 0 Hz, got {args.tf_rate}')
    if args.tf_rate == 0 and (args.odom_noise_m or args.odom_noise_yaw_deg or args.odom_topic):
        p.error('--odom-noise-m, --odom-noise-yaw-deg and --odom-topic need --tf-rate > 0')
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = _parse(argv)
    count = max(1, int(round(args.seconds * args.rate)))
    try:
        lidar = LidarModel(azimuth_step_deg=args.lidar_azimuth_step, fov_deg=args.lidar_fov,
                           rate_hz=args.lidar_rate, sweep=args.sweep,
                           start_azimuth_deg=args.sweep_start_azimuth)
        rig = SimRig.default(args.width, args.height, args.seed, lidar,
                             length=args.speed * count / args.rate + _LOOKAHEAD_M)
        rig.speed, rig.yaw_rate_deg_s = args.speed, args.yaw_rate
        odom = None
        if args.tf_rate > 0:  # from the first frame or sweep to past the last sweep's end
            last = (count - 1) / args.rate
            end = max(last, last + args.lidar_offset + 1.0 / args.lidar_rate)
            odom = odometry(rig.trajectory(), min(0.0, args.lidar_offset), end, args.tf_rate,
                            OdometryNoise(args.odom_noise_m, args.odom_noise_yaw_deg),
                            args.seed)
        t0 = time.perf_counter()
        summary = write_drive(args.out, rig.frames(count, rate=args.rate, seed=args.seed,
                                                   lidar_offset=args.lidar_offset),
                              rig.camera, rig.lidar_to_camera, storage=args.storage,
                              compress=args.compress, ground_truth=not args.no_gt,
                              camera_height=rig.camera_height, time_field=args.time_field,
                              odometry=odom, odometry_topic=args.odom_topic)
    except (DepthNodeError, ValueError) as exc:
        print(f'make_bag: error: {exc}', file=sys.stderr)
        return 1
    print(summary.describe())
    turning = f', turning {args.yaw_rate:g} deg/s' if args.yaw_rate else ''
    print(f'{count} frames of {args.width}x{args.height} at {args.rate:g} Hz, '
          f'{args.speed:g} m/s{turning}, {args.sweep} sweeps, seed {args.seed}, written in '
          f'{time.perf_counter() - t0:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
