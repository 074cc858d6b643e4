"""The keyframe worker: runs the teacher on candidates off the real-time path, one at a time.

While the teacher is busy a newer candidate replaces the one waiting
(:class:`~depth_node.core.stamped.NewestSlot`: one running + one waiting, never a queue), so
the keyframe output is always about the newest frame it could be, and
:meth:`KeyframeWorker.submit` only stores a reference and returns. A dispatcher thread takes
the waiting candidate and runs it on a thread of this process (``mode='thread'``) or in the
teacher's child process (``mode='process'``, :class:`~depth_node.pipeline.keyframe_process.
TeacherProcess`); see :mod:`depth_node.pipeline.keyframes` for why process mode is the default.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from depth_node.core.errors import DepthNodeError
from depth_node.core.stamped import NewestSlot
from depth_node.pipeline.frame import FrameInput
from depth_node.pipeline.keyframe_job import (build_teacher, KeyframeConfig, KeyframeResult,
                                              process_keyframe, TeacherSpec)
from depth_node.pipeline.keyframe_process import TeacherProcess

__all__ = ['KeyframeStats', 'KeyframeWorker']

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyframeStats:
    """Diagnostics of a :class:`KeyframeWorker` (counts since start; times in ms)."""

    mode: str
    alive: bool  # the worker thread (and process) runs
    busy: bool  # a keyframe is running
    waiting: bool  # a candidate waits
    submitted: int
    run: int  # keyframes whose teacher ran to the end (fit refused or not)
    replaced: int  # candidates replaced by a newer one while waiting
    failed: int  # keyframes that raised (teacher or fit), or a lost teacher process
    refused: int  # keyframes whose LiDAR fit was refused
    dropped: int  # candidates still waiting at close()
    teacher_ms_last: float
    teacher_ms_p50: float  # over the last 100 keyframes
    teacher_ms_max: float  # over the last 100 keyframes
    fit_residual_last: float  # robust log-depth sigma of the last fit (0.03: ~3 % of depth)
    fit_inliers_last: int
    fit_points_last: int
    cross_check_last: float  # AbsRel student vs teacher of the last keyframe
    last_error: str

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for diagnostics key/values)."""
        return dataclasses.asdict(self)


@dataclass
class _Job:
    frame: FrameInput
    student_depth: Optional[np.ndarray]
    tag: Any


def _torch() -> Any:
    """torch if it is loaded (a torch teacher has imported it), else None: never imports it."""
    return sys.modules.get('torch')


def _set_worker_torch_threads(threads: int) -> None:
    """Give the calling (worker) thread ``threads`` torch intra-op threads.

    With torch's OpenMP backend the thread count is per OS thread, but
    ``torch.set_num_threads`` also stores it process-wide, and every thread that has not yet
    run a parallel op adopts the stored value at its first one: the real-time thread would
    silently drop to the teacher's count. So: initialise this thread's count first (so that it
    is not reset later), set it, and let the caller restore the process-wide value
    (:meth:`KeyframeWorker.__init__` does, from its own thread, which keeps its own count).
    """
    torch = _torch()
    if torch is None or threads <= 0:
        return
    torch.get_num_threads()  # this thread's lazy initialisation, before the set below
    torch.set_num_threads(threads)


