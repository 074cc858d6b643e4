"""Evaluate many bags on Ray and merge them into one report, with the numbers of one process.

:class:`FleetEvaluation` runs :class:`~depth_node.offline.evaluate.BagEvaluation` - the
single-bag evaluation, unchanged, with the node's own per-frame runner - once per bag on a
pool of Ray workers (:func:`~depth_node.offline.fleet.run_pool`), each worker building the
estimator once (:class:`BagWorker`). ``workers=None`` runs the same worker in this process,
one bag after the other, without Ray.

Equal numbers: a bag's result does not depend on where or with what else it ran (a fresh
runner per bag, as ``evaluate BAG`` makes; torch threads fixed per worker), and the merge
(:func:`~depth_node.offline.fleet_report.merge_results`) concatenates the bags' per-frame
records in the order the bags were given, so the overall metrics - the mean of the per-frame
metrics over all frames, as for one bag - are bitwise those of the same bags evaluated one
after another in one process. A worker lost mid-bag is restarted and the bag evaluated again
from its start.

Folder layout of ``out``::

    index.html, summary.json, frames.csv (+ a 'bag' column), *.png   all bags, merged
    bags.csv                                                          one row per bag
    bags/<name>-<hash>/                                               one bag: the report of
        index.html, summary.json, frames.csv, *.png                   ``evaluate BAG``, and
        result.json, sample.npz                                       its lossless result

Resumable: ``result.json`` holds a hash of the configuration (estimator, its model files,
node settings, evaluation options) and of the bag's files; a later run over the same ``out``
loads a bag whose hash matches instead of evaluating it again (``resume=False``: evaluate
all). A long bag can run as time chunks, one task each (``chunk_s``), merged back into the
bag's result (:mod:`depth_node.offline.chunks`: the context of each chunk is read across its
edges; equal to the whole run exactly with the temporal filter off). A bag that cannot be
read is reported by name (``summary.json`` ``fleet.failed``) and the others complete; it is
tried again by the next run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.estimators.base import EstimatorConfig
from depth_node.offline.bag_set import bag_key, path_identity
from depth_node.offline.chunks import (chunking_is_exact, default_warmup, image_log_times,
                                       merge_chunks, plan_chunks)
from depth_node.offline.eval_config import EvaluationOptions, NodeSettings
from depth_node.offline.fleet import progress_bar, RaySession, RaySettings, run_pool
from depth_node.offline.records import BagReadError
from depth_node.offline.fleet_report import merge_results
from depth_node.offline.result_files import (FORMAT, load_result, save_result, stored_extra,
                                             stored_hash)
from depth_node.offline.results import EvaluationResult

__all__ = ['BagOutcome', 'BagWorker', 'FleetEvaluation', 'FleetJob', 'FleetResult',
           'merge_results']

DONE, RESUMED, FAILED = 'done', 'resumed', 'failed'


def _plain(value: Any) -> Any:
    """JSON-able form of configuration values (numpy arrays, tuples, dataclasses)."""
    if hasattr(value, 'tolist'):
        return value.tolist()
    return repr(value)


@dataclass(frozen=True)
class FleetJob:
    """What every worker needs: the estimator to build and how to evaluate a bag."""

    estimator: EstimatorConfig
    settings: NodeSettings
    options: EvaluationOptions
    threads: int = 1  # torch CPU threads per worker (0: torch's default)

    def config_hash(self, bag: str | Path, extra: Optional[dict[str, Any]] = None) -> str:
        """sha256 of everything a bag's result depends on (see the module)."""
        options = dataclasses.replace(self.options, progress=False)
        data = {'extra': extra or {}, 'format': FORMAT,
                'estimator': dataclasses.asdict(self.estimator),
                'model': path_identity(self.estimator.model_path)
                if self.estimator.model_path else [],
                'settings': dataclasses.asdict(self.settings),
                'options': dataclasses.asdict(options), 'threads': self.threads,
                'bag': str(Path(bag).absolute()), 'files': path_identity(bag)}
        text = json.dumps(data, sort_keys=True, default=_plain)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class BagOutcome:
    """What became of one bag."""

    bag: str
    key: str  # its folder under out/bags
    status: str  # 'done', 'resumed' (loaded from an earlier run) or 'failed'
    result: Optional[EvaluationResult] = None
    error: str = ''  # why it failed
    worker: str = ''  # host:pid that evaluated it (several: of its chunks)
    seconds: float = 0.0
    cpu_s: float = 0.0  # CPU time of the worker's process on it
    first_stamp: Optional[float] = None  # s, the first frame read (a chunk's: its warm-up's)


