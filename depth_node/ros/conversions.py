"""Message <-> array conversion at the ROS boundary (the node's cv_bridge / sensor_msgs_py).

Every function reads or writes one message type and raises :class:`MessageError` naming the
field and the value seen when a message breaks the layout rules of its definition. Readers take
any object with the message's fields whose byte fields support the buffer protocol (rclpy
messages, whose ``data`` is an ``array.array('B')``, and rosbags messages, whose ``data`` is a
numpy array), and check sizes before touching the bytes. Writers build rclpy messages in native
byte order. All conversions are vectorised: no Python loop runs per pixel or per point.

Image conventions follow cv_bridge: ``step`` may pad rows, ``is_bigendian`` applies to
multi-byte types, generic ``8UC3``/``8UC4`` (and 16-bit) colour images are taken as BGR/BGRA.
Depth images are ``32FC1`` metres with NaN = no data (REP 118).
"""

from __future__ import annotations

import array as pyarray
import sys
from typing import Optional

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from depth_node.core.camera import PinholeCamera
from depth_node.core.errors import DepthNodeError
from depth_node.pipeline.published import (CloudLayoutError, DepthCameraInfo, pack_cloud,
                                           PackedCloud)


class MessageError(DepthNodeError):
    """A message (or an array meant for one) breaks a layout rule.

    ``field`` is the offending field, e.g. ``'Image.step'``, or the argument name when an array
    is converted to a message; the message text starts with it and states the value seen.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f'{field} {problem}')


def _build_encodings() -> dict[str, tuple[int, np.dtype]]:
    """Encoding name -> (channels, dtype of one channel), as in image_encodings.hpp."""
    table = {
        'rgb8': (3, 'u1'), 'bgr8': (3, 'u1'), 'rgba8': (4, 'u1'), 'bgra8': (4, 'u1'),
        'rgb16': (3, 'u2'), 'bgr16': (3, 'u2'), 'rgba16': (4, 'u2'), 'bgra16': (4, 'u2'),
        'mono8': (1, 'u1'), 'mono16': (1, 'u2'),
        'yuv422': (2, 'u1'), 'yuv422_yuy2': (2, 'u1'),  # packed 4:2:2 as two channels
    }
    for pattern in ('rggb', 'bggr', 'gbrg', 'grbg'):
        table[f'bayer_{pattern}8'] = (1, 'u1')
        table[f'bayer_{pattern}16'] = (1, 'u2')
    for prefix, kind in (('8U', 'u1'), ('8S', 'i1'), ('16U', 'u2'), ('16S', 'i2'),
                         ('32S', 'i4'), ('32F', 'f4'), ('64F', 'f8')):
        for channels in range(1, 5):
            table[f'{prefix}C{channels}'] = (channels, kind)
    return {name: (channels, np.dtype(kind)) for name, (channels, kind) in table.items()}


#: Image encoding -> (channels, native dtype of one channel).
ENCODINGS: dict[str, tuple[int, np.dtype]] = _build_encodings()

# Encodings image_to_rgb8 accepts -> channel indices giving R, G, B (one index: grey).
_RGB_ORDER: dict[str, tuple[int, ...]] = {
    **{e: (0, 1, 2) for e in ('rgb8', 'rgba8', 'rgb16', 'rgba16')},
    **{e: (2, 1, 0) for e in ('bgr8', 'bgra8', 'bgr16', 'bgra16',
                              '8UC3', '8UC4', '16UC3', '16UC4')},
    **{e: (0,) for e in ('mono8', 'mono16', '8UC1', '16UC1')},
}

_POINT_FIELD_TYPES = {
    PointField.INT8: 'INT8', PointField.UINT8: 'UINT8', PointField.INT16: 'INT16',
    PointField.UINT16: 'UINT16', PointField.INT32: 'INT32', PointField.UINT32: 'UINT32',
    PointField.FLOAT32: 'FLOAT32', PointField.FLOAT64: 'FLOAT64',
}
_POINT_FIELD_FLOATS = {PointField.FLOAT32: 'f4', PointField.FLOAT64: 'f8'}
_NATIVE_BIG = sys.byteorder == 'big'


def _raw_bytes(data: object, field: str) -> np.ndarray:
    """Zero-copy [nbytes] uint8 view of a message byte field (array.array, bytes, ndarray)."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError) as exc:
        raise MessageError(field, f'of type {type(data).__name__} is not a byte buffer') from exc


