"""The main job on generated data: a synthetic drive through the real node, scored.

``demo`` renders a short drive of the synthetic street (camera, exact depth, 64-beam LiDAR),
starts ``depth_node`` as its console script in a private local graph, plays the drive into it
like a camera and LiDAR driver would, records what the node publishes and scores the metric
depth against the exact depth. It writes a PNG per frame (RGB | coloured metric depth | error)
and a JSON summary.

Without ``--model`` the estimator is the *oracle*: the scene's true disparity under an unknown
scale and shift, which tests the metric path (projection, fit, depth, cloud) but is not a
model. With ``--model PATH`` (a Depth Anything V2 Hugging Face folder or official .pth) the
real model runs; no weights ship with this package (see README).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Optional

import cv2
import numpy as np

from depth_node.core.colormap import colorize_depth, colorize_normalized
from depth_node.core.metrics import depth_metrics, mean_metrics
from depth_node.sim.frames import save_frames, SimRig
from depth_node.tools.nodeproc import NodeProcess, private_graph_env, write_params


def _parse(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='demo', description=__doc__.split('\n\n')[0])
    p.add_argument('--frames', type=int, default=8, help='frames to drive (default 8)')
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--rate', type=float, default=4.0, help='frames per second played')
    p.add_argument('--seed', type=int, default=0, help='scene seed')
    p.add_argument('--model', default='', help='Depth Anything V2 HF folder or .pth')
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', default='out/demo', help='folder for PNGs and summary.json')
    p.add_argument('--max-depth', type=float, default=80.0)
    args = p.parse_args(argv)
    if args.frames < 1:
        p.error('--frames must be >= 1')
    return args


def _panel(rgb: np.ndarray, depth: Optional[np.ndarray], gt: np.ndarray,
           max_depth: float) -> np.ndarray:
    h, w = gt.shape
    if depth is None:
        depth = np.full((h, w), np.nan, np.float32)
    col = colorize_depth(depth, 1.0, max_depth)
    err = np.abs(depth - gt) / gt
    err_rgb = colorize_normalized(np.clip(err / 0.05, 0, 1))  # 0 .. 5 % relative error
    return np.concatenate([rgb, col, err_rgb], axis=1)


def run(args: argparse.Namespace) -> int:
    from depth_node.ros.player import extrinsic_parameters, GraphClient, stamp_of, wait_until

    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix='depth_node_demo_')
    print(f'rendering {args.frames} frames of the synthetic street '
          f'({args.width}x{args.height}, 64-beam LiDAR) ...', flush=True)
    rig = SimRig.default(args.width, args.height, seed=args.seed)
    frames = list(rig.frames(args.frames, speed=8.0, rate=10.0))
    # The synthetic rig is synchronised (sweep and image share a stamp): max_age 0.05 keeps a
    # frame from borrowing the previous sweep, taken 0.8 m back along the road.
    params = {'diagnostics.period': 0.5, 'lidar.wait': 0.3, 'lidar.max_age': 0.05,
              **extrinsic_parameters(rig.lidar_to_camera)}
    if args.model:
        params.update({'estimator.model_path': os.path.abspath(args.model),
                       'estimator.device': args.device})
        label = f'Depth Anything V2 from {args.model}'
    else:
        folder = save_frames(os.path.join(work, 'frames'), frames)
        params.update({'estimator.type': 'depth_node.estimators.oracle:DisparityOracle',
                       'estimator.options': json.dumps({'frames_dir': str(folder),
                                                        'scale': 0.37, 'shift': 0.05})})
        label = 'oracle (true disparity under an unknown affine map; not a model)'
    env = private_graph_env()
    os.environ.update(env)
    node = NodeProcess(write_params(os.path.join(work, 'params.yaml'), params),
                       os.path.join(args.out, 'node.log'), env)
    client = None
    try:
        client = GraphClient('demo_player')
        client.record()
        print(f'starting depth_node (estimator: {label}) ...', flush=True)
        if not client.wait_connected(120) or not node.alive():
            print(node.output(), file=sys.stderr)
            print('demo: depth_node did not come up', file=sys.stderr)
            return 1
        period = 1.0 / args.rate
        for f in frames:
            client.send(f.rgb, rig.camera, 100.0 + f.stamp, f.lidar)
            time.sleep(period)
        last = round(100.0 + frames[-1].stamp, 6)
        wait_until(lambda: any(stamp_of(m) == last for m in client.messages('depth/relative')),
                   30, node.alive)
        time.sleep(0.6)  # one more diagnostics period
        diag = client.diagnostics()
    finally:
        code = node.stop()
        if client is not None:
            client.close()
    from depth_node.ros.conversions import image_to_array

    depth_by_stamp = {stamp_of(m): image_to_array(m) for m in client.messages('depth')}
    rows, per_frame = [], []
    for f in frames:
        depth = depth_by_stamp.get(round(100.0 + f.stamp, 6))
        if depth is not None:
            m = depth_metrics(depth, f.depth, max_depth=args.max_depth)
            per_frame.append(m)
            rows.append((f.index, m.abs_rel, m.rmse, m.delta1, m.valid))
        else:
            rows.append((f.index, float('nan'), float('nan'), float('nan'), 0))
        png = _panel(f.rgb, depth, f.depth, args.max_depth)
        cv2.imwrite(os.path.join(args.out, f'frame_{f.index:04d}.png'), png[..., ::-1])
    overall = mean_metrics(per_frame)

    print(f'\nestimator: {label}')
    print(f'{"frame":>5}  {"AbsRel":>8}  {"RMSE m":>8}  {"delta1":>7}  {"valid px":>9}')
    for i, a, r, d, n in rows:
        print(f'{i:>5}  {a:>8.4f}  {r:>8.3f}  {d:>7.4f}  {n:>9}')
    print(f'{"all":>5}  {overall.abs_rel:>8.4f}  {overall.rmse:>8.3f}  {overall.delta1:>7.4f}  '
          f'{overall.valid:>9}')
    if diag:
        keys = ('scale', 'shift', 'lidar_points_used', 'fit_state', 'latency_estimate_ms',
                'latency_project_ms', 'latency_fit_ms', 'latency_total_ms', 'frames_in',
                'published', 'dropped_superseded')
        print('\nlast diagnostics: ' + ', '.join(f'{k}={diag[k]}' for k in keys if k in diag))
    summary = {'estimator': label, 'frames': len(frames), 'with_depth': len(per_frame),
               'mean': overall.as_dict(), 'per_frame': [dict(zip(
                   ('index', 'abs_rel', 'rmse', 'delta1', 'valid'), r)) for r in rows],
               'diagnostics': diag, 'node_exit_code': code}
    with open(os.path.join(args.out, 'summary.json'), 'w') as fh:
        json.dump(summary, fh, indent=2, default=float)
    print(f'\nwrote {len(frames)} PNGs (RGB | metric depth | relative error 0-5 %) and '
          f'summary.json to {args.out}')
    if code != 0:
        print(node.output(), file=sys.stderr)
        return 1
    if not per_frame:
        print('demo: the node published no metric depth', file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """Console-script entry point: ``ros2 run depth_node demo``."""
    return run(_parse(argv))


if __name__ == '__main__':
    sys.exit(main())
