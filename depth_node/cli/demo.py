"""The main job on the embedded sample data: the sample drive bag through the real node, scored.

``demo`` reads the shipped rosbag2 sample (``data/sample_drive``: a synthetic drive with camera,
camera_info, 64-beam LiDAR, ``/tf_static`` and exact ground-truth depth; ``--bag`` for another
bag with the same topics, ``--generate`` to render a fresh drive instead), starts
``depth_node`` as its console script in a private local graph, plays the frames into it like a
camera and LiDAR driver would (extrinsic from the bag's ``/tf_static``), records what the node
publishes and scores the metric depth against the ground truth. It writes a PNG per frame
(RGB | coloured metric depth | error) and a JSON summary.

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
from depth_node.core.align import OutputKind
from depth_node.core.camera import PinholeCamera
from depth_node.core.transforms import RigidTransform
from depth_node.core.metrics import dense_oracle_fit
from depth_node.sim.frames import save_frames, SimFrame, SimRig
from depth_node.sim.oracles import Corruption, oracle_prediction
from depth_node.testing.nodeproc import NodeProcess, private_graph_env, write_params


#: Model-like errors of the default oracle: what a relative model gets wrong that no global
#: scale and shift can fix (AbsRel after the best global fit: a few percent).
_DEMO_CORRUPTION = Corruption(distortion=0.10, noise=0.03, blur=1.0)


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
    if args.model and (args.oracle or args.exact):
        p.error('--model and --oracle/--exact exclude each other')
    args.oracle = args.oracle or args.exact
    return args


def sample_bag() -> str:
    """The shipped sample drive: source tree or installed share/depth_node/data."""
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), 'data', 'sample_drive')
    if os.path.isdir(src):
        return src
    from ament_index_python.packages import get_package_share_directory
    return os.path.join(get_package_share_directory('depth_node'), 'data', 'sample_drive')


def _drive(args: argparse.Namespace) -> tuple[PinholeCamera, RigidTransform, list[SimFrame]]:
    """Camera model, LiDAR->camera extrinsic and frames (exact depth, NaN/inf = none)."""
    if args.generate:
        rig = SimRig.default(args.width, args.height, seed=args.seed)
        frames = list(rig.frames(args.frames or 8, speed=8.0, rate=10.0, start=100.0))
        return rig.camera, rig.lidar_to_camera, frames
    from depth_node.offline.reader import read_drive
    path = args.bag or sample_bag()
    frames, camera, extrinsic = [], None, None
    for f in read_drive(path):
        if args.frames and len(frames) >= args.frames:
            break
        if f.camera is None or f.depth is None or f.lidar is None or f.lidar_to_camera is None:
            raise SystemExit(f'demo: frame {f.index} of {path} lacks camera_info, ground-truth '
                             'depth, LiDAR or /tf_static; the demo needs all four')
        camera, extrinsic = f.camera, f.lidar_to_camera
        frames.append(SimFrame(len(frames), round(f.stamp, 6), f.rgb, f.depth, f.lidar))
    if not frames:
        raise SystemExit(f'demo: no camera frames in {path}')
    return camera, extrinsic, frames


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
    from depth_node.training.report import lidar_only_from_sweep

    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix='depth_node_demo_')
    source = 'a fresh synthetic drive' if args.generate else (args.bag or sample_bag())
    print(f'reading frames from {source} ...', flush=True)
    camera, extrinsic, frames = _drive(args)
    # The synthetic rig is synchronised (sweep and image share a stamp): max_age 0.05 keeps a
    # frame from borrowing the previous sweep, taken metres back along the road.
    params = {'diagnostics.period': 0.5, 'lidar.wait': 0.3, 'lidar.max_age': 0.05,
              **extrinsic_parameters(extrinsic)}
    corruption = None
    if not args.oracle:
        params['estimator.device'] = args.device
        if args.model:
            params['estimator.model_path'] = os.path.abspath(args.model)
            label = f'Depth Anything V2 from {args.model}'
        else:
            label = ('the shipped student (Depth Anything V2 architecture, trained on '
                     'synthetic streets only)')
    else:
        folder = save_frames(os.path.join(work, 'frames'), frames)
        corruption = Corruption() if args.exact else _DEMO_CORRUPTION
        params.update({'estimator.type': 'depth_node.testing.oracle:DisparityOracle',
                       'estimator.options': json.dumps({
                           'frames_dir': str(folder), 'scale': 0.37, 'shift': 0.05,
                           'distortion': corruption.distortion, 'noise': corruption.noise,
                           'blur': corruption.blur})})
        label = ('oracle: true disparity under an unknown affine map' + (
            '' if args.exact else ', with model-like errors (+-10 % smooth distortion, 3 % '
            'noise, 1 px blur)') + '; not a model')
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
        print(f'playing {len(frames)} frames ({camera.width}x{camera.height}, LiDAR '
              f'{frames[0].lidar.shape[0]} points) at up to {args.rate:g} Hz, each once the '
              'node has answered the one before ...', flush=True)
        for f in frames:
            # Lock-step (at most `rate`): every frame is scored, even when the model is slower
            # than the rate. The node's newest-frame-wins dropping is tested in test_graph.
            sent = time.monotonic()
            client.send(f.rgb, camera, f.stamp, f.lidar)
            wait_until(lambda: any(stamp_of(m) == f.stamp
                                   for m in client.messages('depth/relative')),
                       60, node.alive)
            time.sleep(max(0.0, period - (time.monotonic() - sent)))
        time.sleep(0.6)  # one more diagnostics period
        diag = client.diagnostics()
    finally:
        code = node.stop()
        if client is not None:
            client.close()
    from depth_node.messages.readers import image_to_array

    depth_by_stamp = {stamp_of(m): image_to_array(m) for m in client.messages('depth')}
    relative_by_stamp = {stamp_of(m): image_to_array(m)
                         for m in client.messages('depth/relative')}
    rows, per_frame, bounds, lidars = [], [], [], []
    for f in frames:
        depth = depth_by_stamp.get(f.stamp)
        bound = float('nan')
        # the best any global affine map of this frame's relative prediction can do
        pred = relative_by_stamp.get(f.stamp)
        if corruption is not None:
            pred = oracle_prediction(f.depth, OutputKind.DISPARITY, 0.37, 0.05, corruption)
        if pred is not None:
            b = depth_metrics(dense_oracle_fit(pred, f.depth, OutputKind.DISPARITY,
                                               args.max_depth), f.depth,
                              max_depth=args.max_depth)
            bound = b.abs_rel
            bounds.append(b)
        lidar = depth_metrics(lidar_only_from_sweep(f.lidar, camera, extrinsic), f.depth,
                              max_depth=args.max_depth)
        lidars.append(lidar)
        if depth is not None:
            m = depth_metrics(depth, f.depth, max_depth=args.max_depth)
            per_frame.append(m)
            rows.append((f.index, m.abs_rel, bound, lidar.abs_rel, m.rmse, m.delta1, m.valid))
        else:
            rows.append((f.index, float('nan'), bound, lidar.abs_rel, float('nan'),
                         float('nan'), 0))
        png = _panel(f.rgb, depth, f.depth, args.max_depth)
        cv2.imwrite(os.path.join(args.out, f'frame_{f.index:04d}.png'), png[..., ::-1])
    overall = mean_metrics(per_frame)

    print(f'\ndata: {source}\nestimator: {label}')
    print('AbsRel of the published metric depth vs ground truth; "bound": the best a global '
          'affine map of the\nsame relative prediction fitted on all ground-truth pixels '
          'achieves; "LiDAR": the sweep alone,\ninterpolated (no network)')
    print(f'{"frame":>5}  {"AbsRel":>8}  {"bound":>8}  {"LiDAR":>8}  {"RMSE m":>8}  '
          f'{"delta1":>7}  {"valid px":>9}')
    for i, a, b, li, r, d, n in rows:
        print(f'{i:>5}  {a:>8.4f}  {b:>8.4f}  {li:>8.4f}  {r:>8.3f}  {d:>7.4f}  {n:>9}')
    bound_all = mean_metrics(bounds).abs_rel if bounds else float('nan')
    lidar_all = mean_metrics(lidars)
    print(f'{"all":>5}  {overall.abs_rel:>8.4f}  {bound_all:>8.4f}  {lidar_all.abs_rel:>8.4f}  '
          f'{overall.rmse:>8.3f}  {overall.delta1:>7.4f}  {overall.valid:>9}')
    if diag:
        keys = ('scale', 'shift', 'lidar_points_used', 'fit_inliers', 'see_through_rejected',
                'fit_state', 'filter_event', 'latency_estimate_ms', 'latency_project_ms',
                'latency_see_through_ms', 'latency_fit_ms', 'latency_total_ms', 'frames_in',
                'published', 'dropped_superseded')
        print('\nlast diagnostics: ' + ', '.join(f'{k}={diag[k]}' for k in keys if k in diag))
    summary = {'data': source, 'estimator': label, 'frames': len(frames),
               'with_depth': len(per_frame),
               'mean': overall.as_dict(), 'lidar_only': lidar_all.as_dict(),
               'per_frame': [dict(zip(('index', 'abs_rel', 'bound', 'lidar_only', 'rmse',
                                       'delta1', 'valid'), r)) for r in rows],
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
