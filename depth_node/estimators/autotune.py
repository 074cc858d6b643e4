"""Torch threads and precision chosen by measurement at start-up (``estimator.threads: 0``,
``estimator.precision: auto``), cached per machine, model and input size.

Neither default can be fixed in advance: torch's default thread count (one per core) was 4x
slower than one thread for the shipped student on a busy 2-core machine, and bfloat16 was 9x
slower than float32 on this project's CPU but 2.2x faster on another. So the torch Depth
Anything estimator, when asked to choose, times a few predictions of a probe image for each
candidate (threads 1, 2, 4, ... up to the cores; precisions fp32 and bf16 on a CPU, fp32,
fp16 and bf16 on CUDA) and keeps the fastest whose output agrees with fp32's (median
relative difference under :data:`PARITY`). The choice and every figure are logged by the
caller and written to a cache (``$XDG_CACHE_HOME/depth_node/autotune.json``, default
``~/.cache``), so that later starts on the same machine (the node, ``evaluate``) use the same
configuration without measuring again; a set value of either parameter pins it.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from depth_node.estimators.base import Estimator, EstimatorConfig

#: Median relative difference to fp32 up to which a lower precision is accepted.
PARITY = 0.01
#: Timed predictions per candidate (after one warm-up).
REPEATS = 3
#: Seconds the measurement may take in all; candidates beyond it are skipped (logged).
BUDGET_S = 30.0


@dataclass(frozen=True)
class Choice:
    """What the measurement chose and why."""

    threads: int
    precision: str
    figures_ms: dict[str, float] = field(default_factory=dict)  # 'fp32/t1' -> median ms
    rejected: dict[str, str] = field(default_factory=dict)  # candidate -> why
    cached: bool = False

    def describe(self) -> str:
        figures = ', '.join(f'{k} {v:.1f} ms' for k, v in sorted(self.figures_ms.items()))
        source = 'cached measurement' if self.cached else 'measured'
        text = f'{self.precision}, {self.threads} thread(s) ({source}: {figures})'
        if self.rejected:
            text += '; rejected: ' + ', '.join(f'{k} ({v})' for k, v in self.rejected.items())
        return text


def cache_path() -> Path:
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return Path(base) / 'depth_node' / 'autotune.json'


def cache_key(config: EstimatorConfig) -> str:
    """Machine, software, model and input size: what the measurement depends on."""
    import torch

    path = Path(config.model_path)
    try:
        stamp = max(p.stat().st_mtime for p in ([path] + list(path.glob('*'))
                                                if path.is_dir() else [path]))
    except (OSError, ValueError):
        stamp = 0.0
    return '|'.join([platform.node(), platform.processor() or platform.machine(),
                     str(os.cpu_count()), torch.__version__, config.device,
                     str(path.resolve()), f'{stamp:.0f}', str(config.input_size)])


def _load_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _store(key: str, choice: Choice) -> None:
    data = _load_cache()
    data[key] = {'threads': choice.threads, 'precision': choice.precision,
                 'figures_ms': choice.figures_ms, 'rejected': choice.rejected}
    try:
        p = cache_path()
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f'.{os.getpid()}.tmp')
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, p)
    except OSError:
        pass  # a read-only home: measure again next time


def probe_image(width: int = 640, height: int = 480) -> np.ndarray:
    """A deterministic street-like probe [H, W, 3] uint8 (smooth structure plus texture)."""
    import cv2

    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    img = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    img += rng.integers(-12, 13, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def _thread_candidates() -> list[int]:
    n = os.cpu_count() or 1
    out, t = [], 1
    while t < n:
        out.append(t)
        t *= 2
    return out + [n]


def _time(est: Estimator, image: np.ndarray) -> tuple[float, np.ndarray]:
    out = est.predict(image)  # warm-up
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        out = est.predict(image)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), np.asarray(out, np.float64)


def choose(config: EstimatorConfig, build: Callable[[EstimatorConfig], Estimator],
           use_cache: bool = True) -> tuple[Estimator, Choice]:
    """The estimator of ``config`` with threads / precision chosen where left open.

    ``config.threads`` 0 and ``config.precision`` 'auto' are open; a set value is kept.
    ``build`` makes the estimator for a concrete configuration.
    """
    import torch

    key = cache_key(config)
    open_threads = config.threads == 0 and config.device == 'cpu'
    open_precision = config.precision == 'auto'
    if use_cache:
        hit = _load_cache().get(key)
        if isinstance(hit, dict) and 'threads' in hit and 'precision' in hit:
            choice = Choice(int(hit['threads']) if open_threads else config.threads,
                            str(hit['precision']) if open_precision else config.precision,
                            dict(hit.get('figures_ms', {})), dict(hit.get('rejected', {})),
                            cached=True)
            return _apply(config, build, choice), choice
    precisions = ([config.precision] if not open_precision else
                  ['fp32', 'bf16'] if config.device == 'cpu' else ['fp32', 'fp16', 'bf16'])
    threads = _thread_candidates() if open_threads else [config.threads or
                                                         torch.get_num_threads()]
    image = probe_image()
    figures: dict[str, float] = {}
    rejected: dict[str, str] = {}
    reference: Optional[np.ndarray] = None
    best: Optional[tuple[float, int, str]] = None
    kept: Optional[Estimator] = None
    start = time.perf_counter()
    for precision in precisions:
        est = build(replace(config, precision=precision))
        won = False
        for t in threads:
            name = f'{precision}/t{t}'
            if time.perf_counter() - start > BUDGET_S and best is not None:
                rejected[name] = f'not measured: over the {BUDGET_S:g} s budget'
                continue
            torch.set_num_threads(t)
            ms, out = _time(est, image)
            figures[name] = ms
            if reference is None:
                reference = out
            elif precision != precisions[0]:
                diff = float(np.median(np.abs(out - reference))
                             / max(float(np.median(np.abs(reference))), 1e-12))
                if not diff <= PARITY:
                    rejected[name] = f'differs from {precisions[0]} by {diff:.1%}'
                    continue
            if best is None or ms < best[0]:
                best, won = (ms, t, precision), True
        if won:
            kept = est  # the fastest so far: keep its model loaded
        del est
    assert best is not None and kept is not None  # the first candidate is always accepted
    choice = Choice(best[1], best[2], figures, rejected)
    _store(key, choice)
    if config.device == 'cpu':
        torch.set_num_threads(choice.threads)
    return kept, choice


def _apply(config: EstimatorConfig, build: Callable[[EstimatorConfig], Estimator],
           choice: Choice) -> Estimator:
    import torch

    if config.device == 'cpu':
        torch.set_num_threads(choice.threads)
    return build(replace(config, precision=choice.precision, threads=choice.threads))


__all__ = ['BUDGET_S', 'cache_path', 'Choice', 'choose', 'PARITY', 'probe_image']
