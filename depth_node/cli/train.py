"""``train``: train a Depth Anything V2 student on synthetic drives or on labelled bags.

Examples::

    train --out out/student                     # the shipped recipe: synthetic streets
    train --out out/kf --bag drive_with_keyframes --init depth_node/models/student
    train --out out/student --resume            # continue an interrupted run

With ``--bag`` the images are labelled by a depth topic matched by header stamp: the keyframe
teacher's LiDAR-aligned depth (``/keyframe/depth``, the default) weighted by its uncertainty
(``/keyframe/uncertainty``), or ground truth (``--depth-topic /camera/depth_gt
--uncertainty-topic ''``). Runs without ROS; ``ros2 run depth_node train`` is the same program.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from depth_node.core.errors import ConfigError, DepthNodeError


def _seeds(text: str) -> list[int]:
    """'0-23' or '1,5,9' -> seeds."""
    out: list[int] = []
    for part in text.split(','):
        part = part.strip()
        if '-' in part:
            lo, hi = part.split('-', 1)
            out.extend(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    return out


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split('x')
    return int(w), int(h)


def build_parser() -> argparse.ArgumentParser:
    from depth_node.training.data import TeacherTopics
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
                        '--bag, none with it; street 0 is the sample bag\'s, kept out)')
    g.add_argument('--per-street', type=int, default=40,
                   help='frames per synthetic street (default %(default)s)')
    g.add_argument('--synthetic-size', type=_size, default=(320, 240), metavar='WxH',
                   help='synthetic render size (default 320x240)')
    g.add_argument('--val-seeds', default='1000-1001',
                   help="held-out synthetic streets for the validation loss ('' = none; "
                        'default %(default)s)')
    g.add_argument('--val-per-street', type=int, default=4)
    g.add_argument('--bag', action='append', default=[], help='bag to train from (repeatable)')
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


def _card(trainer, data: str) -> str:
    c = trainer.config
    n = sum(p.numel() for p in trainer.model.parameters())
    return (
        '# depth_node synthetic student\n\n'
        'A Depth Anything V2-architecture relative depth model (DINOv2 backbone + DPT head, '
        f'{n / 1e6:.2f} M parameters, transformers format) trained by `depth_node`\'s `train` '
        f'from {"random initialisation" if not c.init else c.init} on {data}.\n\n'
        '**It has only ever seen synthetic street scenes.** It exists so that the demo and the '
        'tests run a real network without downloads; on real images use real Depth Anything V2 '
        'weights (`estimator.model_path`).\n\n'
        f'- output: affine-invariant disparity (relative), input lower bound {c.input_size} px\n'
        f'- loss: scale-and-shift-invariant + {c.loss.grad_weight} x gradient matching, top '
        f'{c.loss.trim:.0%} largest-loss pixels of each image ignored\n'
        f'- {trainer.step} steps of batch {c.batch_size}, AdamW lr {c.lr}, seed {c.seed}, '
        f'crop {c.crop_size[1]}x{c.crop_size[0]}\n')


def main(argv: Optional[Sequence[str]] = None) -> int:
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

    from depth_node.training.data import bag_samples, synthetic_samples, TeacherTopics
    from depth_node.training.losses import LossConfig
    from depth_node.training.trainer import peak_memory_mb, TrainConfig, Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup=args.warmup, input_size=args.input_size, seed=args.seed, preset=args.preset,
        grid=args.grid, init=args.init, checkpoint_every=args.checkpoint_every,
        val_every=args.val_every, loss=LossConfig(grad_weight=args.grad_weight, trim=args.trim))
    config.validate()
    seeds = _seeds(args.synthetic_seeds) if args.synthetic_seeds is not None \
        else ([] if args.bag else list(range(1, 25)))
    started = time.perf_counter()
    train = []
    described = []
    if seeds:
        w, h = args.synthetic_size
        train.extend(synthetic_samples(seeds, args.per_street, w, h, shuffle_seed=args.seed))
        described.append(f'{len(train)} frames of {len(seeds)} synthetic streets '
                         f'(seeds {args.synthetic_seeds or "1-24"}, {w}x{h})')
    topics = TeacherTopics(args.image_topic, args.depth_topic, args.uncertainty_topic)
    for bag in args.bag:
        issues: list[str] = []
        got = list(bag_samples(bag, topics, args.relative_uncertainty, issues=issues))
        for issue in issues[:10]:
            print(f'train: {bag}: {issue}', file=sys.stderr)
        if not got:
            raise DepthNodeError(f'{bag}: no image on {topics.image} has a label on '
                                 f'{topics.depth}' + (f' and {topics.uncertainty}'
                                                      if topics.uncertainty else ''))
        train.extend(got)
        described.append(f'{len(got)} labelled images of {Path(bag).name} ({topics.depth}'
                         + (f', weighted by {topics.uncertainty}' if topics.uncertainty else '')
                         + ')')
    val = []
    val_seeds = _seeds(args.val_seeds) if args.val_seeds else []
    if val_seeds and seeds:
        w, h = args.synthetic_size
        val = list(synthetic_samples(val_seeds, args.val_per_street, w, h,
                                     shuffle_seed=args.seed + 1))
    data_seconds = time.perf_counter() - started
    data = '; '.join(described) or 'no data'
    if not args.quiet:
        print(f'train: {data}; {len(val)} validation frames ({data_seconds:.1f} s)')
    trainer = Trainer(config, args.out, train, val, resume=args.resume)
    result = trainer.run(progress=not args.quiet, card=lambda t: _card(t, data),
                         stop_after=args.stop_after)
    summary = {
        'student': str(result.student), 'data': data, 'train_samples': len(train),
        'val_samples': len(val), 'steps_this_run': result.steps, 'step': result.final_step,
        'seconds': round(result.seconds, 1), 'data_seconds': round(data_seconds, 1),
        's_per_step': round(result.seconds / max(1, result.steps), 3),
        'threads': torch.get_num_threads(), 'peak_memory_mb': round(peak_memory_mb(), 1),
        'train_loss_last50': round(result.train_loss, 5),
        'val_loss': None if result.val_loss is None else round(result.val_loss, 5),
        'config': config.to_dict(),
    }
    (Path(args.out) / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n',
                                                 encoding='utf-8')
    if not args.quiet:
        for key in itertools.islice(summary, 12):
            print(f'  {key}: {summary[key]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
