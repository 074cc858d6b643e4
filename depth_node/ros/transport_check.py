"""Measure delivery of large best-effort images between two processes, with and without the
shipped Fast DDS profile.

``benchmark transport [--count 90] [--width 640 --height 480]`` publishes ``count`` 32FC1
images with sensor-data QoS at 20 Hz to a subscriber in another process, once with the default
transports and once with ``config/fastdds_large_messages.xml``, on a private local-only domain,
and prints how many arrived and the median publish-to-callback latency.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Optional

import numpy as np

from depth_node.ros.graph_env import fastdds_profile, private_graph_env


def _subscribe(seconds: float) -> None:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    rclpy.init()
    node = rclpy.create_node('transport_check_sub')
    lat: list[float] = []

    def cb(msg: Image) -> None:
        lat.append(time.time() - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))
    node.create_subscription(Image, 'transport_check', cb, qos_profile_sensor_data)
    end = time.time() + seconds
    while time.time() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps({'received': len(lat),
                      'median_ms': float(np.median(lat) * 1e3) if lat else None}))
    node.destroy_node()
    rclpy.try_shutdown()


def _publish(count: int, width: int, height: int) -> None:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from depth_node.ros.messages import array_to_image
    rclpy.init()
    node = rclpy.create_node('transport_check_pub')
    pub = node.create_publisher(Image, 'transport_check', qos_profile_sensor_data)
    end = time.time() + 30
    while pub.get_subscription_count() == 0 and time.time() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(1.0)  # let the subscriber match us too
    data = np.random.default_rng(0).random((height, width), dtype=np.float32)
    for _ in range(count):
        msg = array_to_image(data, '32FC1')
        t = time.time()
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(t), int((t % 1) * 1e9)
        pub.publish(msg)
        time.sleep(0.05)
    time.sleep(0.5)
    node.destroy_node()
    rclpy.try_shutdown()


def measure(profile: Optional[str], count: int = 90, width: int = 640, height: int = 480,
            domain: Optional[int] = None) -> dict[str, object]:
    """Run a subscriber and a publisher process; returns received count and median latency."""
    env = dict(os.environ)
    env.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
    env.pop('FASTRTPS_DEFAULT_PROFILES_FILE', None)
    env.update(private_graph_env(domain, profile or None))
    me = [sys.executable, '-m', 'depth_node.ros.transport_check']
    seconds = 8.0 + count * 0.05
    sub = subprocess.Popen(me + ['--subscribe', str(seconds)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    try:
        subprocess.run(me + ['--publish', str(count), '--width', str(width), '--height',
                             str(height)], env=env, check=True, timeout=seconds + 30,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out, _ = sub.communicate(timeout=seconds + 30)
    finally:
        if sub.poll() is None:
            sub.kill()
    result = json.loads(out.strip().splitlines()[-1])
    result['sent'] = count
    return result


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``benchmark transport``: print delivery with and without the profile."""
    p = argparse.ArgumentParser(prog='benchmark transport',
                                description=__doc__.split('\n\n')[0])
    p.add_argument('--count', type=int, default=90)
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--subscribe', type=float, help=argparse.SUPPRESS)
    p.add_argument('--publish', type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.subscribe is not None:
        _subscribe(args.subscribe)
        return 0
    if args.publish is not None:
        _publish(args.publish, args.width, args.height)
        return 0
    size_kb = args.width * args.height * 4 / 1024
    print(f'{args.count} best-effort {args.width}x{args.height} 32FC1 images '
          f'({size_kb:.0f} KB each), two processes, 20 Hz')
    print(f'{"transport":<34} {"received":>9} {"median ms":>10}')
    for label, prof in (('Fast DDS defaults', None),
                        ('config/fastdds_large_messages.xml', fastdds_profile())):
        r = measure(prof, args.count, args.width, args.height)
        med = '-' if r['median_ms'] is None else f"{r['median_ms']:.2f}"
        print(f"{label:<34} {r['received']:>4}/{r['sent']:<4} {med:>10}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
