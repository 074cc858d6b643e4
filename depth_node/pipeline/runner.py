"""The one per-frame runner: what the node and the bag evaluation do with each camera frame.

Given a decoded image, the camera model (from ``camera_info``), the LiDAR sweep chosen for it
(:func:`nearest_sweep`, the rule "nearest stamp within ``lidar.max_age``") and the extrinsic
(parameters, or a lookup: tf2 in the node, ``/tf_static`` in the evaluation),
:class:`FrameRunner` resizes the camera model to the image, runs
:meth:`~depth_node.pipeline.frame.DepthPipeline.process`, builds what is published
(:func:`~depth_node.pipeline.published.frame_outputs`), hands it to the caller's ``emit`` (the
node's publishers, the evaluation's output bag) and records the frame in
:class:`~depth_node.pipeline.stats.FrameStats`. It returns a :class:`FrameRun`.

Decision rules (the node's, for both callers):

* no camera model yet: the frame is dropped (``dropped_no_camera_info``);
* an image outside the ``input.*`` limits (:mod:`~depth_node.pipeline.input_limits`):
  dropped (``dropped_input_limits``), or letterboxed for the network (``letterboxed``, and
  :attr:`FrameRun.warning` says so);
* no sweep within ``max_age``: the frame runs without LiDAR (``frames_without_lidar``);
* a sweep: it is moved to the image stamp with the caller's motion source
  (:func:`~depth_node.pipeline.sweep_motion.deskew_sweep`: per point with per-point times,
  as a whole without; not at all without motion, counted as ``sweeps_not_deskewed``); a
  change of :class:`~depth_node.pipeline.sweep_motion.DeskewState` is said once
  (:attr:`FrameRun.deskew_note`) and the current one is the ``deskew`` diagnostics value;
* a sweep but the extrinsic lookup fails: the frame runs without LiDAR
  (``frames_without_extrinsic``, a problem);
* the pipeline refuses the frame (:class:`DepthNodeError`): dropped (``dropped_error``); any
  other exception: dropped the same way, its type named;
* otherwise it is published (``published``, or ``published_relative_only`` without a fit);
* a frame that took longer than ``watchdog.timeout`` is counted (``frames_over_time``); while
  one runs, :meth:`~depth_node.pipeline.stats.FrameStats.snapshot` says for how long, so the
  diagnostics can turn ERROR during a stall, not only after it.

The caller counts what arrives (``frames_in``, ``sweeps_in``), what cannot be decoded
(``malformed_*``) and the sweeps :func:`add_sweep` discards (``sweeps_discarded``) or that
start over after a jump back in time (``time_jumps``), since only it sees the messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, TypeVar

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.compat import StrEnum
from depth_node.core.deskew import warm_up as warm_up_deskew
from depth_node.core.errors import DepthNodeError
from depth_node.core.stamped import StampedCache
from depth_node.core.transforms import RigidTransform
from depth_node.estimators.base import Estimator
from depth_node.pipeline.frame import DepthPipeline, FrameInput, FrameResult, PipelineConfig
from depth_node.pipeline.input_limits import InputRefused
from depth_node.pipeline.memory import release_memory
from depth_node.pipeline.published import (FrameOutputs, frame_outputs, OutputBuffers,
                                           PublishSettings)
from depth_node.pipeline.published import warm_up as warm_up_outputs
from depth_node.pipeline.stats import FrameStats
from depth_node.pipeline.sweep_motion import (deskew_sweep, DeskewSettings, DeskewState,
                                              MotionLookup)

T = TypeVar('T')

#: Why a frame was not published (FrameStats counter names).
DROPPED_NO_CAMERA_INFO = 'dropped_no_camera_info'
DROPPED_ERROR = 'dropped_error'
DROPPED_INPUT_LIMITS = 'dropped_input_limits'
NO_CAMERA_INFO = 'frame dropped: no camera_info received yet'

#: ``lookup(camera_frame, lidar_frame, stamp_ns) -> lidar_to_camera``; raises when unknown.
ExtrinsicLookup = Callable[[str, str, int], RigidTransform]


#: A sweep this much older than the newest one held means time jumped back (a bag played
#: again, ``--loop``, sim time reset), seconds.
TIME_JUMP_S = 1.0
#: A sweep stamped this much after the latest image is not trusted (a clock glitch, a driver on
#: another time base): it is discarded, not cached, seconds.
FUTURE_S = 10.0


class SweepAdded(StrEnum):
    """What :func:`add_sweep` did with a sweep."""

    KEPT = 'kept'
    JUMPED = 'jumped'  # time jumped back: the sweeps held were forgotten, this one kept
    DUPLICATE = 'duplicate'  # a sweep of this stamp is held already: discarded
    FUTURE = 'future'  # stamped more than FUTURE_S after the reference: discarded

    @property
    def discarded(self) -> bool:
        """Whether the sweep was not cached (``sweeps_discarded``)."""
        return self in (SweepAdded.DUPLICATE, SweepAdded.FUTURE)


def add_sweep(cache: StampedCache[T], stamp_ns: int, sweep: T,
              reference_ns: Optional[int] = None) -> SweepAdded:
    """Cache ``sweep`` unless its stamp cannot be trusted; forget the cache on a jump back.

    * stamped more than :data:`FUTURE_S` after ``reference_ns`` (the latest image's stamp;
      None: no image yet): discarded (``FUTURE``), the cache unchanged;
    * more than :data:`TIME_JUMP_S` older than the newest sweep held: time jumped back, the
      cache is cleared first (``JUMPED``), as tf2 clears its buffer. Without it, a replay that
      starts again would pair its frames with the stale sweeps of the first pass;
    * a stamp held already: ``DUPLICATE``, the first sweep stays.

    The cache evicts by arrival (:class:`~depth_node.core.stamped.StampedCache`), so a late
    sweep is kept and no sweep stays forever.
    """
    stamp_ns = int(stamp_ns)
    if reference_ns is not None and stamp_ns > reference_ns + int(FUTURE_S * 1e9):
        return SweepAdded.FUTURE
    newest = cache.newest()
    jumped = newest is not None and stamp_ns < newest[0] - int(TIME_JUMP_S * 1e9)
    if jumped:
        cache.clear()
    if not cache.add(stamp_ns, sweep):
        return SweepAdded.DUPLICATE
    return SweepAdded.JUMPED if jumped else SweepAdded.KEPT


def nearest_sweep(cache: StampedCache[T], stamp_ns: int,
                  max_age: float) -> Optional[tuple[int, T]]:
    """The (stamp, sweep) of ``cache`` nearest ``stamp_ns`` within ``max_age`` s, or None.

    The node's ``lidar.max_age`` rule; the earlier sweep wins a tie. The node's LiDAR buffer
    and the bag reader both choose with it.
    """
    return cache.nearest(int(stamp_ns), int(round(max_age * 1e9)))


@dataclass(frozen=True)
class RunnerConfig:
    """What the runner needs of the node's configuration (built once from its parameters)."""

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    publish: PublishSettings = field(default_factory=PublishSettings)
    extrinsic: RigidTransform = field(default_factory=RigidTransform.identity)  # extrinsic.*
    lidar_max_age: float = 0.1  # s, lidar.max_age
    watchdog_timeout: float = 10.0  # s, watchdog.timeout (0: off)
    deskew: DeskewSettings = field(default_factory=DeskewSettings)  # lidar.deskew, motion.*


