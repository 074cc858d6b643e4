"""The byte layouts of what the node publishes: ``depth/points`` and ``depth/camera_info``.

The live node (:mod:`depth_node.ros`) and the offline writer of replay bags
(:mod:`depth_node.offline`) put out the very same messages, so the layout decisions live here,
once: :func:`pack_cloud` (packed XYZ or XYZRGB float32 fields, the PCL/rviz ``rgb`` packing,
native byte order, ``is_dense``), :func:`pack_depth_cloud` (the same layout straight from a
depth image in one compiled pass: the node's per-frame ``depth/points``) and
:func:`depth_camera_info` (the camera model actually used, rectified, no distortion). Units:
metres along the optical axis, NaN = no data (REP 118).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.cloud import PointGrid
from depth_node.messages.encodings import MessageError, NATIVE_BIG


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


def pack_cloud(points: np.ndarray, rgb: Optional[np.ndarray] = None,
               sigma: Optional[np.ndarray] = None) -> PackedCloud:
    """Packed XYZ or XYZRGB cloud of ``points``, optionally with a ``sigma`` field.

    Parameters
    ----------
    points
        [H, W, 3] (organized: the cloud keeps height H and width W) or [N, 3] (height 1),
        floating point, metres; NaN marks a missing point.
    rgb
        Optional [H, W, 3] or [N, 3] uint8 R, G, B, the same leading shape as ``points``.
    sigma
        Optional [H, W] or [N] floating point: the depth's standard deviation (m) per point,
        appended as a FLOAT32 field ``sigma`` after the others.

    Returns
    -------
    PackedCloud
        XYZ: float32 ``x, y, z`` at offsets 0, 4, 8, ``point_step`` 12 (no padding). XYZRGB:
        plus ``rgb`` at offset 12, a FLOAT32 field holding the bits ``0x00RRGGBB`` (the PCL /
        rviz packing), ``point_step`` 16. Native byte order, ``row_step = width * point_step``.

    Raises
    ------
    MessageError
        ``points`` or ``rgb`` of the wrong shape or dtype (``field`` is ``'points'`` or
        ``'rgb'`` or ``'sigma'``).

    """
    pts = np.asarray(points)
    if pts.ndim not in (2, 3) or pts.shape[-1] != 3:
        raise MessageError('points', f'of shape {pts.shape} is not [N, 3] or [H, W, 3]')
    if not np.issubdtype(pts.dtype, np.floating):
        raise MessageError('points', f'of dtype {pts.dtype} is not floating point')
    height, width = (pts.shape[0], pts.shape[1]) if pts.ndim == 3 else (1, pts.shape[0])
    count = height * width
    names = ['x', 'y', 'z']
    extra = 0 if sigma is None else 1
    if sigma is not None:
        sig = np.asarray(sigma)
        if sig.shape != pts.shape[:-1] or not np.issubdtype(sig.dtype, np.floating):
            raise MessageError('sigma', f'of shape {sig.shape} and dtype {sig.dtype} is not '
                               f'floating point of shape {pts.shape[:-1]}')
    if rgb is None:
        buffer = np.empty((count, 3 + extra), dtype=np.float32)  # [N, 3] x, y, z
    else:
        colours = np.asarray(rgb)
        if colours.shape != pts.shape or colours.dtype != np.uint8:
            raise MessageError('rgb', f'of shape {colours.shape} and dtype {colours.dtype} '
                               f'is not uint8 of the points shape {pts.shape}')
        colours = colours.reshape(count, 3)
        names.append('rgb')
        buffer = np.empty((count, 4 + extra), dtype=np.float32)  # [N, 4] x, y, z, rgb bits
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
        if sigma is not None:
            buffer[:, len(names)] = sig.reshape(count)
    if sigma is not None:
        names.append('sigma')
    dense = all(bool(np.isfinite(buffer[:, i]).all()) for i in range(3))
    point_step = 4 * len(names)
    return PackedCloud(height=int(height), width=int(width),
                       fields=tuple((name, 4 * i) for i, name in enumerate(names)),
                       point_step=point_step, row_step=point_step * int(width),
                       is_bigendian=NATIVE_BIG, is_dense=dense,
                       data=buffer.reshape(-1).view(np.uint8))


def cloud_fields(rgb: bool, sigma: bool) -> tuple[tuple[str, int], ...]:
    """``(name, byte offset)`` of the FLOAT32 fields: x, y, z, then rgb, then sigma."""
    names = ['x', 'y', 'z'] + (['rgb'] if rgb else []) + (['sigma'] if sigma else [])
    return tuple((name, 4 * i) for i, name in enumerate(names))


def pack_depth_cloud(grid: PointGrid, depth: np.ndarray, rgb: Optional[np.ndarray] = None,
                     sigma: Optional[np.ndarray] = None,
                     out: Optional[np.ndarray] = None) -> PackedCloud:
    """Organized cloud of a depth image, back-projected and packed in one pass.

    The layout of :func:`pack_cloud` (the same bytes as ``pack_cloud(grid.points(depth),
    rgb[::s, ::s], sigma[::s, ::s])``), without the intermediate points array.

    Parameters
    ----------
    grid
        The camera's :class:`~depth_node.core.cloud.PointGrid` (its stride is the cloud's).
    depth
        [H, W] float32 metres, NaN = no data.
    rgb, sigma
        Optional full-size [H, W, 3] uint8 colours and [H, W] float32 sigma (m).
    out
        Optional C-contiguous uint8 buffer of exactly ``row_step * height`` bytes that the
        cloud is written into (e.g. a reused message buffer); a new one when None.

    Raises
    ------
    MessageError
        A wrong size or dtype (``field`` ``'depth'``, ``'rgb'``, ``'sigma'`` or ``'out'``).

    """
    h, w = grid.shape
    fields = cloud_fields(rgb is not None, sigma is not None)
    step = 4 * len(fields)
    words = None
    if out is not None:
        if out.dtype != np.uint8 or out.ndim != 1 or out.size != h * w * step \
                or not out.flags.c_contiguous:
            raise MessageError('out', f'of shape {out.shape} and dtype {out.dtype} is not a '
                               f'contiguous uint8 buffer of {h * w * step} bytes')
        words = out.view(np.float32).reshape(h, w, len(fields))
    size = (grid.camera.height, grid.camera.width)
    for name, array, shape, kind in (('depth', depth, size, np.floating),
                                     ('rgb', rgb, size + (3,), np.uint8),
                                     ('sigma', sigma, size, np.floating)):
        if array is not None and (array.shape != shape
                                  or not np.issubdtype(array.dtype, kind)):
            raise MessageError(name, f'of shape {array.shape} and dtype {array.dtype} is not '
                               f'{kind.__name__} of shape {shape}')
    words, dense = grid.packed(np.asarray(depth, np.float32), rgb,
                               None if sigma is None else np.asarray(sigma, np.float32), words)
    return PackedCloud(height=int(h), width=int(w), fields=fields, point_step=step,
                       row_step=step * int(w), is_bigendian=NATIVE_BIG, is_dense=dense,
                       data=words.reshape(-1).view(np.uint8))


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
