"""Tests for the message <-> array boundary (depth_node.ros.messages), no ROS graph needed.

Messages are built by hand (row padding, byte order, unusual field layouts) with ``struct`` and
plain byte strings; clouds written by the module are decoded by an independent parser: rclpy
serialises them, rosbags deserialises the CDR, and ``struct`` reads every point.
"""

import math
import struct
import sys

import numpy as np
import pytest
from rclpy.serialization import serialize_message
from rosbags.typesys import get_typestore, Stores
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from depth_node.core.camera import PinholeCamera
from depth_node.messages.encodings import ENCODINGS
from depth_node.messages.readers import (camera_info_to_camera, image_to_array, image_to_rgb8,
                                         MessageError, pointcloud2_to_xyz)
from depth_node.ros.messages import array_to_image, xyz_to_pointcloud2

pytestmark = pytest.mark.jazzy  # also run on ROS 2 Jazzy (scripts/test.sh)

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
NATIVE_BIG = sys.byteorder == 'big'


def random_pixels(encoding, height=5, width=7, seed=0):
    """Random [H, W] or [H, W, C] pixels of the encoding's dtype, NaN-free."""
    channels, dtype = ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    rng = np.random.default_rng(seed)
    if dtype.kind == 'f':
        return (rng.standard_normal(shape) * 100).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def hand_image(pixels, encoding, big_endian=False, pad=0):
    """Image built without the module: rows of ``pixels`` in the given byte order + pad bytes."""
    order = '>' if big_endian else '<'
    rows = [np.ascontiguousarray(row, dtype=pixels.dtype.newbyteorder(order)).tobytes()
            + b'\xab' * pad for row in pixels]
    row_bytes = len(rows[0]) if rows else 0
    return Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                 is_bigendian=int(big_endian), step=row_bytes, data=b''.join(rows))


def assert_field_error(excinfo, field):
    assert excinfo.value.field == field
    assert str(excinfo.value).startswith(field)


# --- images -----------------------------------------------------------------------------------

@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
def test_image_round_trip_every_encoding(encoding):
    pixels = random_pixels(encoding)
    channels, dtype = ENCODINGS[encoding]
    header = Header(frame_id='cam_optical')
    msg = array_to_image(pixels, encoding, header)
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step == 7 * channels * dtype.itemsize
    assert msg.is_bigendian == int(NATIVE_BIG)
    assert bytes(msg.data) == pixels.tobytes()
    assert msg.header.frame_id == 'cam_optical'
    back = image_to_array(msg)
    assert back.dtype == dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, pixels)


@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
@pytest.mark.parametrize('big_endian', [False, True])
@pytest.mark.parametrize('pad', [0, 3])
def test_image_padding_and_byte_order(encoding, big_endian, pad):
    pixels = random_pixels(encoding, seed=1)
    msg = hand_image(pixels, encoding, big_endian=big_endian, pad=pad)
    back = image_to_array(msg)
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, pixels)


def test_image_to_array_is_a_view_when_native():
    depth = np.arange(12, dtype=np.float32).reshape(3, 4)
    msg = array_to_image(depth, '32FC1')
    view = image_to_array(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, dtype=np.uint8))
    swapped = hand_image(depth, '32FC1', big_endian=not NATIVE_BIG)
    np.testing.assert_array_equal(image_to_array(swapped), depth)


def test_image_from_rosbags_message():
    pixels = random_pixels('16UC1', seed=2)
    raw = serialize_message(array_to_image(pixels, '16UC1'))
    msg = TYPESTORE.deserialize_cdr(raw, 'sensor_msgs/msg/Image')
    np.testing.assert_array_equal(image_to_array(msg), pixels)


def test_empty_image():
    msg = Image(height=0, width=0, encoding='32FC1', step=0)
    assert image_to_array(msg).shape == (0, 0)
    assert image_to_array(Image(height=0, width=4, encoding='rgb8', step=12)).shape == (0, 4, 3)


