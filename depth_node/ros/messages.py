"""Constructors of the rclpy messages the node publishes (its cv_bridge / sensor_msgs_py).

Decoding lives in :mod:`depth_node.messages.readers`, shared with the offline tools; the byte
layouts in :mod:`depth_node.messages.layout`. Here the arrays and layouts become rclpy messages,
in native byte order. ``header`` arguments are used as is, not copied.
"""

from __future__ import annotations

import array as pyarray
from typing import Any, Optional

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from depth_node.messages.encodings import ENCODINGS, MessageError, NATIVE_BIG
from depth_node.messages.layout import DepthCameraInfo, pack_cloud, PackedCloud


def _backing(values: np.ndarray) -> Optional[pyarray.array]:
    """The ``array.array('B')`` that ``values`` exactly covers (C order), else None.

    :class:`~depth_node.pipeline.published.OutputBuffers` hands out such views: what was
    written into them goes into the message as it is, without a copy.
    """
    base = values
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    if isinstance(base, pyarray.array) and base.typecode == 'B' \
            and values.flags.c_contiguous and len(base) == values.nbytes \
            and base.buffer_info()[0] == values.ctypes.data:
        return base
    return None


def _to_byte_array(values: np.ndarray) -> pyarray.array:
    """The ``array.array('B')`` that rclpy keeps for uint8[]: the array's bytes (C order).

    An array backed by a whole ``array.array('B')`` is handed over as it is; any other is
    copied once (``frombytes`` on a buffer is one memcpy). Assigning an ``array.array('B')``
    to a message's ``data`` is the setter's fast path when the message checks its fields
    (:func:`_message`); a list, a memoryview or an ndarray go element by element, orders of
    magnitude slower for an image (figures in docs/benchmarks.md).
    """
    backing = _backing(values)
    if backing is not None:
        return backing
    out = pyarray.array('B')
    out.frombytes(np.ascontiguousarray(values).reshape(-1).view(np.uint8))
    return out


# rosidl_generator_py (Jazzy and later) copies an array.array assigned to a uint8[] field
# unless the message was made with check_fields=True (ROS_PYTHON_CHECK_FIELDS unset: off);
# older generators always check and take it as it is, and know no such argument.
_CHECKED = {kind: '_check_fields' in getattr(kind, '__slots__', ())
            for kind in (Image, PointCloud2)}


def _message(kind: type) -> Any:
    """A new ``Image`` or ``PointCloud2`` whose ``data`` setter takes an array.array as is."""
    return kind(check_fields=True) if _CHECKED[kind] else kind()


def array_to_image(array: np.ndarray, encoding: str,
                   header: Optional[Header] = None) -> Image:
    """Image message holding the bytes of ``array``.

    A copy, except for a view that covers a whole ``OutputBuffers`` buffer, which the message
    takes as it is (see :func:`_to_byte_array`).

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
    msg = _message(Image)
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(values.shape[0]), int(values.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(NATIVE_BIG)
    msg.step = msg.width * channels * dtype.itemsize
    msg.data = _to_byte_array(values.astype(dtype, copy=False))
    return msg


def xyz_to_pointcloud2(points: np.ndarray, header: Header,
                       rgb: Optional[np.ndarray] = None) -> PointCloud2:
    """PointCloud2 (XYZ or XYZRGB) holding a copy of ``points``.

    ``points`` [H, W, 3] (organized) or [N, 3], metres in ``header.frame_id``, NaN = missing;
    ``rgb`` optional uint8 of the same leading shape. The layout (fields, point_step, the PCL
    ``rgb`` packing, ``is_dense``) is :func:`depth_node.messages.layout.pack_cloud`'s;
    ``header`` is used as is, not copied.

    Raises
    ------
    MessageError
        ``points`` or ``rgb`` of the wrong shape or dtype.

    """
    return packed_to_pointcloud2(pack_cloud(points, rgb), header)


def packed_to_pointcloud2(packed: PackedCloud, header: Header) -> PointCloud2:
    """PointCloud2 of a cloud laid out by :func:`depth_node.messages.layout.pack_cloud`."""
    msg = _message(PointCloud2)
    msg.header = header
    msg.height, msg.width = packed.height, packed.width
    msg.fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
                  for n, o in packed.fields]
    msg.is_bigendian = packed.is_bigendian
    msg.point_step, msg.row_step = packed.point_step, packed.row_step
    msg.is_dense = packed.is_dense
    msg.data = _to_byte_array(packed.data)
    return msg


def depth_camera_info_msg(info: DepthCameraInfo, header: Header) -> CameraInfo:
    """``depth/camera_info`` message of a published ``DepthCameraInfo``."""
    msg = CameraInfo()
    msg.header = header
    msg.width, msg.height = info.width, info.height
    msg.distortion_model = info.distortion_model
    msg.d, msg.k, msg.r, msg.p = list(info.d), list(info.k), list(info.r), list(info.p)
    return msg
