"""The accuracy table: the ground-truth numbers of the metric path, each next to its target.

``benchmark accuracy [--frames N] [--width W --height H] [--seed S] [--json PATH]`` renders
frames of the synthetic drive (exact depth, 64-beam LiDAR with its natural see-through returns)
and prints, for each experiment, the number, its target and whether it is met. The relative input
is an oracle (exact disparity under an unknown affine map, optionally corrupted), so the table
measures projection, outlier rejection, fitting, filtering and local alignment, not a model.
The experiments themselves are in :mod:`depth_node.bench.accuracy`; ``test/test_accuracy.py``
asserts the targets.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from typing import Optional

from depth_node.core.align import OutputKind
from depth_node.bench.accuracy import run_scenario, run_temporal, Scenario, time_alignment
from depth_node.pipeline.frame import PipelineConfig
from depth_node.sim.frames import SimRig
from depth_node.sim.oracles import Corruption

#: Corruption of the "distorted + noisy" experiments: a smooth field of +-10 % and 5 %
#: per-pixel noise, meant to leave a dense-GT global fit about where relative models are on
#: driving data after alignment (the measured AbsRel: docs/benchmarks.md).
DISTORTED = Corruption(distortion=0.10, noise=0.05)
LOW_FREQUENCY = Corruption(distortion=0.15, noise=0.01)
LSQ = PipelineConfig(fit_method='lsq', see_through=False)


def measure(frames: int = 4, width: int = 640, height: int = 480,
            seed: int = 0) -> dict[str, dict[str, float]]:
    """Run every experiment; returns {row: {value, target, ...}}."""
    rig = SimRig.default(width, height, seed=seed)
    drive = list(rig.frames(frames, speed=8.0, rate=2.0))  # 4 m apart: different views
    rows: dict[str, dict[str, float]] = {}

    exact = run_scenario(rig, drive, Scenario('exact'))
    rows['exact input: AbsRel'] = {'value': exact.lidar.abs_rel, 'target': 0.002, 'le': 1}

    robust = run_scenario(rig, drive, Scenario('robust', DISTORTED))
    lsq = run_scenario(rig, drive, Scenario('lsq', DISTORTED, LSQ))
    rows['distorted+noisy: dense-GT oracle AbsRel'] = {'value': robust.oracle.abs_rel}
    rows['distorted+noisy: robust global AbsRel'] = {'value': robust.lidar.abs_rel}
    rows['distorted+noisy: plain least-squares AbsRel'] = {'value': lsq.lidar.abs_rel}
    rows['robust / oracle'] = {'value': robust.ratio_to_oracle, 'target': 1.05, 'le': 1}
    rows['least squares / robust'] = {'value': lsq.lidar.abs_rel / robust.lidar.abs_rel,
                                      'target': 2.0, 'le': 0}
    excess_lsq = lsq.lidar.abs_rel - lsq.oracle.abs_rel
    excess_robust = max(robust.lidar.abs_rel - robust.oracle.abs_rel, 1e-9)
    rows['alignment error over oracle: least squares / robust'] = {
        'value': excess_lsq / excess_robust, 'target': 2.0, 'le': 0}

    depth_space = {'space': OutputKind.DEPTH}
    robust_d = run_scenario(rig, drive, Scenario('robust depth', DISTORTED), **depth_space)
    lsq_d = run_scenario(rig, drive, Scenario('lsq depth', DISTORTED, LSQ), **depth_space)
    rows['depth space (Marigold-like): robust / oracle'] = {
        'value': robust_d.ratio_to_oracle, 'target': 1.05, 'le': 1}
    rows['depth space: least squares / robust'] = {
        'value': lsq_d.lidar.abs_rel / robust_d.lidar.abs_rel, 'target': 2.0, 'le': 0}

    glob = run_scenario(rig, drive, Scenario('global', LOW_FREQUENCY))
    local = run_scenario(rig, drive, Scenario('local', LOW_FREQUENCY,
                                              replace(PipelineConfig(), local=True)))
    rows['low-frequency distortion: global AbsRel'] = {'value': glob.lidar.abs_rel}
    rows['low-frequency distortion: local AbsRel'] = {'value': local.lidar.abs_rel}
    rows['local: AbsRel reduction vs global'] = {
        'value': 1.0 - local.lidar.abs_rel / glob.lidar.abs_rel, 'target': 0.25, 'le': 0}

    temporal = run_temporal(rig)
    rows['temporal: log-scale jitter, unfiltered / filtered'] = {
        'value': temporal.jitter_ratio, 'target': 3.0, 'le': 0}
    rows['temporal: frames to follow a x1.5 step'] = {
        'value': float(temporal.step_frames), 'target': 2.0, 'le': 1}

    cost = time_alignment(rig, drive[0])
    rows['alignment cost ms (project + see-through + fit + filter)'] = {
        'value': cost['project'] + cost['see_through'] + cost['fit'] + cost['filter'],
        'target': 10.0, 'le': 1}
    for k in ('project', 'see_through', 'fit', 'filter'):
        rows[f'  {k} ms'] = {'value': cost[k]}
    rows['  LiDAR points / projected pixels'] = {
        'value': cost['lidar_points'], 'extra': cost['projected_pixels']}
    return rows


def passed(row: dict[str, float]) -> Optional[bool]:
    """Whether a row meets its target (None: informational)."""
    if 'target' not in row:
        return None
    if row['le']:
        return row['value'] <= row['target']
    return row['value'] >= row['target']


def format_table(rows: dict[str, dict[str, float]]) -> str:
    lines = [f'{"experiment":<58} {"value":>10} {"target":>9}  ok', '-' * 84]
    for name, row in rows.items():
        v = row['value']
        text = f'{v:.5f}' if abs(v) < 10 else f'{v:.0f}'
        if 'extra' in row:
            text = f"{v:.0f}/{row['extra']:.0f}"
        ok = passed(row)
        target = '' if ok is None else ('<= ' if row['le'] else '>= ') + f"{row['target']:g}"
        mark = '' if ok is None else ('yes' if ok else 'NO')
        lines.append(f'{name:<58} {text:>10} {target:>9}  {mark}')
    return '\n'.join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``benchmark accuracy``; 0 on success."""
    p = argparse.ArgumentParser(prog='benchmark accuracy', description=__doc__.split('\n\n')[0])
    p.add_argument('--frames', type=int, default=4)
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', help='also write the rows as JSON here')
    args = p.parse_args(argv)
    if args.frames < 1:
        p.error('--frames must be >= 1')
    t0 = time.time()
    rows = measure(args.frames, args.width, args.height, args.seed)
    print(f'synthetic drive, {args.width}x{args.height}, {args.frames} frames, seed {args.seed}; '
          'oracle relative input (exact disparity x unknown affine map, corrupted as named)')
    print(format_table(rows))
    print(f'({time.time() - t0:.1f} s)')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