def _rgb(pixels, indices, shift=0):
    return np.stack([pixels[..., i] >> shift for i in indices], axis=-1).astype(np.uint8)


RGB8_CASES = {
    'rgb8': lambda p: p,
    'bgr8': lambda p: p[..., ::-1],
    'rgba8': lambda p: p[..., :3],
    'bgra8': lambda p: p[..., [2, 1, 0]],
    '8UC3': lambda p: p[..., ::-1],
    '8UC4': lambda p: p[..., [2, 1, 0]],
    'mono8': lambda p: np.stack([p, p, p], axis=-1),
    '8UC1': lambda p: np.stack([p, p, p], axis=-1),
    'rgb16': lambda p: _rgb(p, [0, 1, 2], 8),
    'bgr16': lambda p: _rgb(p, [2, 1, 0], 8),
    'rgba16': lambda p: _rgb(p, [0, 1, 2], 8),
    'bgra16': lambda p: _rgb(p, [2, 1, 0], 8),
    '16UC3': lambda p: _rgb(p, [2, 1, 0], 8),
    '16UC4': lambda p: _rgb(p, [2, 1, 0], 8),
    'mono16': lambda p: _rgb(p[..., None], [0, 0, 0], 8),
    '16UC1': lambda p: _rgb(p[..., None], [0, 0, 0], 8),
}


@pytest.mark.parametrize('encoding', sorted(RGB8_CASES))
@pytest.mark.parametrize('pad', [0, 5])
def test_image_to_rgb8(encoding, pad):
    pixels = random_pixels(encoding, seed=3)
    msg = hand_image(pixels, encoding, big_endian=not NATIVE_BIG, pad=pad)
    rgb = image_to_rgb8(msg)
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, RGB8_CASES[encoding](pixels))


def test_image_to_rgb8_hand_values():
    bgra = Image(height=1, width=2, encoding='bgra8', step=8,
                 data=bytes([30, 20, 10, 255, 3, 2, 1, 0]))
    np.testing.assert_array_equal(image_to_rgb8(bgra), [[[10, 20, 30], [1, 2, 3]]])
    # mono16 big-endian: 0x1234 -> 0x12, 0xffff -> 255, 0x00ff -> 0.
    mono16 = Image(height=1, width=3, encoding='mono16', is_bigendian=1, step=6,
                   data=bytes([0x12, 0x34, 0xff, 0xff, 0x00, 0xff]))
    np.testing.assert_array_equal(image_to_rgb8(mono16), [[[0x12] * 3, [255] * 3, [0] * 3]])
    rgb16 = Image(height=1, width=1, encoding='rgb16', is_bigendian=0, step=6,
                  data=struct.pack('<3H', 0x0aff, 0x1400, 0x1eab))
    np.testing.assert_array_equal(image_to_rgb8(rgb16), [[[10, 20, 30]]])


@pytest.mark.parametrize('encoding', ['bayer_rggb8', 'bayer_gbrg16', 'yuv422', '32FC1',
                                      '64FC1', '16SC1', '8UC2', 'nv12', ''])
def test_image_to_rgb8_rejects_encoding(encoding):
    msg = Image(height=1, width=1, encoding=encoding, step=4, data=bytes(4))
    with pytest.raises(MessageError) as excinfo:
        image_to_rgb8(msg)
    assert_field_error(excinfo, 'Image.encoding')
    assert repr(encoding) in str(excinfo.value)


