"""Fleet runs on Ray: a session (local in-process by default, or a cluster) and a worker pool.

:class:`RaySession` starts Ray in this process (``ray.init`` with a private temporary folder
for its logs and sockets, no dashboard, a small object store; nothing to install or start
beyond the ``ray`` package; its workers at the niceness of this process, not Ray's 15, so
that ``nice evaluate ...`` and ``evaluate ...`` behave as one process would) or joins a
cluster (``address``, e.g. ``ray://head:10001`` or ``auto``). A session already running in the
process (a test fixture, a notebook) is used as it is and left running.

:func:`run_pool` runs one task per item on a pool of Ray actors, one actor per worker, each
declaring the CPUs and GPUs of one task, so that the model an actor builds in ``__init__`` loads
once per worker, not once per item. Workers are retried as Ray does: an actor that dies (its
process killed, ``os._exit``, the node lost) is restarted and the item it was running is run
again, up to ``retries`` times; an item that still fails, or whose task raises, is reported
through ``on_failure`` and the others go on. Results arrive through ``on_result`` as they
finish (in any order); a progress bar (tqdm) counts items.

The worker class protocol: ``__init__(*args)`` builds what every item needs (and must not
raise: it keeps the error), ``ready() -> str`` returns '' or that error, ``run(item)`` does one
item. Classes are plain Python here; :func:`run_pool` wraps them with ``ray.remote``.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from depth_node.core.errors import ConfigError, DepthNodeError

__all__ = ['RaySession', 'RaySettings', 'WorkerLost', 'import_ray', 'progress_bar', 'run_pool']


class WorkerLost(DepthNodeError):
    """Every attempt at an item lost its worker (or its task raised)."""


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`DepthNodeError` that says what to install."""
    try:
        import ray
    except ImportError as exc:
        raise DepthNodeError(f'fleet runs need Ray: pip install "ray>=2.40" ({exc})') from None
    return ray


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide a fleet run goes (:meth:`validate` names a bad option)."""

    address: str = ''  # '' = local Ray started in this process; else a cluster (or 'auto')
    workers: int = 0  # actors; 0 = the session's CPUs // cpus_per_task
    cpus_per_task: float = 1.0  # CPUs one worker (one task at a time) declares
    gpus_per_task: float = 0.0  # GPUs one worker declares (0: CPU only)
    retries: int = 2  # worker losses one item survives
    object_store_mb: int = 512  # local session: Ray's shared-memory object store
    log_to_driver: bool = False  # show the workers' output here
    temp_dir: str = ''  # local session: Ray's logs and sockets ('': a fresh temporary folder)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad option."""
        if self.workers < 0:
            raise ConfigError('--workers', 'must be >= 0 (0: one per CPU)', self.workers)
        if not self.cpus_per_task > 0:
            raise ConfigError('--cpus-per-task', 'must be > 0', self.cpus_per_task)
        if not self.gpus_per_task >= 0:
            raise ConfigError('--gpus-per-task', 'must be >= 0', self.gpus_per_task)
        if self.retries < 0:
            raise ConfigError('--retries', 'must be >= 0', self.retries)
        if self.object_store_mb < 80:
            raise ConfigError('--object-store-mb', 'must be >= 80 (Ray\'s minimum)',
                              self.object_store_mb)


