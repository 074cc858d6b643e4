"""What the node publishes for one frame, as arrays, without ROS.

The live node and the offline writer of replay bags put out the very same messages; the byte
layouts are :mod:`depth_node.messages.layout`'s, the choices of what goes out are here:

* :func:`frame_outputs`: the arrays of one processed frame (depth, its uncertainty, its camera
  info, the cloud, the relative map and the preview) under :class:`PublishSettings`;
* :func:`preview`: the ``depth/colored`` image (turbo on inverse metric depth, or on the
  relative map when there is no fit);
* :func:`diagnostic_status`: level, message and key/values of the node's ``/diagnostics``
  status from a :class:`~depth_node.pipeline.stats.FrameStats` snapshot.

Units: metres along the optical axis, NaN = no data (REP 118).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.colormap import colorize_depth, colorize_relative
from depth_node.messages.layout import depth_camera_info, DepthCameraInfo, pack_cloud, PackedCloud
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
                       'frames_without_extrinsic')


def preview(depth: Optional[np.ndarray], relative: np.ndarray,
            colormap_range: tuple[float, float]) -> np.ndarray:
    """``depth/colored`` [H, W, 3] uint8 RGB: metric depth when there is some, else relative."""
    if depth is not None:
        return colorize_depth(depth, *colormap_range)
    return colorize_relative(relative)


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
                       'sigma_self_check_scale': f'{trust.sigma_scale:.3f}'})
    values['refused'] = snapshot.refused
    applied = snapshot.applied
    values['scale'] = f'{applied.scale:.6g}' if applied is not None else 'nan'
    values['shift'] = f'{applied.shift:.6g}' if applied is not None else 'nan'
    for key in DIAGNOSTIC_COUNTERS:
        values[key] = str(counts.get(key, 0))
    values['last_error'] = str(snapshot.last_error)
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
                  sigma: Optional[np.ndarray] = None) -> FrameOutputs:
    """What the node publishes for a processed frame (its ``_process``, without ROS).

    ``depth``, ``points``, ``relative`` and ``sigma`` are the pipeline's
    :class:`~depth_node.pipeline.frame.FrameResult` fields; ``rgb`` the input image; ``camera``
    the model it was processed with. Depth, its uncertainty, its camera info and the cloud go
    out only when there is metric depth; the relative map and the preview always (when
    enabled).
    """
    info = cloud = unc = None
    if depth is not None:
        info = depth_camera_info(camera, distortion_model, distortion_count)
        s = settings.cloud_stride
        if points is not None and settings.cloud:
            cloud = pack_cloud(points, rgb[::s, ::s] if settings.cloud_color else None,
                               sigma[::s, ::s] if settings.cloud_sigma and sigma is not None
                               else None)
        if settings.uncertainty and sigma is not None:
            unc = sigma
    return FrameOutputs(
        depth=depth, uncertainty=unc, camera_info=info, cloud=cloud,
        relative=relative if settings.relative else None,
        colored=preview(depth, relative, settings.colormap_range) if settings.colored else None)
