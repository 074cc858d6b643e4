"""What the node publishes for one frame, as arrays and bytes, without ROS.

The live node (:mod:`depth_node.ros.node`) and the offline writer of replay bags
(:class:`depth_node.pipeline.bag.OutputBagWriter`) must put out the very same messages, so the
layout decisions live here, once:

* :func:`pack_cloud`: the byte layout of ``depth/points`` (packed XYZ or XYZRGB float32 fields,
  the PCL/rviz ``rgb`` packing, native byte order, ``is_dense``);
* :func:`depth_camera_info`: the numbers of ``depth/camera_info`` (the camera model actually
  used, rectified, no distortion);
* :func:`preview`: the ``depth/colored`` image (turbo on inverse metric depth, or on the
  relative map when there is no fit);
* :func:`diagnostic_status`: level, message and key/values of the node's ``/diagnostics``
  status from a :class:`~depth_node.pipeline.stats.FrameStats` snapshot.

Units: metres along the optical axis, NaN = no data (REP 118).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Optional

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.colormap import colorize_depth, colorize_relative
from depth_node.core.errors import DepthNodeError

#: sensor_msgs/PointField.FLOAT32
FLOAT32 = 7
#: diagnostic_msgs/DiagnosticStatus levels
DIAG_OK, DIAG_WARN = 0, 1
NATIVE_BIG = sys.byteorder == 'big'

#: Counters the node reports in /diagnostics, in its order.
DIAGNOSTIC_COUNTERS = ('frames_in', 'published', 'published_relative_only', 'dropped_superseded',
                       'dropped_no_camera_info', 'dropped_error', 'malformed_image',
                       'malformed_points', 'malformed_camera_info', 'sweeps_in',
                       'frames_without_lidar', 'frames_without_extrinsic')


class CloudLayoutError(DepthNodeError):
    """Points or colours of the wrong shape or dtype; ``field`` names the argument."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f'{field} {problem}')


@dataclass(frozen=True)
class PackedCloud:
    """The fields of a ``sensor_msgs/PointCloud2`` except the header.

    Every field is FLOAT32 with count 1; ``data`` holds ``row_step * height`` bytes.
    """

    height: int
    width: int
    fields: tuple[tuple[str, int], ...]  # (name, byte offset)
    point_step: int  # bytes
    row_step: int  # bytes
    is_bigendian: bool
    is_dense: bool  # True only when every coordinate is finite
    data: np.ndarray  # [row_step * height] uint8


def pack_cloud(points: np.ndarray, rgb: Optional[np.ndarray] = None) -> PackedCloud:
    """Packed XYZ or XYZRGB cloud of ``points``.

    Parameters
    ----------
    points
        [H, W, 3] (organized: the cloud keeps height H and width W) or [N, 3] (height 1),
        floating point, metres; NaN marks a missing point.
    rgb
        Optional [H, W, 3] or [N, 3] uint8 R, G, B, the same leading shape as ``points``.

    Returns
    -------
    PackedCloud
        XYZ: float32 ``x, y, z`` at offsets 0, 4, 8, ``point_step`` 12 (no padding). XYZRGB:
        plus ``rgb`` at offset 12, a FLOAT32 field holding the bits ``0x00RRGGBB`` (the PCL /
        rviz packing), ``point_step`` 16. Native byte order, ``row_step = width * point_step``.

    Raises
    ------
    CloudLayoutError
        ``points`` or ``rgb`` of the wrong shape or dtype (``field`` is ``'points'`` or
        ``'rgb'``).

    """
    pts = np.asarray(points)
    if pts.ndim not in (2, 3) or pts.shape[-1] != 3:
        raise CloudLayoutError('points', f'of shape {pts.shape} is not [N, 3] or [H, W, 3]')
    if not np.issubdtype(pts.dtype, np.floating):
        raise CloudLayoutError('points', f'of dtype {pts.dtype} is not floating point')
    height, width = (pts.shape[0], pts.shape[1]) if pts.ndim == 3 else (1, pts.shape[0])
    count = height * width
    names = ['x', 'y', 'z']
    if rgb is None:
        buffer = np.empty((count, 3), dtype=np.float32)  # [N, 3] x, y, z
    else:
        colours = np.asarray(rgb)
        if colours.shape != pts.shape or colours.dtype != np.uint8:
            raise CloudLayoutError('rgb', f'of shape {colours.shape} and dtype {colours.dtype} '
                                   f'is not uint8 of the points shape {pts.shape}')
        colours = colours.reshape(count, 3)
        names.append('rgb')
        buffer = np.empty((count, 4), dtype=np.float32)  # [N, 4] x, y, z, rgb bits
        # 0x00RRGGBB computed as an integer and stored through a uint32 view: exact bits.
        packed = colours[:, 0].astype(np.uint32)
        packed <<= 16
        packed |= colours[:, 1].astype(np.uint32) << 8
        packed |= colours[:, 2]
        buffer.view(np.uint32)[:, 3] = packed
    flat = pts.reshape(count, 3)
    with np.errstate(over='ignore'):
        for i in range(3):  # per column: faster than one strided [N, 3] copy
            buffer[:, i] = flat[:, i]
    dense = all(bool(np.isfinite(buffer[:, i]).all()) for i in range(3))
    point_step = 4 * len(names)
    return PackedCloud(height=int(height), width=int(width),
                       fields=tuple((name, 4 * i) for i, name in enumerate(names)),
                       point_step=point_step, row_step=point_step * int(width),
                       is_bigendian=NATIVE_BIG, is_dense=dense,
                       data=buffer.reshape(-1).view(np.uint8))


