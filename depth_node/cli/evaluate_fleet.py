"""``evaluate`` over many bags: the Ray part of :mod:`depth_node.cli.evaluate`.

Parses nothing itself: :func:`run_fleet` takes the parsed arguments of ``evaluate`` and its
configuration function, runs :class:`~depth_node.offline.fleet_eval.FleetEvaluation` and prints
what happened. Exit status as documented in :mod:`depth_node.cli.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from depth_node.cli.errors import exit_code
from depth_node.core.errors import ConfigError, DepthNodeError


def run_fleet(args: argparse.Namespace, configure: Callable[[argparse.Namespace], Any]) -> int:
    """Evaluate every bag the arguments name into ``--out``; the exit status."""
    from depth_node.offline.bag_set import resolve_bags
    from depth_node.offline.chunks import chunking_is_exact
    from depth_node.offline.eval_config import NodeSettings
    from depth_node.offline.fleet import RaySettings
    from depth_node.offline.fleet_eval import FleetEvaluation, FleetJob

    try:
        if args.output_bag:
            raise ConfigError('--output-bag', 'needs a single bag evaluated in this process '
                              '(without --workers / --ray-address)', args.output_bag)
        config, options = configure(args)
        bags = resolve_bags(args.bag)
        ray = None
        if args.workers != 0:
            ray = RaySettings(address=args.ray_address, workers=args.workers or 0,
                              cpus_per_task=args.cpus_per_task,
                              gpus_per_task=args.gpus_per_task, retries=args.retries,
                              object_store_mb=args.object_store_mb, log_to_driver=args.ray_log)
            ray.validate()
        # Torch threads per worker: its CPUs (1 by default), unless --threads says otherwise.
        threads = args.threads if args.threads is not None else max(1, int(args.cpus_per_task))
        job = FleetJob(config.estimator, NodeSettings.from_node_config(config), options,
                       threads=threads)
        fleet = FleetEvaluation(bags, job, args.out, ray, resume=not args.no_resume,
                                plots=not args.no_plots, progress=options.progress,
                                chunk_s=args.chunk, warmup_s=args.chunk_warmup)
        if args.chunk and not chunking_is_exact(job.settings, fleet.warmup_s):
            print('evaluate: --chunk with the temporal filter on (filter.enable) or a warm-up '
                  'shorter than fit.hold_time: the first frames after a chunk edge can differ '
                  'a little from a whole-bag run (-p filter.enable:=false for equal numbers)',
                  file=sys.stderr)
        result = fleet.run()
    except (DepthNodeError, KeyboardInterrupt) as exc:  # ConfigError is a DepthNodeError
        return exit_code('evaluate', exc)
    for o in result.failed:
        print(f'evaluate: FAILED {o.bag}: {o.error}', file=sys.stderr)
    for o in result.outcomes:
        for issue in (o.result.issues if o.result is not None else []):
            print(f'evaluate: {issue}', file=sys.stderr)
    counts = {s: sum(o.status == s for o in result.outcomes)
              for s in ('done', 'resumed', 'failed')}
    if not args.quiet:
        if result.merged is not None:
            from depth_node.offline.report import summary_lines
            summary = json.loads((Path(args.out) / 'summary.json').read_text())
            print('\n'.join(summary_lines(result.merged, summary, args.out)))
        where = f'{result.workers} Ray workers' if result.workers else 'in this process'
        print(f"  {len(result.outcomes)} bags: {counts['done']} evaluated ({where}), "
              f"{counts['resumed']} already done in {args.out}, {counts['failed']} failed; "
              f'{result.wall_s:.1f} s')
    if result.interrupted:
        print(f'evaluate: interrupted after {counts["done"] + counts["resumed"]} bags; report '
              f'written to {args.out}', file=sys.stderr)
        return 130
    if result.merged is None:
        print('evaluate: no bag could be evaluated', file=sys.stderr)
        return 1
    if result.failed:
        return 4
    if result.damaged:
        return 3
    return 0
