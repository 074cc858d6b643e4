"""The student training loop: seeded, resumable, safetensors checkpoints, loss curves.

Every step draws its batch and its augmentation from ``numpy.random.default_rng([seed, step])``,
so a run is a function of its configuration and data: resuming from a checkpoint continues
exactly where the interrupted run would have gone (the tests check the weights agree).

Output folder ``out``::

    checkpoint/            latest state: the model as a Hugging Face folder (config.json,
                           model.safetensors, preprocessor_config.json), optimizer.safetensors
                           (AdamW moments) and trainer_state.json (step, history, config)
    student/               the final model (same format, plus README.md: how it was trained)
    history.csv            per-step loss terms, learning rate, seconds
    loss.png               training loss (raw and smoothed) and validation loss

The optimiser is AdamW with a linear warm-up and a cosine decay to 5 % of the peak rate;
gradients are clipped to a global norm. Depth Anything V2's students start from a pre-trained
DINOv2; with no weights to download, ``init`` names any Depth Anything folder or official
``.pth`` to start from (fine-tuning, e.g. on teacher pseudo-labels), and without it the student
starts from transformers' random initialisation.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import resource
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import DepthAnythingForDepthEstimation

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.estimators.depth_anything import (load_model, network_input_size,
                                                  use_official_pos_embed_interpolation)
from depth_node.training.data import make_batch, Sample
from depth_node.training.losses import LossConfig, student_loss
from depth_node.training.student import build_student, save_student, student_config

__all__ = ['TrainConfig', 'TrainResult', 'Trainer', 'peak_memory_mb']

_LOG = logging.getLogger(__name__)
_STATE = 'trainer_state.json'
_OPTIM = 'optimizer.safetensors'


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class TrainConfig:
    """What a training run does; saved with every checkpoint."""

    steps: int = 3000
    batch_size: int = 4
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 100
    grad_clip: float = 1.0
    input_size: int = 196  # network input lower bound [px]; saved in preprocessor_config.json
    crop: Optional[tuple[int, int]] = None  # (h, w) training crop; None: a 4:3 camera's input
    max_scale: float = 1.3  # random up-scaling above the lower bound before cropping
    seed: int = 0
    preset: str = 'tiny'  # student size (training.student.PRESETS) when not starting from init
    grid: int = 19  # position-embedding grid of a new student, patches per side
    init: str = ''  # Depth Anything folder or .pth to start from ('' = random initialisation)
    checkpoint_every: int = 250
    val_every: int = 250
    loss: LossConfig = field(default_factory=LossConfig)

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        positive = {'steps': self.steps, 'batch_size': self.batch_size,
                    'checkpoint_every': self.checkpoint_every, 'val_every': self.val_every,
                    'grid': self.grid}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(name, 'must be an integer >= 1', value)
        if not self.lr > 0:
            raise ConfigError('lr', 'must be > 0', self.lr)
        if not self.weight_decay >= 0:
            raise ConfigError('weight_decay', 'must be >= 0', self.weight_decay)
        if self.warmup < 0:
            raise ConfigError('warmup', 'must be >= 0', self.warmup)
        if not self.grad_clip > 0:
            raise ConfigError('grad_clip', 'must be > 0', self.grad_clip)
        if self.input_size < 14:
            raise ConfigError('input_size', 'must be >= 14 pixels', self.input_size)
        if not self.max_scale >= 1:
            raise ConfigError('max_scale', 'must be >= 1', self.max_scale)
        h, w = self.crop_size
        if h % 14 or w % 14 or h < 14 or w < 14:
            raise ConfigError('crop', 'both sides must be positive multiples of 14 pixels',
                              self.crop)
        try:
            self.loss.validate()
        except ValueError as exc:
            raise ConfigError('loss', str(exc), asdict(self.loss)) from None

    @property
    def crop_size(self) -> tuple[int, int]:
        """Training crop (h, w): ``crop``, or the network input of a 640x480 camera."""
        if self.crop is not None:
            return int(self.crop[0]), int(self.crop[1])
        return network_input_size(480, 640, self.input_size)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d['crop'] = list(self.crop_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> 'TrainConfig':
        d = dict(d)
        d['loss'] = LossConfig(**d.get('loss', {}))
        d['crop'] = tuple(d['crop']) if d.get('crop') else None
        return cls(**d)


@dataclass
class TrainResult:
    """What a run produced and what it cost."""

    out: Path
    student: Path  # final model folder
    steps: int  # steps taken in this process
    final_step: int
    seconds: float  # wall time of this process's steps
    peak_memory_mb: float
    train_loss: float  # mean of the last 50 steps
    val_loss: Optional[float]
    history: list[dict[str, float]]


def _lr_at(config: TrainConfig, step: int) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


class Trainer:
    """Trains a student on labelled samples.

    Parameters
    ----------
    config : TrainConfig
        The run.
    out : str or Path
        Output folder (see the module docstring).
    train, val : sequence of Sample
        Training samples (drawn with replacement, seeded per step) and validation samples
        (scored without augmentation every ``val_every`` steps; may be empty).
    resume : bool
        Continue from ``out/checkpoint`` (which must then exist and match ``config``); without
        it an existing checkpoint is an error, so a run is never silently overwritten.
    """

    def __init__(self, config: TrainConfig, out: str | os.PathLike, train: Sequence[Sample],
                 val: Sequence[Sample] = (), resume: bool = False) -> None:
        config.validate()
        if not train:
            raise DepthNodeError('no training samples (the data sources gave no labelled '
                                 'image)')
        self.config = config
        self.out = Path(out)
        self.train = list(train)
        self.val = list(val)
        self.history: list[dict[str, float]] = []
        self.step = 0
        ckpt = self.out / 'checkpoint'
        if resume:
            if not (ckpt / _STATE).is_file():
                raise ConfigError('resume', f'there is no checkpoint in {ckpt}', str(ckpt))
            self._load(ckpt)
        else:
            if (ckpt / _STATE).exists():
                raise ConfigError('out', f'{self.out} already holds a run; resume it or choose '
                                  'another folder', str(self.out))
            self.model = self._new_model()
            self.optimizer = self._optimizer()

    # ----- model and optimiser
    def _new_model(self) -> DepthAnythingForDepthEstimation:
        c = self.config
        if c.init:
            model = load_model(c.init)
            if model.config.depth_estimation_type != 'relative':
                raise ConfigError('init', 'must be a relative (disparity) Depth Anything model',
                                  c.init)
        else:
            model = build_student(student_config(c.preset, c.grid), c.seed)
        use_official_pos_embed_interpolation(model, True)
        return model.float().train()

    def _optimizer(self) -> torch.optim.AdamW:
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (no_decay if p.ndim < 2 or 'embeddings' in name else decay).append(p)
        return torch.optim.AdamW([{'params': decay, 'weight_decay': self.config.weight_decay},
                                  {'params': no_decay, 'weight_decay': 0.0}],
                                 lr=self.config.lr, betas=(0.9, 0.999))

    # ----- checkpoints
    def save_checkpoint(self) -> Path:
        """Write ``out/checkpoint`` (model, optimiser, state) atomically enough for resume."""
        ckpt = self.out / 'checkpoint'
        tmp = self.out / 'checkpoint.tmp'
        if tmp.exists():
            shutil.rmtree(tmp)
        save_student(self.model, tmp, self.config.input_size)
        tensors: dict[str, torch.Tensor] = {}
        for i, state in self.optimizer.state_dict()['state'].items():
            for key, value in state.items():
                tensors[f'{i}.{key}'] = torch.as_tensor(value).detach().clone().contiguous()
        save_file(tensors, str(tmp / _OPTIM))
        state = {'step': self.step, 'config': self.config.to_dict(), 'history': self.history,
                 'samples': len(self.train)}
        (tmp / _STATE).write_text(json.dumps(state) + '\n', encoding='utf-8')
        if ckpt.exists():
            shutil.rmtree(ckpt)
        tmp.rename(ckpt)
        return ckpt

    def _load(self, ckpt: Path) -> None:
        state = json.loads((ckpt / _STATE).read_text(encoding='utf-8'))
        saved = TrainConfig.from_dict(state['config'])
        mine = self.config.to_dict()
        theirs = saved.to_dict()
        differ = [k for k in mine if k not in ('steps', 'checkpoint_every', 'val_every')
                  and mine[k] != theirs.get(k)]
        if differ:
            raise ConfigError(differ[0], 'differs from the checkpoint being resumed '
                              f'({theirs.get(differ[0])!r})', mine[differ[0]])
        self.model = load_model(ckpt)
        use_official_pos_embed_interpolation(self.model, True)
        self.model.float().train()
        self.optimizer = self._optimizer()
        saved_opt = self.optimizer.state_dict()
        tensors = load_file(str(ckpt / _OPTIM))
        for key, value in tensors.items():
            index, name = key.split('.', 1)
            saved_opt['state'].setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict(saved_opt)
        self.step = int(state['step'])
        self.history = list(state['history'])

    # ----- training
    def _lr(self, step: int) -> float:
        return _lr_at(self.config, step)

    def train_step(self) -> dict[str, float]:
        """One optimisation step; returns its history row."""
        c = self.config
        start = time.perf_counter()
        rng = np.random.default_rng([c.seed, self.step])
        picks = rng.integers(0, len(self.train), c.batch_size)
        batch = make_batch([self.train[i] for i in picks], c.crop_size, rng, c.max_scale)
        lr = self._lr(self.step)
        for group in self.optimizer.param_groups:
            group['lr'] = lr
        pred = self.model(pixel_values=torch.from_numpy(batch.pixels)).predicted_depth
        terms = student_loss(pred, torch.from_numpy(batch.target),
                             torch.from_numpy(batch.weight), c.loss)
        self.optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.optimizer.step()
        self.step += 1
        row = {'step': self.step, 'loss': terms.total.item(), 'ssi': float(terms.ssi),
               'grad': float(terms.grad), 'grad_norm': float(norm), 'lr': lr,
               'seconds': time.perf_counter() - start}
        self.history.append(row)
        return row

    @torch.no_grad()
    def validate(self) -> Optional[float]:
        """Mean student loss over the validation samples (no augmentation), or None."""
        if not self.val:
            return None
        self.model.eval()
        losses = []
        for i in range(0, len(self.val), self.config.batch_size):
            batch = make_batch(self.val[i:i + self.config.batch_size], self.config.crop_size)
            pred = self.model(pixel_values=torch.from_numpy(batch.pixels)).predicted_depth
            terms = student_loss(pred, torch.from_numpy(batch.target),
                                 torch.from_numpy(batch.weight), self.config.loss)
            losses.append(float(terms.total) * len(batch.pixels))
        self.model.train()
        return sum(losses) / len(self.val)

    def run(self, progress: bool = True, card: Optional[Callable[['Trainer'], str]] = None,
            stop_after: Optional[int] = None) -> TrainResult:
        """Train up to ``config.steps`` (or ``stop_after`` more steps), then save the student.

        ``card(trainer)`` gives the student's README.md. Ctrl-C saves a checkpoint first.
        """
        c = self.config
        end = c.steps if stop_after is None else min(c.steps, self.step + stop_after)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=c.steps, initial=self.step, unit='step', dynamic_ncols=True)
        first = self.step
        start = time.perf_counter()
        val_loss = None
        try:
            while self.step < end:
                row = self.train_step()
                if self.step % c.val_every == 0 or self.step == c.steps:
                    val_loss = self.validate()
                    if val_loss is not None:
                        row['val_loss'] = val_loss
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f'{row["loss"]:.4f}', lr=f'{row["lr"]:.1e}')
                if self.step % c.checkpoint_every == 0:
                    self.save_checkpoint()
        except KeyboardInterrupt:
            self.save_checkpoint()
            raise
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - start
        self.save_checkpoint()
        self.write_history()
        student = save_student(self.model.eval(), self.out / 'student', c.input_size,
                               card(self) if card is not None else None)
        self.model.train()
        recent = [r['loss'] for r in self.history[-50:]]
        vals = [r['val_loss'] for r in self.history if 'val_loss' in r]
        return TrainResult(self.out, student, self.step - first, self.step, seconds,
                           peak_memory_mb(), float(np.mean(recent)) if recent else float('nan'),
                           vals[-1] if vals else val_loss, self.history)

    def write_history(self) -> None:
        """``history.csv`` and ``loss.png`` of the whole run so far."""
        self.out.mkdir(parents=True, exist_ok=True)
        keys = ['step', 'loss', 'ssi', 'grad', 'grad_norm', 'lr', 'seconds', 'val_loss']
        with open(self.out / 'history.csv', 'w', newline='', encoding='utf-8') as f:
            writer = csv.DictWriter(f, keys, extrasaction='ignore')
            writer.writeheader()
            writer.writerows(self.history)
        plot_losses(self.history, self.out / 'loss.png')


def plot_losses(history: Sequence[dict[str, float]], path: str | os.PathLike) -> None:
    """Loss curves as a PNG: per-step total loss, its moving average, SSI, validation."""
    from depth_node.offline.report import figure

    steps = np.array([r['step'] for r in history])
    fig = figure(8, 4.5)
    ax = fig.add_subplot()
    if len(steps):
        loss = np.array([r['loss'] for r in history])
        ssi = np.array([r['ssi'] for r in history])
        ax.plot(steps, loss, color='0.8', lw=0.6, label='loss (per step)')
        k = max(1, min(50, len(loss) // 10))
        smooth = np.convolve(loss, np.ones(k) / k, mode='valid')
        ax.plot(steps[k - 1:], smooth, color='C0', lw=1.5, label=f'loss ({k}-step mean)')
        ax.plot(steps[k - 1:], np.convolve(ssi, np.ones(k) / k, mode='valid'), color='C2',
                lw=1.0, label='SSI term')
        val = [(r['step'], r['val_loss']) for r in history if 'val_loss' in r]
        if val:
            ax.plot(*zip(*val), 'o-', color='C3', label='validation loss')
        ax.set_yscale('log')
    ax.set_xlabel('step')
    ax.set_ylabel('loss')
    ax.set_title('student training: SSI + gradient matching (trimmed)')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend()
    fig.savefig(path)