class BagWorker:
    """One worker: builds the estimator once, then evaluates bag after bag (Ray actor)."""

    def __init__(self, job: FleetJob) -> None:
        self.job = job
        self.error = ''
        self.estimator: Any = None
        try:
            from depth_node.estimators import build_estimator
            self.estimator = build_estimator(job.estimator)
            if job.threads and 'torch' in sys.modules:  # a torch model (not imported else)
                sys.modules['torch'].set_num_threads(job.threads)
        except Exception as exc:  # kept: ready() reports it to the driver
            self.error = f'{type(exc).__name__}: {exc}'

    def ready(self) -> str:
        """'' when the estimator was built, else why not."""
        return self.error

    def run(self, task: str | tuple[str, Any]) -> BagOutcome:
        """Evaluate one bag, or one time chunk ``(bag, ReadWindow)`` of it; a bag that cannot
        be read is a failed outcome, not an error."""
        from depth_node.offline.evaluate import BagEvaluation
        from depth_node.offline.records import BagReadError
        import socket
        bag, window = (task, None) if isinstance(task, str) else task
        t0, c0 = time.perf_counter(), time.process_time()
        out = BagOutcome(bag, bag_key(Path(bag)), DONE,
                         worker=f'{socket.gethostname()}:{os.getpid()}')
        try:
            evaluation = BagEvaluation(bag, self.estimator, self.job.settings,
                                       self.job.options, window=window)
            out.result = evaluation.run()
            out.first_stamp = evaluation.first_stamp
            if out.result.frames == 0 and window is None:
                out.status, out.error = FAILED, f'{bag}: no camera frame could be processed'
        except (BagReadError, DepthNodeError) as exc:
            out.status, out.error = FAILED, str(exc)
        out.seconds = time.perf_counter() - t0
        out.cpu_s = time.process_time() - c0
        return out


@dataclass
class FleetResult:
    """All bags of a fleet run and the merged result (None when no bag was evaluated)."""

    outcomes: list[BagOutcome]
    merged: Optional[EvaluationResult]
    wall_s: float = 0.0
    workers: int = 0  # 0: in this process
    ready_s: float = 0.0  # s from the start until every worker had its model
    interrupted: bool = False
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def failed(self) -> list[BagOutcome]:
        return [o for o in self.outcomes if o.status == FAILED]

    @property
    def damaged(self) -> list[BagOutcome]:
        return [o for o in self.outcomes if o.result is not None and o.result.damaged]


