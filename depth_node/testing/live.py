"""A drive played through the live node, recorded, and scored against its exact depth.

What ``demo`` does, as functions: :func:`load_drive` reads a rosbag2 drive with ground truth
(the shipped ``data/sample_drive`` by default) or renders a synthetic one;
:func:`node_parameters` configures the node for the shipped student, other weights or the
oracle; :func:`play` starts ``depth_node`` as its console script on a private local graph
(:class:`~depth_node.testing.nodeproc.NodeProcess`), plays the frames into it in lock-step
like a camera and LiDAR driver would (:class:`~depth_node.ros.player.GraphClient`) and keeps
what it publishes; :func:`score` compares the published metric depth with the exact depth,
next to two references: the best global affine map of the same relative prediction fitted on
all ground-truth pixels ("bound") and LiDAR alone, interpolated ("LiDAR only").
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from depth_node.core.align import OutputKind
from depth_node.core.camera import PinholeCamera
from depth_node.core.colormap import colorize_depth, colorize_normalized
from depth_node.core.errors import DepthNodeError
from depth_node.core.metrics import dense_oracle_fit, depth_metrics, DepthMetrics, mean_metrics
from depth_node.core.transforms import RigidTransform
from depth_node.sim.frames import save_frames, SimFrame, SimRig
from depth_node.sim.oracles import Corruption, oracle_prediction
from depth_node.testing.nodeproc import NodeProcess, private_graph_env, write_params
from depth_node.offline.lidar_only import lidar_only_from_sweep

#: Model-like errors of the default oracle: what a relative model gets wrong that no global
#: scale and shift can fix (AbsRel after the best global fit: a few percent).
DEMO_CORRUPTION = Corruption(distortion=0.10, noise=0.03, blur=1.0)
#: The oracle's affine map (disparity = scale / z + shift), unknown to the node.
ORACLE_SCALE, ORACLE_SHIFT = 0.37, 0.05


def sample_bag() -> str:
    """The shipped sample drive: source tree or installed share/depth_node/data."""
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), 'data', 'sample_drive')
    if os.path.isdir(src):
        return src
    from ament_index_python.packages import get_package_share_directory
    return os.path.join(get_package_share_directory('depth_node'), 'data', 'sample_drive')


@dataclass(frozen=True)
class Drive:
    """Frames with exact depth (NaN/inf = none), the camera and the LiDAR->camera extrinsic."""

    source: str  # the bag's path, or 'a fresh synthetic drive'
    camera: PinholeCamera
    lidar_to_camera: RigidTransform
    frames: list[SimFrame]


def load_drive(bag: Optional[str] = None, frames: int = 0, generate: bool = False,
               width: int = 640, height: int = 480, seed: int = 0) -> Drive:
    """The first ``frames`` frames (0: all; 8 when generated) of ``bag`` or a rendered drive.

    Raises :class:`DepthNodeError` when a frame lacks camera_info, ground truth, LiDAR or
    ``/tf_static``, or the bag has no camera frame.
    """
    if generate:
        rig = SimRig.default(width, height, seed=seed)
        drive = list(rig.frames(frames or 8, speed=8.0, rate=10.0, start=100.0))
        return Drive('a fresh synthetic drive', rig.camera, rig.lidar_to_camera, drive)
    from depth_node.offline.reader import read_drive
    path = bag or sample_bag()
    out: list[SimFrame] = []
    camera, extrinsic = None, None
    for f in read_drive(path):
        if frames and len(out) >= frames:
            break
        if f.camera is None or f.depth is None or f.lidar is None or f.lidar_to_camera is None:
            raise DepthNodeError(f'frame {f.index} of {path} lacks camera_info, ground-truth '
                                 'depth, LiDAR or /tf_static; the demo needs all four')
        camera, extrinsic = f.camera, f.lidar_to_camera
        out.append(SimFrame(len(out), round(f.stamp, 6), f.rgb, f.depth, f.lidar))
    if not out or camera is None or extrinsic is None:
        raise DepthNodeError(f'no camera frames in {path}')
    return Drive(path, camera, extrinsic, out)


def node_parameters(drive: Drive, work: str, model: str = '', device: str = 'cpu',
                    oracle: Optional[Corruption] = None) -> tuple[dict[str, Any], str]:
    """The node's parameters for this drive, and a one-line label of its estimator.

    ``oracle`` (a corruption; ``Corruption()`` for exact) replaces the model by the drive's
    true disparity under :data:`ORACLE_SCALE`, :data:`ORACLE_SHIFT`; its frames are saved in
    ``work``. Otherwise ``model`` ('' = the shipped student) runs on ``device``.
    """
    from depth_node.ros.player import extrinsic_parameters

    # The synthetic rig is synchronised (sweep and image share a stamp): max_age 0.05 keeps a
    # frame from borrowing the previous sweep, taken metres back along the road.
    params: dict[str, Any] = {'diagnostics.period': 0.5, 'lidar.wait': 0.3,
                              'lidar.max_age': 0.05,
                              **extrinsic_parameters(drive.lidar_to_camera)}
    if oracle is None:
        params['estimator.device'] = device
        if model:
            params['estimator.model_path'] = os.path.abspath(model)
            return params, f'Depth Anything V2 from {model}'
        return params, ('the shipped student (Depth Anything V2 architecture, trained on '
                        'synthetic streets only)')
    folder = save_frames(os.path.join(work, 'frames'), drive.frames)
    params.update({'estimator.type': 'depth_node.testing.oracle:DisparityOracle',
                   'estimator.options': json.dumps({
                       'frames_dir': str(folder), 'scale': ORACLE_SCALE, 'shift': ORACLE_SHIFT,
                       'distortion': oracle.distortion, 'noise': oracle.noise,
                       'blur': oracle.blur})})
    exact = oracle == Corruption()
    return params, ('oracle: true disparity under an unknown affine map' + (
        '' if exact else f', with model-like errors (+-{oracle.distortion:.0%} smooth '
        f'distortion, {oracle.noise:.0%} noise, {oracle.blur:g} px blur)') + '; not a model')


@dataclass
class LiveRun:
    """What the node published for a drive, by frame stamp, and how it ended."""

    depth: dict[float, np.ndarray]  # stamp (s) -> [H, W] float32 metres, NaN = none
    relative: dict[float, np.ndarray]  # stamp (s) -> [H, W] float32, the model's output
    diagnostics: dict[str, str]  # the last diagnostics status of the node
    exit_code: Optional[int]  # the node's, after SIGINT
    output: str = ''  # the node's log


def play(drive: Drive, params: dict[str, Any], work: str, log_path: str, rate: float = 4.0,
         progress: Callable[[str], None] = lambda line: None) -> LiveRun:
    """Start the node with ``params``, play every frame once it answered the one before.

    At most ``rate`` frames per second: every frame is scored even when the model is slower
    than the rate (the node's newest-frame-wins dropping is tested in test_graph). Raises
    :class:`DepthNodeError` (with the node's log) when the node does not come up.
    """
    from depth_node.messages.readers import image_to_array
    from depth_node.ros.player import GraphClient, stamp_of, wait_until

    env = private_graph_env()
    os.environ.update(env)  # this process's client joins the node's private graph
    node = NodeProcess(write_params(os.path.join(work, 'params.yaml'), params), log_path, env)
    client = None
    try:
        client = GraphClient('demo_player')
        client.record()
        if not client.wait_connected(120) or not node.alive():
            raise DepthNodeError(f'depth_node did not come up:\n{node.output()}')
        period = 1.0 / rate
        camera = drive.camera
        progress(f'playing {len(drive.frames)} frames ({camera.width}x{camera.height}, LiDAR '
                 f'{drive.frames[0].lidar.shape[0]} points) at up to {rate:g} Hz, each once '
                 'the node has answered the one before ...')
        for f in drive.frames:
            sent = time.monotonic()
            client.send(f.rgb, camera, f.stamp, f.lidar)
            wait_until(lambda: any(stamp_of(m) == f.stamp
                                   for m in client.messages('depth/relative')),
                       60, node.alive)
            time.sleep(max(0.0, period - (time.monotonic() - sent)))
        time.sleep(0.6)  # one more diagnostics period
        diagnostics = client.diagnostics()
    finally:
        code = node.stop()
        if client is not None:
            client.close()
    return LiveRun({stamp_of(m): image_to_array(m) for m in client.messages('depth')},
                   {stamp_of(m): image_to_array(m) for m in client.messages('depth/relative')},
                   diagnostics, code, node.output())


@dataclass(frozen=True)
class FrameScore:
    """One frame: AbsRel of the published depth, of the bound and of LiDAR alone, and more."""

    index: int
    abs_rel: float  # NaN when the node published no depth for the frame
    bound: float  # best global affine map of the frame's relative prediction (NaN: none)
    lidar_only: float
    rmse: float  # metres
    delta1: float
    valid: int  # scored pixels


@dataclass
class Score:
    """Per-frame scores and the means over the drive (Marigold-style: per image, averaged)."""

    frames: list[FrameScore]
    mean: DepthMetrics  # of the frames with depth
    bound: float  # mean AbsRel of the bound (NaN: no relative prediction)
    lidar_only: DepthMetrics
    with_depth: int  # frames with published depth


def score(drive: Drive, run: LiveRun, max_depth: float = 80.0,
          oracle: Optional[Corruption] = None) -> Score:
    """Score the run against the drive's exact depth (``max_depth`` cap, metres).

    With an ``oracle`` the bound uses the oracle's own prediction (what the node received);
    otherwise the relative image the node published.
    """
    rows, per_frame, bounds, lidars = [], [], [], []
    for f in drive.frames:
        depth = run.depth.get(f.stamp)
        bound = float('nan')
        pred = run.relative.get(f.stamp)
        if oracle is not None:
            pred = oracle_prediction(f.depth, OutputKind.DISPARITY, ORACLE_SCALE, ORACLE_SHIFT,
                                     oracle)
        if pred is not None:
            b = depth_metrics(dense_oracle_fit(pred, f.depth, OutputKind.DISPARITY, max_depth),
                              f.depth, max_depth=max_depth)
            bound = b.abs_rel
            bounds.append(b)
        lidar = depth_metrics(lidar_only_from_sweep(f.lidar, drive.camera, drive.lidar_to_camera),
                              f.depth, max_depth=max_depth)
        lidars.append(lidar)
        if depth is not None:
            m = depth_metrics(depth, f.depth, max_depth=max_depth)
            per_frame.append(m)
            rows.append(FrameScore(f.index, m.abs_rel, bound, lidar.abs_rel, m.rmse, m.delta1,
                                   m.valid))
        else:
            nan = float('nan')
            rows.append(FrameScore(f.index, nan, bound, lidar.abs_rel, nan, nan, 0))
    return Score(rows, mean_metrics(per_frame),
                 mean_metrics(bounds).abs_rel if bounds else float('nan'),
                 mean_metrics(lidars), len(per_frame))


def panel(rgb: np.ndarray, depth: Optional[np.ndarray], gt: np.ndarray,
          max_depth: float) -> np.ndarray:
    """RGB | coloured metric depth | relative error (0-5 %), side by side: [H, 3 W, 3] uint8."""
    h, w = gt.shape
    if depth is None:
        depth = np.full((h, w), np.nan, np.float32)
    col = colorize_depth(depth, 1.0, max_depth)
    err = np.abs(depth - gt) / gt
    err_rgb = colorize_normalized(np.clip(err / 0.05, 0, 1))  # 0 .. 5 % relative error
    return np.concatenate([rgb, col, err_rgb], axis=1)
