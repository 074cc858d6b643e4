"""Keyframes: when to run the teacher model, and a worker that runs it off the real-time path.

The real-time path (:class:`~depth_node.pipeline.frame.DepthPipeline`, Depth Anything V2) runs
on every frame. A slower, sharper teacher (Marigold, with its ensemble uncertainty) runs on
selected keyframes only:

* :class:`KeyframePolicy` decides, frame by frame and in microseconds, whether a frame is a
  keyframe candidate: every N frames, every T seconds and/or when the scene changed.
* :class:`KeyframeWorker` runs the teacher on candidates, never more than one at a time: while
  the teacher is busy, a newer candidate replaces the one waiting (one running + one waiting,
  never a queue), so the keyframe output is always about the newest frame it could be.
  :meth:`KeyframeWorker.submit` only stores a reference and returns; the real-time thread never
  waits for the teacher.
* :func:`process_keyframe` is what the worker does to one candidate: the teacher's prediction
  and uncertainty, the LiDAR projection, see-through rejection and robust fit in the teacher's
  space (depth for Marigold: ``z ≈ s·m + t``), metric depth, the uncertainty in metres, and a
  live cross-check of the student (the real-time output of the same frame) against the teacher.

Threads or a process
--------------------
``mode='thread'`` runs the teacher on a thread of this process; torch releases the GIL inside
its kernels, but a diffusion pipeline also runs a lot of Python (module calls, the scheduler,
the ensemble's alignment: hundreds of small cost evaluations), which competes with the
real-time path for the GIL. ``mode='process'`` runs it in a child process (``spawn``): the
candidate is sent pickled through a pipe by a dispatcher thread (a few MB, a few ms, outside
the real-time thread), the result comes back the same way. ``teacher_threads`` sets torch's
intra-op threads of the teacher (thread mode: of the worker thread only, see
:func:`_set_worker_torch_threads`; process mode: of the child), so that the two models do not
fight over the same cores; ``teacher_cpus`` pins the teacher to given CPUs (Linux);
``teacher_nice`` lowers the teacher's CPU priority (process mode: the child; thread mode: the
worker thread only, which Linux allows), so that the real-time path preempts it whenever both
want a CPU. ``depth_node/bench/keyframes.py`` measures the real-time latency with the
teacher off and on for each setting. On a 2-core machine, with a (tiny, CPU) Marigold running
without pause next to the node's per-frame path (projection, fit, depth, cloud: numpy), a
teacher at nice 0 slows the real-time path by x1.3-1.8 at p50 in a thread and in a process
alike (CPU contention); at nice 19 the process leaves it unchanged (x0.98-1.02 p50, <= 1.08
p99 over five runs) while the teacher keeps ~90 % of its throughput, but the thread does not
reliably (p50 x1.00-1.70, p99 up to x1.9: the real-time thread waits for the GIL, which the
descheduled teacher thread holds). Hence the defaults: ``mode='process'``, ``teacher_nice=19``,
``teacher_threads=1`` (two OpenMP threads on a shared core are 10-100x slower per small op).

Units: depths in metres along the optical axis, NaN = invalid (REP 118); stamps in seconds.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import multiprocessing
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import cv2
import numpy as np

from depth_node.core.align import AffineFit, apply_affine, OutputKind
from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.core.lidar import project_points
from depth_node.core.metrics import depth_metrics
from depth_node.core.robust import reject_see_through
from depth_node.estimators.base import (check_input_image, check_prediction, Estimator,
                                        EstimatorConfig)
from depth_node.estimators.registry import build_estimator
from depth_node.pipeline.frame import FrameInput, PipelineConfig

__all__ = ['KeyframeConfig', 'KeyframePolicy', 'KeyframeResult', 'KeyframeStats',
           'KeyframeWorker', 'TeacherSpec', 'build_teacher', 'cross_check', 'process_keyframe']

_LOG = logging.getLogger(__name__)

#: A teacher: an estimator object (thread mode), an :class:`EstimatorConfig` (built with
#: :func:`~depth_node.estimators.registry.build_estimator` where the teacher runs), or a
#: zero-argument factory returning an estimator (picklable for process mode, e.g.
#: ``functools.partial(MarigoldEstimator, path, ensemble_size=5)``).
TeacherSpec = Union[Estimator, EstimatorConfig, Callable[[], Estimator]]

_MODES = ('thread', 'process')
# Slack on "every T seconds": stamps like 0.1 * k are not exact in binary.
_STAMP_EPS = 1e-6


# ------------------------------------------------------------------------------------------------
# Policy


class KeyframePolicy:
    """Decides which frames are keyframe candidates. Pure logic; one caller at a time.

    A frame triggers when any enabled criterion holds (OR):

    * ``every_n`` > 0: ``every_n`` frames after the last keyframe (frames 0, N, 2N, ...);
    * ``every_t`` > 0: at least ``every_t`` seconds after the last keyframe's stamp;
    * ``scene_change`` > 0: the scene-change score exceeds it. The score is the mean absolute
      difference, in [0, 1], between a ``thumbnail``-pixel-wide grey thumbnail (area-averaged,
      values / 255) of the frame and that of the last keyframe: 0.05 is a clearly visible
      change, a camera pan or a large object entering; sensor noise is averaged away.

    ``min_interval`` (s) suppresses any trigger that soon after the last keyframe (a scene
    change storm). The first frame triggers (``'first'``), and so does a stamp earlier than
    the last keyframe's (``'time_jump'``, e.g. a looping replay; the state restarts there).
    With every criterion off the policy never triggers (:attr:`enabled` is False).

    Parameters
    ----------
    every_n : int
        Frames between keyframes; 0 = off.
    every_t : float
        Seconds between keyframes; 0 = off.
    scene_change : float
        Score threshold in (0, 1); 0 = off.
    min_interval : float
        Seconds; no keyframe sooner than this after the last one (0 = no limit).
    thumbnail : int
        Thumbnail width in pixels (height keeps the aspect ratio), >= 4.
    """

    def __init__(self, every_n: int = 0, every_t: float = 0.0, scene_change: float = 0.0,
                 min_interval: float = 0.0, thumbnail: int = 32) -> None:
        if isinstance(every_n, bool) or not isinstance(every_n, (int, np.integer)) \
                or every_n < 0:
            raise ConfigError('keyframes.every_n', 'must be an integer >= 0 (0 = off)', every_n)
        if not (math.isfinite(every_t) and every_t >= 0):
            raise ConfigError('keyframes.every_t', 'must be a number of seconds >= 0 (0 = off)',
                              every_t)
        if not (math.isfinite(scene_change) and 0 <= scene_change < 1):
            raise ConfigError('keyframes.scene_change', 'must be in [0, 1) (0 = off)',
                              scene_change)
        if not (math.isfinite(min_interval) and min_interval >= 0):
            raise ConfigError('keyframes.min_interval', 'must be a number of seconds >= 0',
                              min_interval)
        if isinstance(thumbnail, bool) or not isinstance(thumbnail, (int, np.integer)) \
                or thumbnail < 4:
            raise ConfigError('keyframes.thumbnail', 'must be an integer >= 4 pixels',
                              thumbnail)
        self.every_n = int(every_n)
        self.every_t = float(every_t)
        self.scene_change = float(scene_change)
        self.min_interval = float(min_interval)
        self.thumbnail = int(thumbnail)
        #: Scene-change score of the last frame seen (NaN when not computed).
        self.last_score = float('nan')
        self.reset()

    @property
    def enabled(self) -> bool:
        """Whether any criterion is on."""
        return self.every_n > 0 or self.every_t > 0 or self.scene_change > 0

    def reset(self) -> None:
        """Forget the last keyframe: the next frame triggers as ``'first'``."""
        self._since = 0  # frames since the last keyframe
        self._last_stamp: Optional[float] = None
        self._last_thumb: Optional[np.ndarray] = None

    def thumbnail_of(self, rgb: np.ndarray) -> np.ndarray:
        """Grey thumbnail ``[h, thumbnail]`` float32 in [0, 1] of an RGB ``[H, W, 3]`` uint8."""
        check_input_image(rgb)
        height, width = rgb.shape[:2]
        th = max(1, int(round(self.thumbnail * height / width)))
        small = cv2.resize(rgb, (self.thumbnail, th), interpolation=cv2.INTER_AREA)
        grey = small.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return grey * np.float32(1.0 / 255.0)  # [th, thumbnail]

    def score(self, thumb: np.ndarray) -> float:
        """Scene-change score of a thumbnail against the last keyframe's (NaN: none yet)."""
        if self._last_thumb is None or self._last_thumb.shape != thumb.shape:
            return float('nan')
        return float(np.mean(np.abs(thumb - self._last_thumb)))

    def should_trigger(self, stamp: float, rgb: Optional[np.ndarray] = None) -> tuple[bool, str]:
        """Whether the frame at ``stamp`` (s) is a keyframe candidate, and why.

        ``rgb`` (``[H, W, 3]`` uint8) is needed only with ``scene_change`` on. A True answer
        records the frame as the last keyframe. Returns ``(False, '')`` or ``(True, reason)``,
        reasons among ``first``, ``time_jump``, ``every_n``, ``every_t``, ``scene_change``,
        joined by ``+`` when several hold.
        """
        if not self.enabled:
            return False, ''
        thumb = None
        if self.scene_change > 0:
            if rgb is None:
                raise DepthNodeError('KeyframePolicy.should_trigger needs the rgb image when '
                                     'keyframes.scene_change is on')
            thumb = self.thumbnail_of(rgb)
        self._since += 1
        if self._last_stamp is None:
            return self._trigger(stamp, thumb, 'first')
        if stamp < self._last_stamp:
            return self._trigger(stamp, thumb, 'time_jump')
        elapsed = stamp - self._last_stamp
        reasons = []
        if self.every_n > 0 and self._since >= self.every_n:
            reasons.append('every_n')
        if self.every_t > 0 and elapsed >= self.every_t - _STAMP_EPS:
            reasons.append('every_t')
        if thumb is not None:
            self.last_score = self.score(thumb)
            if self.last_score > self.scene_change:
                reasons.append('scene_change')
        if not reasons or elapsed < self.min_interval - _STAMP_EPS:
            return False, ''
        return self._trigger(stamp, thumb, '+'.join(reasons))

    def _trigger(self, stamp: float, thumb: Optional[np.ndarray],
                 reason: str) -> tuple[bool, str]:
        self._since = 0
        self._last_stamp = float(stamp)
        if thumb is not None:
            self._last_thumb = thumb
        return True, reason