class FleetEvaluation:
    """Evaluate ``bags`` with ``job`` into ``out`` (see the module).

    ``ray=None`` runs the bags in this process, without Ray. ``chunk_s`` > 0 splits bags
    longer than that into time chunks, one task each (:mod:`depth_node.offline.chunks`),
    with ``warmup_s`` of warm-up (None: ``fit.hold_time`` + 1 s).
    """

    def __init__(self, bags: Sequence[str | Path], job: FleetJob, out: str | Path,
                 ray: Optional[RaySettings] = RaySettings(), resume: bool = True,
                 plots: bool = True, progress: bool = False, chunk_s: float = 0.0,
                 warmup_s: Optional[float] = None) -> None:
        self.bags = [str(b) for b in bags]
        quiet = dataclasses.replace(job.options, progress=False)  # the bar counts bags
        self.job = dataclasses.replace(job, options=quiet)
        self.job.options.validate()
        if chunk_s < 0:
            raise ConfigError('--chunk', 'must be >= 0 s (0: a task per bag)', chunk_s)
        if chunk_s and self.job.options.max_frames:
            raise ConfigError('--max-frames', 'cannot be combined with --chunk (it counts the '
                              "frames of a whole bag)", self.job.options.max_frames)
        if warmup_s is not None and warmup_s < 0:
            raise ConfigError('--chunk-warmup', 'must be >= 0 s', warmup_s)
        self.chunk_s = float(chunk_s)
        self.warmup_s = default_warmup(job.settings) if warmup_s is None else float(warmup_s)
        self.out = Path(out)
        self.ray = ray
        self.resume = resume
        self.plots = plots
        self.progress = progress

    def folder(self, bag: str) -> Path:
        return self.out / 'bags' / bag_key(Path(bag))

    def run(self) -> FleetResult:
        """Evaluate (or load) every bag, write every report; returns even when interrupted."""
        t0 = time.perf_counter()
        outcomes: list[Optional[BagOutcome]] = [None] * len(self.bags)
        chunking = {'chunk_s': self.chunk_s, 'warmup_s': self.warmup_s} if self.chunk_s else {}
        hashes = [self.job.config_hash(b, chunking) for b in self.bags]
        todo = []
        for i, bag in enumerate(self.bags):
            folder = self.folder(bag)
            if self.resume and stored_hash(folder) == hashes[i]:
                result = load_result(folder, self.job.options, self.job.settings)
                outcomes[i] = BagOutcome(bag, folder.name, RESUMED, result,
                                         **stored_extra(folder, ('worker', 'seconds')))
            else:
                todo.append(i)

        # Tasks: (bag, chunk, chunks of the bag, window or None).
        tasks = [t for i in todo for t in self._tasks(i)]
        parts: dict[int, dict[int, BagOutcome]] = {}

        def finish(i: int, outcome: BagOutcome) -> None:
            if outcome.result is not None and outcome.result.interrupted:
                raise KeyboardInterrupt  # Ctrl-C inside the bag: not a result to keep
            outcomes[i] = outcome
            if outcome.result is not None and outcome.status == DONE:
                self._write_bag(outcome, hashes[i])

        def done(k: int, outcome: BagOutcome) -> None:
            i, chunk, count, _ = tasks[k]
            if count == 1:
                return finish(i, outcome)
            got = parts.setdefault(i, {})
            got[chunk] = outcome
            if len(got) == count:
                finish(i, self._merge_chunks(i, [got[c] for c in range(count)]))

        def failed(k: int, message: str) -> None:
            done(k, BagOutcome(self.bags[tasks[k][0]], self.folder(self.bags[tasks[k][0]]).name,
                               FAILED, error=message))

        interrupted = False
        workers = 0
        ready = [0.0]

        def on_ready() -> None:
            ready[0] = time.perf_counter() - t0

        try:
            if self.ray is None:
                worker = BagWorker(self.job)
                if worker.error:
                    raise ConfigError('estimator', 'cannot be built', worker.error)
                on_ready()
                with progress_bar(self.progress, len(tasks), 'task') as bar:
                    for k, task in enumerate(tasks):
                        done(k, worker.run(self._item(task)))
                        bar.update(1)
            elif todo:
                with RaySession(self.ray) as session:
                    workers = session.workers(len(tasks))
                    run_pool(BagWorker, (self.job,), [self._item(t) for t in tasks], session,
                             done, failed, progress=self.progress,
                             unit='chunk' if len(tasks) > len(todo) else 'bag',
                             label=lambda item: item if isinstance(item, str) else
                             f'{item[0]} (chunk from log time {item[1].start_ns * 1e-9:.3f} s)',
                             on_ready=on_ready)
        except KeyboardInterrupt:
            interrupted = True
        finished = [o for o in outcomes if o is not None]
        results = [o.result for o in finished if o.result is not None and o.status != FAILED]
        merged = merge_results(results, f'{len(results)} bags') if results else None
        fleet = FleetResult(finished, merged, time.perf_counter() - t0, workers, ready[0],
                            interrupted)
        if merged is not None:
            merged.wall_s = fleet.wall_s
            merged.interrupted |= interrupted
        fleet.files = self._write_merged(fleet)
        return fleet

    # ----- chunks
    def _tasks(self, i: int) -> list[tuple[int, int, int, Any]]:
        """The tasks of bag ``i``: one, or one per time chunk (bags that cannot be scanned run
        whole: their worker reports what is wrong)."""
        windows = []
        if self.chunk_s:
            try:
                times = image_log_times(self.bags[i], self.job.options.topics)
                windows = plan_chunks(times, self.chunk_s, self.warmup_s)
            except (BagReadError, DepthNodeError):
                windows = []
        if len(windows) <= 1:
            return [(i, 0, 1, None)]
        return [(i, k, len(windows), w) for k, w in enumerate(windows)]

    def _item(self, task: tuple[int, int, int, Any]) -> Any:
        i, _, _, window = task
        return self.bags[i] if window is None else (self.bags[i], window)

    def _merge_chunks(self, i: int, chunks: list[BagOutcome]) -> BagOutcome:
        bag = self.bags[i]
        bad = [c for c in chunks if c.status == FAILED or c.result is None]
        workers = ','.join(sorted({c.worker for c in chunks if c.worker}))
        seconds = sum(c.seconds for c in chunks)
        cpu = sum(c.cpu_s for c in chunks)
        if bad:
            return BagOutcome(bag, self.folder(bag).name, FAILED, error=bad[0].error,
                              worker=workers, seconds=seconds)
        merged = merge_chunks([c.result for c in chunks if c.result is not None],
                              chunks[0].first_stamp)
        status = DONE if merged.frames else FAILED
        return BagOutcome(bag, self.folder(bag).name, status,
                          merged if status == DONE else None,
                          '' if merged.frames else f'{bag}: no camera frame could be processed',
                          workers, seconds, cpu, chunks[0].first_stamp)

    # ----- files
    def _write_bag(self, outcome: BagOutcome, config_hash: str) -> None:
        from depth_node.offline.report import write_report
        folder = self.folder(outcome.bag)
        if outcome.result is None:
            return
        write_report(outcome.result, folder, plots=self.plots)
        save_result(outcome.result, folder, config_hash,
                    {'worker': outcome.worker, 'seconds': outcome.seconds})

    def _write_merged(self, fleet: FleetResult) -> dict[str, Path]:
        from depth_node.offline.fleet_report import write_fleet_report
        info = {'workers': fleet.workers,
                'ray_address': (self.ray.address or 'local') if self.ray is not None else None,
                'wall_s': fleet.wall_s, 'workers_ready_s': fleet.ready_s,
                'interrupted': fleet.interrupted,
                'chunks': ({'chunk_s': self.chunk_s, 'warmup_s': self.warmup_s,
                            'exact': chunking_is_exact(self.job.settings, self.warmup_s)}
                           if self.chunk_s else None),
                'bags_per_min': (sum(o.status == DONE for o in fleet.outcomes) * 60.0
                                 / max(fleet.wall_s, 1e-9))}
        return write_fleet_report(self.out, fleet.outcomes, fleet.merged, info, self.plots)