@dataclass(frozen=True)
class ImageFrame:
    """A decoded camera image."""

    rgb: np.ndarray  # [H, W, 3] uint8
    stamp_ns: int  # header stamp
    frame_id: str

    @property
    def stamp(self) -> float:
        """Header stamp in seconds."""
        return self.stamp_ns * 1e-9


@dataclass(frozen=True)
class CameraModel:
    """A decoded ``camera_info``: the model and what ``depth/camera_info`` copies from it."""

    camera: PinholeCamera
    distortion_model: str = 'plumb_bob'
    distortion_count: int = 5


@dataclass(frozen=True)
class Sweep:
    """A decoded LiDAR sweep."""

    stamp_ns: int
    frame_id: str
    xyz: np.ndarray  # [N, 3] float32 m in frame_id (each return at its own time); may hold
    # NaN (the projection drops them) and be read-only (a view of the message)
    times: Optional[np.ndarray] = None  # [N] float64 s since stamp_ns per return; None: none


@dataclass
class FrameRun:
    """What the runner did with one frame.

    ``dropped`` is '' for a published frame, else the counter it went to (``reason`` says
    why); ``frame`` is what went into the pipeline (camera resized to the image, the LiDAR and
    extrinsic used), ``result`` what came out, ``outputs`` what was handed to ``emit``.
    """

    dropped: str = ''
    reason: str = ''
    frame: Optional[FrameInput] = None
    result: Optional[FrameResult] = None
    outputs: Optional[FrameOutputs] = None
    extrinsic_error: str = ''  # the lookup's error when the sweep could not be used
    unexpected: bool = False  # dropped by an exception that is not a DepthNodeError
    warning: str = ''  # published, but with something to say (letterboxed, over time)
    deskew: Optional[DeskewState] = None  # what was done to the sweep (None: no sweep used)
    deskew_note: str = ''  # set when the deskew state changed: say it once
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def published(self) -> bool:
        return not self.dropped


