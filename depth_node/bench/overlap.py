"""``benchmark overlap``: a frame's wall time with its LiDAR side beside the model, and after it.

:class:`~depth_node.pipeline.frame.DepthPipeline` runs the image check, the projection, the
see-through test and the extrinsic check on a helper thread while the model runs
(``lidar.overlap``). This runs the default rig's frames through two pipelines, overlap off and
on, in alternation, with the shipped student (or ``--model``), and prints the wall time of
``process`` (p50, p90), the model's time, the time after the model returns and the LiDAR
side's own time. ``--wait-ms`` adds a wait to each prediction (the CPU free, as while a GPU
infers): the case the overlap is for. Figures: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Optional, Sequence

import numpy as np

from depth_node.pipeline.frame import DepthPipeline, FrameInput, PipelineConfig

#: The stages of the LiDAR side (timings keys).
SIDE = ('image_check', 'project', 'see_through', 'extrinsic_check')


class _Waits:
    """The model's depth of a frame, after ``seconds`` of waiting (the CPU left free)."""

    def __init__(self, estimator: Any, seconds: float) -> None:
        self.estimator, self.seconds = estimator, seconds
        self.output = estimator.output
        self.name = f'{getattr(estimator, "name", "model")}+wait'
        self._depth: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        key = (rgb.ctypes.data, rgb.shape)  # the rig's frames are cycled, not copied
        if key not in self._depth:
            self._depth[key] = self.estimator.predict(rgb)
        time.sleep(self.seconds)
        return self._depth[key]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='benchmark overlap', description=__doc__.split('\n')[0])
    p.add_argument('--frames', type=int, default=60, help='frames per mode (60)')
    p.add_argument('--warm-up', type=int, default=6, help='frames per mode not counted (6)')
    p.add_argument('--wait-ms', type=float, default=0.0,
                   help='ms each prediction waits besides the model (0)')
    p.add_argument('--model', default='', help="Depth Anything folder ('' = shipped student)")
    p.add_argument('--threads', type=int, default=1, help='torch threads (1)')
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--height', type=int, default=480)
    return p


def run(args: argparse.Namespace) -> dict[bool, np.ndarray]:
    """Per mode (overlap off / on) rows ``[wall, model, after the model, LiDAR side]`` ms."""
    from depth_node.bench.accuracy_table import _student
    from depth_node.sim.frames import SimRig
    estimator: Any = _student(args.model, args.threads)
    if args.wait_ms > 0:
        estimator = _Waits(estimator, args.wait_ms / 1e3)
    rig = SimRig.default(args.width, args.height)
    frames = list(rig.frames(3))
    pipes = {on: DepthPipeline(estimator, PipelineConfig(lidar_overlap=on, max_depth=80.0))
             for on in (False, True)}
    rows: dict[bool, list[list[float]]] = {False: [], True: []}
    for i in range(args.warm_up + args.frames):
        for on in ((True, False) if i % 2 else (False, True)):
            f = frames[i % len(frames)]
            frame = FrameInput(f.rgb, rig.camera, 100.0 + 0.1 * i, f.lidar, rig.lidar_to_camera)
            t0 = time.perf_counter()
            res = pipes[on].process(frame, want_points=True)
            wall = (time.perf_counter() - t0) * 1e3
            if i >= args.warm_up:
                t = res.timings_ms
                rows[on].append([wall, t['estimate'], wall - t['estimate'],
                                 sum(t.get(k, 0.0) for k in SIDE)])
    return {on: np.array(r) for on, r in rows.items()}


def format_report(rows: dict[bool, np.ndarray], args: argparse.Namespace) -> str:
    lines = [f'benchmark overlap: {args.width}x{args.height}, default rig, {args.frames} frames '
             f'per mode, alternating; model: {"shipped student" if not args.model else args.model}'
             f', {args.threads} torch thread(s)'
             + (f', then a {args.wait_ms:g} ms wait' if args.wait_ms > 0 else ''),
             f'{"lidar.overlap":>13}  {"wall p50":>8}  {"p90":>6}  {"model p50":>9}  '
             f'{"after model":>11}  {"LiDAR side":>10}  (ms)']
    for on in (False, True):
        a = rows[on]
        lines.append(f'{"on" if on else "off":>13}  {np.median(a[:, 0]):8.2f}  '
                     f'{np.percentile(a[:, 0], 90):6.2f}  {np.median(a[:, 1]):9.2f}  '
                     f'{np.median(a[:, 2]):11.2f}  {np.median(a[:, 3]):10.2f}')
    gain = np.median(rows[False][:, 0]) - np.median(rows[True][:, 0])
    lines.append(f'wall p50 {abs(gain):.2f} ms {"shorter" if gain >= 0 else "longer"} with the '
                 'overlap')
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.frames < 1 or args.warm_up < 0 or args.wait_ms < 0 or args.threads < 1:
        build_parser().error('--frames and --threads must be >= 1, --warm-up and --wait-ms >= 0')
    print(format_report(run(args), args))
    return 0


__all__ = ['main', 'run']
