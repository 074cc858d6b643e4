"""Evaluate metric depth on rosbag2 recordings: ``evaluate BAG [BAG ...] [options]``.

Replays every camera frame of the bag (mcap or sqlite3) through the node's own pipeline, with
the node's configuration read from its params file, and scores the metric depth against a
dense ground-truth depth topic or, without one, against held-out LiDAR. Writes a CSV per
frame, a JSON summary, PNG plots and an HTML page to ``--out``; ``--output-bag`` also writes
what the node would publish, to replay next to the input in rviz2. Needs no ROS install
(``ros2 run depth_node evaluate`` works too). See :mod:`depth_node.offline.evaluate`.

Many bags (folders of bags, globs, ``@list.txt``; or ``--workers``, ``--ray-address``) run on
Ray, one task per bag, and merge into one report with a report per bag under ``--out/bags``
(:mod:`depth_node.offline.fleet_eval`): local Ray started in this process by default, a
cluster with ``--ray-address``; ``--workers 0`` evaluates the bags one after the other in this
process. A second run into the same ``--out`` skips the bags done (``--no-resume``: all).

Exit status: 0 done; 1 nothing could be evaluated; 2 bad arguments or configuration; 3 a bag
is damaged (what was readable was evaluated and reported); 4 (many bags) a bag could not be
evaluated at all (named on stderr and in the report; the others were); 130 interrupted (Ctrl-C;
the report covers the frames, or bags, done).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

from depth_node.cli.errors import exit_code
from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.offline.drive_bag import DriveTopics, STORAGES
from depth_node.offline.records import BagReadError
from depth_node.offline.evaluate import (BagEvaluation, EvaluationOptions, EXTRINSIC_SOURCES,
                                         GROUND_TRUTHS, NodeSettings)


def _parse(argv: Optional[list[str]]) -> argparse.Namespace:
    d = DriveTopics()
    p = argparse.ArgumentParser(
        prog='evaluate', description=__doc__.split('\n\n')[0],
        epilog='Example: evaluate data/sample_drive --params-file my.yaml --model ~/models/'
               'da2-small --out out/eval --output-bag out/eval/depth_bag')
    p.add_argument('bag', nargs='+',
                   help='rosbag2 folder (mcap or sqlite3) or an .mcap file; several, a folder '
                        "of bags, a glob ('runs/*') or @FILE (a bag per line) run on Ray")
    p.add_argument('--out', default='out/evaluate', help='report folder (default %(default)s)')
    g = p.add_argument_group('configuration (as the node)')
    g.add_argument('--params-file', help="the node's YAML params file (default: defaults)")
    g.add_argument('--node-name', default='depth_node',
                   help='node name whose section of the params file applies (default '
                        '%(default)s; /** always applies)')
    g.add_argument('--model', help='estimator.model_path (Depth Anything V2 folder or .pth)')
    g.add_argument('--estimator', help='estimator.type (registered name or module:factory)')
    g.add_argument('--estimator-options', help='estimator.options (JSON object)')
    g.add_argument('--device', help="estimator.device ('cpu', 'cuda', 'cuda:N')")
    g.add_argument('--threads', type=int,
                   help="torch intra-op threads (default: torch's choice; 1 is often faster on "
                        'a busy machine)')
    g.add_argument('-p', '--param', action='append', default=[], metavar='NAME:=VALUE',
                   help='override one parameter, value in YAML (e.g. fit.method:=lsq)')
    t = p.add_argument_group('topics')
    t.add_argument('--image', default=d.image, help='camera Image or CompressedImage '
                   '(default %(default)s)')
    t.add_argument('--camera-info', default=d.camera_info, help='default %(default)s')
    t.add_argument('--points', default=d.points, help='LiDAR PointCloud2 (default %(default)s)')
    t.add_argument('--gt-depth', default=d.depth,
                   help='dense ground-truth depth, 32FC1 m or 16UC1 mm (default %(default)s)')
    t.add_argument('--tf-static', default=d.tf_static, help='default %(default)s')
    e = p.add_argument_group('evaluation')
    e.add_argument('--gt', choices=GROUND_TRUTHS, default='auto',
                   help='ground truth: the depth topic when the bag has it, else held-out '
                        'LiDAR (auto); or force one')
    e.add_argument('--holdout', type=float, default=0.2,
                   help='fraction of each sweep\'s LiDAR pixels held out for evaluation '
                        '(default %(default)s)')
    e.add_argument('--seed', type=int, default=0, help='seed of the held-out split')
    e.add_argument('--keep-see-through', action='store_true',
                   help='keep held-out LiDAR returns that see past foreground edges')
    e.add_argument('--extrinsic', choices=EXTRINSIC_SOURCES, default='auto',
                   help='LiDAR->camera: /tf_static of the bag when it connects the frames, '
                        'else extrinsic.* (auto); or force one')
    e.add_argument('--max-frames', type=int, default=0, help='stop after N frames (0: all)')
    e.add_argument('--max-depth', type=float, help='metrics cap in m (default output.max_depth)')
    e.add_argument('--sample-frame', type=int, help='frame of the sample figure '
                   '(default: the middle one)')
    e.add_argument('--no-plots', action='store_true', help='CSV, JSON and HTML only')
    o = p.add_argument_group('output bag')
    o.add_argument('--output-bag', help='also write the published topics to this new bag')
    o.add_argument('--output-storage', choices=STORAGES, default='mcap')
    o.add_argument('--output-namespace', default='',
                   help='node namespace of the output topics (default: none, /depth...)')
    f = p.add_argument_group('many bags (Ray)')
    f.add_argument('--workers', type=int,
                   help='Ray workers, each with its own model (default: one per CPU of the '
                        'session / --cpus-per-task); 0: one bag after the other in this process')
    f.add_argument('--ray-address', default='',
                   help="an existing Ray cluster ('auto', 'ray://head:10001'); default: local "
                        'Ray started in this process')
    f.add_argument('--cpus-per-task', type=float, default=1.0,
                   help='CPUs one worker declares (default %(default)s; torch threads follow)')
    f.add_argument('--gpus-per-task', type=float, default=0.0,
                   help='GPUs one worker declares (default %(default)s; with --device cuda)')
    f.add_argument('--retries', type=int, default=2,
                   help='lost workers a bag survives (default %(default)s)')
    f.add_argument('--chunk', type=float, default=0.0, metavar='SECONDS',
                   help='split bags longer than this into time chunks, a task each (0: a task '
                        'per bag); equal to whole bags exactly with filter.enable false')
    f.add_argument('--chunk-warmup', type=float, metavar='SECONDS',
                   help='frames before a chunk run unscored for the state they leave '
                        '(default: fit.hold_time + 1)')
    f.add_argument('--no-resume', action='store_true',
                   help='evaluate every bag again, even those done in --out')
    f.add_argument('--object-store-mb', type=int, default=512,
                   help='local Ray: shared-memory object store (default %(default)s)')
    f.add_argument('--ray-log', action='store_true', help="show the workers' output")
    p.add_argument('-q', '--quiet', action='store_true', help='no progress bar, no table')
    return p.parse_args(argv)


def _fleet_mode(args: argparse.Namespace) -> bool:
    from depth_node.offline.bag_set import is_bag
    one = args.bag[0]
    return len(args.bag) > 1 or args.workers is not None or bool(args.ray_address) or \
        bool(args.chunk) or args.chunk_warmup is not None or \
        one.startswith('@') or any(c in one for c in '*?[') or \
        (os.path.isdir(one) and not is_bag(Path(one)))


def _configure(args: argparse.Namespace) -> tuple[Any, EvaluationOptions]:
    """The node's configuration and the evaluation options (ConfigError names what is bad)."""
    from depth_node.ros.param_files import node_values
    from depth_node.ros.params import build_config

    overrides = {'estimator.model_path': (os.path.abspath(os.path.expanduser(args.model))
                                          if args.model is not None else None),
                 'estimator.type': args.estimator, 'estimator.options': args.estimator_options,
                 'estimator.device': args.device}
    config = build_config(node_values(args.params_file, args.node_name, args.param,
                                      {k: v for k, v in overrides.items() if v is not None}))
    topics = DriveTopics(image=args.image, camera_info=args.camera_info, depth=args.gt_depth,
                         points=args.points, tf_static=args.tf_static)
    options = EvaluationOptions(
        topics=topics, ground_truth=args.gt, holdout=args.holdout, seed=args.seed,
        clean_lidar_gt=not args.keep_see_through, extrinsic=args.extrinsic,
        max_frames=args.max_frames, max_depth=args.max_depth, sample_frame=args.sample_frame,
        progress=not args.quiet and sys.stderr.isatty())
    options.validate()
    if args.threads is not None and args.threads < 1:
        raise ConfigError('--threads', 'must be >= 1', args.threads)
    return config, options


