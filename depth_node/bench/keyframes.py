"""Real-time latency with the keyframe teacher off vs running, thread vs process worker.

``benchmark keyframes [--configs thread:1,process:1:19,...] [--student array|PATH]
[--student-threads N] [--student-cpus 0+1] [--teacher PATH] [--teacher-options JSON]
[--frames N] [--blocks B] [--rate HZ] [--json PATH]``

For each worker configuration ``mode:teacher_threads[:teacher_nice[:cpu+cpu...]]`` (e.g.
``process:1:19:0`` = process mode, 1 torch thread, nice 19, pinned to CPU 0) the real-time
path - the node's :class:`~depth_node.pipeline.frame.DepthPipeline` on synthetic 640x480
frames with a full
64-beam LiDAR sweep (projection, see-through rejection, robust fit, temporal filter, metric
depth, point cloud) - runs frame after frame at ``--rate`` Hz, alternately with the teacher idle
("off") and with the teacher kept busy without pause ("on": a keyframe candidate is submitted
after every frame, and each finished keyframe submits the next one from the worker, so the
teacher never idles, whatever the two rates). Off and on blocks alternate (off-on, on-off, ...) in
the same run so that a change in machine load hits both alike; the latency of a frame is
``DepthPipeline.process`` plus the keyframe hook (``submit``). The table gives p50 and p99 per
condition and the ratios on / off (goal: <= 1.10).

The student (real-time model) is ``array`` (default: the model is replaced by a precomputed
relative prediction, so the timing is the node's own per-frame work, which is numpy and holds
the GIL part of the time) or ``PATH``: a Depth Anything folder or ``.pth`` run on the CPU with
torch's default threads (e.g. a tiny random one from ``test/tiny_models.py``).

The teacher is ``--teacher PATH``, any Marigold depth folder, or by default a tiny random
Marigold (:func:`depth_node.testing.tiny_marigold.save_tiny_marigold`) run on the CPU in fp32
with ``--teacher-options`` (default: ensemble of 3 at 128 px). It is not a real Marigold: its
UNet is thousands of times smaller, so its time goes into Python (module calls, scheduler,
the ensemble's scipy alignment) and small kernels - a worst case for the GIL, and on a CPU
the same cores as the student. A real Marigold on a GPU spends its time in CUDA kernels
(GIL released) but keeps the Python part (and the alignment on GPU tensors, with a sync per
cost evaluation).

Run ``benchmark keyframes --help``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time
from typing import Any, Callable, Optional

import numpy as np

from depth_node.bench import write_json
from depth_node.core.align import OutputKind
from depth_node.core.errors import DepthNodeError
from depth_node.bench.accuracy import ArrayEstimator
from depth_node.pipeline.frame import DepthPipeline, FrameInput, PipelineConfig
from depth_node.pipeline.keyframes import KeyframeConfig, KeyframeWorker
from depth_node.sim.frames import SimRig
from depth_node.sim.oracles import Corruption, oracle_prediction

DEFAULT_TEACHER_OPTIONS = {'ensemble_size': 3, 'processing_resolution': 128}


def _percentiles(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples)
    return {'p50': float(np.percentile(a, 50)), 'p99': float(np.percentile(a, 99)),
            'mean': float(a.mean()), 'n': int(a.size)}


class _Student:
    """The real-time path: a DepthPipeline and its per-frame inputs."""

    def __init__(self, student: str, rig: SimRig, count: int) -> None:
        frames = list(rig.frames(count, rate=2.0))  # 4 m apart: different views
        self.inputs = [FrameInput(f.rgb, rig.camera, f.stamp, f.lidar, rig.lidar_to_camera)
                       for f in frames]
        if student == 'array':
            self.estimator: Any = ArrayEstimator(OutputKind.DISPARITY)
            self.predictions: Optional[list[np.ndarray]] = [
                oracle_prediction(f.depth, OutputKind.DISPARITY, 0.37, 0.05,
                                  Corruption(distortion=0.1, noise=0.05), seed=f.index)
                for f in frames]
        else:
            from depth_node.estimators.depth_anything import DepthAnythingEstimator
            self.estimator = DepthAnythingEstimator(student)
            self.predictions = None
        self.name = getattr(self.estimator, 'name', student)
        self.pipeline = DepthPipeline(self.estimator, PipelineConfig())
        self.k = 0

    def frame(self, worker: Optional[KeyframeWorker]) -> float:
        """One real-time frame (and its keyframe hook); returns its latency in ms."""
        i = self.k % len(self.inputs)
        self.k += 1
        inp = self.inputs[i]
        # The stamp advances so the temporal filter sees a live stream.
        inp = FrameInput(inp.rgb, inp.camera, self.k * 0.1, inp.lidar, inp.lidar_to_camera)
        if self.predictions is not None:
            self.estimator.next = self.predictions[i]
        t0 = time.perf_counter()
        res = self.pipeline.process(inp)
        if worker is not None:
            worker.submit(inp, student_depth=res.depth, tag=self.k)
        return (time.perf_counter() - t0) * 1e3


class _Feeder:
    """Worker callback that, while ``active``, submits ``frame`` again: a teacher never idle."""

    def __init__(self, frame: FrameInput) -> None:
        self.frame = frame
        self.active = False
        self.worker: Optional[KeyframeWorker] = None

    def __call__(self, result: Any) -> None:
        if self.active and self.worker is not None:
            try:
                self.worker.submit(self.frame, tag='feed')
            except DepthNodeError:  # closed meanwhile
                pass


def _wait_busy(worker: KeyframeWorker, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not worker.busy and time.monotonic() < deadline:
        time.sleep(0.001)


def measure_config(student: _Student, worker: KeyframeWorker, feeder: _Feeder, frames: int,
                   blocks: int, rate: float) -> dict[str, Any]:
    """Alternate off / on blocks; latencies of the real-time frames in each condition."""
    lat: dict[str, list[float]] = {'off': [], 'on': []}
    per_block = max(frames // blocks, 1)
    period = 1.0 / rate if rate > 0 else 0.0
    runs_before = worker.stats().run
    on_time = 0.0
    for b in range(blocks):
        for phase in (('off', 'on') if b % 2 == 0 else ('on', 'off')):
            feeder.active = phase == 'on'
            if phase == 'off':
                worker.wait_idle(120.0)
            else:
                worker.submit(feeder.frame, tag='prime')
                _wait_busy(worker)
            t_block = time.perf_counter()
            next_tick = time.perf_counter()
            for _ in range(per_block):
                lat[phase].append(student.frame(worker if phase == 'on' else None))
                if period:
                    next_tick += period
                    delay = next_tick - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    else:
                        next_tick = time.perf_counter()
            if phase == 'on':
                on_time += time.perf_counter() - t_block
    feeder.active = False
    worker.wait_idle(120.0)
    stats = worker.stats()
    off, on = _percentiles(lat['off']), _percentiles(lat['on'])
    return {'off': off, 'on': on, 'ratio_p50': on['p50'] / off['p50'],
            'ratio_p99': on['p99'] / off['p99'], 'keyframes': stats.run - runs_before,
            'keyframes_per_s': (stats.run - runs_before) / max(on_time, 1e-9),
            'teacher_ms_p50': stats.teacher_ms_p50, 'failed': stats.failed}


def parse_config(spec: str) -> KeyframeConfig:
    """``mode:threads[:nice[:cpu+cpu...]]`` -> KeyframeConfig (validated)."""
    parts = spec.split(':')
    if not 2 <= len(parts) <= 4:
        raise ValueError(f'worker configuration {spec!r} is not mode:threads[:nice[:cpus]]')
    kwargs: dict[str, Any] = {'mode': parts[0], 'teacher_threads': int(parts[1])}
    if len(parts) > 2 and parts[2]:  # else KeyframeConfig's default
        kwargs['teacher_nice'] = int(parts[2])
    if len(parts) > 3 and parts[3]:
        kwargs['teacher_cpus'] = tuple(int(c) for c in parts[3].split('+'))
    config = KeyframeConfig(**kwargs)
    config.validate()
    return config


def run(configs: list[KeyframeConfig], student_spec: str, teacher_factory: Callable[[], Any],
        teacher_desc: str, frames: int = 200, blocks: int = 4, rate: float = 15.0,
        width: int = 640, height: int = 480, warmup: int = 10) -> dict[str, Any]:
    """Measure every worker configuration; returns a JSON-able report."""
    import torch

    rig = SimRig.default(width, height)
    student = _Student(student_spec, rig, 6)
    for _ in range(warmup):
        student.frame(None)
    prime = student.inputs[0]
    rows = []
    for config in configs:
        feeder = _Feeder(prime)
        with KeyframeWorker(teacher_factory, feeder, config) as worker:
            feeder.worker = worker
            worker.submit(prime, tag='warmup')  # first call: lazy initialisation
            worker.wait_idle(300.0)
            row = measure_config(student, worker, feeder, frames, blocks, rate)
        row.update(mode=config.mode, teacher_threads=config.teacher_threads,
                   teacher_nice=config.teacher_nice, teacher_cpus=list(config.teacher_cpus))
        rows.append(row)
    return {'student': student.name, 'teacher': teacher_desc, 'width': width,
            'height': height, 'rate_hz': rate, 'frames_per_condition': frames,
            'blocks': blocks, 'student_torch_threads': torch.get_num_threads(),
            'cpus': os.cpu_count(), 'machine': platform.machine(),
            'python': platform.python_version(), 'torch': torch.__version__, 'rows': rows}


def format_table(report: dict[str, Any]) -> str:
    """The report as a text table."""
    lines = [f"student: {report['student']} at {report['width']}x{report['height']}, "
             f"{report['rate_hz']:g} Hz, {report['frames_per_condition']} frames per condition "
             f"in {report['blocks']} alternating blocks; student torch threads "
             f"{report['student_torch_threads']}, {report['cpus']} CPUs",
             f"teacher: {report['teacher']}; real-time process on CPUs "
             f"{report.get('student_cpus', 'any')}",
             f"{'worker':<8} {'threads':>7} {'nice':>4} {'cpus':>4} {'off p50':>8} "
             f"{'off p99':>8} {'on p50':>8} {'on p99':>8} {'x p50':>6} {'x p99':>6} "
             f"{'kf/s':>5} {'teacher':>8}  goal",
             '-' * 102]
    for r in report['rows']:
        ok = r['ratio_p50'] <= 1.10 and r['ratio_p99'] <= 1.10
        threads = r['teacher_threads'] or 'default'
        cpus = '+'.join(str(c) for c in r['teacher_cpus']) or 'any'
        lines.append(
            f"{r['mode']:<8} {threads:>7} {r['teacher_nice']:>4} {cpus:>4} "
            f"{r['off']['p50']:>7.1f}ms {r['off']['p99']:>6.1f}ms "
            f"{r['on']['p50']:>6.1f}ms {r['on']['p99']:>6.1f}ms {r['ratio_p50']:>6.2f} "
            f"{r['ratio_p99']:>6.2f} {r['keyframes_per_s']:>5.1f} "
            f"{r['teacher_ms_p50']:>6.0f}ms  {'<= 1.10' if ok else 'MISSED'}")
    lines.append('x = on / off (teacher running continuously / idle); teacher = its p50 per '
                 'keyframe; kf/s = keyframes per second while on')
    return '\n'.join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``benchmark keyframes``; 0 on success."""
    p = argparse.ArgumentParser(prog='benchmark keyframes',
                                description=__doc__.split('\n\n')[0])
    p.add_argument('--configs',
                   default='thread:1:0,process:1:0,thread:0:0,process:0:0,thread:1:19,'
                   'process:1:19',
                   help='comma-separated worker configurations mode:threads[:nice[:cpus]] '
                   '(threads 0 = torch default; nice omitted = the KeyframeConfig default; '
                   'cpus joined by +)')
    p.add_argument('--student-threads', type=int, default=0,
                   help='torch threads of the real-time path (0: torch default)')
    p.add_argument('--student-cpus', default='',
                   help='pin this process (the real-time path) to these CPUs, joined by +')
    p.add_argument('--student', default='array',
                   help="'array' (precomputed prediction) or a Depth Anything folder / .pth")
    p.add_argument('--teacher', default='',
                   help='Marigold depth folder; default: a tiny random one (CPU)')
    p.add_argument('--teacher-options', default=json.dumps(DEFAULT_TEACHER_OPTIONS),
                   help='JSON options of the Marigold estimator')
    p.add_argument('--teacher-device', default='cpu')
    p.add_argument('--frames', type=int, default=200, help='real-time frames per condition')
    p.add_argument('--blocks', type=int, default=4, help='off/on block pairs')
    p.add_argument('--rate', type=float, default=15.0, help='camera rate, Hz (0: no pause)')
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--json', help='also write the report as JSON here')
    args = p.parse_args(argv)
    try:
        configs = [parse_config(c) for c in args.configs.split(',') if c]
    except ValueError as exc:  # ConfigError included
        p.error(str(exc))
    if args.student_cpus:
        os.sched_setaffinity(0, {int(c) for c in args.student_cpus.split('+')})
    if args.student_threads > 0:
        import torch
        torch.set_num_threads(args.student_threads)
    options = json.loads(args.teacher_options)
    from depth_node.estimators.marigold import MarigoldEstimator

    with tempfile.TemporaryDirectory() as tmp:
        path = args.teacher
        desc = path
        if not path:
            from depth_node.testing.tiny_marigold import save_tiny_marigold
            path = str(save_tiny_marigold(os.path.join(tmp, 'tiny_marigold')))
            desc = 'tiny random Marigold (testing/tiny_marigold.py)'
        factory = functools.partial(MarigoldEstimator, path, device=args.teacher_device,
                                    **options)
        desc += f', {args.teacher_device}, options {json.dumps(options)}'
        t0 = time.time()
        report = run(configs, args.student, factory, desc, args.frames, args.blocks,
                     args.rate, args.width, args.height)
    report['student_cpus'] = args.student_cpus or 'any'
    print(format_table(report))
    print(f'({time.time() - t0:.0f} s)')
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == '__main__':
    sys.exit(main())
