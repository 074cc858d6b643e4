"""Per-point time of a LiDAR sweep: which PointCloud2 field holds it, in which unit, from when.

Drivers of spinning LiDARs stamp every return; the field's name, type and meaning differ:

=============  ==============  ==========  =============================================
driver         field           type        meaning
=============  ==============  ==========  =============================================
Ouster         ``t``           UINT32      ns since the sweep stamp
Velodyne       ``time``        FLOAT32     s relative to the sweep stamp
Hesai          ``timestamp``   FLOAT64     absolute s (same clock as the header stamp)
Robosense      ``timestamp``   FLOAT64     absolute s
Livox          ``offset_time`` UINT32      ns since the sweep stamp
=============  ==============  ==========  =============================================

:func:`detect_time_field` finds the field by these names (the first present, in this order)
and takes its unit and reference from the table; :class:`TimeFieldSettings` (the node's
``lidar.time_field``, ``lidar.time_unit``, ``lidar.time_reference``) override any of the
three. :func:`point_times` decodes the field to float64 seconds relative to the cloud's header
stamp, at the points :func:`~depth_node.messages.readers.pointcloud2_to_xyz` keeps (finite
x, y, z), with one strided view of the message's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from depth_node.core.compat import StrEnum
from depth_node.core.errors import ConfigError
from depth_node.messages.encodings import MessageError, POINT_FIELD_TYPES


class TimeUnit(StrEnum):
    """Unit of a per-point time field."""

    NS = 'ns'
    US = 'us'
    S = 's'

    @property
    def seconds(self) -> float:
        """Seconds per unit."""
        return {'ns': 1e-9, 'us': 1e-6, 's': 1.0}[self.value]


class TimeReference(StrEnum):
    """What a per-point time counts from."""

    SWEEP = 'sweep'  # relative to the cloud's header stamp
    ABSOLUTE = 'absolute'  # the same clock as the header stamp


#: (field name, unit, reference) of the common drivers, in detection order.
CONVENTIONS: tuple[tuple[str, TimeUnit, TimeReference], ...] = (
    ('t', TimeUnit.NS, TimeReference.SWEEP),  # Ouster
    ('time', TimeUnit.S, TimeReference.SWEEP),  # Velodyne
    ('timestamp', TimeUnit.S, TimeReference.ABSOLUTE),  # Hesai, Robosense
    ('offset_time', TimeUnit.NS, TimeReference.SWEEP),  # Livox
)
#: A decoded time farther than this from the header stamp is not a point time of this sweep:
#: the unit or reference is wrong (s).
MAX_OFFSET_S = 5.0
#: ``lidar.time_field`` value that turns per-point time off.
NO_TIME_FIELD = 'none'


@dataclass(frozen=True)
class TimeFieldSettings:
    """The node's ``lidar.time_*`` parameters ('' = detect from the field)."""

    field: str = ''  # a field name, '' (detect by name) or 'none' (ignore per-point time)
    unit: str = ''  # '', 'ns', 'us' or 's'
    reference: str = ''  # '', 'sweep' or 'absolute'

    def __post_init__(self) -> None:
        units = ('',) + tuple(u.value for u in TimeUnit)
        if self.unit not in units:
            raise ConfigError('lidar.time_unit', f'must be one of {units}', self.unit)
        refs = ('',) + tuple(r.value for r in TimeReference)
        if self.reference not in refs:
            raise ConfigError('lidar.time_reference', f'must be one of {refs}', self.reference)
        if self.field != self.field.strip():
            raise ConfigError('lidar.time_field', 'must be a field name without spaces, '
                              f"'' (detect) or '{NO_TIME_FIELD}'", self.field)


@dataclass(frozen=True)
class TimeField:
    """A detected time field: where it is and how to read it."""

    name: str
    datatype: int  # sensor_msgs/PointField datatype
    offset: int  # bytes into a point
    unit: TimeUnit
    reference: TimeReference

    def describe(self) -> str:
        """E.g. ``'t' (UINT32, ns, sweep)``."""
        return (f"'{self.name}' ({POINT_FIELD_TYPES[self.datatype][0]}, {self.unit.value}, "
                f'{self.reference.value})')


