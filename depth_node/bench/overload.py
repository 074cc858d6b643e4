"""Output latency of the real node when frames come faster than the model: ``benchmark overload``.

``benchmark overload [--seconds 300] [--window 30] [--factor 3] [--model PATH] [--lidar-every N]
[--width 640] [--height 480] [--set NAME=VALUE ...] [--json PATH]``

The node runs as its own process (:mod:`depth_node.bench.overload_node`: the real
:class:`~depth_node.ros.node.DepthNode` with timing hooks) on a private local graph; this
process plays a synthetic 640x480 street with a full 64-beam LiDAR sweep (sensor-data QoS, as
a driver would) and subscribes to ``depth`` (and ``depth/relative``, which a frame without
metric depth publishes instead: the latency is that of a frame's first output). First the
node answers frames one at a time (warm-up) and the model time ``M`` is measured there; then
images (and sweeps, every ``--lidar-every`` image) are published at ``--factor`` x the model
rate (period ``M / factor``) for ``--seconds``, each stamped with the wall clock when sent.

Per time window (``--window`` s) and for the whole run it prints, next to the model time
measured in the same window (the estimator's ``predict`` per frame, p50):

* stamp -> publish: the stamp to the moment the node handed ``depth`` to rclpy;
* stamp -> receive: the stamp to this process's ``depth`` callback;
* both as p50 / p99 ratios to the window's model time (goal: p99 <= 1.5, flat over time);

and, to say where the time goes, the parts of stamp -> publish per frame: ``transport``
(stamp -> the node's image callback), ``wait`` (callback -> the worker takes the frame: the
newest-frame slot), ``model`` and ``other`` (the rest of the worker's frame up to ``depth``);
``between`` is the worker's time from the end of the previous frame to the start of this one
(taking a frame, giving memory back), part of ``wait``.

Figures and the command: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Optional

import numpy as np

from depth_node.bench import write_json

#: Goal of the issue: output latency p99 <= this x the model time, at 3x overload.
GOAL_P99 = 1.5


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float('nan')


class _Player:
    """Prebuilt input messages and a ``depth`` subscription that keeps only arrival times."""

    def __init__(self, width: int, height: int, frames: int = 4) -> None:
        from depth_node.ros.messages import array_to_image, xyz_to_pointcloud2
        from depth_node.ros.player import camera_info_msg, GraphClient, make_header, OUTPUTS
        from depth_node.sim.frames import SimRig

        rig = SimRig.default(width, height)
        self.rig = rig
        sims = list(rig.frames(frames, rate=2.0))  # 4 m apart: different views
        self.client = GraphClient('overload_player')
        self.images = [array_to_image(f.rgb, 'rgb8', make_header(0.0, 'camera_optical'))
                       for f in sims]
        self.clouds = [xyz_to_pointcloud2(f.lidar, make_header(0.0, 'lidar')) for f in sims]
        self.info = camera_info_msg(rig.camera, make_header(0.0, 'camera_optical'))
        self.points = int(sims[0].lidar.shape[0])
        self.received: dict[float, float] = {}  # stamp -> wall time of the depth callback
        self._lock = threading.Lock()
        # depth/relative: what a frame without metric depth (no fit) publishes instead
        for topic in ('depth', 'depth/relative'):
            self.client.node.create_subscription(OUTPUTS[topic], topic, self._on_depth, 10)
        self.sent = 0

    def _on_depth(self, msg: Any) -> None:
        t = time.time()
        stamp = round(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, 6)
        with self._lock:
            self.received.setdefault(stamp, t)

    def send(self, index: int, with_lidar: bool = True) -> float:
        """Publish frame ``index`` (cyclic) stamped now; returns the stamp (s, rounded)."""
        stamp = round(time.time(), 6)
        sec, nsec = int(stamp), int(round((stamp - int(stamp)) * 1e9)) % 1_000_000_000
        i = index % len(self.images)
        msgs = ([self.clouds[i]] if with_lidar else []) + [self.info, self.images[i]]
        for m in msgs:
            m.header.stamp.sec, m.header.stamp.nanosec = sec, nsec
        c = self.client
        if with_lidar:
            c.points_pub.publish(self.clouds[i])
        c.info_pub.publish(self.info)
        c.image_pub.publish(self.images[i])
        self.sent += 1
        return stamp

    def got(self, stamp: float) -> bool:
        with self._lock:
            return stamp in self.received


def _read_records(path: str) -> tuple[dict[float, dict[str, Any]], dict[float, float]]:
    frames: dict[float, dict[str, Any]] = {}
    depth: dict[float, float] = {}
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:  # the last line of a killed node
                continue
            stamp = round(r['stamp'], 6)
            if r['k'] == 'frame':
                frames[stamp] = r
            elif r['k'] == 'depth':  # the frame's first output (depth, else depth/relative)
                depth.setdefault(stamp, r['t'])
    return frames, depth


def window_rows(sent: list[float], frames: dict[float, dict[str, Any]],
                depth: dict[float, float], received: dict[float, float], start: float,
                window: float, end: float) -> list[dict[str, Any]]:
    """Per window of sending time (and 'all'): latency percentiles, ms, and ratios to model."""
    edges = list(np.arange(start, end, window)) + [end]
    spans = [(a, b, f'{a - start:.0f}-{b - start:.0f}s') for a, b in zip(edges, edges[1:])
             if b - a > 0.5 * window or len(edges) == 2]
    spans.append((start, end, 'all'))
    rows = []
    for a, b, label in spans:
        stamps = [s for s in sent if a <= s < b]
        done = [s for s in stamps if s in depth and s in frames]
        model = [frames[s]['model_ms'] for s in done if np.isfinite(frames[s]['model_ms'])]
        pub = [(depth[s] - s) * 1e3 for s in done]
        recv = [(received[s] - s) * 1e3 for s in stamps if s in received]
        ends = sorted((r['start'], r['end']) for r in frames.values())
        previous_end = {start: prev[1] for prev, (start, _) in zip(ends, ends[1:])}
        parts = {
            'transport': [(frames[s]['received'] - s) * 1e3 for s in done],
            'wait': [(frames[s]['start'] - frames[s]['received']) * 1e3 for s in done],
            'model': model,
            'between': [frames[s]['start'] - previous_end[frames[s]['start']]
                        for s in done if frames[s]['start'] in previous_end],
            'other': [(depth[s] - frames[s]['start']) * 1e3 - frames[s]['model_ms']
                      for s in done if np.isfinite(frames[s]['model_ms'])],
        }
        stages: dict[str, list[float]] = {}
        for s in done:
            for k, v in (frames[s].get('stages') or {}).items():
                stages.setdefault(k, []).append(v)
        m50 = _pct(model, 50)
        row: dict[str, Any] = {
            'window': label, 'sent': len(stamps), 'published': len(done),
            'received': len(recv), 'model_p50_ms': m50, 'model_p99_ms': _pct(model, 99),
            'publish_p50_ms': _pct(pub, 50), 'publish_p99_ms': _pct(pub, 99),
            'receive_p50_ms': _pct(recv, 50), 'receive_p99_ms': _pct(recv, 99),
            'parts_p50_ms': {k: _pct(v, 50) for k, v in parts.items()},
            'parts_p99_ms': {k: _pct(v, 99) for k, v in parts.items()},
            'stages_p50_ms': {k: _pct(v, 50) for k, v in sorted(stages.items())},
            'stages_p99_ms': {k: _pct(v, 99) for k, v in sorted(stages.items())}}
        for what in ('publish', 'receive'):
            for q in ('p50', 'p99'):
                row[f'{what}_{q}_x'] = row[f'{what}_{q}_ms'] / m50 if m50 > 0 else float('nan')
        rows.append(row)
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The windows as a text table (ratios = latency / the window's model p50)."""
    lines = [f"{'window':>10} {'sent':>5} {'pub':>5} {'model':>7} {'s->pub p50':>11} "
             f"{'p99':>12} {'s->recv p50':>12} {'p99':>12}  parts p99 (transport/wait/model/"
             "other) ms",
             '-' * 120]
    for r in rows:
        p = r['parts_p99_ms']
        lines.append(
            f"{r['window']:>10} {r['sent']:>5} {r['published']:>5} {r['model_p50_ms']:>5.1f}ms "
            f"{r['publish_p50_ms']:>6.1f} {r['publish_p50_x']:>4.2f}x "
            f"{r['publish_p99_ms']:>6.1f} {r['publish_p99_x']:>4.2f}x "
            f"{r['receive_p50_ms']:>6.1f} {r['receive_p50_x']:>4.2f}x "
            f"{r['receive_p99_ms']:>6.1f} {r['receive_p99_x']:>4.2f}x  "
            f"{p['transport']:.0f}/{p['wait']:.0f}/{p['model']:.0f}/{p['other']:.0f}/"
            f"{p['between']:.0f}")
    return '\n'.join(lines)