class RaySession:
    """``with RaySession(settings) as session:`` a Ray session for the block (see module)."""

    def __init__(self, settings: RaySettings = RaySettings()) -> None:
        settings.validate()
        self.settings = settings
        self.owned = False  # started here (and so shut down here)
        self._temp: Optional[str] = None

    def __enter__(self) -> 'RaySession':
        ray = import_ray()
        if ray.is_initialized():
            return self
        s = self.settings
        os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')  # no phoning home
        os.environ.setdefault('RAY_DEDUP_LOGS', '0')
        if not s.address:  # Ray nices its workers to 15; locally they run as this command does
            os.environ.setdefault('RAY_worker_niceness', str(os.nice(0)))
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=s.log_to_driver,
                                      ignore_reinit_error=True, configure_logging=False)
        if s.address:
            kwargs['address'] = s.address
        else:
            self._temp = s.temp_dir or tempfile.mkdtemp(prefix='depth_node_ray_')
            wanted = math.ceil(max(1, s.workers) * s.cpus_per_task)
            kwargs.update(num_cpus=max(os.cpu_count() or 1, wanted),
                          object_store_memory=int(s.object_store_mb) << 20,
                          _temp_dir=self._temp)
        try:
            ray.init(**kwargs)
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError of ray.init
            self._cleanup()
            where = f'address {s.address}' if s.address else 'local'
            raise DepthNodeError(f'cannot start Ray ({where}): {type(exc).__name__}: '
                                 f'{exc}') from None
        self.owned = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.owned:
            import_ray().shutdown()
            self.owned = False
        self._cleanup()

    def _cleanup(self) -> None:
        if self._temp is not None and not self.settings.temp_dir:
            shutil.rmtree(self._temp, ignore_errors=True)
        self._temp = None

    def workers(self, items: int) -> int:
        """Actors for ``items`` items: ``settings.workers``, else CPUs // cpus_per_task."""
        n = self.settings.workers
        if n == 0:
            cpus = float(import_ray().cluster_resources().get('CPU', 1))
            n = max(1, int(cpus // self.settings.cpus_per_task))
        return max(1, min(n, items))


def progress_bar(enabled: bool, total: int, unit: str) -> Any:
    """A tqdm bar on stderr (or one that prints nothing)."""
    from tqdm import tqdm
    return tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=not enabled)


def run_pool(worker_cls: type, args: tuple, items: Sequence[Any], session: RaySession,
             on_result: Callable[[int, Any], None], on_failure: Callable[[int, str], None],
             progress: bool = False, unit: str = 'item',
             label: Callable[[Any], str] = str,
             on_ready: Optional[Callable[[], None]] = None) -> None:
    """Run ``worker_cls(*args).run(item)`` for every item on Ray actors (see the module).

    ``on_result(index, value)`` / ``on_failure(index, message)`` are called in this thread as
    items finish, ``on_ready()`` once every worker has built what it needs. Raises
    :class:`ConfigError` when the workers cannot start (the error their ``__init__`` kept,
    e.g. a bad model path); ``KeyboardInterrupt`` stops the pool (the actors are killed; what
    finished was reported).
    """
    if not items:
        return
    ray = import_ray()
    from ray.exceptions import RayError, RayTaskError
    s = session.settings
    remote = ray.remote(worker_cls).options(
        num_cpus=s.cpus_per_task, num_gpus=s.gpus_per_task, max_restarts=-1,
        max_task_retries=s.retries)
    actors = [remote.remote(*args) for _ in range(session.workers(len(items)))]
    try:
        errors = [e for e in ray.get([a.ready.remote() for a in actors]) if e]
        if errors:
            raise ConfigError('workers', 'cannot start', errors[0])
        if on_ready is not None:
            on_ready()
        queue = deque(range(len(items)))
        running: dict[Any, tuple[int, int]] = {}  # ref -> (item, actor slot)

        def submit(slot: int) -> None:
            if queue:
                i = queue.popleft()
                running[actors[slot].run.remote(items[i])] = (i, slot)

        with progress_bar(progress, len(items), unit) as bar:
            for slot in range(len(actors)):
                submit(slot)
            while running:
                done, _ = ray.wait(list(running), num_returns=1)
                i, slot = running.pop(done[0])
                error = ''
                try:
                    value = ray.get(done[0])
                except RayTaskError as exc:  # the task raised: not retried, the worker lives
                    error = f'failed: {_first_line(getattr(exc, "cause", None) or exc)}'
                except RayError as exc:  # the worker was lost every time
                    error = f'worker lost {s.retries + 1} time(s): {_first_line(exc)}'
                    ray.kill(actors[slot])  # a fresh worker for what follows
                    actors[slot] = remote.remote(*args)
                submit(slot)  # first: the worker goes on while its result is handled here
                if error:
                    on_failure(i, f'{label(items[i])}: {error}')
                else:
                    on_result(i, value)
                bar.update(1)
    finally:
        for a in actors:
            ray.kill(a)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f'{type(exc).__name__}: {text[0] if text else ""}'
