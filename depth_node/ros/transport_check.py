"""Measure delivery of large best-effort messages between two processes, with and without the
shipped Fast DDS profile.

``benchmark transport`` publishes ``--count`` messages with sensor-data QoS (best effort, keep
last 5) at ``--rate`` Hz to a subscriber in another process, on a private local-only domain,
once with Fast DDS's default transports and once with ``config/fastdds_large_messages.xml``
(or ``--profile`` files), and prints how many arrived and the median publish-to-callback
latency. Payloads: ``--payload image`` (``--width``, ``--height``, ``--encoding`` 32FC1, rgb8,
rgba8, ...) or ``--payload cloud`` (``--points`` of ``--point-step`` bytes: x, y, z, intensity
and padding). ``--then-small`` follows every message with a 640x480 rgb8 image on the same
topic and counts those separately, including how many arrived right after a lost large one
(the one after a loss must not be lost too).

Examples (figures in docs/benchmarks.md)::

    benchmark transport --width 3840 --height 2160 --encoding rgba8 --count 30 --rate 10
    benchmark transport --payload cloud --points 2000000 --count 30 --rate 10
    benchmark transport --width 8000 --height 6000 --encoding rgb8 --then-small --count 10
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from typing import Any, Optional, Sequence

import numpy as np

from depth_node.ros.graph_env import fastdds_profile, private_graph_env

TOPIC = 'transport_check'
SMALL = (480, 640)  # rows, columns of the --then-small image (rgb8, 0.9 MB)


def _msg_type(payload: str) -> Any:
    from sensor_msgs.msg import Image, PointCloud2
    return Image if payload == 'image' else PointCloud2


def _subscribe(seconds: float, payload: str) -> None:
    """Record (label, latency) of every message received for ``seconds``; print JSON.

    Raw (serialized) subscriptions: the header is read from the CDR bytes, so that a Python
    deserialisation of tens of MB per message does not stand in for the transport's losses.
    """
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    rclpy.init()
    node = rclpy.create_node('transport_check_sub')
    got: list[tuple[str, float]] = []

    def cb(raw: bytes) -> None:
        sec, nanosec, label = read_header(raw)
        got.append((label, time.time() - (sec + nanosec * 1e-9)))
    for kind in {payload, 'image'}:  # the small images of --then-small are Images
        node.create_subscription(_msg_type(kind), f'{TOPIC}_{kind}', cb,
                                 qos_profile_sensor_data, raw=True)
    end = time.time() + seconds
    while time.time() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps({'got': got}))
    node.destroy_node()
    rclpy.try_shutdown()


def read_header(raw: bytes) -> tuple[int, int, str]:
    """(sec, nanosec, frame_id) of a serialized message that starts with a std_msgs/Header."""
    order = '<' if raw[1] & 1 else '>'  # CDR encapsulation: 0x0001 little, 0x0000 big endian
    sec, nanosec, length = struct.unpack_from(order + 'iII', raw, 4)
    return sec, nanosec, raw[16:16 + length - 1].decode()


def _stamped(serialized: bytes, label: str) -> bytes:
    """``serialized`` with the header stamp set to now and the frame_id to ``label``.

    ``label`` must have the length of the frame_id in ``serialized`` (fixed-width labels).
    """
    order = '<' if serialized[1] & 1 else '>'
    t = time.time()
    head = bytearray(serialized[:16 + len(label)])
    struct.pack_into(order + 'iI', head, 4, int(t), int((t % 1) * 1e9))
    head[16:] = label.encode()
    return bytes(head) + serialized[len(head):]


def make_message(payload: str, width: int, height: int, encoding: str, points: int,
                 point_step: int) -> Any:
    """One message of the payload: random pixels or points (their content does not matter)."""
    rng = np.random.default_rng(0)
    if payload == 'image':
        from depth_node.messages.encodings import ENCODINGS
        from depth_node.ros.messages import array_to_image
        channels, dtype = ENCODINGS[encoding]
        shape = (height, width) if channels == 1 else (height, width, channels)
        data = rng.integers(0, 255, size=(int(np.prod(shape)) * dtype.itemsize,),
                            dtype=np.uint8).view(dtype).reshape(shape)
        return array_to_image(data, encoding)
    from sensor_msgs.msg import PointCloud2, PointField
    msg = PointCloud2()
    msg.height, msg.width = 1, points
    names = ['x', 'y', 'z', 'intensity'][:max(3, min(4, point_step // 4))]
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate(names)]
    msg.point_step, msg.row_step = point_step, point_step * points
    msg.is_dense = True
    msg.data = rng.integers(0, 255, size=point_step * points, dtype=np.uint8).tobytes()
    return msg


def _publish(count: int, rate: float, then_small: bool, payload: str, **shape: Any) -> None:
    """Publish ``count`` serialized messages (header patched in place) at ``rate`` Hz."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.serialization import serialize_message
    rclpy.init()
    node = rclpy.create_node('transport_check_pub')
    pubs = {kind: node.create_publisher(_msg_type(kind), f'{TOPIC}_{kind}',
                                        qos_profile_sensor_data)
            for kind in {payload, 'image'}}
    end = time.time() + 30
    while any(p.get_subscription_count() == 0 for p in pubs.values()) and time.time() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(1.0)  # let the subscriber match us too
    sends = [('big', make_message(payload, **shape), payload)]
    if then_small:
        sends.append(('small', make_message('image', SMALL[1], SMALL[0], 'rgb8', 0, 0),
                      'image'))
    serialized = []
    for label, msg, kind in sends:
        msg.header.frame_id = _label(label, 0)
        serialized.append((label, serialize_message(msg), kind))
    for i in range(count):
        t0 = time.time()
        for label, data, kind in serialized:
            pubs[kind].publish(_stamped(data, _label(label, i)))
        time.sleep(max(0.0, 1.0 / rate - (time.time() - t0)))
    time.sleep(1.0)
    node.destroy_node()
    rclpy.try_shutdown()


