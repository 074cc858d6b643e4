"""The output path's compiled kernels against their numpy references, and the buffers they fill.

* metric depth (``apply_affine``): the very numbers of ``apply_affine_reference`` in both output
  spaces, with NaN, inf, non-positive values and the ``max_depth`` cut;
* the cloud (``PointGrid.packed`` / ``pack_depth_cloud``): the very bytes of
  ``pack_cloud(grid.points(depth), ...)`` for XYZ, XYZRGB, with sigma, strides 1 to 3 and a
  stereo ``tx``, and the same ``is_dense``;
* the preview (``colorize_depth`` by LUT): today's colours to one LUT step on a gradient;
* reused buffers: the cloud and the preview are written into them, depth copied into one, and
  the ros layer hands such a buffer to the message as it is (no copy), an ordinary array once.
"""

import numpy as np
import pytest

from depth_node.core.align import apply_affine, apply_affine_reference, OutputKind
from depth_node.core.camera import PinholeCamera
from depth_node.core.cloud import packed_reference, PointGrid
from depth_node.core.colormap import colorize_depth, colorize_depth_reference
from depth_node.core.errors import DepthNodeError
from depth_node.messages.encodings import MessageError
from depth_node.messages.layout import pack_cloud, pack_depth_cloud
from depth_node.pipeline.published import frame_outputs, OutputBuffers, PublishSettings


def _depth(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.5, 120.0, (h, w)).astype(np.float32)
    z[:, 6] = np.nan  # a column every stride keeps
    return z


@pytest.mark.parametrize('space', list(OutputKind))
@pytest.mark.parametrize('max_depth', [80.0, float('inf'), 2.5])
def test_metric_depth_is_the_reference_to_the_bit(space, max_depth):
    rng = np.random.default_rng(1)
    pred = rng.normal(0.4, 0.5, (37, 53)).astype(np.float32)  # negatives: invalid
    pred[0, :4] = [np.nan, np.inf, -np.inf, 0.0]
    got = apply_affine(pred, 1.7, -0.1, space, max_depth)
    want = apply_affine_reference(pred, 1.7, -0.1, space, max_depth)
    assert got.dtype == np.float32 and got.shape == pred.shape
    np.testing.assert_array_equal(got, want)  # NaN at the same places
    assert np.isnan(got).any() and np.isfinite(got).any()


def test_metric_depth_writes_into_out_and_refuses_a_wrong_one():
    pred = np.full((4, 6), 0.5, np.float64)  # any float dtype in
    out = np.empty((4, 6), np.float32)
    assert apply_affine(pred, 2.0, 0.0, OutputKind.DISPARITY, out=out) is out
    np.testing.assert_allclose(out, 1.0)
    with pytest.raises(DepthNodeError, match='out of shape'):
        apply_affine(pred, 2.0, 0.0, OutputKind.DISPARITY, out=np.empty((4, 6), np.float64))


@pytest.mark.parametrize('stride', [1, 2, 3])
@pytest.mark.parametrize('color', [False, True])
@pytest.mark.parametrize('with_sigma', [False, True])
def test_one_pass_cloud_is_the_bytes_of_points_then_pack(stride, color, with_sigma):
    h, w = 48, 64
    camera = PinholeCamera(w, h, 50.0, 52.0, 31.5, 24.0, tx=-3.2)  # a stereo right camera
    grid = PointGrid(camera, stride)
    depth = _depth(h, w)
    rgb = np.random.default_rng(2).integers(0, 256, (h, w, 3), dtype=np.uint8)
    sigma = (0.05 * depth).astype(np.float32)
    c, s = (rgb if color else None), (sigma if with_sigma else None)
    got = pack_depth_cloud(grid, depth, c, s)
    want = pack_cloud(grid.points(depth), None if c is None else c[::stride, ::stride],
                      None if s is None else s[::stride, ::stride])
    assert (got.height, got.width, got.fields, got.point_step, got.row_step, got.is_dense) == \
        (want.height, want.width, want.fields, want.point_step, want.row_step, want.is_dense)
    np.testing.assert_array_equal(got.data, want.data)  # the same bytes, NaN bits included
    assert not got.is_dense  # the NaN row
    ref = np.empty((grid.shape[0], grid.shape[1], grid.words(color, with_sigma)), np.float32)
    assert packed_reference(grid, depth, c, s, ref) == got.is_dense
    np.testing.assert_array_equal(ref.reshape(-1).view(np.uint8), got.data)


def test_a_cloud_without_nan_is_dense_and_bad_inputs_name_their_field():
    camera = PinholeCamera(16, 12, 10.0, 10.0, 8.0, 6.0)
    grid = PointGrid(camera, 2)
    assert pack_depth_cloud(grid, np.full((12, 16), 3.0, np.float32)).is_dense
    with pytest.raises(MessageError) as exc:
        pack_depth_cloud(grid, np.ones((12, 15), np.float32))
    assert exc.value.field == 'depth'
    with pytest.raises(MessageError) as exc:
        pack_depth_cloud(grid, np.ones((12, 16), np.float32), np.ones((12, 16, 3), np.float32))
    assert exc.value.field == 'rgb'
    with pytest.raises(MessageError) as exc:
        pack_depth_cloud(grid, np.ones((12, 16), np.float32), out=np.empty(10, np.uint8))
    assert exc.value.field == 'out'