# ------------------------------------------------------------------------------------------------
# One keyframe


@dataclass(frozen=True)
class KeyframeConfig:
    """Options of the keyframe worker; :meth:`validate` raises :class:`ConfigError`.

    ``alignment`` supplies the LiDAR and fit settings the real-time path uses: ``lidar_min_depth``,
    ``lidar_max_depth``, ``max_depth``, ``see_through``, ``see_through_window``,
    ``see_through_gap`` and the robust-fit options (``fit_loss``, ``min_fit_points``,
    ``max_residual``). The keyframe fit is always the robust one (IRLS, log-depth residuals).
    """

    mode: str = 'process'  # 'process' or 'thread' (see the module docstring)
    teacher_threads: int = 1  # torch intra-op threads of the teacher; 0 = torch's default
    teacher_nice: int = 19  # niceness added to the teacher (0..19; thread mode: Linux only)
    teacher_cpus: tuple[int, ...] = ()  # CPUs the teacher may run on (Linux); () = any
    # Cross-check pixels: relative teacher uncertainty at or below this quantile of it ...
    cross_check_quantile: float = 0.5
    # ... and at or below this absolute value (relative units), when set.
    cross_check_max_uncertainty: Optional[float] = None
    start_timeout: float = 300.0  # s, process mode: time allowed to start and load the teacher
    alignment: PipelineConfig = field(default_factory=PipelineConfig)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad value."""
        if self.mode not in _MODES:
            raise ConfigError('keyframes.mode', "must be 'thread' or 'process'", self.mode)
        if isinstance(self.teacher_threads, bool) or not isinstance(self.teacher_threads, int) \
                or self.teacher_threads < 0:
            raise ConfigError('keyframes.teacher_threads', 'must be an integer >= 0 (0 = torch '
                              'default)', self.teacher_threads)
        if isinstance(self.teacher_nice, bool) or not isinstance(self.teacher_nice, int) \
                or not 0 <= self.teacher_nice <= 19:
            raise ConfigError('keyframes.teacher_nice', 'must be an integer in [0, 19]',
                              self.teacher_nice)
        if self.teacher_nice and self.mode == 'thread' and not sys.platform.startswith('linux'):
            raise ConfigError('keyframes.teacher_nice', "needs Linux in mode 'thread' (nice per "
                              "thread); use 0 or mode 'process'", self.teacher_nice)
        cpus = self.teacher_cpus
        if not isinstance(cpus, (tuple, list)) or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cpus):
            raise ConfigError('keyframes.teacher_cpus', 'must be a list of CPU numbers >= 0',
                              cpus)
        if cpus and not hasattr(os, 'sched_setaffinity'):
            raise ConfigError('keyframes.teacher_cpus', 'needs os.sched_setaffinity (Linux)',
                              cpus)
        if not 0 < self.cross_check_quantile <= 1:
            raise ConfigError('keyframes.cross_check_quantile', 'must be in (0, 1]',
                              self.cross_check_quantile)
        if self.cross_check_max_uncertainty is not None \
                and not self.cross_check_max_uncertainty > 0:
            raise ConfigError('keyframes.cross_check_max_uncertainty', 'must be > 0 or None',
                              self.cross_check_max_uncertainty)
        if not self.start_timeout > 0:
            raise ConfigError('keyframes.start_timeout', 'must be > 0 s', self.start_timeout)
        self.alignment.validate()


@dataclass
class KeyframeResult:
    """What one keyframe produced.

    ``depth`` and ``uncertainty`` are None when the fit was refused (``fit.ok`` False, its
    ``reason`` says why); ``cross_check`` is then NaN.
    """

    tag: Any  # passed through from submit() (e.g. the image header), untouched
    stamp: float  # s, the frame's stamp
    index: int  # keyframes run so far, this one included (1-based)
    replaced: int  # candidates replaced while waiting, so far
    space: OutputKind  # what `relative` is: depth (Marigold) or disparity
    relative: np.ndarray  # [H, W] float32, the teacher's prediction (unitless)
    relative_uncertainty: Optional[np.ndarray]  # [H, W] float32, its units; None: no ensemble
    depth: Optional[np.ndarray]  # [H, W] float32, metres, NaN = invalid
    uncertainty: Optional[np.ndarray]  # [H, W] float32, metres (|s| x the ensemble MAD), NaN
    fit: AffineFit  # the robust fit of `relative` to the LiDAR, in `space`
    cross_check: float  # AbsRel of the student's depth against `depth`, confident pixels; NaN
    cross_check_pixels: int  # pixels the cross-check averaged over
    lidar_pixels: int  # projected LiDAR pixels
    lidar_kept: int  # of them, kept by the see-through test
    teacher_ms: float  # wall time of the teacher's prediction
    total_ms: float  # wall time of the whole keyframe (teacher, fit, depth, cross-check)


def cross_check(student: Optional[np.ndarray], teacher: np.ndarray,
                relative_uncertainty: Optional[np.ndarray], quantile: float = 0.5,
                max_uncertainty: Optional[float] = None,
                max_depth: float = 80.0) -> tuple[float, int]:
    """AbsRel of the student's metric depth against the teacher's, where the teacher is sure.

    ``mean(|student - teacher| / teacher)`` over pixels where both depths are valid (finite,
    positive, the teacher's within ``max_depth``) and the teacher's relative uncertainty is at
    or below its ``quantile`` over those pixels (0.5: the more confident half) and at or below
    ``max_uncertainty`` when given. Without an uncertainty map every valid pixel counts.
    0 when the two agree; about the relative depth error of the student where the teacher is
    trustworthy otherwise.

    Returns
    -------
    tuple
        ``(abs_rel, pixels)``; ``(nan, 0)`` when no pixel qualifies or ``student`` is None.
    """
    if student is None:
        return float('nan'), 0
    valid = np.isfinite(teacher) & (teacher > 0) & (teacher <= max_depth) \
        & np.isfinite(student) & (student > 0)
    if relative_uncertainty is not None and valid.any():
        unc = relative_uncertainty
        limit = float(np.quantile(unc[valid], quantile)) if quantile < 1 else np.inf
        if max_uncertainty is not None:
            limit = min(limit, float(max_uncertainty))
        valid &= unc <= limit
    metrics = depth_metrics(student, teacher, min_depth=0.0, max_depth=max_depth, mask=valid)
    return (metrics.abs_rel, metrics.valid) if metrics.valid else (float('nan'), 0)


def _teacher_predict(teacher: Estimator,
                     rgb: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
    height, width = rgb.shape[:2]
    who = getattr(teacher, 'name', type(teacher).__name__)
    with_unc = getattr(teacher, 'predict_with_uncertainty', None)
    if callable(with_unc):
        pred, unc = with_unc(rgb)
    else:
        pred, unc = teacher.predict(rgb), None
    pred = check_prediction(pred, height, width, who)
    if unc is not None:
        unc = check_prediction(unc, height, width, who)
    return pred, unc


def process_keyframe(teacher: Estimator, frame: FrameInput,
                     student_depth: Optional[np.ndarray] = None,
                     config: Optional[KeyframeConfig] = None) -> KeyframeResult:
    """Run the teacher on one frame, fit it to the LiDAR and cross-check the student.

    Parameters
    ----------
    teacher : Estimator
        Relative (or metric) model; ``predict_with_uncertainty(rgb)`` is used when it has one.
    frame : FrameInput
        The keyframe: image, camera, stamp, LiDAR sweep and extrinsic.
    student_depth : numpy.ndarray, optional
        ``[H, W]`` float32 metres (NaN = invalid): the real-time output of the same frame.
    config : KeyframeConfig, optional
        Fit and cross-check settings.

    Returns
    -------
    KeyframeResult
        With ``tag=None``, ``index=0`` and ``replaced=0`` (the worker fills them in).

    Notes
    -----
    The metric uncertainty is the relative one times the local derivative of the map:
    ``|s| · u`` in depth space, ``|s| · u · z²`` in disparity space (``z = 1 / (s·d + t)``).
    """
    cfg = config or KeyframeConfig()
    align = cfg.alignment
    t0 = time.perf_counter()
    check_input_image(frame.rgb)
    pred, unc = _teacher_predict(teacher, frame.rgb)
    t1 = time.perf_counter()
    spec = teacher.output
    space = spec.kind
    pixels = kept_count = 0
    if spec.metric:
        fit = AffineFit(1.0, 0.0, space, 0, 0.0, 0.0)
    elif frame.lidar is None:
        fit = AffineFit.refused(space, 0, 'no LiDAR sweep with the keyframe')
    else:
        sparse = project_points(frame.lidar, frame.camera, frame.lidar_to_camera,
                                align.lidar_min_depth, align.lidar_max_depth)
        pixels = sparse.count
        if align.see_through:
            sparse = sparse.subset(reject_see_through(
                sparse, align.see_through_window, align.see_through_gap,
                focal_px=frame.camera.fy))
        kept_count = sparse.count
        fit = align.robust_config().fit(sparse.sample(pred), sparse.z, space)
    depth = metric_unc = None
    check, check_pixels = float('nan'), 0
    if fit.ok:
        depth = apply_affine(pred, fit.scale, fit.shift, space, align.max_depth)
        if unc is not None:
            metric_unc = np.float32(abs(fit.scale)) * unc  # [H, W]: metres (depth space)
            if space is OutputKind.DISPARITY:
                metric_unc = metric_unc * depth * depth  # |dz/dd| = s·z²
            metric_unc = np.where(np.isfinite(depth), metric_unc, np.float32(np.nan))
            metric_unc = metric_unc.astype(np.float32, copy=False)
        if student_depth is not None:
            check, check_pixels = cross_check(student_depth, depth, unc,
                                              cfg.cross_check_quantile,
                                              cfg.cross_check_max_uncertainty, align.max_depth)
    total = (time.perf_counter() - t0) * 1e3
    return KeyframeResult(None, float(frame.stamp), 0, 0, space, pred, unc, depth, metric_unc,
                          fit, check, check_pixels, pixels, kept_count, (t1 - t0) * 1e3, total)


# ------------------------------------------------------------------------------------------------
# Teacher construction and threads


def build_teacher(spec: TeacherSpec) -> Estimator:
    """The estimator a :data:`TeacherSpec` names (built now, in this thread / process)."""
    if isinstance(spec, EstimatorConfig):
        return build_estimator(spec)
    if callable(getattr(spec, 'predict', None)) and hasattr(spec, 'output'):
        return spec  # type: ignore[return-value]
    if callable(spec):
        teacher = spec()
        if not (callable(getattr(teacher, 'predict', None)) and hasattr(teacher, 'output')):
            raise ConfigError('keyframes.teacher', 'the factory must return an estimator (with '
                              '`output` and `predict`)', type(teacher).__name__)
        return teacher
    raise ConfigError('keyframes.teacher', 'must be an estimator, an EstimatorConfig or a '
                      'factory returning an estimator', type(spec).__name__)


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


# ------------------------------------------------------------------------------------------------
# The worker


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
        ``callback(result: KeyframeResult)``, called on the worker's thread (process mode: its
        dispatcher thread) for every keyframe that ran, fit refused or not. It must not block
        for long: the next keyframe waits for it. Exceptions are logged and counted.
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
        self._cond = threading.Condition()
        self._pending: Optional[_Job] = None
        self._running: Optional[_Job] = None
        self._stop = False
        self._abort = False
        self._closed = False
        self._counts = collections.Counter()
        self._teacher_ms: collections.deque[float] = collections.deque(maxlen=100)
        self._last: Optional[KeyframeResult] = None
        self._last_error = ''
        self._proc: Optional[Any] = None
        self._conn: Optional[Any] = None
        self.teacher_name = ''
        if cfg.mode == 'thread':
            self._teacher: Optional[Estimator] = build_teacher(teacher)
            self.teacher_name = getattr(self._teacher, 'name', type(self._teacher).__name__)
            target = self._thread_main
        else:
            self._teacher = None
            self._start_process(teacher)
            target = self._dispatch_main
        torch = _torch() if cfg.teacher_threads > 0 and cfg.mode == 'thread' else None
        before = torch.get_num_threads() if torch is not None else 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=target, name='keyframe_worker', daemon=True)
        self._thread.start()
        self._ready.wait()
        if torch is not None:
            # Restore the process-wide default the worker's set_num_threads overwrote (see
            # _set_worker_torch_threads); this thread had it already.
            torch.set_num_threads(before)

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
        job = _Job(frame, student_depth, tag)
        with self._cond:
            if self._stop:
                raise DepthNodeError('KeyframeWorker.submit after close()')
            self._counts['submitted'] += 1
            replaced = self._pending is not None
            if replaced:
                self._counts['replaced'] += 1
            self._pending = job
            self._cond.notify_all()
        return replaced

    @property
    def busy(self) -> bool:
        """A keyframe is running."""
        return self._running is not None

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Wait until no keyframe runs or waits; False on timeout or when the worker is gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._running is not None:
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
            busy, waiting = self._running is not None, self._pending is not None
            error = self._last_error
        alive = self._thread.is_alive() and (self._proc is None or self._proc.is_alive())
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
            if self._pending is not None:
                self._counts['dropped'] += 1
                self._pending = None
            self._cond.notify_all()
        deadline = time.monotonic() + max(timeout, 0.0)
        self._thread.join(max(timeout, 0.0))
        in_time = not self._thread.is_alive()
        if not in_time:
            with self._cond:
                self._abort = True  # no callback any more; the dispatcher stops waiting
            _LOG.warning('keyframe worker: the running keyframe did not finish within %.1f s',
                         timeout)
        if self._proc is not None:
            in_time &= self._stop_process(max(deadline - time.monotonic(), 0.0))
            self._thread.join(1.0)
        return in_time and not self._thread.is_alive()

    def __enter__(self) -> 'KeyframeWorker':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- shared by both modes --------------------------------------------------------------------

    def _next_job(self) -> Optional[_Job]:
        """Block until a candidate waits (returned, now running) or stop (None)."""
        with self._cond:
            while self._pending is None and not self._stop:
                self._cond.wait()
            if self._stop:
                return None
            job, self._pending = self._pending, None
            self._running = job
            return job

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

    # -- thread mode -----------------------------------------------------------------------------

    def _thread_main(self) -> None:
        cfg = self.config
        try:
            # This thread only (and the threads it starts): on Linux the nice value and the
            # affinity are per thread.
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
        finally:
            self._ready.set()
        teacher = self._teacher  # set by __init__ in thread mode
        while True:
            job = self._next_job()
            if job is None:
                return
            try:
                result = process_keyframe(teacher, job.frame, job.student_depth, self.config)
            except Exception as exc:  # noqa: BLE001 - reported through stats and on_error
                self._finish(job, None, f'{type(exc).__name__}: {exc}')
            else:
                self._finish(job, result, '')

    # -- process mode ----------------------------------------------------------------------------

    def _start_process(self, teacher: TeacherSpec) -> None:
        if not (isinstance(teacher, EstimatorConfig) or (
                callable(teacher) and not callable(getattr(teacher, 'predict', None)))):
            raise ConfigError('keyframes.teacher', "mode 'process' needs an EstimatorConfig or "
                              "a picklable factory, not a built estimator (mode 'thread' takes "
                              'one)', type(teacher).__name__)
        ctx = multiprocessing.get_context('spawn')
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_child_main, args=(child, teacher, self.config),
                           name='keyframe_teacher', daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        deadline = time.monotonic() + self.config.start_timeout
        while not parent.poll(0.1):
            if not proc.is_alive():
                self._kill_process()
                raise DepthNodeError(f'keyframe teacher process exited during start-up '
                                     f'(exit code {proc.exitcode}); with spawn, the main '
                                     "module must be importable (if __name__ == '__main__')")
            if time.monotonic() > deadline:
                self._kill_process()
                raise DepthNodeError(f'keyframe teacher process did not start within '
                                     f'keyframes.start_timeout={self.config.start_timeout} s')
        try:
            msg = parent.recv()
        except EOFError:
            self._kill_process()
            raise DepthNodeError('keyframe teacher process exited during start-up') from None
        if msg[0] != 'ready':
            self._kill_process()
            _raise_child_error(msg)
        self.teacher_name = msg[1]

    def _dispatch_main(self) -> None:
        self._ready.set()
        conn, proc = self._conn, self._proc  # set by _start_process
        while True:
            job = self._next_job()
            if job is None:
                return
            try:
                conn.send(('job', job.frame, job.student_depth))
                msg = None
                while msg is None:
                    if conn.poll(0.1):
                        msg = conn.recv()
                    elif self._abort:
                        return
                    elif not proc.is_alive():
                        raise EOFError
            except (EOFError, OSError, BrokenPipeError):
                self._finish(job, None, f'teacher process died (exit code {proc.exitcode})')
                return
            if msg[0] == 'ok':
                self._finish(job, msg[1], '')
            else:
                self._finish(job, None, msg[2])

    def _stop_process(self, timeout: float) -> bool:
        proc, conn = self._proc, self._conn  # process mode only
        try:
            conn.send(('stop',))
        except (OSError, BrokenPipeError):
            pass
        proc.join(timeout)
        in_time = not proc.is_alive()
        if not in_time:
            self._kill_process()
        conn.close()
        return in_time

    def _kill_process(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.is_alive():
            proc.terminate()
            proc.join(2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(2.0)


def _describe(exc: BaseException) -> tuple[str, str, str, tuple[Any, ...]]:
    """A picklable description of an exception raised in the child."""
    args: tuple[Any, ...] = ()
    if isinstance(exc, ConfigError):
        args = (exc.name, exc.rule, repr(exc.value))
    text = f'{type(exc).__name__}: {exc}\n' + ''.join(traceback.format_tb(exc.__traceback__))
    return ('error', type(exc).__name__, text, args)


def _raise_child_error(msg: tuple[Any, ...]) -> None:
    kind, text, args = msg[1], msg[2], msg[3] if len(msg) > 3 else ()
    if kind == 'ConfigError' and args:
        raise ConfigError(args[0], args[1] + ' (in the keyframe teacher process)', args[2])
    if kind == 'ImportError':
        raise ImportError(f'keyframe teacher process: {text}')
    raise DepthNodeError(f'keyframe teacher process failed to start: {text}')


def _child_main(conn: Any, spec: TeacherSpec, config: KeyframeConfig) -> None:
    """Entry point of the teacher process: build, report ready, serve jobs until 'stop'."""
    try:
        if config.teacher_nice:
            os.nice(config.teacher_nice)
        if config.teacher_cpus:
            os.sched_setaffinity(0, config.teacher_cpus)
        teacher = build_teacher(spec)
        torch = _torch()
        if torch is not None and config.teacher_threads > 0:
            torch.set_num_threads(config.teacher_threads)  # the whole child: no caveat here
        conn.send(('ready', getattr(teacher, 'name', type(teacher).__name__)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(_describe(exc))
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if msg[0] != 'job':
            return
        try:
            result = process_keyframe(teacher, msg[1], msg[2], config)
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            conn.send(_describe(exc))
        else:
            conn.send(('ok', result))
