"""``pseudo_label``: the keyframe teacher over many bags, into a training dataset of shards.

Examples::

    pseudo_label drives/ --teacher ~/models/marigold --out out/labels
    pseudo_label @todo.txt --params-file my.yaml --out out/labels --ray-address auto
    train --shards out/labels --init depth_node/models/student --out out/student_kf

Runs the node's keyframe policy and teacher (``keyframes.*`` of the params file; ``--teacher``
is ``keyframes.model_path``) on every camera frame of every bag (folders of bags, globs,
``@FILE``), aligns each keyframe to the LiDAR as the node does, and writes Parquet shards
(image, aligned depth, uncertainty, provenance) to ``--out``; see
:mod:`depth_node.offline.pseudo_label`. Local Ray in this process by default, a cluster with
``--ray-address``, ``--workers 0`` in this process without Ray; a second run into the same
``--out`` skips the bags done.

Exit status: 0 done; 1 no keyframe got a label; 2 bad arguments or configuration; 3 a bag is
damaged (its readable part was labelled); 4 a bag could not be labelled at all (named on
stderr and in ``dataset.json``; the others were); 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence, TYPE_CHECKING

from depth_node.cli.errors import exit_code
from depth_node.core.errors import ConfigError, DepthNodeError

if TYPE_CHECKING:  # imported when it runs: --help stays quick
    from depth_node.offline.pseudo_label import PseudoLabelRun


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    from depth_node.offline.drive_bag import DriveTopics
    d = DriveTopics()
    p = argparse.ArgumentParser(prog='pseudo_label', description=__doc__.split('\n\n')[0])
    p.add_argument('bag', nargs='+', help='bags: rosbag2 folders or .mcap files, folders of '
                   "bags, globs ('runs/*'), @FILE (a bag per line)")
    p.add_argument('--out', default='out/pseudo_labels', help='dataset folder (default '
                   '%(default)s)')
    g = p.add_argument_group('teacher and policy (as the node: keyframes.*)')
    g.add_argument('--params-file', help="the node's YAML params file (default: defaults)")
    g.add_argument('--node-name', default='depth_node')
    g.add_argument('--teacher', help='keyframes.model_path (a local Marigold checkpoint)')
    g.add_argument('-p', '--param', action='append', default=[], metavar='NAME:=VALUE',
                   help='override one parameter (e.g. keyframes.every_n:=10)')
    g.add_argument('--threads', type=int, help='torch threads per worker (default: its CPUs)')
    t = p.add_argument_group('bags')
    t.add_argument('--image', default=d.image, help='camera topic (default %(default)s)')
    t.add_argument('--camera-info', default=d.camera_info, help='default %(default)s')
    t.add_argument('--points', default=d.points, help='LiDAR (default %(default)s)')
    t.add_argument('--tf-static', default=d.tf_static, help='default %(default)s')
    t.add_argument('--extrinsic', choices=('auto', 'bag', 'parameters'), default='auto',
                   help='LiDAR->camera: /tf_static of the bag when it connects the frames, '
                        'else extrinsic.* (auto); or force one')
    t.add_argument('--max-frames', type=int, default=0, help='camera frames per bag (0: all)')
    t.add_argument('--rows-per-shard', type=int, default=64, help='default %(default)s')
    f = p.add_argument_group('Ray')
    f.add_argument('--workers', type=int, help='workers, each with its own teacher (default: '
                   'one per CPU / --cpus-per-task); 0: in this process, without Ray')
    f.add_argument('--ray-address', default='', help="a Ray cluster ('auto', "
                   "'ray://head:10001'); default: local Ray in this process")
    f.add_argument('--cpus-per-task', type=float, default=1.0)
    f.add_argument('--gpus-per-task', type=float, default=0.0,
                   help='GPUs per worker (with -p keyframes.device:=cuda)')
    f.add_argument('--retries', type=int, default=2, help='lost workers a bag survives')
    f.add_argument('--no-resume', action='store_true', help='label every bag again')
    f.add_argument('--object-store-mb', type=int, default=512)
    f.add_argument('-q', '--quiet', action='store_true', help='no progress bar, no summary')
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> 'PseudoLabelRun':
    """The run the arguments describe; ConfigError names what is wrong."""
    from depth_node.offline.bag_set import resolve_bags
    from depth_node.offline.drive_bag import DriveTopics
    from depth_node.offline.eval_config import NodeSettings
    from depth_node.offline.fleet import RaySettings
    from depth_node.offline.pseudo_label import LabelJob, PseudoLabelRun
    from depth_node.ros.param_files import node_values
    from depth_node.ros.params import build_config

    values = {'keyframes.enable': True}
    if args.teacher:
        values['keyframes.model_path'] = os.path.abspath(os.path.expanduser(args.teacher))
    config = build_config(node_values(args.params_file, args.node_name, args.param, values))
    kf = config.keyframes
    if args.threads is not None and args.threads < 1:
        raise ConfigError('--threads', 'must be >= 1', args.threads)
    ray = None
    if args.workers != 0:
        ray = RaySettings(address=args.ray_address, workers=args.workers or 0,
                          cpus_per_task=args.cpus_per_task, gpus_per_task=args.gpus_per_task,
                          retries=args.retries, object_store_mb=args.object_store_mb)
        ray.validate()
    topics = DriveTopics(image=args.image, camera_info=args.camera_info, points=args.points,
                         tf_static=args.tf_static)
    job = LabelJob(kf.teacher, kf.policy, kf.worker, NodeSettings.from_node_config(config),
                   topics, args.extrinsic, args.max_frames, args.rows_per_shard,
                   threads=args.threads or max(1, int(args.cpus_per_task)))
    return PseudoLabelRun(resolve_bags(args.bag), job, args.out, ray,
                          resume=not args.no_resume,
                          progress=not args.quiet and sys.stderr.isatty())


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console-script entry point (``pseudo_label``, ``ros2 run depth_node pseudo_label``)."""
    args = _parse(argv)
    try:
        run = build(args)
        outcomes = run.run()
    except (DepthNodeError, KeyboardInterrupt) as exc:  # ConfigError is a DepthNodeError
        return exit_code('pseudo_label', exc)
    for o in outcomes:
        if o.status == 'failed':
            print(f'pseudo_label: FAILED {o.bag}: {o.error}', file=sys.stderr)
        for issue in o.issues:
            print(f'pseudo_label: {issue}', file=sys.stderr)
    rows = sum(o.rows for o in outcomes)
    if not args.quiet:
        kept = sum(o.keyframes for o in outcomes)
        refused: dict[str, int] = {}
        for o in outcomes:
            for k, n in o.refused.items():
                refused[k] = refused.get(k, 0) + n
        print(f'pseudo_label: {rows} labelled keyframes of {kept} chosen in '
              f'{sum(o.frames for o in outcomes)} frames of {len(outcomes)} bags '
              f"({sum(o.status == 'resumed' for o in outcomes)} already done) -> {args.out}")
        for reason, n in sorted(refused.items(), key=lambda kv: -kv[1])[:3]:
            print(f'  fit refused ({n}): {reason}')
    if run.interrupted:
        return 130
    if rows == 0:
        print('pseudo_label: no keyframe got a label', file=sys.stderr)
        return 1
    if any(o.status == 'failed' for o in outcomes):
        return 4
    if any(o.damaged for o in outcomes):
        return 3
    return 0


if __name__ == '__main__':
    sys.exit(main())