class KeyframeWorker:
    """Runs the teacher on keyframe candidates, off the real-time path, one at a time.

    Parameters
    ----------
    teacher : TeacherSpec
        The teacher. Thread mode takes an estimator object, an :class:`EstimatorConfig` or a
        factory, built here (so configuration errors surface now); process mode takes an
        :class:`EstimatorConfig` or a picklable factory, built in the child before this
        constructor returns (its errors are raised here too; a ConfigError stays one).
    callback : callable
        ``callback(result: KeyframeResult)``, called on the worker's dispatcher thread for
        every keyframe that ran, fit refused or not. It must not block for long: the next
        keyframe waits for it. Exceptions are logged and counted.
    config : KeyframeConfig, optional
        Mode, threads and fit settings.
    on_error : callable, optional
        ``on_error(tag, message)`` for a keyframe that failed (called on the worker's thread).

    Notes
    -----
    :meth:`submit` may be called from any thread; it only swaps a reference under a lock. The
    arrays given to it must not be modified afterwards (they are not copied).
    """

    def __init__(self, teacher: TeacherSpec, callback: Callable[[KeyframeResult], None],
                 config: Optional[KeyframeConfig] = None,
                 on_error: Optional[Callable[[Any, str], None]] = None) -> None:
        cfg = config or KeyframeConfig()
        cfg.validate()
        self.config = cfg
        self._callback = callback
        self._on_error = on_error
        self._cond = threading.Condition()  # counters, running job, idle waits
        self._slot: NewestSlot[_Job] = NewestSlot()
        self._running: Optional[_Job] = None
        self._stop = False
        self._abort = False
        self._closed = False
        self._counts: collections.Counter[str] = collections.Counter()
        self._teacher_ms: collections.deque[float] = collections.deque(maxlen=100)
        self._last: Optional[KeyframeResult] = None
        self._last_error = ''
        self._process: Optional[TeacherProcess] = None
        self._teacher: Optional[Any] = None
        if cfg.mode == 'thread':
            self._teacher = build_teacher(teacher)
            self.teacher_name = getattr(self._teacher, 'name', type(self._teacher).__name__)
        else:
            self._process = TeacherProcess(teacher, cfg)
            self.teacher_name = self._process.teacher_name
        torch = _torch() if cfg.teacher_threads > 0 and cfg.mode == 'thread' else None
        before = torch.get_num_threads() if torch is not None else 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name='keyframe_worker', daemon=True)
        self._thread.start()
        self._ready.wait()
        if torch is not None:
            # Restore the process-wide default the worker's set_num_threads overwrote (see
            # _set_worker_torch_threads); this thread had it already.
            torch.set_num_threads(before)

    @property
    def teacher_pid(self) -> Optional[int]:
        """Process id of the teacher's child process (process mode), else None."""
        return self._process.pid if self._process is not None else None

    # -- public API ------------------------------------------------------------------------------

    def submit(self, frame: FrameInput, student_depth: Optional[np.ndarray] = None,
               tag: Any = None) -> bool:
        """Offer a keyframe candidate; returns True when it replaced a waiting one.

        ``student_depth`` (``[H, W]`` float32 metres, the real-time output of this frame)
        enables the cross-check. ``tag`` comes back untouched in the result. Never blocks.
        """
        if student_depth is not None and student_depth.shape != frame.rgb.shape[:2]:
            raise DepthNodeError(f'student_depth has shape {student_depth.shape}, the image is '
                                 f'{frame.rgb.shape[:2]}')
        with self._cond:
            if self._stop:
                raise DepthNodeError('KeyframeWorker.submit after close()')
            replaced = self._slot.put(_Job(frame, student_depth, tag))
            self._counts['submitted'] += 1
            self._counts['replaced'] += replaced
        return replaced

    @property
    def busy(self) -> bool:
        """A keyframe is running."""
        return self._running is not None

    def _outstanding(self) -> int:
        """Candidates submitted and neither finished, replaced nor dropped (hold the lock)."""
        c = self._counts
        return c['submitted'] - c['replaced'] - c['dropped'] - c['run'] - c['failed']

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Wait until no keyframe runs or waits; False on timeout or when the worker is gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._outstanding() > 0 or self._running is not None:
                if not self._thread.is_alive():
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.1 if left is None else min(left, 0.1))
        return True

    def stats(self) -> KeyframeStats:
        """A consistent snapshot of the counters and the last keyframe's numbers."""
        with self._cond:
            c = dict(self._counts)
            times = list(self._teacher_ms)
            last = self._last
            busy, waiting = self._running is not None, self._slot.waiting
            error = self._last_error
        alive = self._thread.is_alive() and (self._process is None or self._process.alive())
        nan = float('nan')
        return KeyframeStats(
            self.config.mode, alive, busy, waiting, c.get('submitted', 0), c.get('run', 0),
            c.get('replaced', 0), c.get('failed', 0), c.get('refused', 0), c.get('dropped', 0),
            times[-1] if times else nan, float(np.median(times)) if times else nan,
            max(times) if times else nan,
            last.fit.residual if last is not None else nan,
            last.fit.inliers if last is not None else 0,
            last.fit.points if last is not None else 0,
            last.cross_check if last is not None else nan, error)

    def close(self, timeout: float = 5.0) -> bool:
        """Stop: drop the waiting candidate, let the running keyframe finish within ``timeout``.

        Its result is still delivered if it finishes in time. After the timeout the worker is
        abandoned (thread mode: the daemon thread ends when the teacher returns, no callback;
        process mode: the child is terminated, then killed). Returns True when everything
        stopped in time. Idempotent.
        """
        with self._cond:
            if self._closed:
                return not self._thread.is_alive()
            self._closed = True
            self._stop = True
            if self._slot.discard():
                self._counts['dropped'] += 1
            self._slot.close()
            self._cond.notify_all()
        deadline = time.monotonic() + max(timeout, 0.0)
        self._thread.join(max(timeout, 0.0))
        in_time = not self._thread.is_alive()
        if not in_time:
            with self._cond:
                self._abort = True  # no callback any more
            _LOG.warning('keyframe worker: the running keyframe did not finish within %.1f s',
                         timeout)
        if self._process is not None:
            in_time &= self._process.stop(max(deadline - time.monotonic(), 0.0))
            self._thread.join(1.0)
        return in_time and not self._thread.is_alive()

    def __enter__(self) -> 'KeyframeWorker':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the dispatcher thread -------------------------------------------------------------------

    def _main(self) -> None:
        if self._process is None:
            self._apply_thread_settings()
        self._ready.set()
        while True:
            job = self._slot.take()
            if job is None:
                return  # closed
            with self._cond:
                self._running = job
            if self._process is None:
                try:
                    result = process_keyframe(self._teacher, job.frame, job.student_depth,
                                              self.config)
                except Exception as exc:  # noqa: BLE001 - reported through stats and on_error
                    self._finish(job, None, f'{type(exc).__name__}: {exc}')
                else:
                    self._finish(job, result, '')
                continue
            try:
                result, error = self._process.submit(job.frame, job.student_depth).result()
            except BrokenProcessPool:
                self._finish(job, None, f'teacher process died (exit code '
                             f'{self._process.exitcode()})')
                return
            except Exception as exc:  # noqa: BLE001 - e.g. a frame that cannot be pickled
                result, error = None, f'{type(exc).__name__}: {exc}'
            self._finish(job, result, error)

    def _apply_thread_settings(self) -> None:
        """Thread mode: nice, CPUs and torch threads of this thread only (Linux: per thread)."""
        cfg = self.config
        try:
            tid = threading.get_native_id()
            if cfg.teacher_nice:
                now = os.getpriority(os.PRIO_PROCESS, tid)
                os.setpriority(os.PRIO_PROCESS, tid, min(now + cfg.teacher_nice, 19))
            if cfg.teacher_cpus:
                os.sched_setaffinity(tid, cfg.teacher_cpus)
            _set_worker_torch_threads(cfg.teacher_threads)
        except OSError as exc:
            _LOG.error('keyframe worker: cannot apply keyframes.teacher_nice/teacher_cpus: %s',
                       exc)

    def _finish(self, job: _Job, result: Optional[KeyframeResult], error: str) -> None:
        """Count, then deliver the result (or the error) outside the lock."""
        with self._cond:
            if result is not None:
                self._counts['run'] += 1
                if not result.fit.ok:
                    self._counts['refused'] += 1
                result = dataclasses.replace(result, tag=job.tag, index=self._counts['run'],
                                             replaced=self._counts['replaced'])
                self._teacher_ms.append(result.teacher_ms)
                self._last = result
            else:
                self._counts['failed'] += 1
                self._last_error = error
            abort = self._abort
        try:
            if abort:
                pass
            elif result is not None:
                self._callback(result)
            elif self._on_error is not None:
                self._on_error(job.tag, error)
            else:
                _LOG.error('keyframe failed: %s', error)
        except Exception:  # noqa: BLE001 - a broken callback must not stop the worker
            _LOG.exception('keyframe callback raised')
        finally:
            with self._cond:
                self._running = None
                self._cond.notify_all()