@pytest.mark.parametrize('fields, field, seen', [
    (dict(encoding='rgb9'), 'Image.encoding', "'rgb9'"),
    (dict(data=bytes(4 * 6 - 1)), 'Image.data', '23 bytes'),
    (dict(data=bytes(4 * 6 + 4)), 'Image.data', '28 bytes'),
    (dict(step=3, data=bytes(9)), 'Image.step', '3 is smaller than width*bytes_per_pixel 4'),
    (dict(width=0), 'Image.width', '24 bytes'),
    (dict(height=0), 'Image.data', 'has 24 bytes, expected step*height = 0'),
])
def test_malformed_image(fields, field, seen):
    base = dict(height=3, width=2, encoding='mono16', is_bigendian=0, step=8, data=bytes(24))
    msg = Image(**{**base, **fields})
    with pytest.raises(MessageError) as excinfo:
        image_to_array(msg)
    assert_field_error(excinfo, field)
    assert seen in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_array_to_image_rejects_bad_arrays():
    with pytest.raises(MessageError) as excinfo:
        array_to_image(np.zeros((2, 2), np.float64), '32FC1')
    assert_field_error(excinfo, 'array')
    assert 'float64' in str(excinfo.value)
    with pytest.raises(MessageError) as excinfo:
        array_to_image(np.zeros((2, 2, 4), np.uint8), 'rgb8')
    assert_field_error(excinfo, 'array')
    assert '(2, 2, 4)' in str(excinfo.value)
    with pytest.raises(MessageError) as excinfo:
        array_to_image(np.zeros((2, 2), np.uint8), 'jpeg')
    assert_field_error(excinfo, 'encoding')


def test_array_to_image_accepts_trailing_channel_and_swapped_order():
    depth = np.arange(6, dtype='>f4').reshape(2, 3, 1)
    msg = array_to_image(depth, '32FC1')
    assert msg.step == 12 and msg.is_bigendian == int(NATIVE_BIG)
    np.testing.assert_array_equal(image_to_array(msg), depth[:, :, 0])


# --- point clouds: reading ----------------------------------------------------------------------

F32, F64, U16 = PointField.FLOAT32, PointField.FLOAT64, PointField.UINT16
_STRUCT = {PointField.FLOAT32: 'f', PointField.FLOAT64: 'd', PointField.UINT16: 'H',
           PointField.UINT8: 'B'}


def hand_cloud(points, layout, point_step, height=1, row_pad=0, big_endian=False, extra=None):
    """PointCloud2 packed point by point with struct.

    ``points`` [H*W, 3] values of x, y, z; ``layout`` {name: (offset, datatype)}; ``extra``
    {name: [H*W] values} for other fields; unused bytes are 0xCD.
    """
    order = '>' if big_endian else '<'
    width = len(points) // height
    values = {'x': points[:, 0], 'y': points[:, 1], 'z': points[:, 2], **(extra or {})}
    data = bytearray()
    for row in range(height):
        for col in range(width):
            point = bytearray(b'\xcd' * point_step)
            for name, (offset, datatype) in layout.items():
                struct.pack_into(order + _STRUCT[datatype], point, offset,
                                 values[name][row * width + col])
            data += point
        data += b'\xcd' * row_pad
    fields = [PointField(name=name, offset=offset, datatype=datatype, count=1)
              for name, (offset, datatype) in layout.items()]
    return PointCloud2(height=height, width=width, fields=fields, is_bigendian=big_endian,
                       point_step=point_step, row_step=width * point_step + row_pad,
                       data=bytes(data), is_dense=False)


def sample_points(n, seed=4):
    return np.random.default_rng(seed).uniform(-50, 50, size=(n, 3)).astype(np.float32)


LIDAR_LAYOUT = {'intensity': (0, F32), 'z': (4, F32), 'ring': (8, U16), 'x': (12, F32),
                'y': (20, F32)}


@pytest.mark.parametrize('big_endian', [False, True])
def test_cloud_unusual_offsets_and_extra_fields(big_endian):
    pts = sample_points(10)
    extra = {'intensity': np.arange(10.0), 'ring': np.arange(10) % 16}
    msg = hand_cloud(pts, LIDAR_LAYOUT, point_step=28, big_endian=big_endian, extra=extra)
    xyz = pointcloud2_to_xyz(msg)
    assert xyz.dtype == np.float32 and xyz.shape == (10, 3)
    np.testing.assert_array_equal(xyz, pts)