def _node_params(rig: Any, model: str, overrides: dict[str, Any]) -> dict[str, Any]:
    from depth_node.ros.player import extrinsic_parameters

    params: dict[str, Any] = {'diagnostics.period': 1.0, 'lidar.wait': 0.3,
                              **extrinsic_parameters(rig.lidar_to_camera)}
    if model:
        params['estimator.model_path'] = os.path.abspath(model)
    params.update(overrides)
    return params


def _parse_set(values: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in values:
        name, sep, value = item.partition('=')
        if not sep or not name:
            raise ValueError(f'--set {item!r} is not NAME=VALUE')
        out[name] = yaml.safe_load(value)
    return out


def run(seconds: float = 300.0, window: float = 30.0, factor: float = 3.0, model: str = '',
        width: int = 640, height: int = 480, lidar_every: int = 1, warmup: int = 15,
        overrides: Optional[dict[str, Any]] = None,
        progress: Any = print) -> dict[str, Any]:
    """Start the node, warm it up, overload it for ``seconds``; a JSON-able report."""
    from depth_node.ros.graph_env import private_graph_env
    from depth_node.ros.player import wait_until
    from depth_node.testing.nodeproc import write_params

    env = private_graph_env()
    os.environ.update(env)  # the player joins the node's private graph
    with tempfile.TemporaryDirectory(prefix='overload_') as work:
        record = os.path.join(work, 'records.jsonl')
        log_path = os.path.join(work, 'node.log')
        player = _Player(width, height)
        params = write_params(os.path.join(work, 'params.yaml'),
                              _node_params(player.rig, model, overrides or {}))
        log = open(log_path, 'w')
        proc = subprocess.Popen(
            [sys.executable, '-m', 'depth_node.bench.overload_node', '--record', record,
             '--ros-args', '--params-file', params],
            env={**os.environ, 'PYTHONUNBUFFERED': '1'}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)

        def alive() -> bool:
            return proc.poll() is None
        try:
            if not player.client.wait_connected(180) or not alive():
                raise RuntimeError('depth_node did not come up:\n' + open(log_path).read())
            progress(f'warm-up: {warmup} frames, one at a time ...')
            for i in range(warmup):
                stamp = player.send(i)
                wait_until(lambda: player.got(stamp), 60, alive)
            frames, _ = _read_records(record)
            warm = [r['model_ms'] for r in frames.values() if np.isfinite(r['model_ms'])]
            model_ms = float(np.median(warm[len(warm) // 3:])) if warm else float('nan')
            if not np.isfinite(model_ms):
                raise RuntimeError('no frame was timed in the warm-up:\n'
                                   + open(log_path).read())
            period = model_ms / factor * 1e-3
            progress(f'model {model_ms:.1f} ms in the warm-up: publishing at '
                     f'{1 / period:.1f} Hz ({factor:g}x the model rate) for {seconds:g} s ...')
            sent: list[float] = []
            start = time.time()
            next_tick = time.perf_counter()
            i = 0
            while time.time() - start < seconds and alive():
                sent.append(player.send(i, with_lidar=i % max(lidar_every, 1) == 0))
                i += 1
                next_tick += period
                delay = next_tick - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_tick = time.perf_counter()
            end = time.time()
            time.sleep(max(1.0, 3 * model_ms * 1e-3))  # the last frames come out
        finally:
            if alive():
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()
            player.client.close()
        frames, depth = _read_records(record)
        with player._lock:
            received = dict(player.received)
        rows = window_rows(sent, frames, depth, received, start, window, end)
        node_log = open(log_path).read()
    config = [line.split('estimator configuration: ', 1)[1] for line in node_log.splitlines()
              if 'estimator configuration: ' in line]
    return {'seconds': seconds, 'window_s': window, 'factor': factor, 'width': width,
            'height': height, 'lidar_points': player.points, 'lidar_every': lidar_every,
            'warmup_model_ms': model_ms, 'rate_hz': 1 / period, 'sent': len(sent),
            'model': model or 'shipped student', 'estimator_configuration': config[:1],
            'cpus': os.cpu_count(), 'rows': rows, 'overrides': overrides or {}}


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``benchmark overload``; 0 when it ran (whatever the figures)."""
    p = argparse.ArgumentParser(prog='benchmark overload', description=__doc__.split('\n\n')[0])
    p.add_argument('--seconds', type=float, default=300.0, help='overload duration (300)')
    p.add_argument('--window', type=float, default=0.0,
                   help='window of the table, s (0: seconds / 10, at least 10)')
    p.add_argument('--factor', type=float, default=3.0, help='image rate / model rate (3)')
    p.add_argument('--model', default='', help="Depth Anything folder ('' = shipped student)")
    p.add_argument('--lidar-every', type=int, default=1,
                   help='publish a LiDAR sweep with every Nth image (1)')
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--set', action='append', default=[], metavar='NAME=VALUE',
                   help='a node parameter (YAML value), e.g. --set estimator.threads=1')
    p.add_argument('--json', help='also write the report as JSON here')
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.factor <= 0:
        p.error('--seconds and --factor must be > 0')
    try:
        overrides = _parse_set(args.set)
    except ValueError as exc:
        p.error(str(exc))
    window = args.window or max(10.0, args.seconds / 10)
    report = run(args.seconds, window, args.factor, args.model, args.width, args.height,
                 args.lidar_every, overrides=overrides)
    print(f"{report['width']}x{report['height']}, LiDAR {report['lidar_points']} points every "
          f"{report['lidar_every']} image(s); {report['model']}: "
          f"{'; '.join(report['estimator_configuration']) or 'configuration not logged'}")
    print(f"images at {report['rate_hz']:.1f} Hz = {report['factor']:g}x the model rate "
          f"(warm-up model {report['warmup_model_ms']:.1f} ms), {report['sent']} sent in "
          f"{report['seconds']:g} s; {report['cpus']} CPUs")
    print(format_rows(report['rows']))
    last = report['rows'][-1]
    print(f"goal: stamp->publish p99 <= {GOAL_P99:g}x the model time: "
          f"{last['publish_p99_x']:.2f}x "
          f"({'met' if last['publish_p99_x'] <= GOAL_P99 else 'MISSED'})")
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == '__main__':
    sys.exit(main())