def _to_byte_array(values: np.ndarray) -> pyarray.array:
    """Copy an array's bytes (C order) into the ``array.array('B')`` rclpy keeps for uint8[].

    ``frombytes`` on a buffer is one memcpy; assigning an ``array.array('B')`` to a message's
    ``data`` is the setter's fast path (a list, a memoryview or an ndarray go element by element:
    ~40-70 ms for a 640x480 float image instead of ~0.05 ms).
    """
    out = pyarray.array('B')
    out.frombytes(np.ascontiguousarray(values).reshape(-1).view(np.uint8))
    return out


def image_to_array(msg: Image) -> np.ndarray:
    """Pixels of an Image as an array, native byte order, channels in the encoding's order.

    Parameters
    ----------
    msg
        ``sensor_msgs/Image`` with an encoding of :data:`ENCODINGS` (colour and mono encodings,
        bayer and yuv422 as raw channels, and the generic ``{8U,8S,16U,16S,32S,32F,64F}C{1..4}``).

    Returns
    -------
    np.ndarray
        [H, W] for one channel, [H, W, C] otherwise, of the encoding's dtype (e.g. ``32FC1``
        float32 metres, ``16UC1`` uint16 millimetres, ``bgr8`` uint8 B, G, R). When the bytes
        are already in native order this is a view of ``msg.data`` (rows strided by ``step``,
        possibly unaligned): copy it before keeping or writing it.

    Raises
    ------
    MessageError
        Unknown encoding, ``step`` smaller than a row, or ``data`` not ``step * height`` bytes.

    """
    encoding = msg.encoding
    if encoding not in ENCODINGS:
        raise MessageError('Image.encoding', f'{encoding!r} is not a supported encoding')
    channels, dtype = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height < 0 or width < 0:
        raise MessageError('Image.height' if height < 0 else 'Image.width',
                           f'{min(height, width)} is negative')
    pixel_bytes = channels * dtype.itemsize
    if step < width * pixel_bytes:
        raise MessageError('Image.step', f'{step} is smaller than width*bytes_per_pixel '
                           f'{width * pixel_bytes} ({width}*{pixel_bytes}, {encoding})')
    raw = _raw_bytes(msg.data, 'Image.data')
    if raw.size != step * height:
        raise MessageError('Image.data', f'has {raw.size} bytes, expected step*height = '
                           f'{step * height} ({step}*{height})')
    if raw.size and not height * width:
        raise MessageError('Image.width' if width == 0 else 'Image.height',
                           f'is 0 but data has {raw.size} bytes')
    if dtype.itemsize > 1 and bool(msg.is_bigendian) != _NATIVE_BIG:
        dtype = dtype.newbyteorder()
    shape: tuple[int, ...] = (height, width, channels)
    strides: tuple[int, ...] = (step, pixel_bytes, dtype.itemsize)
    if channels == 1:
        shape, strides = shape[:2], strides[:2]
    if raw.size == 0:
        return np.zeros(shape, dtype=dtype.newbyteorder('='))
    pixels = np.ndarray(shape, dtype=dtype, buffer=raw, strides=strides)
    if not dtype.isnative:
        pixels = pixels.astype(dtype.newbyteorder('='))
    return pixels


def image_to_rgb8(msg: Image) -> np.ndarray:
    """Pixels of a colour or mono Image as RGB for an estimator.

    BGR is reordered, alpha dropped, grey replicated to three channels and 16-bit values shifted
    right by 8 (``v >> 8``, i.e. ``floor(v / 256)``: 65535 -> 255). Generic ``8UC3``/``8UC4``
    and ``16UC3``/``16UC4`` are taken as BGR/BGRA and ``8UC1``/``16UC1`` as grey (cv_bridge).

    Parameters
    ----------
    msg
        ``sensor_msgs/Image`` in rgb8, bgr8, rgba8, bgra8, rgb16, bgr16, rgba16, bgra16, mono8,
        mono16, 8UC1, 8UC3, 8UC4, 16UC1, 16UC3 or 16UC4.

    Returns
    -------
    np.ndarray
        [H, W, 3] uint8 R, G, B, C-contiguous. For unpadded rgb8 input it may be a view of
        ``msg.data``.

    Raises
    ------
    MessageError
        Any other encoding (bayer, yuv422, float or signed images) names ``Image.encoding``;
        layout errors as in :func:`image_to_array`.

    """
    order = _RGB_ORDER.get(msg.encoding)
    if order is None:
        raise MessageError('Image.encoding', f'{msg.encoding!r} cannot be converted to rgb8 '
                           f'(supported: {", ".join(sorted(_RGB_ORDER))})')
    pixels = image_to_array(msg)  # [H, W] or [H, W, C]
    if len(order) == 1:
        order = (0, 0, 0)
        pixels = pixels[:, :, None]  # [H, W, 1]
    if order == (0, 1, 2) and pixels.shape[2] == 3 and pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels)
    rgb = np.empty(pixels.shape[:2] + (3,), dtype=np.uint8)  # [H, W, 3]
    for i, channel in enumerate(order):  # per channel: faster than fancy indexing
        if pixels.dtype == np.uint16:
            rgb[:, :, i] = pixels[:, :, channel] >> 8
        else:
            rgb[:, :, i] = pixels[:, :, channel]
    return rgb


