"""Backend, precision and threads of Depth Anything chosen by measurement at start-up, cached.

What is left open (``estimator.threads: 0``, ``estimator.precision: auto``, and for
``estimator.type: depth_anything_auto`` on a machine without TensorRT the backend, torch or
ONNX Runtime when both files are there) is chosen by timing a probe image: no default can be
fixed in advance. torch's default thread count (one per core) was 4x slower than one thread
for the shipped student on a busy 2-core machine; bfloat16 was 9x slower than float32 on this
project's CPU but 2.2x faster on another; ONNX Runtime opset 18 was slower than torch fp32
on one CPU and opset 23 faster.

Candidates are ``backend/precision/t<threads>``: torch in fp32 and bf16 (fp16 too on CUDA),
ONNX Runtime in fp32 (its CPU and CUDA providers run float32), each with 1, 2, 4, ... up to the
cores threads on a CPU (torch's threads of the process; ONNX Runtime's intra-op threads, with
torch's set alike for the pre-processing). The measurement is made to stand the noise of a
shared machine:

1. every candidate predicts once (warm-up; its output is compared with the first candidate's,
   torch fp32, and a candidate whose median relative difference exceeds :data:`PARITY` is
   rejected);
2. :data:`REPEATS` rounds time each accepted candidate once, in an order rotated every round,
   so a burst of load hits all of them alike; a candidate more than :data:`PRUNE` x slower
   than the best is not timed again;
3. the two fastest by median and the fastest torch fp32 (the reference every choice must
   beat) are timed head to head for :data:`FINAL_REPEATS` more interleaved rounds, and the
   fastest median of those rounds wins: the choice is never slower than torch fp32 with its
   best thread count, as measured side by side.

The whole takes at most :data:`BUDGET_S` (then the rounds stop, logged). The choice and every
figure (median ms per candidate) are logged by the caller and written to a cache
(``$XDG_CACHE_HOME/depth_node/autotune.json``, default ``~/.cache``) under a key of machine,
software, model files and input size, so later starts on the same machine (the node,
``evaluate``) use it without measuring again. Cache entries carry ``version``
(:data:`CACHE_VERSION`); entries of an older format are measured again once. A set value of
any of the three parameters pins it.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from depth_node.estimators.base import Estimator, EstimatorConfig

_LOG = logging.getLogger(__name__)

#: Median relative difference to the reference (torch fp32) up to which a candidate is accepted.
PARITY = 0.01
#: Interleaved timing rounds over every candidate (after one warm-up each).
REPEATS = 5
#: Head-to-head rounds of the two fastest and the torch fp32 reference.
FINAL_REPEATS = 5
#: A candidate slower than this many times the best median is not timed again.
PRUNE = 3.0
#: Seconds the measurement may take in all; rounds beyond it are skipped (logged).
BUDGET_S = 30.0
#: Format of the cache entries; entries without it (or older) are measured again.
CACHE_VERSION = 2

Build = Callable[[EstimatorConfig], Estimator]


@dataclass(frozen=True)
class Candidate:
    """One configuration to time: a backend, a precision, a thread count."""

    backend: str  # 'torch' or 'onnxruntime'
    precision: str
    threads: int  # 0 = left as it is (a GPU, or a pinned torch default)

    @property
    def name(self) -> str:
        return f'{self.backend}/{self.precision}/t{self.threads}'


@dataclass(frozen=True)
class Choice:
    """What the measurement chose and why."""

    threads: int
    precision: str
    figures_ms: dict[str, float] = field(default_factory=dict)  # candidate name -> median ms
    rejected: dict[str, str] = field(default_factory=dict)  # candidate name -> why
    cached: bool = False
    backend: str = 'torch'
    final_ms: dict[str, float] = field(default_factory=dict)  # head to head -> median ms

    @property
    def name(self) -> str:
        return Candidate(self.backend, self.precision, self.threads).name

    def describe(self) -> str:
        figures = ', '.join(f'{k} {v:.1f} ms' for k, v in sorted(self.figures_ms.items()))
        source = 'cached measurement' if self.cached else 'measured'
        text = (f'{self.backend} {self.precision}, {self.threads} thread(s) ({source}: '
                f'{figures})')
        if self.final_ms:
            text += '; head to head: ' + ', '.join(
                f'{k} {v:.1f} ms' for k, v in sorted(self.final_ms.items(), key=lambda kv: kv[1]))
        if self.rejected:
            text += '; rejected: ' + ', '.join(f'{k} ({v})' for k, v in self.rejected.items())
        return text


def cache_path() -> Path:
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return Path(base) / 'depth_node' / 'autotune.json'


def _stamp(path: Path) -> float:
    files = [path] + list(path.glob('*')) if path.is_dir() else [path]
    try:
        return max(p.stat().st_mtime for p in files)
    except (OSError, ValueError):
        return 0.0


def cache_key(config: EstimatorConfig, onnx: str = '') -> str:
    """Machine, software, model files and input size: what the measurement depends on."""
    import torch

    path = Path(config.model_path)
    parts = [platform.node(), platform.processor() or platform.machine(),
             str(os.cpu_count()), torch.__version__, config.device,
             str(path.resolve()), f'{_stamp(path):.0f}', str(config.input_size)]
    if config.max_threads:
        parts.append(f'max_threads {config.max_threads}')
    if onnx:
        import onnxruntime

        parts += ['onnxruntime ' + onnxruntime.__version__, str(Path(onnx).resolve()),
                  f'{_stamp(Path(onnx)):.0f}']
    return '|'.join(parts)


def _load_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _store(key: str, choice: Choice) -> None:
    data = _load_cache()
    data[key] = {'version': CACHE_VERSION, 'backend': choice.backend,
                 'threads': choice.threads, 'precision': choice.precision,
                 'figures_ms': choice.figures_ms, 'final_ms': choice.final_ms,
                 'rejected': choice.rejected}
    try:
        p = cache_path()
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f'.{os.getpid()}.tmp')
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, p)
    except OSError:
        pass  # a read-only home: measure again next time


def _cached(key: str) -> Optional[Choice]:
    hit = _load_cache().get(key)
    if not isinstance(hit, dict) or hit.get('version') != CACHE_VERSION:
        return None
    try:
        return Choice(int(hit['threads']), str(hit['precision']), dict(hit['figures_ms']),
                      dict(hit.get('rejected', {})), cached=True, backend=str(hit['backend']),
                      final_ms=dict(hit.get('final_ms', {})))
    except (KeyError, TypeError, ValueError):
        return None


def probe_image(width: int = 640, height: int = 480) -> np.ndarray:
    """A deterministic street-like probe [H, W, 3] uint8 (smooth structure plus texture)."""
    import cv2

    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    img = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    img += rng.integers(-12, 13, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def thread_candidates(most: int = 0) -> list[int]:
    """1, 2, 4, ... below ``most`` (0: the number of cores), and ``most``."""
    n = os.cpu_count() or 1
    n = min(n, most) if most > 0 else n
    out, t = [], 1
    while t < n:
        out.append(t)
        t *= 2
    return out + [n]


def candidates(config: EstimatorConfig, torch_open: bool, onnx: bool,
               onnx_threads: Optional[int] = None) -> list[Candidate]:
    """What to time for ``config``: torch fp32 first (the reference), then the rest.

    ``torch_open`` adds torch; ``onnx`` adds ONNX Runtime, with ``onnx_threads`` intra-op
    threads when given (0 = ONNX Runtime's default), else ``config.threads`` when set, else
    every :func:`thread_candidates` count on a CPU.
    """
    cpu = config.device == 'cpu'
    if config.precision != 'auto':
        precisions = [config.precision]
    else:
        precisions = ['fp32', 'bf16'] if cpu else ['fp32', 'fp16', 'bf16']
    torch_threads = (thread_candidates(config.max_threads) if config.threads == 0 and cpu else
                     [config.threads])
    found = []
    if torch_open:
        found += [Candidate('torch', p, t) for p in precisions for t in torch_threads]
    if onnx and (config.precision in ('auto', 'fp32')):
        ort_threads = ([onnx_threads] if onnx_threads is not None else
                       [config.threads] if config.threads else
                       thread_candidates(config.max_threads) if cpu else [0])
        found += [Candidate('onnxruntime', 'fp32', t) for t in ort_threads]
    return found


def leave_a_core(config: EstimatorConfig) -> EstimatorConfig:
    """``config`` with measured thread counts capped at the cores but one (the node's).

    While the model runs, the node's executor, the DDS threads and the publishers need a core;
    an OpenMP team that loses one of its cores to them waits for it at every barrier. A pinned
    ``threads`` or ``max_threads`` is kept.
    """
    cores = os.cpu_count() or 1
    if config.threads or config.max_threads or cores < 2:
        return config
    return replace(config, max_threads=cores - 1)


def _set_threads(threads: int) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def _relative_difference(out: np.ndarray, reference: np.ndarray) -> float:
    return float(np.nanmedian(np.abs(out - reference))
                 / max(float(np.nanmedian(np.abs(reference))), 1e-12))


class _Bench:
    """The candidates' estimators (built once per model), their timings and the clock."""

    def __init__(self, config: EstimatorConfig, build: Optional[Build],
                 build_onnx: Optional[Build], image: np.ndarray) -> None:
        self.config, self.build, self.build_onnx, self.image = config, build, build_onnx, image
        self.models: dict[tuple[str, str, int], Estimator] = {}
        self.samples: dict[str, list[float]] = {}
        self.start = time.perf_counter()

    def over_budget(self) -> bool:
        return time.perf_counter() - self.start > BUDGET_S

    def model(self, c: Candidate) -> Estimator:
        # torch's threads are the process's (one model per precision serves every count);
        # ONNX Runtime's are the session's (one session per count).
        key = (c.backend, c.precision, c.threads if c.backend == 'onnxruntime' else 0)
        if key not in self.models:
            if c.backend == 'torch':
                assert self.build is not None  # torch candidates only when it is given
                self.models[key] = self.build(replace(self.config, precision=c.precision))
            else:
                assert self.build_onnx is not None
                self.models[key] = self.build_onnx(replace(self.config, precision='fp32',
                                                           threads=c.threads))
        return self.models[key]

    def predict(self, c: Candidate) -> np.ndarray:
        _set_threads(c.threads)
        return np.asarray(self.model(c).predict(self.image), np.float64)

    def time(self, c: Candidate, into: Optional[list[float]] = None) -> float:
        _set_threads(c.threads)
        est = self.model(c)
        t0 = time.perf_counter()
        est.predict(self.image)
        ms = (time.perf_counter() - t0) * 1e3
        (self.samples.setdefault(c.name, []) if into is None else into).append(ms)
        return ms

    def median(self, c: Candidate) -> float:
        return float(np.median(self.samples[c.name]))


def _is_reference(c: Candidate) -> bool:
    return c.backend == 'torch' and c.precision == 'fp32'


def _rounds(bench: _Bench, cands: list[Candidate], repeats: int, prune: bool,
            samples: Optional[dict[str, list[float]]] = None) -> tuple[list[Candidate], bool]:
    """Interleaved, order-rotated timing rounds: the candidates still timed at the end (not
    pruned), and False when the budget cut the rounds short.

    The fastest torch fp32 is never pruned: every choice is compared with it at the end.
    """
    live = list(cands)
    for r in range(repeats):
        if r and bench.over_budget():
            return live, False
        k = r % len(live)
        for c in live[k:] + live[:k]:
            bench.time(c, None if samples is None else samples.setdefault(c.name, []))
        if prune and len(live) > 1:
            best = min(bench.median(c) for c in live)
            refs = sorted((c for c in live if _is_reference(c)), key=bench.median)
            live = [c for c in live if min(bench.samples[c.name]) <= PRUNE * best
                    or c in refs[:1]]
    return live, True


def measure(config: EstimatorConfig, cands: list[Candidate], build: Optional[Build],
            build_onnx: Optional[Build] = None,
            image: Optional[np.ndarray] = None) -> tuple[Estimator, Choice]:
    """Time ``cands`` as the module docstring says; the winner's estimator and the choice."""
    bench = _Bench(config, build, build_onnx, probe_image() if image is None else image)
    rejected: dict[str, str] = {}
    reference: Optional[np.ndarray] = None
    accepted: list[Candidate] = []
    for c in cands:  # warm-up and parity
        if accepted and bench.over_budget():
            rejected[c.name] = f'not measured: over the {BUDGET_S:g} s budget'
            continue
        if reference is None:  # the reference must run: its errors are the caller's
            out = bench.predict(c)
        else:
            try:
                out = bench.predict(c)
            except Exception as exc:  # e.g. bf16 kernels this CPU lacks: not a candidate
                rejected[c.name] = f'failed: {type(exc).__name__}: {exc}'
                continue
        if reference is None:
            reference = out
        else:
            diff = _relative_difference(out, reference)
            if not diff <= PARITY:
                rejected[c.name] = f'differs from {cands[0].name} by {diff:.1%}'
                continue
        accepted.append(c)
    live, whole = _rounds(bench, accepted, REPEATS, prune=True)
    if not whole:
        _LOG.info('estimator autotune: rounds cut short by the %g s budget', BUDGET_S)
    figures = {c.name: bench.median(c) for c in accepted}
    by_speed = sorted(live, key=bench.median)
    baseline = [c for c in by_speed if _is_reference(c)]
    finalists = list(dict.fromkeys(by_speed[:2] + baseline[:1]))
    final: dict[str, list[float]] = {}
    winner = by_speed[0]
    if len(finalists) > 1:
        _rounds(bench, finalists, FINAL_REPEATS, prune=False, samples=final)
        winner = min(finalists, key=lambda c: float(np.median(final[c.name])))
    final_ms = {k: float(np.median(v)) for k, v in final.items()}
    choice = Choice(winner.threads, winner.precision, figures, rejected, backend=winner.backend,
                    final_ms=final_ms)
    est = bench.model(winner)
    bench.models.clear()  # the losers' models go
    _set_threads(winner.threads)
    return est, choice


def choose(config: EstimatorConfig, build: Optional[Build], use_cache: bool = True,
           onnx: str = '', build_onnx: Optional[Build] = None,
           onnx_threads: Optional[int] = None) -> tuple[Estimator, Choice]:
    """The estimator of ``config`` with what is left open chosen by measurement (or cache).

    ``config.threads`` 0 and ``config.precision`` 'auto' are open; a set value is kept.
    ``build`` makes the torch estimator for a concrete configuration (None: torch is not a
    candidate); ``build_onnx`` the ONNX Runtime one of file ``onnx`` ('' = not a candidate),
    its intra-op threads from the configuration's ``threads`` (``onnx_threads`` pins them).
    """
    key = cache_key(config, onnx if build_onnx is not None else '')
    if build is None:
        key += '|onnxruntime only'
    cands = candidates(config, build is not None, bool(onnx) and build_onnx is not None,
                       onnx_threads)
    hit = _cached(key) if use_cache else None
    if hit is not None:
        chosen = Candidate(hit.backend, hit.precision, hit.threads)
        if chosen in cands:
            builder = build if hit.backend == 'torch' else build_onnx
            if builder is not None:
                _set_threads(hit.threads)
                est = builder(replace(config, precision=hit.precision, threads=hit.threads))
                return est, hit
    est, choice = measure(config, cands, build, build_onnx)
    _store(key, choice)
    return est, choice


__all__ = ['BUDGET_S', 'cache_path', 'CACHE_VERSION', 'Candidate', 'candidates', 'Choice',
           'choose', 'FINAL_REPEATS', 'leave_a_core', 'measure', 'PARITY', 'probe_image',
           'PRUNE', 'REPEATS', 'thread_candidates']