def detect_time_field(msg: Any, settings: TimeFieldSettings = TimeFieldSettings()
                      ) -> Optional[TimeField]:
    """The per-point time field of a PointCloud2, or None when it has none.

    Raises
    ------
    MessageError
        The field named by ``settings.field`` is missing; the field's datatype is not a
        PointField type, or not a type its unit can be in (seconds need FLOAT32/FLOAT64;
        integers are ns or us); a field not in :data:`CONVENTIONS` without a unit.
    """
    if settings.field == NO_TIME_FIELD:
        return None
    fields: dict[str, Any] = {}
    for f in msg.fields:
        fields.setdefault(str(f.name), f)
    convention = {name: (unit, ref) for name, unit, ref in CONVENTIONS}
    if settings.field:
        name = settings.field
        if name not in fields:
            raise MessageError('PointCloud2.fields', f'has no {name!r} field (lidar.time_field; '
                               f'fields: {list(fields)})')
    else:
        name = next((n for n, _, _ in CONVENTIONS if n in fields), '')
        if not name:
            return None
    unit, reference = convention.get(name, (None, TimeReference.SWEEP))
    if settings.unit:
        unit = TimeUnit(settings.unit)
    if settings.reference:
        reference = TimeReference(settings.reference)
    field = fields[name]
    where = f"PointCloud2.fields['{name}'].datatype"
    datatype = int(field.datatype)
    if datatype not in POINT_FIELD_TYPES:
        raise MessageError(where, f'{datatype} is not a PointField datatype (1..8)')
    type_name, kind = POINT_FIELD_TYPES[datatype]
    if unit is None:
        raise MessageError(f"PointCloud2.fields['{name}']", 'is not a known time field: set '
                           "lidar.time_unit ('ns', 'us' or 's')")
    if unit == TimeUnit.S and kind[0] != 'f':
        raise MessageError(where, f'{datatype} ({type_name}) cannot hold seconds: a time in s '
                           'is FLOAT32 or FLOAT64 (set lidar.time_unit if it is ns or us)')
    if kind in ('i1', 'u1', 'i2', 'u2'):
        raise MessageError(where, f'{datatype} ({type_name}) is too small for a point time')
    if reference == TimeReference.ABSOLUTE and kind != 'f8':
        raise MessageError(where, f'{datatype} ({type_name}) cannot hold an absolute time: '
                           'FLOAT64 seconds (set lidar.time_reference to sweep if the field '
                           'counts from the sweep stamp)')
    if int(field.offset) + np.dtype(kind).itemsize > int(msg.point_step):
        raise MessageError(f"PointCloud2.fields['{name}'].offset",
                           f'{field.offset} + {np.dtype(kind).itemsize} bytes is past '
                           f'point_step {msg.point_step}')
    return TimeField(name, datatype, int(field.offset), unit, reference)


def point_times(msg: Any, field: TimeField, header_stamp_ns: int,
                count: Optional[int] = None) -> np.ndarray:
    """Per-point times of a PointCloud2 in float64 s relative to ``header_stamp_ns``.

    Parameters
    ----------
    msg
        The cloud (its layout already checked by
        :func:`~depth_node.messages.readers.pointcloud2_to_arrays`).
    field
        From :func:`detect_time_field`.
    header_stamp_ns
        The cloud's header stamp (ns).
    count
        How many points the xyz decode kept; when fewer than the cloud has, the times of the
        points with a non-finite coordinate are dropped the same way.

    Returns
    -------
    np.ndarray
        [N] float64 seconds; the points' order is the xyz decode's (row-major).

    Raises
    ------
    MessageError
        A time that is not finite or more than :data:`MAX_OFFSET_S` from the header stamp
        (naming the field and the value: the unit or the reference is wrong).
    """
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    kind = ('>' if msg.is_bigendian else '<') + POINT_FIELD_TYPES[field.datatype][1]
    n = height * width
    if n == 0:
        return np.empty(0, dtype=np.float64)
    column = np.ndarray((height, width), dtype=kind, buffer=raw, offset=field.offset,
                        strides=(row_step, point_step)).reshape(n)
    if field.reference == TimeReference.ABSOLUTE:
        times = column * field.unit.seconds - header_stamp_ns * 1e-9  # float64
    elif field.unit == TimeUnit.S:
        times = column.astype(np.float64)
    else:
        times = column * field.unit.seconds
    if count is not None and count < n:
        times = times[_finite_xyz(msg, raw, height, width)]
    bad = ~(np.abs(times) <= MAX_OFFSET_S)  # NaN too
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        value = float(times[first])
        raise MessageError(f"PointCloud2.fields['{field.name}']",
                           f'gives a point time {value:.6g} s from the header stamp (point '
                           f'{first}; more than '
                           f'{MAX_OFFSET_S:g} s, or not finite) read as {field.describe()}: '
                           'check lidar.time_unit / lidar.time_reference')
    return times


def sweep_times(msg: Any, settings: TimeFieldSettings, count: int,
                header_stamp_ns: int) -> Optional[np.ndarray]:
    """Per-point times of a cloud whose xyz decode kept ``count`` points, or None without a
    time field: :func:`detect_time_field` then :func:`point_times` (raises as they do)."""
    field = detect_time_field(msg, settings)
    if field is None:
        return None
    return point_times(msg, field, header_stamp_ns, count)


def _finite_xyz(msg: Any, raw: np.ndarray, height: int, width: int) -> np.ndarray:
    """[N] bool: the points whose x, y, z are finite (the xyz decode's rule)."""
    fields: dict[str, Any] = {}
    for f in msg.fields:
        fields.setdefault(str(f.name), f)
    endian = '>' if msg.is_bigendian else '<'
    keep = np.ones(height * width, dtype=bool)
    for name in ('x', 'y', 'z'):
        f = fields[name]
        col = np.ndarray((height, width), dtype=endian + POINT_FIELD_TYPES[int(f.datatype)][1],
                         buffer=raw, offset=int(f.offset),
                         strides=(int(msg.row_step), int(msg.point_step))).reshape(-1)
        with np.errstate(over='ignore'):
            keep &= np.isfinite(col.astype(np.float32))
    return keep


__all__ = ['CONVENTIONS', 'detect_time_field', 'MAX_OFFSET_S', 'NO_TIME_FIELD', 'point_times',
           'sweep_times', 'TimeField', 'TimeFieldSettings', 'TimeReference', 'TimeUnit']
