"""Keyframes: when to run the teacher model, and a worker that runs it off the real-time path.

The real-time path (:class:`~depth_node.pipeline.frame.DepthPipeline`, Depth Anything V2) runs
on every frame. A slower, sharper teacher (Marigold, with its ensemble uncertainty) runs on
selected keyframes only. This module gathers the public names of three modules:

* :mod:`~depth_node.pipeline.keyframe_policy`: :class:`KeyframePolicy` decides, frame by frame
  and in microseconds, whether a frame is a keyframe candidate (every N frames, every T
  seconds and/or when the scene changed);
* :mod:`~depth_node.pipeline.keyframe_worker`: :class:`KeyframeWorker` runs the teacher on
  candidates, never more than one at a time; a newer candidate replaces the one waiting (one
  running + one waiting, never a queue), and :meth:`KeyframeWorker.submit` only stores a
  reference and returns: the real-time thread never waits for the teacher;
* :mod:`~depth_node.pipeline.keyframe_job`: :func:`process_keyframe`, what the worker does to
  one candidate (teacher prediction and uncertainty, LiDAR fit in the teacher's space, metric
  depth and uncertainty, the cross-check of the student against the teacher), and
  :class:`KeyframeConfig`.

Threads or a process
--------------------
``mode='thread'`` runs the teacher on a thread of this process; torch releases the GIL inside
its kernels, but a diffusion pipeline also runs a lot of Python (module calls, the scheduler,
the ensemble's alignment: hundreds of small cost evaluations), which competes with the
real-time path for the GIL. ``mode='process'`` runs it in a child process (``spawn``), the one
worker of a ``ProcessPoolExecutor`` whose initializer builds the teacher once
(:mod:`~depth_node.pipeline.keyframe_process`); the executor pickles the candidate there and
the result back (a few MB, a few ms, off the real-time thread).

``teacher_threads`` sets torch's intra-op threads of the teacher (thread mode: of the worker
thread only; process mode: of the child), so that the two models do not fight over the same
cores; ``teacher_cpus`` pins the teacher to given CPUs (Linux); ``teacher_nice`` lowers the
teacher's CPU priority (process mode: the child; thread mode: the worker thread only, which
Linux allows), so that the real-time path preempts it whenever both want a CPU.
``benchmark_keyframes`` (:mod:`depth_node.bench.keyframes`) measures the real-time latency
with the teacher off and on for each setting (numbers: ``docs/benchmarks.md``). At nice 0 a
teacher slows the real-time path by CPU contention in either mode; at nice 19 a process leaves
it unchanged, but a thread does not reliably: the real-time thread waits for the GIL, which
the descheduled teacher thread holds. Hence the defaults: ``mode='process'``,
``teacher_nice=19``, ``teacher_threads=1`` (two OpenMP threads on a shared core are far slower
per small op).

Units: depths in metres along the optical axis, NaN = invalid (REP 118); stamps in seconds.
"""

from depth_node.pipeline.keyframe_job import (build_teacher, cross_check, KeyframeConfig,
                                              KeyframeResult, process_keyframe, TeacherSpec)
from depth_node.pipeline.keyframe_policy import KeyframePolicy
from depth_node.pipeline.keyframe_worker import KeyframeStats, KeyframeWorker

__all__ = ['KeyframeConfig', 'KeyframePolicy', 'KeyframeResult', 'KeyframeStats',
           'KeyframeWorker', 'TeacherSpec', 'build_teacher', 'cross_check', 'process_keyframe']
