"""What the node publishes for one frame, as arrays, without ROS.

The live node and the offline writer of replay bags put out the very same messages; the byte
layouts are :mod:`depth_node.messages.layout`'s, the choices of what goes out are here:

* :func:`frame_outputs`: the arrays of one processed frame (depth, its uncertainty, its camera
  info, the cloud, the relative map and the preview) under :class:`PublishSettings`;
* :func:`preview`: the ``depth/colored`` image (turbo on inverse metric depth, or on the
  relative map when there is no fit);
* :class:`OutputBuffers`: byte buffers reused frame after frame, which the cloud and the
  preview are written straight into and depth and uncertainty copied into (the ros layer
  hands them to the message as they are);
* :func:`warm_up`: compiles the output kernels before the first frame;
* :func:`diagnostic_status`: level, message and key/values of the node's ``/diagnostics``
  status from a :class:`~depth_node.pipeline.stats.FrameStats` snapshot.

Units: metres along the optical axis, NaN = no data (REP 118).
"""

from __future__ import annotations

import array
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from depth_node.core.align import apply_affine, OutputKind
from depth_node.core.camera import PinholeCamera
from depth_node.core.cloud import PointGrid
from depth_node.core.colormap import colorize_depth, colorize_relative
from depth_node.core.extrinsic_check import shift_message
from depth_node.messages.layout import (cloud_fields, depth_camera_info, DepthCameraInfo,
                                        pack_cloud, pack_depth_cloud, PackedCloud)
from depth_node.pipeline.frame import FitState
from depth_node.pipeline.stats import StatsSnapshot

#: diagnostic_msgs/DiagnosticStatus levels
DIAG_OK, DIAG_WARN, DIAG_ERROR = 0, 1, 2

#: Counters the node reports in /diagnostics, in its order.
DIAGNOSTIC_COUNTERS = ('frames_in', 'published', 'published_relative_only', 'dropped_superseded',
                       'dropped_no_camera_info', 'dropped_error', 'dropped_input_limits',
                       'letterboxed', 'frames_over_time', 'malformed_image',
                       'malformed_points', 'malformed_camera_info', 'sweeps_in',
                       'sweeps_discarded', 'time_jumps', 'frames_without_lidar',
                       'frames_without_extrinsic', 'sweeps_not_deskewed')


class OutputBuffers:
    """Byte buffers by name, reused from frame to frame while their size stays.

    Each is an ``array.array('B')``, the type rclpy keeps in a ``uint8[]`` field, so a message
    can take it without a copy; :meth:`array` hands out a numpy view of it to write into.
    Whatever was written for one frame is overwritten by the next: a caller hands them over
    only to consumers that are done with them before its next frame (the node publishes
    synchronously; rclpy serialises in ``publish``).
    """

    def __init__(self) -> None:
        self._buffers: dict[str, tuple[array.array, np.ndarray]] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A C-contiguous ``shape``/``dtype`` view of buffer ``name`` (new when it resizes)."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        held = self._buffers.get(name)
        if held is None or len(held[0]) != nbytes:
            data = array.array('B', bytes(nbytes))
            held = (data, np.frombuffer(data, np.uint8))
            self._buffers[name] = held
        return held[1].view(dtype).reshape(shape)

    def nbytes(self) -> int:
        """Bytes held in all buffers."""
        return sum(len(data) for data, _ in self._buffers.values())


def preview(depth: Optional[np.ndarray], relative: np.ndarray,
            colormap_range: tuple[float, float],
            buffers: Optional[OutputBuffers] = None) -> np.ndarray:
    """``depth/colored`` [H, W, 3] uint8 RGB: metric depth when there is some, else relative.

    With ``buffers``, metric depth's preview is written into its ``'depth/colored'`` buffer.
    """
    if depth is not None:
        out = None if buffers is None else buffers.array('depth/colored',
                                                         depth.shape + (3,), np.uint8)
        return colorize_depth(depth, *colormap_range, out=out)
    return colorize_relative(relative)


def into_buffer(values: np.ndarray, name: str, buffers: OutputBuffers) -> np.ndarray:
    """``values`` as float32 in buffer ``name``: one copy into memory already mapped."""
    out = buffers.array(name, values.shape, np.float32)
    np.copyto(out, values)
    return out


def warm_up() -> None:
    """Compile the output kernels (metric depth, cloud, preview) now, not on the first frame.

    As :func:`depth_node.pipeline.trust.warm_up`: numba compiles on the first call in a
    process, or loads its cache (``cache=True``).
    """
    depth = apply_affine(np.ones((4, 4), np.float32), 0.5, 0.0, OutputKind.DISPARITY)
    grid = PointGrid(PinholeCamera(4, 4, 2.0, 2.0, 2.0, 2.0), 2)
    for rgb in (None, np.zeros((4, 4, 3), np.uint8)):
        for sigma in (None, depth):
            grid.packed(depth, rgb, sigma)
    colorize_depth(depth, 1.0, 80.0)


