"""The main job on the embedded sample data: the sample drive bag through the real node, scored.

``demo`` reads the shipped rosbag2 sample (``data/sample_drive``: a synthetic drive with camera,
camera_info, 64-beam LiDAR, ``/tf_static`` and exact ground-truth depth; ``--bag`` for another
bag with the same topics, ``--generate`` to render a fresh drive instead), starts
``depth_node`` as its console script in a private local graph, plays the frames into it like a
camera and LiDAR driver would (extrinsic from the bag's ``/tf_static``), records what the node
publishes and scores the metric depth against the ground truth. It writes a PNG per frame
(RGB | coloured metric depth | error) and a JSON summary. The work is done by
:mod:`depth_node.testing.live`; this module parses and prints.

By default the estimator is the node's default model: the shipped student (Depth Anything V2
architecture, trained by ``train`` on synthetic streets only; the sample bag's street is not
among them). ``--model PATH`` runs other weights (a Depth Anything V2 Hugging Face folder or
official .pth). ``--oracle`` replaces the model by the scene's true disparity under an unknown
scale and shift with model-like errors, which tests the metric path (projection, fit, depth,
cloud) alone; ``--exact`` drops the errors.

Next to each frame's AbsRel the demo prints two references: the best a global affine map of the
same relative prediction fitted on all ground-truth pixels achieves ("bound": what alignment
could at most recover), and LiDAR alone interpolated to a dense map (no network).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from typing import Optional

import cv2

from depth_node.core.errors import DepthNodeError
from depth_node.sim.oracles import Corruption
from depth_node.testing.live import (DEMO_CORRUPTION, load_drive, node_parameters, panel, play,
                                     sample_bag, score, Score)

__all__ = ['main', 'sample_bag']

#: Diagnostics keys printed after the run.
DIAGNOSTICS = ('scale', 'shift', 'lidar_points_used', 'fit_inliers', 'see_through_rejected',
               'fit_state', 'filter_event', 'latency_estimate_ms', 'latency_project_ms',
               'latency_see_through_ms', 'latency_fit_ms', 'latency_total_ms', 'frames_in',
               'published', 'dropped_superseded')


def _parse(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='demo', description=__doc__.split('\n\n')[0])
    p.add_argument('--bag', default=None,
                   help='rosbag2 drive to replay (default: the shipped data/sample_drive)')
    p.add_argument('--generate', action='store_true',
                   help='render a fresh synthetic drive instead of reading a bag')
    p.add_argument('--frames', type=int, default=0,
                   help='frames to play (default: all of the bag; 8 with --generate)')
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--rate', type=float, default=4.0,
                   help='at most this many frames per second (lock-step with the node)')
    p.add_argument('--seed', type=int, default=0, help='scene seed')
    p.add_argument('--model', default='',
                   help="Depth Anything V2 HF folder or .pth (default: the node's default, the "
                        'shipped synthetic student)')
    p.add_argument('--oracle', action='store_true',
                   help='true disparity with model-like errors instead of a model')
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', default='out/demo', help='folder for PNGs and summary.json')
    p.add_argument('--max-depth', type=float, default=80.0)
    p.add_argument('--exact', action='store_true',
                   help='oracle without corruption (checks that the path adds no error)')
    args = p.parse_args(argv)
    if args.frames < 0:
        p.error('--frames must be >= 0')
    if not args.rate > 0:
        p.error('--rate must be > 0')
    if args.model and (args.oracle or args.exact):
        p.error('--model and --oracle/--exact exclude each other')
    args.oracle = args.oracle or args.exact
    return args


def _print_table(result: Score) -> None:
    print('AbsRel of the published metric depth vs ground truth; "bound": the best a global '
          'affine map of the\nsame relative prediction fitted on all ground-truth pixels '
          'achieves; "LiDAR": the sweep alone,\ninterpolated (no network)')
    print(f'{"frame":>5}  {"AbsRel":>8}  {"bound":>8}  {"LiDAR":>8}  {"RMSE m":>8}  '
          f'{"delta1":>7}  {"valid px":>9}')
    for r in result.frames:
        print(f'{r.index:>5}  {r.abs_rel:>8.4f}  {r.bound:>8.4f}  {r.lidar_only:>8.4f}  '
              f'{r.rmse:>8.3f}  {r.delta1:>7.4f}  {r.valid:>9}')
    m = result.mean
    print(f'{"all":>5}  {m.abs_rel:>8.4f}  {result.bound:>8.4f}  '
          f'{result.lidar_only.abs_rel:>8.4f}  {m.rmse:>8.3f}  {m.delta1:>7.4f}  {m.valid:>9}')


def run(args: argparse.Namespace) -> int:
    """Play, score, print and write; 0 when the node ran cleanly and published depth."""
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix='depth_node_demo_')
    source = 'a fresh synthetic drive' if args.generate else (args.bag or sample_bag())
    print(f'reading frames from {source} ...', flush=True)
    drive = load_drive(args.bag, args.frames, args.generate, args.width, args.height, args.seed)
    oracle = (Corruption() if args.exact else DEMO_CORRUPTION) if args.oracle else None
    params, label = node_parameters(drive, work, args.model, args.device, oracle)
    print(f'starting depth_node (estimator: {label}) ...', flush=True)
    live = play(drive, params, work, os.path.join(args.out, 'node.log'), args.rate,
                lambda line: print(line, flush=True))
    result = score(drive, live, args.max_depth, oracle)
    for f in drive.frames:
        png = panel(f.rgb, live.depth.get(f.stamp), f.depth, args.max_depth)
        cv2.imwrite(os.path.join(args.out, f'frame_{f.index:04d}.png'), png[..., ::-1])

    print(f'\ndata: {drive.source}\nestimator: {label}')
    _print_table(result)
    diag = live.diagnostics
    if diag:
        print('\nlast diagnostics: ' + ', '.join(f'{k}={diag[k]}' for k in DIAGNOSTICS
                                                 if k in diag))
    summary = {'data': drive.source, 'estimator': label, 'frames': len(drive.frames),
               'with_depth': result.with_depth, 'mean': result.mean.as_dict(),
               'lidar_only': result.lidar_only.as_dict(),
               'per_frame': [dataclasses.asdict(r) for r in result.frames],
               'diagnostics': diag, 'node_exit_code': live.exit_code}
    with open(os.path.join(args.out, 'summary.json'), 'w') as fh:
        json.dump(summary, fh, indent=2, default=float)
    print(f'\nwrote {len(drive.frames)} PNGs (RGB | metric depth | relative error 0-5 %) and '
          f'summary.json to {args.out}')
    if live.exit_code != 0:
        print(live.output, file=sys.stderr)
        return 1
    if not result.with_depth:
        print('demo: the node published no metric depth', file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """Console-script entry point: ``ros2 run depth_node demo``."""
    args = _parse(argv)
    try:
        return run(args)
    except (DepthNodeError, OSError) as exc:  # a bad bag, a node that did not come up
        print(f'demo: error: {exc}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