@pytest.mark.parametrize('big_endian', [False, True])
def test_cloud_organized_with_row_padding(big_endian):
    pts = sample_points(12)
    layout = {'x': (0, F32), 'y': (4, F32), 'z': (8, F32), 'intensity': (16, F32)}
    msg = hand_cloud(pts, layout, point_step=32, height=3, row_pad=6, big_endian=big_endian,
                     extra={'intensity': np.ones(12)})
    assert (msg.height, msg.width, msg.row_step) == (3, 4, 134)
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg), pts)


@pytest.mark.parametrize('big_endian', [False, True])
def test_cloud_float64_and_mixed_types(big_endian):
    pts64 = np.random.default_rng(5).uniform(-9, 9, size=(6, 3))
    msg = hand_cloud(pts64, {'x': (0, F64), 'y': (8, F64), 'z': (16, F64)}, point_step=24,
                     big_endian=big_endian)
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg), pts64.astype(np.float32))
    mixed = hand_cloud(pts64, {'z': (0, F32), 'x': (4, F64), 'y': (12, F32)}, point_step=20,
                       big_endian=big_endian)
    np.testing.assert_array_equal(pointcloud2_to_xyz(mixed), pts64.astype(np.float32))


def test_cloud_drops_non_finite_points_in_order():
    pts = sample_points(8).astype(np.float64)
    pts[1, 0] = np.nan
    pts[3, 2] = np.inf
    pts[4, 1] = -np.inf
    pts[6] = np.nan
    pts[7, 2] = 1e300  # finite in float64, infinite in float32
    keep = [0, 2, 5]
    layout32 = {'x': (0, F32), 'y': (4, F32), 'z': (8, F32)}
    np.testing.assert_array_equal(pointcloud2_to_xyz(hand_cloud(pts[:7], layout32, 16)),
                                  pts[keep].astype(np.float32))
    layout64 = {'x': (0, F64), 'y': (8, F64), 'z': (16, F64)}
    np.testing.assert_array_equal(pointcloud2_to_xyz(hand_cloud(pts, layout64, 24)),
                                  pts[keep].astype(np.float32))


def test_cloud_empty_and_large():
    fields = [PointField(name=name, offset=4 * i, datatype=F32, count=1)
              for i, name in enumerate('xyz')]
    empty = PointCloud2(height=1, width=0, fields=fields, point_step=12)
    assert pointcloud2_to_xyz(empty).shape == (0, 3)
    pts = sample_points(131072)
    pts[::100] = np.nan
    msg = xyz_to_pointcloud2(pts, Header(), np.zeros(pts.shape, np.uint8))
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg), pts[np.isfinite(pts).all(axis=1)])


def test_cloud_from_rosbags_message():
    pts = sample_points(20)
    raw = serialize_message(hand_cloud(pts, LIDAR_LAYOUT, 28, height=4, row_pad=2,
                                       extra={'intensity': np.zeros(20), 'ring': [7] * 20}))
    msg = TYPESTORE.deserialize_cdr(raw, 'sensor_msgs/msg/PointCloud2')
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg), pts)


def _good_cloud(**changes):
    msg = hand_cloud(sample_points(4), {'x': (0, F32), 'y': (4, F32), 'z': (8, F32)}, 16,
                     height=2, row_pad=4)
    for name, value in changes.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize('changes, field, seen', [
    (dict(fields=[PointField(name='x', offset=0, datatype=F32, count=1),
                  PointField(name='y', offset=4, datatype=F32, count=1)]),
     'PointCloud2.fields', "no 'z' field"),
    (dict(fields=[PointField(name='x', offset=0, datatype=U16, count=1),
                  PointField(name='y', offset=4, datatype=F32, count=1),
                  PointField(name='z', offset=8, datatype=F32, count=1)]),
     "PointCloud2.fields['x'].datatype", '4 (UINT16)'),
    (dict(fields=[PointField(name='x', offset=0, datatype=F32, count=1),
                  PointField(name='y', offset=4, datatype=F32, count=1),
                  PointField(name='z', offset=12, datatype=F64, count=1)]),
     "PointCloud2.fields['z'].offset", '12 + 8 bytes is past point_step 16'),
    (dict(point_step=0), "PointCloud2.fields['x'].offset", 'past point_step 0'),
    (dict(row_step=20), 'PointCloud2.row_step', '20 is smaller than width*point_step 32'),
    (dict(data=bytes(71)), 'PointCloud2.data', 'has 71 bytes, expected row_step*height = 72'),
    (dict(height=3), 'PointCloud2.data', 'has 72 bytes, expected row_step*height = 108'),
    (dict(width=0), 'PointCloud2.width', 'is 0 but data has 72 bytes'),
])
def test_malformed_cloud(changes, field, seen):
    with pytest.raises(MessageError) as excinfo:
        pointcloud2_to_xyz(_good_cloud(**changes))
    assert_field_error(excinfo, field)
    assert seen in str(excinfo.value)