def array_to_image(array: np.ndarray, encoding: str,
                   header: Optional[Header] = None) -> Image:
    """Image message holding a copy of ``array``.

    Parameters
    ----------
    array
        [H, W] or [H, W, 1] for one-channel encodings, [H, W, C] otherwise, of exactly the
        encoding's dtype (any byte order; e.g. float32 metres for ``32FC1``, uint8 for
        ``rgb8``).
    encoding
        One of :data:`ENCODINGS`.
    header
        Stamp and frame of the image; an empty ``Header`` when None (used as is, not copied).

    Returns
    -------
    Image
        ``step = width * bytes_per_pixel`` (no padding), native byte order.

    Raises
    ------
    MessageError
        Unknown encoding (``encoding``), or a shape or dtype that does not fit it (``array``).

    """
    if encoding not in ENCODINGS:
        raise MessageError('encoding', f'{encoding!r} is not a supported encoding')
    channels, dtype = ENCODINGS[encoding]
    values = np.asarray(array)
    if values.ndim == 3 and values.shape[2] == 1 == channels:
        values = values[:, :, 0]
    expected = '[H, W]' if channels == 1 else f'[H, W, {channels}]'
    if values.ndim != (2 if channels == 1 else 3) or (channels > 1
                                                      and values.shape[2] != channels):
        raise MessageError('array', f'of shape {values.shape} does not fit {encoding!r} '
                           f'({expected})')
    if values.dtype.newbyteorder('=') != dtype:
        raise MessageError('array', f'of dtype {values.dtype} does not fit {encoding!r} '
                           f'({dtype})')
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(values.shape[0]), int(values.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(_NATIVE_BIG)
    msg.step = msg.width * channels * dtype.itemsize
    msg.data = _to_byte_array(values.astype(dtype, copy=False))
    return msg


def pointcloud2_to_xyz(msg: PointCloud2) -> np.ndarray:
    """Finite x, y, z of a PointCloud2 as an [N, 3] float32 array.

    Parameters
    ----------
    msg
        ``sensor_msgs/PointCloud2`` with fields ``x``, ``y``, ``z`` of FLOAT32 or FLOAT64 at any
        offsets; other fields are ignored. Organized (``height > 1``) or not, rows may be padded
        (``row_step > width * point_step``), either byte order.

    Returns
    -------
    np.ndarray
        [N, 3] float32, in ``msg.header.frame_id`` (metres), row-major point order; points with
        any non-finite coordinate are dropped (FLOAT64 values beyond float32 range count as
        infinite). Owns its memory.

    Raises
    ------
    MessageError
        A missing or non-float x/y/z field, a field past ``point_step``, ``row_step`` smaller
        than a row, or ``data`` not ``row_step * height`` bytes.

    """
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    fields = {}
    for field in msg.fields:
        fields.setdefault(field.name, field)
    endian = '>' if msg.is_bigendian else '<'
    offsets, kinds = [], []
    for name in ('x', 'y', 'z'):
        field = fields.get(name)
        if field is None:
            raise MessageError('PointCloud2.fields', f'has no {name!r} field (fields: '
                               f'{[f.name for f in msg.fields]})')
        kind = _POINT_FIELD_FLOATS.get(field.datatype)
        if kind is None:
            type_name = _POINT_FIELD_TYPES.get(field.datatype, 'unknown')
            raise MessageError(f"PointCloud2.fields['{name}'].datatype",
                               f'{field.datatype} ({type_name}) is not FLOAT32 (7) or FLOAT64 (8)')
        size = np.dtype(kind).itemsize
        if field.offset + size > point_step:
            raise MessageError(f"PointCloud2.fields['{name}'].offset",
                               f'{field.offset} + {size} bytes is past point_step {point_step}')
        offsets.append(int(field.offset))
        kinds.append(endian + kind)
    if row_step < width * point_step:
        raise MessageError('PointCloud2.row_step', f'{row_step} is smaller than width*point_step '
                           f'{width * point_step} ({width}*{point_step})')
    raw = _raw_bytes(msg.data, 'PointCloud2.data')
    if raw.size != row_step * height:
        raise MessageError('PointCloud2.data', f'has {raw.size} bytes, expected row_step*height '
                           f'= {row_step * height} ({row_step}*{height})')
    count = height * width
    if count == 0:
        if raw.size:
            raise MessageError('PointCloud2.width' if width == 0 else 'PointCloud2.height',
                               f'is 0 but data has {raw.size} bytes')
        return np.empty((0, 3), dtype=np.float32)
    layout = np.dtype({'names': ['x', 'y', 'z'], 'formats': kinds, 'offsets': offsets,
                       'itemsize': point_step})
    points = np.ndarray((height, width), dtype=layout, buffer=raw, strides=(row_step, point_step))
    # numpy copies a strided [N, 3] block far slower than three strided columns, and
    # isfinite(...).all(axis=1) / boolean indexing are slower than column masks and compress.
    xyz = np.empty((height, width, 3), dtype=np.float32)  # [H, W, 3]
    with np.errstate(over='ignore'):  # float64 beyond float32 range -> inf, dropped below
        for i, name in enumerate(('x', 'y', 'z')):
            xyz[:, :, i] = points[name]
    xyz = xyz.reshape(count, 3)  # [N, 3]
    finite = np.isfinite(xyz[:, 0])  # [N]
    finite &= np.isfinite(xyz[:, 1])
    finite &= np.isfinite(xyz[:, 2])
    return xyz if finite.all() else np.compress(finite, xyz, axis=0)


def xyz_to_pointcloud2(points: np.ndarray, header: Header,
                       rgb: Optional[np.ndarray] = None) -> PointCloud2:
    """PointCloud2 (XYZ or XYZRGB) holding a copy of ``points``.

    ``points`` [H, W, 3] (organized) or [N, 3], metres in ``header.frame_id``, NaN = missing;
    ``rgb`` optional uint8 of the same leading shape. The layout (fields, point_step, the PCL
    ``rgb`` packing, ``is_dense``) is :func:`depth_node.pipeline.published.pack_cloud`'s;
    ``header`` is used as is, not copied.

    Raises
    ------
    MessageError
        ``points`` or ``rgb`` of the wrong shape or dtype.

    """
    try:
        packed = pack_cloud(points, rgb)
    except CloudLayoutError as exc:
        raise MessageError(exc.field, exc.problem) from None
    return packed_to_pointcloud2(packed, header)


def packed_to_pointcloud2(packed: PackedCloud, header: Header) -> PointCloud2:
    """PointCloud2 of a cloud laid out by :func:`depth_node.pipeline.published.pack_cloud`."""
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = packed.height, packed.width
    msg.fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
                  for n, o in packed.fields]
    msg.is_bigendian = packed.is_bigendian
    msg.point_step, msg.row_step = packed.point_step, packed.row_step
    msg.is_dense = packed.is_dense
    msg.data = _to_byte_array(packed.data)
    return msg