def _label(kind: str, i: int) -> str:
    """Fixed-width frame_id of message ``i`` ('big:000007'; ``_stamped`` needs one width)."""
    return f'{kind:<5}:{i:06d}'


def summarise(got: Sequence[tuple[str, float]], count: int,
              then_small: bool = False) -> dict[str, Any]:
    """Counts of one run from the subscriber's (label, latency) records.

    ``received`` / ``median_ms``: the large messages; with --then-small also
    ``small_received`` and ``small_after_loss`` (arrived / sent right after a lost large one).
    """
    big = {int(f.split(':')[1]): lat for f, lat in got if f.startswith('big')}
    small = {int(f.split(':')[1]) for f, _ in got if f.startswith('small')}
    lost = [i for i in range(count) if i not in big]
    out: dict[str, Any] = {
        'sent': count, 'received': len(big),
        'median_ms': float(np.median(list(big.values())) * 1e3) if big else None}
    if small or then_small:
        out['small_received'] = len(small)
        out['small_after_loss'] = [sum(1 for i in lost if i in small), len(lost)]
    return out


def measure(profile: Optional[str], count: int = 90, width: int = 640, height: int = 480,
            domain: Optional[int] = None, encoding: str = '32FC1', payload: str = 'image',
            points: int = 0, point_step: int = 16, rate: float = 20.0,
            then_small: bool = False) -> dict[str, Any]:
    """Run a subscriber and a publisher process; see :func:`summarise` for the result."""
    env = dict(os.environ)
    env.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
    env.pop('FASTRTPS_DEFAULT_PROFILES_FILE', None)
    env.update(private_graph_env(domain, profile or None))
    me = [sys.executable, '-m', 'depth_node.ros.transport_check', '--payload', payload]
    seconds = 10.0 + count / rate
    sub = subprocess.Popen(me + ['--subscribe', str(seconds)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    try:
        subprocess.run(me + ['--publish', str(count), '--width', str(width), '--height',
                             str(height), '--encoding', encoding, '--points', str(points),
                             '--point-step', str(point_step), '--rate', str(rate)]
                       + (['--then-small'] if then_small else []),
                       env=env, check=True, timeout=seconds + 60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out, _ = sub.communicate(timeout=seconds + 60)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    return summarise(json.loads(out.strip().splitlines()[-1])['got'], count, then_small)


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``benchmark transport``: print delivery with and without the profile."""
    p = argparse.ArgumentParser(prog='benchmark transport',
                                description=__doc__.split('\n\n')[0])
    p.add_argument('--count', type=int, default=90)
    p.add_argument('--rate', type=float, default=20.0, help='messages per second')
    p.add_argument('--payload', choices=('image', 'cloud'), default='image')
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--encoding', default='32FC1')
    p.add_argument('--points', type=int, default=2_000_000)
    p.add_argument('--point-step', type=int, default=16, help='bytes per point (>= 12)')
    p.add_argument('--then-small', action='store_true',
                   help='follow each message with a 640x480 rgb8 image')
    p.add_argument('--profile', action='append',
                   help='Fast DDS profile to measure (repeatable; default: Fast DDS defaults '
                   'and the shipped profile)')
    p.add_argument('--subscribe', type=float, help=argparse.SUPPRESS)
    p.add_argument('--publish', type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    shape = dict(width=args.width, height=args.height, encoding=args.encoding,
                 points=args.points, point_step=args.point_step)
    if args.subscribe is not None:
        _subscribe(args.subscribe, args.payload)
        return 0
    if args.publish is not None:
        _publish(args.publish, args.rate, args.then_small, args.payload, **shape)
        return 0
    size = len(make_message(args.payload, **shape).data)
    what = (f'{args.width}x{args.height} {args.encoding} images' if args.payload == 'image'
            else f'{args.points}-point clouds ({args.point_step} B/point)')
    print(f'{args.count} best-effort {what} ({size / 2 ** 20:.1f} MiB each), two processes, '
          f'{args.rate:g} Hz' + (', each followed by a 640x480 rgb8 image'
                                 if args.then_small else ''))
    print(f'{"transport":<40} {"received":>9} {"median ms":>10}'
          + (f' {"small":>9} {"small after a loss":>19}' if args.then_small else ''))
    profiles = [(path, path) for path in args.profile] if args.profile else [
        ('Fast DDS defaults', None), ('config/fastdds_large_messages.xml', fastdds_profile())]
    for label, prof in profiles:
        r = measure(prof, args.count, rate=args.rate, payload=args.payload,
                    then_small=args.then_small, **shape)
        med = '-' if r['median_ms'] is None else f"{r['median_ms']:.1f}"
        line = f"{label:<40} {r['received']:>4}/{r['sent']:<4} {med:>10}"
        if args.then_small:
            after = r['small_after_loss']
            line += f" {r['small_received']:>4}/{r['sent']:<4} {after[0]:>9}/{after[1]:<9}"
        print(line)
    return 0


if __name__ == '__main__':
    sys.exit(main())
