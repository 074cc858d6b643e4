"""Per-point time fields (messages/point_time.py): each driver convention, overrides, errors."""

import numpy as np
import pytest
from sensor_msgs.msg import PointCloud2, PointField

from depth_node.core.errors import ConfigError
from depth_node.messages.point_time import (detect_time_field, MAX_OFFSET_S, point_times,
                                            TimeFieldSettings, TimeReference, TimeUnit)
from depth_node.messages.readers import MessageError, pointcloud2_to_xyz

STAMP_NS = 1_700_000_000_123_456_789
_TYPES = {'f4': PointField.FLOAT32, 'f8': PointField.FLOAT64, 'u4': PointField.UINT32,
          'u2': PointField.UINT16, 'i4': PointField.INT32, 'u1': PointField.UINT8}

# The drivers' layouts (name, dtype, offset), point_step.
OUSTER = ([('x', 'f4', 0), ('y', 'f4', 4), ('z', 'f4', 8), ('intensity', 'f4', 16),
           ('t', 'u4', 20), ('ring', 'u2', 26)], 32)
VELODYNE = ([('x', 'f4', 0), ('y', 'f4', 4), ('z', 'f4', 8), ('intensity', 'f4', 12),
             ('ring', 'u2', 16), ('time', 'f4', 18)], 22)
HESAI = ([('x', 'f4', 0), ('y', 'f4', 4), ('z', 'f4', 8), ('intensity', 'f4', 12),
          ('ring', 'u2', 16), ('timestamp', 'f8', 24)], 32)
LIVOX = ([('x', 'f4', 0), ('y', 'f4', 4), ('z', 'f4', 8), ('reflectivity', 'u1', 12),
          ('offset_time', 'u4', 13)], 17)


