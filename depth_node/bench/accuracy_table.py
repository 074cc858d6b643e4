"""The accuracy tables: the ground-truth numbers of the metric path, each next to its target.

``benchmark accuracy [--frames N] [--width W --height H] [--seed S] [--json PATH]
[--scenarios NAMES | --no-scenarios] [--combined] [--streets S,S] [--scenario-frames N]
[--model DIR]``
prints two tables:

1. the oracle table: frames of the synthetic drive (exact depth, 64-beam LiDAR with its natural
   see-through returns) with an oracle relative input (exact disparity under an unknown affine
   map, optionally corrupted), so it measures projection, outlier rejection, fitting, filtering
   and local alignment, not a model (:mod:`depth_node.bench.accuracy`; ``test/test_accuracy.py``
   asserts the targets);
2. the scenario table: the shipped student (or ``--model``) through the node's pipeline with
   fusion, uncertainty and refusal, on held-out streets across LiDAR models, lenses, camera
   pose, calibration error, scene kinds, light and weather (:mod:`depth_node.bench.
   scenario_table`); ``--combined``: two axes at once, off the list the uncertainty is
   calibrated on.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from typing import Optional

from depth_node.bench import scenario_table, write_json
from depth_node.bench.accuracy import (GLOBAL, run_scenario, run_temporal, Scenario,
                                       time_alignment)
from depth_node.bench.scenario_table import select
from depth_node.core.align import OutputKind
from depth_node.estimators.base import Estimator
from depth_node.offline.scenarios import EVALUATION_SEEDS
from depth_node.sim.frames import SimRig
from depth_node.sim.oracles import Corruption

#: Corruption of the "distorted + noisy" experiments: a smooth field of +-10 % and 5 %
#: per-pixel noise, meant to leave a dense-GT global fit about where relative models are on
#: driving data after alignment (the measured AbsRel: docs/benchmarks.md).
DISTORTED = Corruption(distortion=0.10, noise=0.05)
LOW_FREQUENCY = Corruption(distortion=0.15, noise=0.01)
LSQ = replace(GLOBAL, fit_method='lsq', see_through=False)


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
                                              replace(GLOBAL, local=True)))
    fused = run_scenario(rig, drive, Scenario('fusion', LOW_FREQUENCY,
                                              replace(GLOBAL, fusion=True)))
    fused_noisy = run_scenario(rig, drive, Scenario('fusion noisy', DISTORTED,
                                                    replace(GLOBAL, fusion=True)))
    rows['low-frequency distortion: global AbsRel'] = {'value': glob.lidar.abs_rel}
    rows['low-frequency distortion: local AbsRel'] = {'value': local.lidar.abs_rel}
    rows['local: AbsRel reduction vs global'] = {
        'value': 1.0 - local.lidar.abs_rel / glob.lidar.abs_rel, 'target': 0.25, 'le': 0}
    rows['low-frequency distortion: fusion AbsRel'] = {'value': fused.lidar.abs_rel}
    rows['fusion: AbsRel reduction vs global (low-frequency)'] = {
        'value': 1.0 - fused.lidar.abs_rel / glob.lidar.abs_rel, 'target': 0.25, 'le': 0}
    rows['fusion / dense-GT global bound (distorted+noisy)'] = {
        'value': fused_noisy.lidar.abs_rel / fused_noisy.oracle.abs_rel, 'target': 0.9,
        'le': 1}

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
    g = p.add_argument_group('scenario table')
    g.add_argument('--scenarios', default='all',
                   help="comma-separated parts of scenario names (default: all)")
    g.add_argument('--no-scenarios', action='store_true', help='only the oracle table')
    g.add_argument('--combined', action='store_true',
                   help='the rows of two axes at once (night, dusk with a 16-beam LiDAR, fog '
                        'with a wide lens...), off the list the uncertainty is calibrated on')
    g.add_argument('--no-oracle', action='store_true', help='only the scenario table')
    g.add_argument('--streets', default=','.join(str(s) for s in EVALUATION_SEEDS),
                   help='street seeds (default %(default)s: apart from training and '
                        'calibration)')
    g.add_argument('--scenario-frames', type=int, default=2, help='frames per street')
    g.add_argument('--model', default='', help='student folder (default: the shipped one)')
    g.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    g.add_argument('--teacher-bound', action='store_true',
                   help='with the keyframe teacher\'s check of sigma on every frame, the '
                        'teacher being the ground truth: the most that check can do')
    args = p.parse_args(argv)
    if args.frames < 1 or args.scenario_frames < 1:
        p.error('--frames and --scenario-frames must be >= 1')
    try:
        scenarios = [] if args.no_scenarios else select(args.scenarios, args.combined)
        streets = [int(s) for s in args.streets.split(',') if s.strip()]
    except ValueError as exc:
        p.error(str(exc))
    out: dict[str, object] = {}
    t0 = time.time()
    if not args.no_oracle:
        rows = measure(args.frames, args.width, args.height, args.seed)
        print(f'synthetic drive, {args.width}x{args.height}, {args.frames} frames, seed '
              f'{args.seed}; oracle relative input (exact disparity x unknown affine map, '
              'corrupted as named)')
        print(format_table(rows))
        print(f'({time.time() - t0:.1f} s)')
        out['oracle'] = rows
    if scenarios:
        est = _student(args.model, args.threads)
        t1 = time.time()
        print(f'\nscenarios: {est.name} through the node pipeline (fusion, uncertainty, '
              f'refusal), {args.width}x{args.height}, streets {streets}, '
              f'{args.scenario_frames} frames each; AbsRel unless named'
              + ('; sigma checked by a perfect keyframe teacher on every frame (--teacher-bound)'
                 if args.teacher_bound else ''))
        sweep: dict[str, list[tuple[float, float, float]]] = {}
        scores = scenario_table.measure(est, scenarios, streets, args.scenario_frames,
                                        args.width, args.height, sweep=sweep,
                                        teacher_bound=args.teacher_bound)
        print(scenario_table.format_table(scores))
        print()
        print(scenario_table.format_sweep(sweep))
        out['threshold_sweep'] = sweep
        print(f'({time.time() - t1:.1f} s)')
        out['scenarios'] = scenario_table.as_rows(scores)
    if args.json:
        write_json(args.json, out)
    return 0


def _student(model: str, threads: int) -> Estimator:
    import torch

    from depth_node.estimators.base import model_input_size, SHIPPED_STUDENT
    from depth_node.estimators.depth_anything import DepthAnythingEstimator

    torch.set_num_threads(threads)
    path = model or str(SHIPPED_STUDENT)
    return DepthAnythingEstimator(path, input_size=model_input_size(path))


if __name__ == '__main__':
    sys.exit(main())