# --- point clouds: writing, checked by an independent parser ----------------------------------

def parse_cloud(msg):
    """Decode an rclpy cloud via CDR, rosbags and struct: (raw message, [H*W] point dicts)."""
    raw = TYPESTORE.deserialize_cdr(serialize_message(msg), 'sensor_msgs/msg/PointCloud2')
    order = '>' if raw.is_bigendian else '<'
    data = raw.data.tobytes()
    assert len(data) == raw.row_step * raw.height
    points = []
    for row in range(raw.height):
        for col in range(raw.width):
            base = row * raw.row_step + col * raw.point_step
            point = {}
            for field in raw.fields:
                assert field.datatype == PointField.FLOAT32 and field.count == 1
                point[field.name] = struct.unpack_from(order + 'f', data, base + field.offset)[0]
                point[field.name + '_bits'] = struct.unpack_from(order + 'I', data,
                                                                 base + field.offset)[0]
            points.append(point)
    return raw, points


def assert_same_float(a, b):
    assert (math.isnan(a) and math.isnan(b)) or a == b, (a, b)


@pytest.mark.parametrize('organized', [False, True])
def test_xyz_to_pointcloud2_xyz(organized):
    pts = sample_points(12, seed=6)
    pts[2, 1] = np.nan
    array = pts.reshape(3, 4, 3) if organized else pts
    header = Header(frame_id='cam_optical')
    header.stamp.sec = 42
    raw, points = parse_cloud(xyz_to_pointcloud2(array, header))
    assert (raw.height, raw.width) == ((3, 4) if organized else (1, 12))
    assert [(f.name, f.offset) for f in raw.fields] == [('x', 0), ('y', 4), ('z', 8)]
    assert raw.point_step == 12 and raw.row_step == raw.width * 12
    assert bool(raw.is_bigendian) == NATIVE_BIG
    assert raw.is_dense is False
    assert raw.header.frame_id == 'cam_optical' and raw.header.stamp.sec == 42
    for point, expected in zip(points, pts):
        for name, value in zip('xyz', expected):
            assert_same_float(point[name], float(value))


@pytest.mark.parametrize('organized', [False, True])
def test_xyz_to_pointcloud2_rgb_bits(organized):
    pts = sample_points(6, seed=7)
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0],
                        [0x12, 0x34, 0x56]], dtype=np.uint8)
    if organized:
        pts, colours = pts.reshape(2, 3, 3), colours.reshape(2, 3, 3)
    msg = xyz_to_pointcloud2(pts, Header(), colours)
    raw, points = parse_cloud(msg)
    assert (raw.height, raw.width) == ((2, 3) if organized else (1, 6))
    assert [(f.name, f.offset, f.datatype, f.count) for f in raw.fields] == [
        ('x', 0, F32, 1), ('y', 4, F32, 1), ('z', 8, F32, 1), ('rgb', 12, F32, 1)]
    assert raw.point_step == 16 and raw.row_step == raw.width * 16
    assert raw.is_dense is True
    expected_bits = [0xff0000, 0x00ff00, 0x0000ff, 0xffffff, 0x000000, 0x123456]
    assert [p['rgb_bits'] for p in points] == expected_bits
    for point, expected in zip(points, pts.reshape(-1, 3)):
        assert [point['x'], point['y'], point['z']] == [float(v) for v in expected]
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg), pts.reshape(-1, 3))


