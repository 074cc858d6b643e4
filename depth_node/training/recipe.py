"""A training run from its options: the data sets, the trainer, the model card, the summary.

What ``train`` does once its arguments are parsed: :func:`training_data` renders synthetic
streets (:func:`~depth_node.training.data.synthetic_samples`, or with ``world='diverse'`` the
diverse world's :func:`~depth_node.training.world.diverse_samples`) and/or pairs the images of bags
with a label topic (:func:`~depth_node.training.data.bag_samples`) and/or reads
``pseudo_label`` shards (:func:`~depth_node.training.data.shard_samples`), and
:func:`run_training` trains (:class:`~depth_node.training.trainer.Trainer`), writes the
student with its model card and ``summary.json`` in the run folder and returns the summary.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.training.data import (bag_samples, shard_samples, synthetic_samples,
                                      TeacherTopics)
from depth_node.training.trainer import peak_memory_mb, TrainConfig, Trainer

#: Synthetic streets of the shipped recipe (street 0 is the sample bag's, kept out).
DEFAULT_SEEDS = '1-24'
DEFAULT_PER_STREET = 40
#: Synthetic worlds ``train --world`` can render: today's streets, the diverse world, or both
#: (``mixed``: today's streets with the shipped recipe's seeds and frames, plus the diverse
#: world, to which ``--synthetic-seeds`` and ``--per-street`` then apply).
WORLDS = ('street', 'diverse', 'mixed')


def parse_seeds(text: str) -> list[int]:
    """'0-23' or '1,5,9' -> seeds ('' -> none)."""
    out: list[int] = []
    for part in text.split(','):
        part = part.strip()
        if '-' in part:
            lo, hi = part.split('-', 1)
            out.extend(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    return out


def parse_size(text: str) -> tuple[int, int]:
    """'320x240' -> (width, height)."""
    w, h = text.lower().split('x')
    return int(w), int(h)


@dataclass(frozen=True)
class DataOptions:
    """Where the training images and labels come from."""

    synthetic_seeds: Optional[str] = None  # e.g. '1-24'; None: the world's default w/o bags
    per_street: Optional[int] = None  # frames per synthetic street; None: the world's default
    world: str = 'street'  # today's streets, 'diverse' (training.world) or 'mixed' (both)
    synthetic_size: tuple[int, int] = (320, 240)  # (width, height) px
    val_seeds: str = '1000-1001'  # held-out synthetic streets ('' = no validation)
    val_per_street: int = 4
    bags: tuple[str, ...] = ()
    shards: tuple[str, ...] = ()  # pseudo_label dataset folders
    topics: TeacherTopics = field(default_factory=TeacherTopics)
    relative_uncertainty: float = 0.05  # uncertainty / depth at which a pixel counts half


@dataclass
class TrainingData:
    """The samples of a run and a one-line description of them."""

    train: list[Any]
    val: list[Any]
    description: str
    seconds: float  # spent rendering and reading


def training_data(options: DataOptions, shuffle_seed: int = 0,
                  warn: Callable[[str], None] = lambda line: None) -> TrainingData:
    """Render and read every sample; ``warn`` gets the bags' unpaired-image issues (10 each).

    Raises :class:`DepthNodeError` when a bag has no image with a label.
    """
    from depth_node.training import world as diverse

    if options.world not in WORLDS:
        raise ConfigError('world', f'must be one of {", ".join(WORLDS)}', options.world)
    is_diverse = options.world in ('diverse', 'mixed')
    text = options.synthetic_seeds
    if text is None:
        text = '' if options.bags or options.shards else (
            diverse.DEFAULT_DIVERSE_SEEDS if is_diverse else DEFAULT_SEEDS)
    per_street = options.per_street or (diverse.DEFAULT_DIVERSE_PER_SEED if is_diverse
                                        else DEFAULT_PER_STREET)
    seeds = parse_seeds(text)
    started = time.perf_counter()
    train: list[Any] = []
    described = []
    w, h = options.synthetic_size
    if options.world == 'mixed':
        streets = parse_seeds(DEFAULT_SEEDS)
        train.extend(synthetic_samples(streets, DEFAULT_PER_STREET, w, h,
                                       shuffle_seed=shuffle_seed))
        described.append(f'{len(train)} frames of {len(streets)} synthetic streets '
                         f'(seeds {DEFAULT_SEEDS}, {w}x{h})')
    if seeds and is_diverse:
        before = len(train)
        train.extend(diverse.diverse_samples(seeds, per_street, w, h,
                                             shuffle_seed=shuffle_seed))
        described.append(f'{len(train) - before} frames of {len(seeds)} worlds of the diverse '
                         f'synthetic world (seeds {text}, {w}x{h})')
    elif seeds:
        train.extend(synthetic_samples(seeds, per_street, w, h,
                                       shuffle_seed=shuffle_seed))
        described.append(f'{len(train)} frames of {len(seeds)} synthetic streets '
                         f'(seeds {text}, {w}x{h})')
    topics = options.topics
    for bag in options.bags:
        issues: list[str] = []
        got = list(bag_samples(bag, topics, options.relative_uncertainty, issues=issues))
        for issue in issues[:10]:
            warn(f'{bag}: {issue}')
        if not got:
            raise DepthNodeError(f'{bag}: no image on {topics.image} has a label on '
                                 f'{topics.depth}' + (f' and {topics.uncertainty}'
                                                      if topics.uncertainty else ''))
        train.extend(got)
        described.append(f'{len(got)} labelled images of {Path(bag).name} ({topics.depth}'
                         + (f', weighted by {topics.uncertainty}' if topics.uncertainty else '')
                         + ')')
    for folder in options.shards:
        got = list(shard_samples(folder, options.relative_uncertainty))
        if not got:
            raise DepthNodeError(f'{folder}: the shards hold no labelled keyframe')
        train.extend(got)
        described.append(f'{len(got)} pseudo-labelled keyframes of {Path(folder).name} '
                         '(shards)')
    val: list[Any] = []
    val_seeds = parse_seeds(options.val_seeds) if options.val_seeds else []
    if val_seeds and seeds:
        val = list(synthetic_samples(val_seeds, options.val_per_street, w, h,
                                     shuffle_seed=shuffle_seed + 1))
    return TrainingData(train, val, '; '.join(described) or 'no data',
                        time.perf_counter() - started)


def model_card(trainer: Trainer, data: str) -> str:
    """The student's README.md: what it is, what it saw, how it was trained."""
    c = trainer.config
    n = sum(p.numel() for p in trainer.model.parameters())
    return (
        '# depth_node synthetic student\n\n'
        'A Depth Anything V2-architecture relative depth model (DINOv2 backbone + DPT head, '
        f'{n / 1e6:.2f} M parameters, transformers format) trained by `depth_node`\'s `train` '
        f'from {"random initialisation" if not c.init else c.init} on {data}.\n\n'
        '**It has only ever seen synthetic scenes.** It exists so that the demo and the '
        'tests run a real network without downloads; on real images use real Depth Anything V2 '
        'weights (`estimator.model_path`).\n\n'
        f'- output: affine-invariant disparity (relative), input lower bound {c.input_size} px\n'
        f'- loss: scale-and-shift-invariant + {c.loss.grad_weight} x gradient matching, top '
        f'{c.loss.trim:.0%} largest-loss pixels of each image ignored\n'
        f'- {trainer.step} steps of batch {c.batch_size}, AdamW lr {c.lr}, seed {c.seed}, '
        f'crop {c.crop_size[1]}x{c.crop_size[0]}\n')


def run_training(config: TrainConfig, out: str, data: TrainingData, resume: bool = False,
                 progress: bool = True, stop_after: Optional[int] = None) -> dict[str, Any]:
    """Train, write ``out/student`` and ``out/summary.json``; the summary.

    Raises :class:`DepthNodeError` as the trainer does (an existing run without ``resume``,
    no samples).
    """
    import torch

    trainer = Trainer(config, out, data.train, data.val, resume=resume)
    result = trainer.run(progress=progress, card=lambda t: model_card(t, data.description),
                         stop_after=stop_after)
    summary = {
        'student': str(result.student), 'data': data.description,
        'train_samples': len(data.train), 'val_samples': len(data.val),
        'steps_this_run': result.steps, 'step': result.final_step,
        'seconds': round(result.seconds, 1), 'data_seconds': round(data.seconds, 1),
        's_per_step': round(result.seconds / max(1, result.steps), 3),
        'threads': torch.get_num_threads(), 'peak_memory_mb': round(peak_memory_mb(), 1),
        'train_loss_last50': round(result.train_loss, 5),
        'val_loss': None if result.val_loss is None else round(result.val_loss, 5),
        'config': config.to_dict(),
    }
    (Path(out) / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n',
                                            encoding='utf-8')
    return summary
