"""One table of image encodings, depth units and PointField types (no ROS import).

As ``sensor_msgs/image_encodings.hpp`` and depth_image_proc's ``DepthTraits``: depth images are
``32FC1`` (or ``64FC1``) metres with NaN = no data, or ``16UC1`` (``mono16``) millimetres with
0 = no data (REP 118). Outputs are always ``32FC1`` metres.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from depth_node.core.errors import DepthNodeError

#: True on a big-endian host: what outgoing messages put in ``is_bigendian``.
NATIVE_BIG = sys.byteorder == 'big'


class MessageError(DepthNodeError):
    """A message (or an array meant for one) breaks a layout rule.

    ``field`` is the offending field, e.g. ``'Image.step'``, or the argument name when an array
    is converted to a message; the message text starts with it and states the value seen.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
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

#: Encodings that convert to RGB -> channel indices giving R, G, B (one index: grey).
#: Generic 8UC3/8UC4 (and 16-bit) colour images are BGR/BGRA, as in cv_bridge.
RGB_ORDER: dict[str, tuple[int, ...]] = {
    **{e: (0, 1, 2) for e in ('rgb8', 'rgba8', 'rgb16', 'rgba16')},
    **{e: (2, 1, 0) for e in ('bgr8', 'bgra8', 'bgr16', 'bgra16',
                              '8UC3', '8UC4', '16UC3', '16UC4')},
    **{e: (0,) for e in ('mono8', 'mono16', '8UC1', '16UC1')},
}


@dataclass(frozen=True)
class DepthUnit:
    """How one depth encoding stores metres (depth_image_proc's ``DepthTraits``)."""

    metres_per_unit: float  # 1.0 for float metres, 1e-3 for uint16 millimetres
    invalid: str  # 'nan': non-finite or <= 0 is no data; 'zero': 0 is no data


#: Depth image encodings this package reads -> their unit. Outputs are 32FC1 metres.
DEPTH_UNITS: dict[str, DepthUnit] = {
    '32FC1': DepthUnit(1.0, 'nan'), '64FC1': DepthUnit(1.0, 'nan'),
    '16UC1': DepthUnit(1e-3, 'zero'), 'mono16': DepthUnit(1e-3, 'zero'),
}

#: The encoding of every depth image this package publishes (REP 118).
DEPTH_ENCODING = '32FC1'

#: sensor_msgs/PointField datatype -> (name, numpy kind).
POINT_FIELD_TYPES: dict[int, tuple[str, str]] = {
    1: ('INT8', 'i1'), 2: ('UINT8', 'u1'), 3: ('INT16', 'i2'), 4: ('UINT16', 'u2'),
    5: ('INT32', 'i4'), 6: ('UINT32', 'u4'), 7: ('FLOAT32', 'f4'), 8: ('FLOAT64', 'f8'),
}
#: sensor_msgs/PointField.FLOAT32 and FLOAT64
FLOAT32, FLOAT64 = 7, 8