def camera_info_to_camera(msg: CameraInfo) -> PinholeCamera:
    """Pinhole model of the published image described by a CameraInfo.

    Uses ``P`` (rectified), or ``K`` when ``P`` is all zero; ``binning_x``/``binning_y`` and a
    non-empty ``roi`` shrink and shift the model as image_geometry does.

    Raises
    ------
    MessageError
        Field ``CameraInfo``: zero size, no calibration (``k`` and ``p`` all zero), non-positive
        or non-finite focal lengths, wrong ``k``/``p`` lengths.

    """
    roi = msg.roi
    try:
        return PinholeCamera.from_camera_info(
            int(msg.width), int(msg.height), msg.k, msg.p,
            binning_x=int(msg.binning_x), binning_y=int(msg.binning_y),
            roi=(int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)))
    except DepthNodeError as exc:
        raise MessageError('CameraInfo', f'is invalid: {exc}') from exc


def depth_camera_info_msg(info: DepthCameraInfo, header: Header) -> CameraInfo:
    """``depth/camera_info`` message of a published ``DepthCameraInfo``."""
    msg = CameraInfo()
    msg.header = header
    msg.width, msg.height = info.width, info.height
    msg.distortion_model = info.distortion_model
    msg.d, msg.k, msg.r, msg.p = list(info.d), list(info.k), list(info.r), list(info.p)
    return msg