def cloud(layout, point_step, values, height=1, big_endian=False):
    """A real sensor_msgs/PointCloud2 with the layout and per-field values [N]."""
    n = len(next(iter(values.values())))
    endian = '>' if big_endian else '<'
    dtype = np.dtype({'names': [f[0] for f in layout],
                      'formats': [endian + f[1] for f in layout],
                      'offsets': [f[2] for f in layout], 'itemsize': point_step})
    data = np.zeros(n, dtype=dtype)
    for name, v in values.items():
        data[name] = v
    msg = PointCloud2()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(STAMP_NS, 10**9)
    msg.height, msg.width = height, n // height
    msg.fields = [PointField(name=name, offset=off, datatype=_TYPES[kind], count=1)
                  for name, kind, off in layout]
    msg.is_bigendian = big_endian
    msg.point_step, msg.row_step = point_step, point_step * (n // height)
    msg.data = data.tobytes()
    return msg


def sweep_values(n=64, seed=0):
    rng = np.random.default_rng(seed)
    rel = np.sort(rng.uniform(0.0, 0.1, n))  # s since the sweep stamp
    xyz = rng.uniform(-20, 20, (n, 3))
    return rel, {'x': xyz[:, 0], 'y': xyz[:, 1], 'z': xyz[:, 2]}


@pytest.mark.parametrize('big_endian', [False, True])
@pytest.mark.parametrize('driver, stored, tol', [
    (OUSTER, lambda rel: np.round(rel * 1e9), 1e-9),  # uint32 ns
    (VELODYNE, lambda rel: rel, 1e-8),  # float32 s (float32 resolution at 0.1 s)
    (HESAI, lambda rel: STAMP_NS * 1e-9 + rel, 1e-6),  # float64 absolute s
    (LIVOX, lambda rel: np.round(rel * 1e9), 1e-9),  # uint32 ns
])
def test_each_driver_convention_decodes_to_seconds_from_the_stamp(driver, stored, tol,
                                                                  big_endian):
    layout, step = driver
    rel, values = sweep_values()
    name = [f[0] for f in layout if f[0] in ('t', 'time', 'timestamp', 'offset_time')][0]
    values[name] = stored(rel)
    msg = cloud(layout, step, values, height=4, big_endian=big_endian)
    field = detect_time_field(msg)
    assert field is not None and field.name == name
    times = point_times(msg, field, STAMP_NS, len(pointcloud2_to_xyz(msg)))
    assert times.dtype == np.float64 and times.shape == rel.shape
    np.testing.assert_allclose(times, rel, atol=tol, rtol=0)


def test_detected_conventions():
    expect = {'t': ('ns', 'sweep'), 'time': ('s', 'sweep'), 'timestamp': ('s', 'absolute'),
              'offset_time': ('ns', 'sweep')}
    for layout, step in (OUSTER, VELODYNE, HESAI, LIVOX):
        rel, values = sweep_values(4)
        field = detect_time_field(cloud(layout, step, values))
        assert (field.unit.value, field.reference.value) == expect[field.name]


def test_no_time_field_and_off():
    rel, values = sweep_values(4)
    plain = cloud(OUSTER[0][:4], 20, values)
    assert detect_time_field(plain) is None
    assert detect_time_field(cloud(*OUSTER, values), TimeFieldSettings(field='none')) is None


def test_overrides_name_unit_and_reference():
    layout = [('x', 'f4', 0), ('y', 'f4', 4), ('z', 'f4', 8), ('stamp_us', 'u4', 12)]
    rel, values = sweep_values(16)
    values['stamp_us'] = np.round(rel * 1e6)
    msg = cloud(layout, 16, values)
    assert detect_time_field(msg) is None  # not a known name
    with pytest.raises(MessageError, match=r"fields\['stamp_us'\].*lidar.time_unit"):
        detect_time_field(msg, TimeFieldSettings(field='stamp_us'))
    field = detect_time_field(msg, TimeFieldSettings(field='stamp_us', unit='us'))
    assert field.unit == TimeUnit.US and field.reference == TimeReference.SWEEP
    np.testing.assert_allclose(point_times(msg, field, STAMP_NS), rel, atol=1e-6)
    # Velodyne 'time' from a driver that writes absolute float64 seconds
    layout = [('x', 'f4', 0), ('y', 'f4', 4), ('z', 'f4', 8), ('time', 'f8', 16)]
    values.pop('stamp_us')
    values['time'] = STAMP_NS * 1e-9 + rel
    msg = cloud(layout, 24, values)
    with pytest.raises(MessageError, match=r"fields\['time'\].*from the header stamp"):
        point_times(msg, detect_time_field(msg), STAMP_NS)  # read as relative: 1.7e9 s off
    field = detect_time_field(msg, TimeFieldSettings(reference='absolute'))
    np.testing.assert_allclose(point_times(msg, field, STAMP_NS), rel, atol=1e-6)


def test_unknown_unit_or_type_is_named():
    rel, values = sweep_values(4)
    with pytest.raises(ConfigError, match="'lidar.time_unit'.*'ms'"):
        TimeFieldSettings(unit='ms')
    with pytest.raises(ConfigError, match="'lidar.time_reference'"):
        TimeFieldSettings(reference='gps')
    layout = [('x', 'f4', 0), ('y', 'f4', 4), ('z', 'f4', 8), ('t', 'u2', 12)]
    with pytest.raises(MessageError, match=r"fields\['t'\]\.datatype.*UINT16"):
        detect_time_field(cloud(layout, 16, dict(values, t=np.zeros(4))))
    layout = [('x', 'f4', 0), ('y', 'f4', 4), ('z', 'f4', 8), ('time', 'u4', 12)]
    with pytest.raises(MessageError, match=r"fields\['time'\]\.datatype.*UINT32.*seconds"):
        detect_time_field(cloud(layout, 16, dict(values, time=np.zeros(4))))
    layout = [('x', 'f4', 0), ('y', 'f4', 4), ('z', 'f4', 8), ('timestamp', 'f4', 12)]
    with pytest.raises(MessageError, match=r"fields\['timestamp'\]\.datatype.*absolute"):
        detect_time_field(cloud(layout, 16, dict(values, timestamp=np.zeros(4))))
    with pytest.raises(MessageError, match="has no 'tt' field"):
        detect_time_field(cloud(*OUSTER, values), TimeFieldSettings(field='tt'))


def test_times_follow_the_points_the_xyz_decode_keeps():
    rel, values = sweep_values(10)
    values['x'][[2, 7]] = np.nan
    values['t'] = np.round(rel * 1e9)
    msg = cloud(*OUSTER, values)
    xyz = pointcloud2_to_xyz(msg)
    times = point_times(msg, detect_time_field(msg), STAMP_NS, len(xyz))
    np.testing.assert_allclose(times, np.delete(rel, [2, 7]), atol=1e-9)


def test_a_time_out_of_range_names_the_field_and_value():
    rel, values = sweep_values(4)
    values['time'] = rel + np.array([0, 0, MAX_OFFSET_S + 1, 0])
    msg = cloud(*VELODYNE, values)
    with pytest.raises(MessageError, match=r"fields\['time'\].*6\.0\d* s from the header"):
        point_times(msg, detect_time_field(msg), STAMP_NS)