@pytest.mark.parametrize('bad, dense', [(None, True), (np.nan, False), (np.inf, False)])
def test_is_dense(bad, dense):
    pts = sample_points(5, seed=8)
    if bad is not None:
        pts[3, 2] = bad
    assert xyz_to_pointcloud2(pts, Header()).is_dense is dense
    assert xyz_to_pointcloud2(pts, Header(), np.zeros((5, 3), np.uint8)).is_dense is dense


def test_xyz_to_pointcloud2_casts_float64_and_handles_empty():
    pts = np.random.default_rng(9).uniform(-1, 1, size=(2, 2, 3))
    _, points = parse_cloud(xyz_to_pointcloud2(pts, Header()))
    assert [p['x'] for p in points] == [float(np.float32(v)) for v in pts[..., 0].ravel()]
    empty = xyz_to_pointcloud2(np.zeros((0, 3), np.float32), Header())
    assert (empty.height, empty.width, len(empty.data), empty.is_dense) == (1, 0, 0, True)


def test_xyz_to_pointcloud2_rejects_bad_arrays():
    with pytest.raises(MessageError) as excinfo:
        xyz_to_pointcloud2(np.zeros((4, 2), np.float32), Header())
    assert_field_error(excinfo, 'points')
    with pytest.raises(MessageError) as excinfo:
        xyz_to_pointcloud2(np.zeros((4, 3), np.int32), Header())
    assert_field_error(excinfo, 'points')
    with pytest.raises(MessageError) as excinfo:
        xyz_to_pointcloud2(np.zeros((4, 3), np.float32), Header(), np.zeros((4, 3), np.float32))
    assert_field_error(excinfo, 'rgb')
    with pytest.raises(MessageError) as excinfo:
        xyz_to_pointcloud2(np.zeros((2, 2, 3), np.float32), Header(), np.zeros((4, 3), np.uint8))
    assert_field_error(excinfo, 'rgb')


# --- camera info ------------------------------------------------------------------------------

K = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
P = [480.0, 0.0, 318.0, -24.0, 0.0, 490.0, 238.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_camera_info_uses_p():
    cam = camera_info_to_camera(CameraInfo(width=640, height=480, k=K, p=P))
    assert cam == PinholeCamera(640, 480, 480.0, 490.0, 318.0, 238.0, -24.0, 0.0)


def test_camera_info_k_only():
    cam = camera_info_to_camera(CameraInfo(width=640, height=480, k=K))
    assert cam == PinholeCamera(640, 480, 500.0, 510.0, 320.0, 240.0)


def test_camera_info_binning_and_roi():
    info = CameraInfo(width=640, height=480, k=K, p=P, binning_x=2, binning_y=2)
    assert camera_info_to_camera(info) == PinholeCamera(320, 240, 240.0, 245.0, 159.0, 119.0,
                                                        -12.0, 0.0)
    info = CameraInfo(width=640, height=480, k=K, p=P)
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 100, 50, 200, 100
    assert camera_info_to_camera(info) == PinholeCamera(200, 100, 480.0, 490.0, 218.0, 188.0,
                                                        -24.0, 0.0)


@pytest.mark.parametrize('info, seen', [
    (CameraInfo(width=640, height=480), 'uncalibrated'),
    (CameraInfo(width=0, height=0, k=K), 'width=0'),
    (CameraInfo(width=640, height=480, k=[-1.0] + K[1:]), 'fx'),
])
def test_camera_info_invalid(info, seen):
    with pytest.raises(MessageError) as excinfo:
        camera_info_to_camera(info)
    assert_field_error(excinfo, 'CameraInfo')
    assert seen in str(excinfo.value)