def diagnostic_status(snapshot: StatsSnapshot, estimator_output: str,
                      watchdog_timeout: float = 0.0
                      ) -> tuple[int, str, list[tuple[str, str]]]:
    """Level, message and key/values of the node's ``/diagnostics`` status.

    Parameters
    ----------
    snapshot
        :meth:`depth_node.pipeline.stats.FrameStats.snapshot`.
    estimator_output
        ``'disparity'`` or ``'depth'``.
    watchdog_timeout
        Seconds (``watchdog.timeout``; 0: off): a frame running longer makes the status
        ERROR while it runs, and so does one that finished over it since the last snapshot.

    Returns
    -------
    tuple
        ``(level, message, [(key, value), ...])`` with ``level`` :data:`DIAG_OK`,
        :data:`DIAG_WARN` or :data:`DIAG_ERROR`; values are strings, in the node's order.
        The caller names the status ``'<node name>: metric depth'`` with the namespace as
        ``hardware_id``.

    """
    fit = snapshot.fit
    state = snapshot.fit_state
    counts = snapshot.counts
    if 0 < watchdog_timeout < snapshot.busy_s:
        level = DIAG_ERROR
        message = (f'inference stalled: a {snapshot.busy_frame} has run for '
                   f'{snapshot.busy_s:.1f} s (watchdog.timeout {watchdog_timeout:g} s)')
    elif watchdog_timeout > 0 and snapshot.new_slow:
        level, message = DIAG_ERROR, f'inference too slow: {snapshot.last_slow}'
    elif not counts.get('frames_in'):
        level, message = DIAG_WARN, 'no images received'
    elif snapshot.new_problems and fit is None:  # no frame processed yet: say why
        level, message = DIAG_WARN, f'inputs dropped: {snapshot.last_error}'
    elif state == FitState.NONE:
        level = DIAG_WARN
        message = f"relative only, no metric fit: {fit.reason if fit else ''}"
    elif snapshot.refused:
        level, message = DIAG_WARN, f'metric depth refused: {snapshot.refused}'
    elif state == FitState.HELD:
        level = DIAG_WARN
        message = f'holding last fit ({snapshot.fit_age:.2f} s old): ' \
                  f"{fit.reason if fit else ''}"
    elif snapshot.new_problems:
        level, message = DIAG_WARN, f'inputs dropped: {snapshot.last_error}'
    elif snapshot.trust is not None and snapshot.trust.extrinsic_shift:
        level, message = DIAG_WARN, shift_message(snapshot.trust.extrinsic_shift)
    else:
        level, message = DIAG_OK, f'fit {state}'
    values = {'fit_state': str(state), 'fit_age_s': f'{snapshot.fit_age:.3f}',
              'estimator_output': estimator_output}
    if fit is not None:
        values.update({'frame_scale': f'{fit.scale:.6g}', 'frame_shift': f'{fit.shift:.6g}',
                       'fit_space': fit.space.value, 'lidar_points_used': str(fit.points),
                       'fit_inliers': str(fit.inliers), 'fit_residual': f'{fit.residual:.6g}',
                       'fit_abs_rel': f'{fit.abs_rel:.6g}', 'fit_reason': fit.reason,
                       'see_through_rejected': str(snapshot.see_through_rejected),
                       'filter_event': str(snapshot.filter_event)})
    trust = snapshot.trust
    if trust is not None:
        values.update({'coverage': f'{trust.coverage:.4f}',
                       'lidar_supported': f'{trust.lidar_share:.4f}',
                       'median_relative_sigma': f'{trust.median_relative_sigma:.4g}',
                       'sigma_self_check_scale': f'{trust.sigma_scale:.3f}',
                       'sigma_teacher_scale': f'{trust.teacher_scale:.3f}',
                       'extrinsic_shift_px': str(trust.extrinsic_shift)})
    values['refused'] = snapshot.refused
    applied = snapshot.applied
    values['scale'] = f'{applied.scale:.6g}' if applied is not None else 'nan'
    values['shift'] = f'{applied.shift:.6g}' if applied is not None else 'nan'
    for key in DIAGNOSTIC_COUNTERS:
        values[key] = str(counts.get(key, 0))
    values['last_error'] = str(snapshot.last_error)
    values.update(snapshot.notes)  # e.g. 'deskew': what is done to the sweeps now
    values['inference_busy_s'] = f'{snapshot.busy_s:.3f}'
    for stage, lat in sorted(snapshot.latency.items()):
        values[f'latency_{stage}_ms'] = f'{lat.mean:.2f}'
        values[f'latency_{stage}_max_ms'] = f'{lat.max:.2f}'
    return level, message, list(values.items())