@dataclass(frozen=True)
class DepthCameraInfo:
    """Numbers of ``depth/camera_info``: the model of the published depth image."""

    width: int
    height: int
    distortion_model: str  # copied from the input camera_info
    d: list[float]  # zeros, as many as the input had: the depth image is rectified
    k: list[float]  # 9, row-major
    r: list[float]  # 9, identity
    p: list[float]  # 12, row-major


def depth_camera_info(camera: PinholeCamera, distortion_model: str,
                      distortion_count: int) -> DepthCameraInfo:
    """``depth/camera_info`` of a frame processed with ``camera`` (binning/ROI already applied).

    ``distortion_model`` and ``distortion_count`` are the input camera_info's
    ``distortion_model`` and ``len(d)``.
    """
    return DepthCameraInfo(
        width=camera.width, height=camera.height, distortion_model=distortion_model,
        d=[0.0] * int(distortion_count), k=camera.k.reshape(-1).tolist(),
        r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p=[camera.fx, 0.0, camera.cx, camera.tx, 0.0, camera.fy, camera.cy, camera.ty,
           0.0, 0.0, 1.0, 0.0])


def preview(depth: Optional[np.ndarray], relative: np.ndarray,
            colormap_range: tuple[float, float]) -> np.ndarray:
    """``depth/colored`` [H, W, 3] uint8 RGB: metric depth when there is some, else relative."""
    if depth is not None:
        return colorize_depth(depth, *colormap_range)
    return colorize_relative(relative)


def diagnostic_status(snapshot: dict,
                      estimator_output: str) -> tuple[int, str, list[tuple[str, str]]]:
    """Level, message and key/values of the node's ``/diagnostics`` status.

    Parameters
    ----------
    snapshot
        :meth:`depth_node.pipeline.stats.FrameStats.snapshot`.
    estimator_output
        ``'disparity'`` or ``'depth'``.

    Returns
    -------
    tuple
        ``(level, message, [(key, value), ...])`` with ``level`` :data:`DIAG_OK` or
        :data:`DIAG_WARN`; values are strings, in the node's order. The caller names the
        status ``'<node name>: metric depth'`` with the namespace as ``hardware_id``.

    """
    fit = snapshot['fit']
    state = snapshot['fit_state']
    counts = snapshot['counts']
    if not counts.get('frames_in'):
        level, message = DIAG_WARN, 'no images received'
    elif state == 'none':
        level = DIAG_WARN
        message = f"relative only, no metric fit: {fit.reason if fit else ''}"
    elif state == 'held':
        level = DIAG_WARN
        message = f"holding last fit ({snapshot['fit_age']:.2f} s old): " \
                  f"{fit.reason if fit else ''}"
    elif snapshot['new_problems']:
        level, message = DIAG_WARN, f"inputs dropped: {snapshot['last_error']}"
    else:
        level, message = DIAG_OK, f'fit {state}'
    values = {'fit_state': state, 'fit_age_s': f"{snapshot['fit_age']:.3f}",
              'estimator_output': estimator_output}
    if fit is not None:
        values.update({'frame_scale': f'{fit.scale:.6g}', 'frame_shift': f'{fit.shift:.6g}',
                       'fit_space': fit.space.value, 'lidar_points_used': str(fit.points),
                       'fit_inliers': str(fit.inliers), 'fit_residual': f'{fit.residual:.6g}',
                       'fit_abs_rel': f'{fit.abs_rel:.6g}', 'fit_reason': fit.reason,
                       'see_through_rejected': str(snapshot['see_through_rejected']),
                       'filter_event': str(snapshot['filter_event'])})
    applied = snapshot['applied']
    values['scale'] = f'{applied.scale:.6g}' if applied is not None else 'nan'
    values['shift'] = f'{applied.shift:.6g}' if applied is not None else 'nan'
    for key in DIAGNOSTIC_COUNTERS:
        values[key] = str(counts.get(key, 0))
    values['last_error'] = str(snapshot['last_error'])
    for stage, (mean, peak, _) in sorted(snapshot['latency'].items()):
        values[f'latency_{stage}_ms'] = f'{mean:.2f}'
        values[f'latency_{stage}_max_ms'] = f'{peak:.2f}'
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


@dataclass(frozen=True)
class FrameOutputs:
    """The messages the node publishes for one frame, as arrays (None: not published)."""

    depth: Optional[np.ndarray]  # depth: [H, W] float32 metres, NaN = no data (32FC1)
    camera_info: Optional[DepthCameraInfo]  # depth/camera_info
    cloud: Optional[PackedCloud]  # depth/points
    relative: Optional[np.ndarray]  # depth/relative: [H, W] float32, unitless (32FC1)
    colored: Optional[np.ndarray]  # depth/colored: [H, W, 3] uint8 RGB (rgb8)


def frame_outputs(depth: Optional[np.ndarray], points: Optional[np.ndarray],
                  relative: np.ndarray, rgb: np.ndarray, camera: PinholeCamera,
                  distortion_model: str, distortion_count: int,
                  settings: PublishSettings) -> FrameOutputs:
    """What the node publishes for a processed frame (its ``_process``, without ROS).

    ``depth``, ``points`` and ``relative`` are the pipeline's
    :class:`~depth_node.pipeline.frame.FrameResult` fields; ``rgb`` the input image; ``camera``
    the model it was processed with. Depth, its camera info and the cloud go out only when
    there is metric depth; the relative map and the preview always (when enabled).
    """
    info = cloud = None
    if depth is not None:
        info = depth_camera_info(camera, distortion_model, distortion_count)
        if points is not None and settings.cloud:
            s = settings.cloud_stride
            cloud = pack_cloud(points, rgb[::s, ::s] if settings.cloud_color else None)
    return FrameOutputs(
        depth=depth, camera_info=info, cloud=cloud,
        relative=relative if settings.relative else None,
        colored=preview(depth, relative, settings.colormap_range) if settings.colored else None)