def test_lut_preview_looks_as_today_on_a_gradient():
    z = np.geomspace(0.3, 200.0, 480 * 64, dtype=np.float32).reshape(480, 64)
    z[0, :3] = [np.nan, np.inf, 0.0]
    got = colorize_depth(z, 1.0, 80.0)
    want = colorize_depth_reference(z, 1.0, 80.0)
    assert got.shape == want.shape == (480, 64, 3) and got.dtype == np.uint8
    diff = np.abs(got.astype(np.int16) - want).max(axis=-1)
    # The same LUT entry but where float rounding falls on the other side of a step boundary:
    # neighbouring turbo entries differ by a few units.
    assert diff.max() <= 8 and (diff > 0).mean() < 1e-3
    np.testing.assert_array_equal(got[0, 0], [0, 0, 0])  # NaN is black
    np.testing.assert_array_equal(got[0, 1], want[0, 1])  # inf: the far end
    assert len({tuple(c) for c in got.reshape(-1, 3)}) > 200  # the whole map is used
    # A pixel count that is not a multiple of 4 takes the byte-by-byte path: the same colours.
    odd = np.ascontiguousarray(z[:, :33])
    np.testing.assert_array_equal(colorize_depth(odd, 1.0, 80.0), got[:, :33])
    out = np.empty((480, 64, 3), np.uint8)
    assert colorize_depth(z, 1.0, 80.0, out=out) is out
    with pytest.raises(DepthNodeError, match='out of shape'):
        colorize_depth(z, 1.0, 80.0, out=np.empty((480, 64, 4), np.uint8))


def test_buffers_are_reused_and_filled_by_the_cloud_and_the_preview():
    h, w = 24, 32
    camera = PinholeCamera(w, h, 30.0, 30.0, 16.0, 12.0)
    grid = PointGrid(camera, 2)
    depth = _depth(h, w)
    rgb = np.zeros((h, w, 3), np.uint8)
    settings = PublishSettings(cloud_color=True)
    buffers = OutputBuffers()
    outs = [frame_outputs(depth * k, None, depth, rgb, camera, 'plumb_bob', 5, settings,
                          grid=grid, buffers=buffers) for k in (1, 2)]
    # Both frames went into the same memory (the second overwrote the first).
    assert np.shares_memory(outs[0].cloud.data, outs[1].cloud.data)
    assert np.shares_memory(outs[0].colored, outs[1].colored)
    assert np.shares_memory(outs[0].depth, outs[1].depth)  # copied into a buffer
    np.testing.assert_array_equal(outs[1].depth, depth * 2)
    assert buffers.nbytes() == outs[1].cloud.data.nbytes + outs[1].colored.nbytes \
        + outs[1].depth.nbytes
    fresh = frame_outputs(depth * 2, grid.points(depth * 2), depth, rgb, camera, 'plumb_bob', 5,
                          settings)
    np.testing.assert_array_equal(outs[1].cloud.data, fresh.cloud.data)
    np.testing.assert_array_equal(outs[1].colored, fresh.colored)
    bigger = buffers.array('depth/colored', (h + 1, w, 3), np.uint8)  # a new size: a new one
    assert not np.shares_memory(bigger, outs[1].colored)


def test_messages_take_a_buffer_as_it_is_and_copy_other_arrays_once():
    pytest.importorskip('rclpy')
    from std_msgs.msg import Header

    from depth_node.ros.messages import array_to_image, packed_to_pointcloud2

    buffers = OutputBuffers()
    colored = buffers.array('depth/colored', (6, 8, 3), np.uint8)
    colored[:] = 7
    msg = array_to_image(colored, 'rgb8')
    backing = np.frombuffer(msg.data, np.uint8)
    assert np.shares_memory(backing, colored)  # no copy on the way into the message
    assert msg.step == 24 and len(msg.data) == colored.nbytes
    depth = _depth(6, 8)
    image = array_to_image(depth, '32FC1')
    assert not np.shares_memory(np.frombuffer(image.data, np.uint8), depth)
    np.testing.assert_array_equal(np.frombuffer(image.data, np.float32).reshape(6, 8), depth)
    view = colored[:, :4]  # not the whole buffer: copied
    assert not np.shares_memory(np.frombuffer(array_to_image(
        np.ascontiguousarray(view), 'rgb8').data, np.uint8), colored)

    grid = PointGrid(PinholeCamera(8, 6, 5.0, 5.0, 4.0, 3.0), 1)
    out = buffers.array('depth/points', (6 * 8 * 12,), np.uint8)
    cloud = packed_to_pointcloud2(pack_depth_cloud(grid, depth, out=out), Header())
    assert np.shares_memory(np.frombuffer(cloud.data, np.uint8), out)
    assert cloud.point_step == 12 and not cloud.is_dense
