"""One keyframe: the teacher's prediction fitted to the LiDAR, its uncertainty, the cross-check.

:func:`process_keyframe` is what the keyframe worker does to one candidate: the teacher's
prediction and uncertainty, the LiDAR projection, see-through rejection and robust fit in the
teacher's space (depth for Marigold: ``z ≈ s·m + t``), metric depth, the uncertainty in metres,
and a live cross-check of the student (the real-time output of the same frame) against the
teacher. :class:`KeyframeConfig` holds the worker's options, :func:`build_teacher` turns a
:data:`TeacherSpec` into an estimator where the teacher runs (a thread or a child process).

Units: depths in metres along the optical axis, NaN = invalid (REP 118); stamps in seconds.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import numpy as np

from depth_node.core.align import AffineFit, apply_affine, OutputKind
from depth_node.core.errors import ConfigError
from depth_node.core.metrics import depth_metrics
from depth_node.estimators.base import (check_input_image, check_prediction, Estimator,
                                        EstimatorConfig)
from depth_node.estimators.registry import build_estimator
from depth_node.pipeline.alignment import align_to_lidar
from depth_node.pipeline.frame import FrameInput, PipelineConfig

__all__ = ['KeyframeConfig', 'KeyframeResult', 'TeacherSpec', 'build_teacher', 'cross_check',
           'process_keyframe']

#: A teacher: an estimator object (thread mode), an :class:`EstimatorConfig` (built with
#: :func:`~depth_node.estimators.registry.build_estimator` where the teacher runs), or a
#: zero-argument factory returning an estimator (picklable for process mode, e.g.
#: ``functools.partial(MarigoldEstimator, path, ensemble_size=5)``).
TeacherSpec = Union[Estimator, EstimatorConfig, Callable[[], Estimator]]

_MODES = ('thread', 'process')


@dataclass(frozen=True)
class KeyframeConfig:
    """Options of the keyframe worker; :meth:`validate` raises :class:`ConfigError`.

    ``alignment`` supplies the LiDAR and fit settings the real-time path uses: ``lidar_min_depth``,
    ``lidar_max_depth``, ``max_depth``, ``see_through``, ``see_through_window``,
    ``see_through_gap`` and the robust-fit options (``fit_loss``, ``min_fit_points``,
    ``max_residual``). The keyframe fit is always the robust one (IRLS, log-depth residuals).
    """

    mode: str = 'process'  # 'process' or 'thread' (see depth_node.pipeline.keyframes)
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
        # The real-time path's projection and see-through test; the teacher's fit is always
        # the robust one, whatever fit.method the real-time path uses.
        support, fit = align_to_lidar(pred, frame.lidar, frame.camera, frame.lidar_to_camera,
                                      space, align, method='robust')
        pixels, kept_count = support.sparse.count, support.used.count
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
