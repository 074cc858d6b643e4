"""The keyframe teacher in a child process: one ``ProcessPoolExecutor`` worker, built once.

:class:`TeacherProcess` wraps ``concurrent.futures.ProcessPoolExecutor(max_workers=1)`` with the
``spawn`` start method. Its initializer (:func:`_init_teacher`) lowers the child's priority,
pins it to CPUs, builds the teacher once and sets its torch threads; each keyframe is then one
call of :func:`_run_keyframe` in that child (arguments and result pickled by the executor). A
start-up error is kept in the child and returned by the first call (:func:`_hello`), so that
the parent can raise it with its type (a :class:`ConfigError` stays one) instead of only
seeing a broken pool. A child that dies is reported by the executor (``BrokenProcessPool``).

Python 3.14 added ``terminate_workers``/``kill_workers`` to the executor; on older Pythons
:class:`TeacherProcess` reads the executor's process table once. It also keeps the executor's
manager thread (read once, as the table) and waits for it whenever the teacher stops: the
executor's ``shutdown`` drops it, and one left running races concurrent.futures' exit hook
(a traceback at exit). The other private call is ``threading._register_atexit`` (the hook
concurrent.futures itself uses), so that an interpreter exiting without
:meth:`KeyframeWorker.close` does not wait for a running keyframe.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
import threading
import time
import traceback
import weakref
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Optional

import numpy as np

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.estimators.base import EstimatorConfig
from depth_node.pipeline.frame import FrameInput
from depth_node.pipeline.keyframe_job import (build_teacher, KeyframeConfig, KeyframeResult,
                                              process_keyframe, TeacherSpec)

__all__ = ['BrokenProcessPool', 'TeacherProcess']

# The child's teacher and configuration, set once by the initializer.
_TEACHER: Any = None
_CONFIG: Optional[KeyframeConfig] = None
_START_ERROR: Optional[tuple[str, str, tuple[Any, ...]]] = None


def _torch() -> Any:
    """torch if it is loaded (a torch teacher has imported it), else None: never imports it."""
    return sys.modules.get('torch')


def _describe(exc: BaseException) -> tuple[str, str, tuple[Any, ...]]:
    """A picklable description ``(type name, text with traceback, ConfigError args)``."""
    args: tuple[Any, ...] = ()
    if isinstance(exc, ConfigError):
        args = (exc.name, exc.rule, repr(exc.value))
    text = f'{type(exc).__name__}: {exc}\n' + ''.join(traceback.format_tb(exc.__traceback__))
    return type(exc).__name__, text, args


def _init_teacher(spec: TeacherSpec, config: KeyframeConfig) -> None:
    """Executor initializer (in the child): nice, CPUs, the teacher, its torch threads."""
    global _TEACHER, _CONFIG, _START_ERROR
    try:
        if config.teacher_nice:
            os.nice(config.teacher_nice)
        if config.teacher_cpus:
            os.sched_setaffinity(0, config.teacher_cpus)
        _TEACHER = build_teacher(spec)
        torch = _torch()
        if torch is not None and config.teacher_threads > 0:
            torch.set_num_threads(config.teacher_threads)  # the whole child: no caveat here
        _CONFIG = config
    except BaseException as exc:  # noqa: BLE001 - returned to the parent by _hello
        _START_ERROR = _describe(exc)


def _hello() -> tuple[str, Any, Any]:
    """First call: ``('ready', teacher name, pid)`` or ``('error', kind, (text, args))``."""
    if _START_ERROR is not None:
        kind, text, args = _START_ERROR
        return 'error', kind, (text, args)
    return 'ready', getattr(_TEACHER, 'name', type(_TEACHER).__name__), os.getpid()


def _run_keyframe(frame: FrameInput,
                  student_depth: Optional[np.ndarray]) -> tuple[Optional[KeyframeResult], str]:
    """One keyframe in the child: ``(result, '')`` or ``(None, error text)``."""
    try:
        return process_keyframe(_TEACHER, frame, student_depth, _CONFIG), ''
    except Exception as exc:  # noqa: BLE001 - reported to the parent as text
        kind, text, _ = _describe(exc)
        return None, text


def _raise_start_error(kind: str, text: str, args: tuple[Any, ...]) -> None:
    if kind == 'ConfigError' and args:
        raise ConfigError(args[0], args[1] + ' (in the keyframe teacher process)', args[2])
    if kind == 'ImportError':
        raise ImportError(f'keyframe teacher process: {text}')
    raise DepthNodeError(f'keyframe teacher process failed to start: {text}')


class TeacherProcess:
    """The teacher in one spawned child process; start-up errors are raised here.

    Parameters
    ----------
    spec : TeacherSpec
        An :class:`EstimatorConfig` or a picklable factory (a built estimator cannot be sent).
    config : KeyframeConfig
        Nice, CPUs, threads, ``start_timeout`` and the fit settings the child uses.
    """

    def __init__(self, spec: TeacherSpec, config: KeyframeConfig) -> None:
        if not (isinstance(spec, EstimatorConfig)
                or (callable(spec) and not callable(getattr(spec, 'predict', None)))):
            raise ConfigError('keyframes.teacher', "mode 'process' needs an EstimatorConfig or "
                              "a picklable factory, not a built estimator (mode 'thread' takes "
                              'one)', type(spec).__name__)
        self.pid: Optional[int] = None
        self._children: list[Any] = []
        self._manager: Optional[threading.Thread] = None
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context('spawn'),
            initializer=_init_teacher, initargs=(spec, config))
        try:
            started = self._pool.submit(_hello)
            # The executor's table of its worker processes (pid -> Process), read once now
            # that the child exists: the executor offers no public handle before Python 3.14.
            self._children = list(self._pool._processes.values())
            # Its manager thread too: ``shutdown`` forgets it, even without waiting for it.
            self._manager = self._pool._executor_manager_thread
            hello = started.result(timeout=config.start_timeout)
        except concurrent.futures.TimeoutError:
            self.terminate()  # a child that failed to start
            raise DepthNodeError(f'keyframe teacher process did not start within '
                                 f'keyframes.start_timeout={config.start_timeout} s') from None
        except BrokenProcessPool:
            self.terminate()  # a child that failed to start
            raise DepthNodeError("keyframe teacher process exited during start-up; with spawn, "
                                 "the main module must be importable (if __name__ == "
                                 "'__main__')") from None
        if hello[0] != 'ready':
            self.terminate()  # a child that failed to start
            _raise_start_error(hello[1], *hello[2])
        self.teacher_name, self.pid = hello[1], hello[2]
        # At interpreter exit concurrent.futures joins its executors, which waits for a running
        # keyframe (a stuck teacher: for ever). Terminate the child first: threading's exit
        # hooks run last registered first, so this one runs before the executor's.
        ref = weakref.ref(self)
        threading._register_atexit(lambda: ref() is not None and ref().terminate())

    def _join_manager(self, timeout: float = 5.0) -> None:
        """Wait for the executor's manager thread to end (it does once the pool is shut down
        and its child gone). Left running, it closes its wake-up pipe while concurrent.futures'
        exit hook checks the pipe and then writes to it (Python 3.11, no lock between the
        two), and the process ends with a traceback (``OSError: Bad file descriptor``), e.g.
        after a configuration error. ``shutdown(wait=True)`` cannot be relied on for this:
        an earlier ``shutdown(wait=False)`` has already dropped the executor's handle on the
        thread."""
        manager = self._manager
        if manager is not None and manager is not threading.current_thread():
            manager.join(timeout)

    def submit(self, frame: FrameInput,
               student_depth: Optional[np.ndarray]) -> concurrent.futures.Future:
        """Start one keyframe; the future gives ``(result, error)`` or raises
        ``BrokenProcessPool`` when the child died (also raised here when it is known dead)."""
        return self._pool.submit(_run_keyframe, frame, student_depth)

    def alive(self) -> bool:
        """Whether the child runs (False once it died or was stopped)."""
        return any(p.is_alive() for p in self._children)

    def exitcode(self, timeout: float = 1.0) -> Optional[int]:
        """The child's exit code (negative: killed by that signal), waiting up to ``timeout`` s
        for it to end; None while it runs."""
        if not self._children:
            return None
        child = self._children[0]
        deadline = time.monotonic() + timeout
        child.join(timeout)
        # The executor's own thread reaps a dead child too: when its waitpid wins, ours fails
        # (ECHILD) and the code is only there once that thread has stored it. Poll for it.
        while child.exitcode is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return child.exitcode

    def stop(self, timeout: float) -> bool:
        """Let the child exit within ``timeout`` s (after its running call), else terminate it.

        Returns True when it exited in time.
        """
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in self._children:
            process.join(max(timeout, 0.0))
        in_time = not self.alive()
        if not in_time:
            self.terminate()
        self._join_manager()  # the shutdown above dropped the pool's own handle on it
        return in_time

    def terminate(self) -> None:
        """Terminate (then kill) the child now; a running call fails with BrokenProcessPool."""
        terminate = getattr(self._pool, 'terminate_workers', None)  # Python >= 3.14
        if terminate is not None:
            terminate()
            self._join_manager()
            return
        for process in self._children:
            if process.is_alive():
                process.terminate()
                process.join(2.0)
            if process.is_alive():
                process.kill()
                process.join(2.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._join_manager()
