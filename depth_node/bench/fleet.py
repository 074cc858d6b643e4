"""Fleet evaluation throughput: bags per minute for 1, 2, ... Ray workers on this machine.

``benchmark fleet [--bags N] [--frames F] [--workers 1,2] [--model PATH] [--input-size PX]
[--json PATH]`` copies the sample bag ``N`` times, starts one local Ray session and evaluates
the copies with :class:`~depth_node.offline.fleet_eval.FleetEvaluation` (the ``evaluate`` of
many bags) once per worker count, each worker with one torch thread and one CPU, the model the
node's default (the shipped student) unless ``--model``. It prints the wall time, bags per
minute and the speed-up over the first count, and checks that every run's merged metrics are
bitwise the same. The time counted is the whole run - workers starting and loading the model
included - but not Ray's own start (once, before the first count); ``steady`` is the rate once
every worker has loaded its model (what a fleet of many bags sees). CPU-bound on purpose: the
evaluation's model and pipeline decide the rate, so a speed-up needs free cores:
the load average of the machine during each run is printed next to it, and ``cores``: the
workers' CPU time per second of the steady part (2 workers given 2 free cores: about 2).
Measured figures and their command: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from depth_node.bench import write_json

SAMPLE = Path(__file__).resolve().parents[2] / 'data' / 'sample_drive'


def measure(bags: int = 6, frames: int = 20, workers: tuple[int, ...] = (1, 2),
            model: str = '', input_size: int = 0, sample: Path = SAMPLE,
            quiet: bool = True, estimator_type: str = 'depth_anything',
            estimator_options: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
    """One row per worker count: workers, bags, wall_s, bags_per_min, speedup, metrics."""
    from depth_node.estimators.base import EstimatorConfig
    from depth_node.offline.eval_config import EvaluationOptions, NodeSettings
    from depth_node.offline.fleet import RaySession, RaySettings
    from depth_node.offline.fleet_eval import FleetEvaluation, FleetJob

    estimator = EstimatorConfig(type=estimator_type, model_path=model, input_size=input_size,
                                options=dict(estimator_options or {}))
    job = FleetJob(estimator, NodeSettings(lidar_max_age=0.05),
                   EvaluationOptions(max_frames=frames), threads=1)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix='bench_fleet_') as tmp:
        root = Path(tmp)
        copies = []
        for k in range(bags):
            copies.append(root / 'bags' / f'drive_{k:03d}')
            shutil.copytree(sample, copies[-1])
        with RaySession(RaySettings(workers=max(workers), object_store_mb=200)):
            for n in workers:
                load0 = os.getloadavg()[0]
                t0 = time.perf_counter()
                result = FleetEvaluation(copies, job, root / f'out_{n}',
                                         RaySettings(workers=n), resume=False,
                                         plots=False, progress=not quiet).run()
                wall = time.perf_counter() - t0
                if result.failed or result.merged is None:
                    raise RuntimeError(f'benchmark fleet: {len(result.failed)} bags failed: '
                                       f'{result.failed[0].error if result.failed else "-"}')
                steady = max(wall - result.ready_s, 1e-9)
                cpu = sum(o.cpu_s for o in result.outcomes)
                rows.append({'workers': n, 'bags': bags, 'frames_per_bag': frames,
                             'wall_s': wall, 'bags_per_min': bags * 60.0 / wall,
                             'workers_ready_s': result.ready_s,
                             'steady_bags_per_min': bags * 60.0 / steady,
                             'worker_cpu_s': cpu, 'cores_used': cpu / steady,
                             'load_before': load0, 'load_after': os.getloadavg()[0],
                             'metrics': result.merged.overall().as_dict()})
    for r in rows:
        r['speedup'] = r['bags_per_min'] / rows[0]['bags_per_min']
        r['steady_speedup'] = r['steady_bags_per_min'] / rows[0]['steady_bags_per_min']
        r['identical'] = r['metrics'] == rows[0]['metrics']
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``benchmark fleet``; 0 on success, 1 when the runs disagree."""
    p = argparse.ArgumentParser(prog='benchmark fleet', description=__doc__.split('\n\n')[0])
    p.add_argument('--bags', type=int, default=6, help='copies of the sample bag')
    p.add_argument('--frames', type=int, default=20, help='frames evaluated per bag')
    p.add_argument('--workers', default='1,2', help='worker counts, comma-separated')
    p.add_argument('--model', default='', help="Depth Anything folder or .pth ('': the "
                   'shipped student)')
    p.add_argument('--input-size', type=int, default=0,
                   help="network input lower bound, px (0: the model's own)")
    p.add_argument('--estimator', default='depth_anything',
                   help='estimator.type: a registered name or package.module:factory')
    p.add_argument('--estimator-options', default='{}', help='estimator.options (JSON)')
    p.add_argument('--json', help='also write the rows as JSON here')
    p.add_argument('-q', '--quiet', action='store_true', help='no progress bar')
    args = p.parse_args(argv)
    try:
        workers = tuple(int(w) for w in args.workers.split(',') if w)
        if not workers or min(workers) < 1 or args.bags < 1 or args.frames < 1:
            raise ValueError('--workers, --bags and --frames must be >= 1')
        options = json.loads(args.estimator_options)
        if not isinstance(options, dict):
            raise ValueError('--estimator-options must be a JSON object')
    except ValueError as exc:
        print(f'benchmark fleet: error: {exc}', file=sys.stderr)
        return 2
    rows = measure(args.bags, args.frames, workers, args.model, args.input_size,
                   quiet=args.quiet or not sys.stderr.isatty(),
                   estimator_type=args.estimator, estimator_options=options)
    model = args.model or ('shipped student' if args.estimator == 'depth_anything'
                           else args.estimator)
    print(f'fleet evaluation: {args.bags} bags x {args.frames} frames, model {model}, '
          '1 torch thread and 1 CPU per worker')
    print(f"{'workers':>8} {'wall s':>8} {'bags/min':>9} {'speed-up':>9} {'steady':>8} "
          f"{'speed-up':>9} {'cores':>6} {'load':>10}  metrics")
    for r in rows:
        print(f"{r['workers']:>8} {r['wall_s']:>8.1f} {r['bags_per_min']:>9.2f} "
              f"{r['speedup']:>8.2f}x {r['steady_bags_per_min']:>8.2f} "
              f"{r['steady_speedup']:>8.2f}x {r['cores_used']:>6.2f} "
              f"{r['load_before']:>4.1f}->{r['load_after']:<4.1f} "
              f"{'identical' if r['identical'] else 'DIFFER'} "
              f"(AbsRel {r['metrics']['abs_rel']:.4f})")
    if args.json:
        write_json(args.json, rows)
    return 0 if all(r['identical'] for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