def build(args: argparse.Namespace) -> BagEvaluation:
    """The evaluation of one bag the arguments describe; ConfigError names what is wrong."""
    from depth_node.estimators import build_estimator

    config, options = _configure(args)
    if args.threads is not None:
        import torch
        torch.set_num_threads(args.threads)
    estimator = build_estimator(config.estimator)
    return BagEvaluation(args.bag[0], estimator, NodeSettings.from_node_config(config), options,
                         output_bag=args.output_bag, output_storage=args.output_storage,
                         output_namespace=args.output_namespace)


def main(argv: Optional[list[str]] = None) -> int:
    """Console-script entry point: ``ros2 run depth_node evaluate`` / ``.venv/bin/evaluate``."""
    args = _parse(argv)
    if _fleet_mode(args):
        from depth_node.cli.evaluate_fleet import run_fleet
        return run_fleet(args, _configure)
    try:
        evaluation = build(args)
    except (DepthNodeError, KeyboardInterrupt) as exc:  # ConfigError is a DepthNodeError
        return exit_code('evaluate', exc)
    try:
        result = evaluation.run()
    except (BagReadError, DepthNodeError) as exc:
        print(f'evaluate: {exc}', file=sys.stderr)
        return 1
    from depth_node.offline.report import summary_lines, write_report
    try:
        write_report(result, args.out, plots=not args.no_plots)
    except KeyboardInterrupt:  # a second Ctrl-C while writing: still say where things are
        print(f'evaluate: interrupted while writing the report in {args.out}', file=sys.stderr)
        return 130
    summary = json.loads((Path(args.out) / 'summary.json').read_text())
    for issue in result.issues:
        print(f'evaluate: {issue}', file=sys.stderr)
    if not args.quiet:
        print('\n'.join(summary_lines(result, summary, args.out)))
    if result.interrupted:
        print(f'evaluate: interrupted after {result.frames} frames; report written to '
              f'{args.out}', file=sys.stderr)
        return 130
    if result.frames_with_depth < result.frames:
        reasons = '; '.join(f'{k} ({n})' for k, n in list(summary['fit_refusals'].items())[:3])
        print(f'evaluate: {result.frames - result.frames_with_depth} of {result.frames} frames '
              f'had no metric depth (fit refused: {reasons or "-"}); metrics are over the '
              f'{result.frames_with_depth} that had', file=sys.stderr)
    if result.frames == 0:
        print(f'evaluate: no camera frame of {args.bag[0]} could be processed (topic '
              f'{args.image})', file=sys.stderr)
        return 1
    if result.damaged:
        return 3
    return 0


if __name__ == '__main__':
    sys.exit(main())
