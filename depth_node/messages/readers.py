"""Readers: messages in, arrays and camera models out, for the node and every offline tool.

Every function reads one message type and raises :class:`MessageError` naming the field and the
value seen when a message breaks the layout rules of its definition. Readers take any object
with the message's fields whose byte fields support the buffer protocol (rclpy messages, whose
``data`` is an ``array.array('B')``, and rosbags messages, whose ``data`` is a numpy array),
and check sizes before touching the bytes. All conversions are vectorised: no Python loop runs
per pixel or per point.

Image conventions follow cv_bridge: ``step`` may pad rows, ``is_bigendian`` applies to
multi-byte types, generic ``8UC3``/``8UC4`` (and 16-bit) colour images are taken as BGR/BGRA.
Clouds: the first field of a name counts (as ``sensor_msgs_py``), ``data`` must be exactly
``row_step * height`` bytes.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.errors import DepthNodeError
from depth_node.messages.encodings import (DEPTH_UNITS, ENCODINGS, FLOAT32, FLOAT64,
                                           MessageError, NATIVE_BIG, POINT_FIELD_TYPES, RGB_ORDER)

_FLOAT_KINDS = {FLOAT32: 'f4', FLOAT64: 'f8'}


def stamp_ns(msg: Any) -> int:
    """Header stamp of a message, integer nanoseconds."""
    stamp = msg.header.stamp
    return int(stamp.sec) * 10**9 + int(stamp.nanosec)


def _raw_bytes(data: object, field: str) -> np.ndarray:
    """Zero-copy [nbytes] uint8 view of a message byte field (array.array, bytes, ndarray)."""
    try:
        return np.frombuffer(data, dtype=np.uint8)  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise MessageError(field, f'of type {type(data).__name__} is not a byte buffer') from exc


def image_to_array(msg: Any) -> np.ndarray:
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
    encoding = str(msg.encoding)
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
    if dtype.itemsize > 1 and bool(msg.is_bigendian) != NATIVE_BIG:
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


def image_to_rgb8(msg: Any, msgtype: str = 'sensor_msgs/msg/Image') -> np.ndarray:
    """Pixels of a colour or mono camera message as RGB for an estimator.

    BGR is reordered, alpha dropped, grey replicated to three channels and 16-bit values shifted
    right by 8 (``v >> 8``, i.e. ``floor(v / 256)``: 65535 -> 255). Generic ``8UC3``/``8UC4``
    and ``16UC3``/``16UC4`` are taken as BGR/BGRA and ``8UC1``/``16UC1`` as grey (cv_bridge).

    Parameters
    ----------
    msg
        ``sensor_msgs/Image`` in rgb8, bgr8, rgba8, bgra8, rgb16, bgr16, rgba16, bgra16, mono8,
        mono16, 8UC1, 8UC3, 8UC4, 16UC1, 16UC3 or 16UC4; or, with ``msgtype``
        ``.../CompressedImage``, a JPEG or PNG ``sensor_msgs/CompressedImage`` (OpenCV).
    msgtype
        The message's type name (bags say it; a live subscription knows it).

    Returns
    -------
    np.ndarray
        [H, W, 3] uint8 R, G, B, C-contiguous. For unpadded rgb8 input it may be a view of
        ``msg.data``.

    Raises
    ------
    MessageError
        Any other encoding (bayer, yuv422, float or signed images) names ``Image.encoding``;
        layout errors as in :func:`image_to_array`; no pixels (a width or height of 0) names
        that field; an undecodable compressed image names ``CompressedImage.data``.

    """
    if msgtype.endswith('/CompressedImage'):
        return compressed_to_rgb8(msg)
    order = RGB_ORDER.get(str(msg.encoding))
    if order is None:
        raise MessageError('Image.encoding', f'{str(msg.encoding)!r} cannot be converted to '
                           f'rgb8 (supported: {", ".join(sorted(RGB_ORDER))})')
    pixels = image_to_array(msg)  # [H, W] or [H, W, C]
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:  # valid layout, nothing to estimate
        raise MessageError('Image.height' if pixels.shape[0] == 0 else 'Image.width',
                           f'is 0 ({pixels.shape[1]}x{pixels.shape[0]}): the image has no '
                           'pixels')
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


def compressed_to_rgb8(msg: Any) -> np.ndarray:
    """[H, W, 3] uint8 RGB of a JPEG or PNG ``sensor_msgs/CompressedImage`` (OpenCV)."""
    import cv2

    raw = _raw_bytes(msg.data, 'CompressedImage.data')
    bgr = cv2.imdecode(raw, cv2.IMREAD_COLOR) if raw.size else None
    if bgr is None:
        raise MessageError('CompressedImage.data', f'({raw.size} bytes, format '
                           f'{str(msg.format)!r}) cannot be decoded as JPEG or PNG')
    return np.ascontiguousarray(bgr[..., ::-1])


def depth_image_to_metres(msg: Any) -> np.ndarray:
    """[H, W] float32 metres of a depth image, NaN = no data (REP 118).

    The units are those of :data:`DEPTH_UNITS`: ``32FC1``/``64FC1`` metres (non-finite or
    non-positive values are no data), ``16UC1``/``mono16`` millimetres with 0 = no data.

    Raises
    ------
    MessageError
        Another encoding (``Image.encoding``), or layout errors as in :func:`image_to_array`.

    """
    unit = DEPTH_UNITS.get(str(msg.encoding))
    if unit is None:
        raise MessageError('Image.encoding', f'{str(msg.encoding)!r} is not a depth encoding '
                           f'(supported: {", ".join(sorted(DEPTH_UNITS))})')
    pixels = image_to_array(msg)
    out = pixels.astype(np.float32)  # a copy: never a view of the message
    if unit.metres_per_unit != 1.0:
        out *= np.float32(unit.metres_per_unit)
    if unit.invalid == 'zero':
        out[pixels == 0] = np.nan
    else:
        out[~(np.isfinite(out) & (out > 0))] = np.nan
    return out


def pointcloud2_to_xyz(msg: Any, finite: bool = True) -> np.ndarray:
    """x, y, z of a PointCloud2 as an [N, 3] float32 array.

    :func:`pointcloud2_to_arrays` without extra fields: with ``finite`` (the default) only the
    finite points, in an array of its own; with ``finite=False`` every point, non-finite ones
    included (:func:`~depth_node.core.lidar.project_points` drops them in its one pass), as a
    read-only strided view of ``msg.data`` when the layout allows it (x, y, z float32 in the
    machine's byte order, evenly spaced within the point, rows not padded): no byte is copied.
    """
    return pointcloud2_to_arrays(msg, finite=finite)[0]


def pointcloud2_to_arrays(msg: Any, extra: tuple[str, ...] = (), finite: bool = True
                          ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """x, y, z of a PointCloud2, and the values of optional extra fields at those points.

    Parameters
    ----------
    msg
        ``sensor_msgs/PointCloud2`` with fields ``x``, ``y``, ``z`` of FLOAT32 or FLOAT64 at any
        offsets; other fields are ignored. Organized (``height > 1``) or not, rows may be padded
        (``row_step > width * point_step``), either byte order. The first field of a name counts.
    extra
        Names of further fields to read when present (e.g. ``('intensity',)``), any datatype.
    finite
        True: drop the points with a non-finite coordinate, and return arrays that own their
        memory. False: keep every point (``is_dense`` is not trusted either way); ``xyz`` is
        then a read-only view of ``msg.data`` where the layout allows (see
        :func:`pointcloud2_to_xyz`), and keeps the message's bytes alive.

    Returns
    -------
    tuple
        ``xyz`` [N, 3] float32, in ``msg.header.frame_id`` (metres), row-major point order;
        with ``finite``, points with any non-finite coordinate are dropped (FLOAT64 values
        beyond float32 range count as infinite). ``values``: extra field name -> [N] float32 at
        the same points, for the extra fields the cloud has (their own memory).

    Raises
    ------
    MessageError
        A missing or non-float x/y/z field, a field past ``point_step``, ``row_step`` smaller
        than a row, or ``data`` not ``row_step * height`` bytes.

    """
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    wanted = ('x', 'y', 'z') + tuple(extra)
    fields: dict[str, Any] = {}
    for field in msg.fields:  # only the wanted ones: each attribute of an rclpy field costs
        name = field.name
        if name in wanted and name not in fields:
            fields[name] = field
    endian = '>' if msg.is_bigendian else '<'
    names, offsets, kinds = [], [], []
    for name in wanted[:3] + tuple(n for n in extra if n in fields):
        field = fields.get(name)
        if field is None:
            raise MessageError('PointCloud2.fields', f'has no {name!r} field (fields: '
                               f'{[str(f.name) for f in msg.fields]})')
        datatype = int(field.datatype)
        if name in ('x', 'y', 'z'):
            kind = _FLOAT_KINDS.get(datatype)
            if kind is None:
                type_name = POINT_FIELD_TYPES.get(datatype, ('unknown',))[0]
                raise MessageError(f"PointCloud2.fields['{name}'].datatype",
                                   f'{datatype} ({type_name}) is not FLOAT32 (7) or FLOAT64 (8)')
        else:
            if datatype not in POINT_FIELD_TYPES:
                raise MessageError(f"PointCloud2.fields['{name}'].datatype",
                                   f'{datatype} is not a PointField datatype (1..8)')
            kind = POINT_FIELD_TYPES[datatype][1]
        size = int(kind[1:])  # 'f4' -> 4
        offset = int(field.offset)
        if offset + size > point_step:
            raise MessageError(f"PointCloud2.fields['{name}'].offset",
                               f'{offset} + {size} bytes is past point_step {point_step}')
        names.append(name)
        offsets.append(offset)
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
        return np.empty((0, 3), dtype=np.float32), {n: np.empty(0, np.float32)
                                                    for n in names[3:]}
    xyz = _xyz_view(raw, offsets[:3], kinds[:3], count, point_step, row_step, height)
    viewed = xyz is not None
    values: dict[str, np.ndarray] = {}
    if xyz is None or len(names) > 3:
        layout = np.dtype({'names': names, 'formats': kinds, 'offsets': offsets,
                           'itemsize': point_step})
        points = np.ndarray((height, width), dtype=layout, buffer=raw,
                            strides=(row_step, point_step))
        if xyz is None:
            xyz = _xyz_copy(points, count)
        values = {n: points[n].reshape(count).astype(np.float32) for n in names[3:]}
    if not finite:
        return xyz, values
    # Column masks and compress: faster than isfinite(xyz).all(axis=1) and boolean indexing.
    keep = np.isfinite(xyz[:, 0])  # [N]
    keep &= np.isfinite(xyz[:, 1])
    keep &= np.isfinite(xyz[:, 2])
    if keep.all():
        return (xyz.copy() if viewed else xyz), values
    return np.compress(keep, xyz, axis=0), {n: v[keep] for n, v in values.items()}


def _xyz_view(raw: np.ndarray, offsets: list[int], kinds: list[str], count: int,
              point_step: int, row_step: int, height: int) -> Optional[np.ndarray]:
    """[N, 3] float32 read-only view of the bytes, or None where the layout does not allow one.

    A view needs float32 x, y, z in the machine's byte order at evenly spaced offsets
    (``x, x + d, x + 2d``: one stride per axis) and rows that follow each other without
    padding (or a single row).
    """
    native = '>f4' if NATIVE_BIG else '<f4'
    spacing = offsets[1] - offsets[0]
    if any(k != native for k in kinds) or spacing <= 0 or offsets[2] - offsets[1] != spacing \
            or (height > 1 and row_step != (count // height) * point_step):
        return None
    view = np.ndarray((count, 3), dtype=np.float32, buffer=raw, offset=offsets[0],
                      strides=(point_step, spacing))
    view.flags.writeable = False
    return view


def _xyz_copy(points: np.ndarray, count: int) -> np.ndarray:
    """[N, 3] float32 copy of the x, y, z fields of the [H, W] structured points (any layout)."""
    # numpy copies a strided [N, 3] block far slower than three strided columns.
    xyz = np.empty(points.shape + (3,), dtype=np.float32)  # [H, W, 3]
    with np.errstate(over='ignore'):  # float64 beyond float32 range -> inf, dropped later
        for i, name in enumerate(('x', 'y', 'z')):
            xyz[:, :, i] = points[name]
    return xyz.reshape(count, 3)  # [N, 3]


def camera_info_to_camera(msg: Any) -> PinholeCamera:
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
            int(msg.width), int(msg.height), list(msg.k), list(msg.p),
            binning_x=int(msg.binning_x), binning_y=int(msg.binning_y),
            roi=(int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)))
    except DepthNodeError as exc:
        raise MessageError('CameraInfo', f'is invalid: {exc}') from exc


def frame_id(msg: Any) -> str:
    """``header.frame_id`` without a leading '/' (tf2 frame names)."""
    return str(msg.header.frame_id).lstrip('/')


__all__ = ['camera_info_to_camera', 'compressed_to_rgb8', 'depth_image_to_metres', 'frame_id',
           'image_to_array', 'image_to_rgb8', 'MessageError', 'pointcloud2_to_arrays',
           'pointcloud2_to_xyz', 'stamp_ns']
