"""``train``: train a Depth Anything V2 student on synthetic drives or on labelled bags.

Examples::

    train --out out/student                     # the shipped recipe: synthetic streets
    train --out out/kf --bag drive_with_keyframes --init depth_node/models/student
    train --out out/student --resume            # continue an interrupted run
    train --out out/kf --shards out/pseudo_labels --init depth_node/models/student

With ``--bag`` the images are labelled by a depth topic matched by header stamp: the keyframe
teacher's LiDAR-aligned depth (``/keyframe/depth``, the default) weighted by its uncertainty
(``/keyframe/uncertainty``), or ground truth (``--depth-topic /camera/depth_gt
--uncertainty-topic ''``). With ``--shards`` they are the keyframes ``pseudo_label`` wrote
(teacher depth weighted by its uncertainty). Runs without ROS; ``ros2 run depth_node train``
is the same program. The run itself is :mod:`depth_node.training.recipe`; this module parses
and prints.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from typing import Optional, Sequence

from depth_node.core.errors import ConfigError, DepthNodeError


def build_parser() -> argparse.ArgumentParser:
    from depth_node.training.data import TeacherTopics
    from depth_node.training.recipe import parse_size
    from depth_node.training.trainer import TrainConfig
    d = TrainConfig()
    t = TeacherTopics()
    p = argparse.ArgumentParser(prog='train', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='out/train', help='run folder (default %(default)s)')
    p.add_argument('--resume', action='store_true', help='continue the run in --out')
    g = p.add_argument_group('data')
    g.add_argument('--synthetic-seeds', default=None,
                   help="synthetic streets to train on, e.g. '1-24' (default: 1-24 without "
                        '--bag or --shards, none with them; street 0 is the sample bag\'s, kept '
                        'out)')
    g.add_argument('--world', choices=('street', 'diverse', 'mixed'), default='street',
                   help="synthetic world: today's streets (the shipped student's), "
                        "'diverse' (each seed its own sun, exposure, fog, camera pose, lens "
                        "and scene kind; seeds 1-160, 6 frames each by default) or 'mixed' "
                        "(today's streets 1-24 x 40 plus the diverse world, to which "
                        "--synthetic-seeds and --per-street apply)")
    g.add_argument('--per-street', type=int, default=None,
                   help='frames per synthetic street (default 40; --world diverse: 6)')
    g.add_argument('--synthetic-size', type=parse_size, default=(320, 240), metavar='WxH',
                   help='synthetic render size (default 320x240)')
    g.add_argument('--val-seeds', default='1000-1001',
                   help="held-out synthetic streets for the validation loss ('' = none; "
                        'default %(default)s)')
    g.add_argument('--val-per-street', type=int, default=4)
    g.add_argument('--bag', action='append', default=[], help='bag to train from (repeatable)')
    g.add_argument('--shards', action='append', default=[], metavar='DIR',
                   help='pseudo_label dataset folder to train from (repeatable)')
    g.add_argument('--image-topic', default=t.image, help='default %(default)s')
    g.add_argument('--depth-topic', default=t.depth,
                   help='label depth, metres, matched by stamp (default %(default)s)')
    g.add_argument('--uncertainty-topic', default=t.uncertainty,
                   help="label uncertainty, metres; '' = unweighted (default %(default)s)")
    g.add_argument('--relative-uncertainty', type=float, default=0.05,
                   help='uncertainty/depth at which a pixel counts half (default %(default)s)')
    m = p.add_argument_group('model')
    m.add_argument('--init', default=d.init,
                   help='Depth Anything folder or .pth to start from (default: random init)')
    m.add_argument('--preset', default=d.preset, help='student size without --init: tiny '
                   '(default), micro, small')
    m.add_argument('--grid', type=int, default=d.grid,
                   help='position-embedding grid of a new student (default %(default)s)')
    m.add_argument('--input-size', type=int, default=d.input_size,
                   help='network input lower bound, px (default %(default)s)')
    o = p.add_argument_group('optimisation')
    o.add_argument('--steps', type=int, default=d.steps)
    o.add_argument('--batch-size', type=int, default=d.batch_size)
    o.add_argument('--lr', type=float, default=d.lr)
    o.add_argument('--warmup', type=int, default=d.warmup)
    o.add_argument('--weight-decay', type=float, default=d.weight_decay)
    o.add_argument('--grad-weight', type=float, default=d.loss.grad_weight,
                   help='gradient matching weight (Depth Anything V2: 2)')
    o.add_argument('--trim', type=float, default=d.loss.trim,
                   help="fraction of each image's largest losses ignored (default 0.1)")
    o.add_argument('--seed', type=int, default=d.seed)
    o.add_argument('--checkpoint-every', type=int, default=d.checkpoint_every)
    o.add_argument('--val-every', type=int, default=d.val_every)
    o.add_argument('--stop-after', type=int, default=None,
                   help='stop (with a checkpoint) after this many steps of this process')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    p.add_argument('-q', '--quiet', action='store_true', help='no progress bar')
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console-script entry point: ``ros2 run depth_node train``; 2 on a bad option or data."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ConfigError, DepthNodeError, ValueError) as exc:
        print(f'train: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('train: interrupted; the checkpoint was saved (--resume continues)',
              file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    import torch

    from depth_node.training.data import TeacherTopics
    from depth_node.training.losses import LossConfig
    from depth_node.training.recipe import DataOptions, run_training, training_data
    from depth_node.training.trainer import TrainConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup=args.warmup, input_size=args.input_size, seed=args.seed, preset=args.preset,
        grid=args.grid, init=args.init, checkpoint_every=args.checkpoint_every,
        val_every=args.val_every, loss=LossConfig(grad_weight=args.grad_weight, trim=args.trim))
    config.validate()
    options = DataOptions(
        synthetic_seeds=args.synthetic_seeds, per_street=args.per_street, world=args.world,
        synthetic_size=args.synthetic_size, val_seeds=args.val_seeds,
        val_per_street=args.val_per_street, bags=tuple(args.bag), shards=tuple(args.shards),
        topics=TeacherTopics(args.image_topic, args.depth_topic, args.uncertainty_topic),
        relative_uncertainty=args.relative_uncertainty)
    data = training_data(options, shuffle_seed=args.seed,
                         warn=lambda line: print(f'train: {line}', file=sys.stderr))
    if not args.quiet:
        print(f'train: {data.description}; {len(data.val)} validation frames '
              f'({data.seconds:.1f} s)')
    summary = run_training(config, args.out, data, resume=args.resume,
                           progress=not args.quiet, stop_after=args.stop_after)
    if not args.quiet:
        for key in itertools.islice(summary, 12):
            print(f'  {key}: {summary[key]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