@dataclass(frozen=True)
class PublishSettings:
    """What the node publishes (its ``output.*`` and ``cloud.*`` parameters)."""

    relative: bool = True  # output.relative: depth/relative
    colored: bool = True  # output.colored: depth/colored
    colormap_range: tuple[float, float] = (1.0, 80.0)  # m, output.colormap_min/max
    cloud: bool = True  # cloud.enable: depth/points
    cloud_color: bool = False  # cloud.color: XYZRGB instead of XYZ
    cloud_stride: int = 2  # cloud.stride (the pipeline's cloud_stride)
    uncertainty: bool = True  # output.uncertainty: depth/uncertainty
    cloud_sigma: bool = False  # cloud.sigma: a 'sigma' field (m) in depth/points


@dataclass(frozen=True)
class FrameOutputs:
    """The messages the node publishes for one frame, as arrays (None: not published)."""

    depth: Optional[np.ndarray]  # depth: [H, W] float32 metres, NaN = no data (32FC1)
    uncertainty: Optional[np.ndarray]  # depth/uncertainty: [H, W] float32 sigma, m (32FC1)
    camera_info: Optional[DepthCameraInfo]  # depth/camera_info
    cloud: Optional[PackedCloud]  # depth/points
    relative: Optional[np.ndarray]  # depth/relative: [H, W] float32, unitless (32FC1)
    colored: Optional[np.ndarray]  # depth/colored: [H, W, 3] uint8 RGB (rgb8)


def frame_outputs(depth: Optional[np.ndarray], points: Optional[np.ndarray],
                  relative: np.ndarray, rgb: np.ndarray, camera: PinholeCamera,
                  distortion_model: str, distortion_count: int,
                  settings: PublishSettings,
                  sigma: Optional[np.ndarray] = None, grid: Optional[PointGrid] = None,
                  buffers: Optional[OutputBuffers] = None,
                  timings_ms: Optional[dict[str, float]] = None) -> FrameOutputs:
    """What the node publishes for a processed frame (its ``_process``, without ROS).

    ``depth``, ``points``, ``relative`` and ``sigma`` are the pipeline's
    :class:`~depth_node.pipeline.frame.FrameResult` fields; ``rgb`` the input image; ``camera``
    the model it was processed with. Depth, its uncertainty, its camera info and the cloud go
    out only when there is metric depth; the relative map and the preview always (when
    enabled). Without ``points`` the cloud is back-projected and packed from ``depth`` in one
    pass on ``grid`` (the pipeline's :meth:`~depth_node.pipeline.frame.DepthPipeline.grid`);
    with ``buffers`` the cloud and the preview are written into reused buffers and depth and
    its uncertainty copied into some (:class:`OutputBuffers`). ``timings_ms`` gets the
    cloud's milliseconds as ``'points'`` (back-projection and packing, one pass).
    """
    info = cloud = unc = None
    if depth is not None:
        info = depth_camera_info(camera, distortion_model, distortion_count)
        s = settings.cloud_stride
        with_sigma = settings.cloud_sigma and sigma is not None
        if points is not None and settings.cloud:
            cloud = pack_cloud(points, rgb[::s, ::s] if settings.cloud_color else None,
                               sigma[::s, ::s] if with_sigma else None)
        elif grid is not None and settings.cloud:
            t0 = time.perf_counter()
            out = None
            if buffers is not None:
                step = 4 * len(cloud_fields(settings.cloud_color, with_sigma))
                out = buffers.array('depth/points', (grid.shape[0] * grid.shape[1] * step,),
                                    np.uint8)
            cloud = pack_depth_cloud(grid, depth, rgb if settings.cloud_color else None,
                                     sigma if with_sigma else None, out)
            if timings_ms is not None:
                timings_ms['points'] = (time.perf_counter() - t0) * 1e3
        if settings.uncertainty and sigma is not None:
            unc = sigma if buffers is None else into_buffer(sigma, 'depth/uncertainty', buffers)
        if buffers is not None:
            depth = into_buffer(depth, 'depth', buffers)
    colored = None
    if settings.colored:
        colored = preview(depth, relative, settings.colormap_range, buffers)
    return FrameOutputs(
        depth=depth, uncertainty=unc, camera_info=info, cloud=cloud,
        relative=relative if settings.relative else None, colored=colored)