class FrameRunner:
    """One estimator, one pipeline, one set of stats: frames in, :class:`FrameRun` out.

    Not thread-safe: one caller at a time (the node's inference worker, the evaluation loop).
    """

    def __init__(self, estimator: Estimator, config: RunnerConfig,
                 stats: Optional[FrameStats] = None) -> None:
        self.pipeline = DepthPipeline(estimator, config.pipeline)
        self._config = config
        self.stats = stats if stats is not None else FrameStats()
        #: Reused buffers for the cloud and the preview (None: new arrays every frame). Only
        #: for a caller whose ``emit`` is done with a frame's outputs when it returns.
        self.buffers: Optional[OutputBuffers] = None
        warm_up_outputs()
        self._deskew_state: Optional[DeskewState] = None
        if config.deskew.enable:
            warm_up_deskew()  # compile (or load) its kernel now, not on the first sweep

    @property
    def config(self) -> RunnerConfig:
        return self._config

    @config.setter
    def config(self, config: RunnerConfig) -> None:
        """Apply new settings (validated by the pipeline); the pipeline's state stays."""
        self.pipeline.config = config.pipeline
        self._config = config

    def drop(self, key: str, message: str) -> FrameRun:
        """Count a dropped frame or input under ``key`` and remember ``message``."""
        self.stats.error(key, message)
        return FrameRun(dropped=key, reason=message)

    def run(self, image: ImageFrame, camera: Optional[CameraModel], sweep: Optional[Sweep],
            lookup: Optional[ExtrinsicLookup] = None, *,
            motion: Optional[MotionLookup] = None,
            prepare: Optional[Callable[[FrameInput], FrameInput]] = None,
            emit: Optional[Callable[[FrameOutputs, FrameInput, FrameResult], None]] = None,
            received: Optional[float] = None,
            timings_ms: Optional[dict[str, float]] = None) -> FrameRun:
        """Process one frame (see the module docstring for the decisions).

        Parameters
        ----------
        image, camera, sweep
            The decoded image, the current camera model (None: none yet), the chosen sweep.
        lookup
            LiDAR->camera transform at the image stamp; None: the ``extrinsic.*`` parameters.
        motion
            The vehicle's motion for the deskew; None: no motion source (not deskewed).
        prepare
            Changes the pipeline's input once camera and extrinsic are known (the evaluation
            keeps held-out LiDAR away from the fit).
        emit
            Publishes the outputs (timed as ``publish``).
        received
            ``time.perf_counter()`` when the image arrived (``total`` latency); None: now.
        timings_ms
            Stages the caller timed (e.g. ``convert``), recorded with the pipeline's.
        """
        t_start = time.perf_counter()
        received = t_start if received is None else received
        if camera is None:
            return self.drop(DROPPED_NO_CAMERA_INFO, NO_CAMERA_INFO)
        h, w = image.rgb.shape[:2]
        try:
            self._config.pipeline.input_limits.letterbox_shape(h, w)
        except InputRefused as exc:
            return self.drop(DROPPED_INPUT_LIMITS, f'frame dropped: {exc}')
        self.stats.begin_frame(f'{w}x{h} image stamped {image.stamp:.3f}')
        try:
            run = self._run(image, camera, sweep, lookup, motion, prepare, emit, received,
                            timings_ms)
        finally:
            took = self.stats.end_frame()
            release_memory()  # when big frames left much free: else RSS stays at their peak
        timeout = self._config.watchdog_timeout
        if 0 < timeout < took:
            message = (f'a {w}x{h} frame took {took:.1f} s, more than watchdog.timeout '
                       f'({timeout:g} s)')
            self.stats.slow_frame(message)
            run.warning = '; '.join(filter(None, (run.warning, message)))
        return run

    def _run(self, image: ImageFrame, camera: CameraModel, sweep: Optional[Sweep],
             lookup: Optional[ExtrinsicLookup], motion: Optional[MotionLookup],
             prepare: Optional[Callable[[FrameInput], FrameInput]],
             emit: Optional[Callable[[FrameOutputs, FrameInput, FrameResult], None]],
             received: float, timings_ms: Optional[dict[str, float]]) -> FrameRun:
        cam = camera.camera
        h, w = image.rgb.shape[:2]
        rescaled = ''
        if (cam.width, cam.height) != (w, h):
            rescaled = (f'camera_info is {cam.width}x{cam.height} but the image {w}x{h}: the '
                        'camera model is scaled to the image (right for a resized image, wrong '
                        'for a cropped one)')
            cam = cam.resized(w, h)
        config = self._config
        lidar, extrinsic, lookup_error = None, config.extrinsic, ''
        if sweep is None:
            self.stats.count('frames_without_lidar')
        else:
            try:
                if lookup is not None:
                    extrinsic = lookup(image.frame_id, sweep.frame_id, image.stamp_ns)
                lidar = sweep.xyz
            except Exception as exc:  # tf2's lookup errors have no common base
                lookup_error = f'no LiDAR->camera transform: {exc}'
                self.stats.error('frames_without_extrinsic', lookup_error)
        deskew_state, deskew_note, deskew_ms = None, '', 0.0
        if lidar is not None and sweep is not None:
            t_d = time.perf_counter()
            deskewed = deskew_sweep(lidar, sweep.times, sweep.stamp_ns, image.stamp_ns,
                                    sweep.frame_id, motion, config.deskew)
            deskew_ms = (time.perf_counter() - t_d) * 1e3
            lidar, deskew_state = deskewed.xyz, deskewed.state
            deskew_note = self._deskew_changed(deskewed.state, deskewed.note)
        frame = FrameInput(image.rgb, cam, image.stamp, lidar, extrinsic)
        if prepare is not None:
            frame = prepare(frame)
        try:
            # The cloud is back-projected and packed in one pass from the depth below.
            result = self.pipeline.process(frame, want_points=False)
        except InputRefused as exc:  # a limit changed since run() checked it
            return self._failed(f'frame dropped: {exc}', frame, lookup_error, False,
                                DROPPED_INPUT_LIMITS)
        except DepthNodeError as exc:
            return self._failed(f'frame dropped: {exc}', frame, lookup_error, False)
        except Exception as exc:  # keep serving frames; say what broke
            return self._failed(f'frame dropped by an unexpected error: '
                                f'{type(exc).__name__}: {exc}', frame, lookup_error, True)
        t1 = time.perf_counter()
        timings = dict(result.timings_ms)
        outputs = frame_outputs(result.depth, result.points, result.relative, image.rgb, cam,
                                camera.distortion_model, camera.distortion_count,
                                config.publish, result.sigma, self.pipeline.grid(cam),
                                self.buffers, timings)
        if emit is not None:
            emit(outputs, frame, result)
        t2 = time.perf_counter()
        timings.update(timings_ms or {})
        if deskew_state is not None:
            timings['deskew'] = deskew_ms
        timings['publish'] = (t2 - t1) * 1e3
        timings['total'] = (t2 - received) * 1e3
        rejected = 0 if result.kept is None else int(result.kept.size - result.kept.sum())
        self.stats.record_frame(timings, result.fit, result.fit_state, result.fit_age,
                                result.applied, rejected, result.filter_event, result.trust,
                                result.refused)
        self.stats.count('published' if result.depth is not None else 'published_relative_only')
        warnings = [rescaled] if rescaled else []
        if result.letterboxed is not None:
            self.stats.count('letterboxed')
            warnings.append(f'image {w}x{h} letterboxed to {result.letterboxed[1]}x'
                            f'{result.letterboxed[0]} for the network (aspect ratio more than '
                            f'input.max_aspect {config.pipeline.input_limits.max_aspect:g})')
        return FrameRun(frame=frame, result=result, outputs=outputs,
                        extrinsic_error=lookup_error, timings_ms=timings,
                        warning='; '.join(warnings), deskew=deskew_state,
                        deskew_note=deskew_note)

    def _deskew_changed(self, state: DeskewState, note: str) -> str:
        """Count and note a sweep's deskew; returns the note when the state changed, else ''."""
        if state == DeskewState.NO_MOTION:
            self.stats.count('sweeps_not_deskewed')
        self.stats.note('deskew', f'{state}: {note}')
        if state == self._deskew_state:
            return ''
        self._deskew_state = state
        return f'LiDAR deskew: {state}: {note}'

    def _failed(self, message: str, frame: FrameInput, lookup_error: str,
                unexpected: bool, key: str = DROPPED_ERROR) -> FrameRun:
        run = self.drop(key, message)
        return replace(run, frame=frame, extrinsic_error=lookup_error, unexpected=unexpected)


__all__ = ['add_sweep', 'CameraModel', 'DROPPED_ERROR', 'DROPPED_INPUT_LIMITS',
           'DROPPED_NO_CAMERA_INFO',
           'ExtrinsicLookup', 'FrameRun', 'FrameRunner', 'ImageFrame', 'NO_CAMERA_INFO',
           'FUTURE_S', 'RunnerConfig', 'Sweep', 'SweepAdded', 'nearest_sweep', 'TIME_JUMP_S']
