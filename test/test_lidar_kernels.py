"""The compiled LiDAR-path kernels against their numpy references, and the zero-copy decode.

``project_points`` is a single numba pass and ``reject_see_through`` numba passes around
OpenCV dilations (or, for a sparse sweep, one numba pass); each keeps its former numpy code as
``*_reference`` and must give identical results (values, dtypes, point order) on
synthetic street sweeps and on random points with the awkward cases (ties, points behind the
camera, NaN and inf, read-only strided views of message bytes). ``pointcloud2_to_xyz(msg,
finite=False)`` is a read-only view of the message where the layout allows.
"""

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from depth_node.core import lidar as lidar_module, see_through as see_through_module
from depth_node.core.camera import PinholeCamera
from depth_node.core.lidar import project_points, project_points_reference, SparseDepth
from depth_node.core.see_through import reject_see_through, reject_see_through_reference
from depth_node.core.transforms import RigidTransform
from depth_node.messages.readers import pointcloud2_to_arrays, pointcloud2_to_xyz
from depth_node.ros.messages import xyz_to_pointcloud2
from depth_node.sim.frames import SimRig

CAM = PinholeCamera(64, 48, 40.0, 42.0, 31.5, 23.5)
STEREO = PinholeCamera(64, 48, 40.0, 40.0, 30.2, 24.9, tx=-3.1, ty=0.7)
EXTRINSIC = RigidTransform.from_parameters([0.1, -0.3, 0.05], [-1.6, 0.02, -1.5])


def assert_same(a: SparseDepth, b: SparseDepth) -> None:
    assert (a.width, a.height, a.count) == (b.width, b.height, b.count)
    for name in 'uvz':
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.fixture(scope='module')
def street():
    rig = SimRig.default(320, 240, seed=3)
    return rig, [f.lidar for f in rig.frames(2, rate=2.0)]


def awkward_points(seed: int, n: int = 4000) -> np.ndarray:
    """Random points in front of and behind the camera, NaN / inf, exact duplicates and ties."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-30, 30, (n, 3)).astype(np.float32)
    pts[: n // 4, 2] = rng.uniform(0.0, 1.0, n // 4)  # around min_depth
    pts[rng.integers(0, n, 40), rng.integers(0, 3, 40)] = np.nan
    pts[rng.integers(0, n, 20), rng.integers(0, 3, 20)] = np.inf
    pts[rng.integers(0, n, 20), rng.integers(0, 3, 20)] = -np.inf
    pts[n - 200:n - 100] = pts[100:200]  # exact duplicates: equal depth on the same pixel
    pts[n - 100:, :2] = pts[200:300, :2] * 1.0001  # nearly the same pixel, other depths
    pts[n - 100:, 2] = pts[200:300, 2]
    return pts


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('camera', [CAM, STEREO])
def test_projection_matches_reference_on_awkward_points(seed, camera):
    pts = awkward_points(seed)
    for ext in (RigidTransform.identity(), EXTRINSIC):
        for near, far in ((0.1, float('inf')), (0.5, 25.0), (0.0, 9999.0)):
            assert_same(project_points(pts, camera, ext, near, far),
                        project_points_reference(pts, camera, ext, near, far))


def test_projection_ties_keep_one_return_per_pixel():
    # Twenty returns on one pixel: three at the nearest depth (exact tie), the rest farther.
    pts = np.array([[0.0, 0.0, z] for z in [9.0] * 10 + [4.0] * 3 + [7.0] * 7], np.float32)
    pts[[3, 15]] = np.nan
    sparse = project_points(pts, CAM, RigidTransform.identity())
    assert sparse.count == 1 and sparse.z[0] == 4.0
    assert_same(sparse, project_points_reference(pts, CAM, RigidTransform.identity()))


def test_projection_matches_reference_on_street_sweeps(street):
    rig, sweeps = street
    for points in sweeps:
        for near, far in ((0.5, 120.0), (2.0, 30.0)):
            assert_same(project_points(points, rig.camera, rig.lidar_to_camera, near, far),
                        project_points_reference(points, rig.camera, rig.lidar_to_camera,
                                                 near, far))


def test_projection_of_views_and_other_dtypes():
    pts = awkward_points(7)
    want = project_points_reference(pts, CAM, EXTRINSIC)
    padded = np.zeros((pts.shape[0], 5), np.float32)
    padded[:, 1:4] = pts
    view = padded[:, 1:4]
    view.flags.writeable = False
    swapped = pts.astype('>f4')
    unaligned = np.frombuffer(b'\0' + pts.tobytes(), np.float32, offset=1).reshape(-1, 3)
    for points in (view, pts.astype(np.float64), swapped, unaligned, pts.tolist()):
        assert_same(project_points(points, CAM, EXTRINSIC), want)
    with pytest.raises(Exception, match=r'\[N, 3\]'):
        project_points(np.zeros((4, 2), np.float32), CAM, EXTRINSIC)
    empty = project_points(np.zeros((0, 3), np.float32), CAM, EXTRINSIC)
    assert empty.count == 0 and empty.u.dtype == np.int32 and empty.z.dtype == np.float32


def test_projection_buffers_are_reused_and_left_clean():
    pts = awkward_points(1)
    big = PinholeCamera(128, 96, 80.0, 80.0, 63.5, 47.5)
    for camera in (CAM, big, CAM, STEREO):  # a smaller image after a larger one reuses it
        assert_same(project_points(pts, camera, EXTRINSIC),
                    project_points_reference(pts, camera, EXTRINSIC))
        assert np.isinf(lidar_module._BUFFERS.zbuf).all()  # the kernel's entry condition
    zbuf = lidar_module._BUFFERS.zbuf
    project_points(pts, CAM, EXTRINSIC)
    assert lidar_module._BUFFERS.zbuf is zbuf  # no new allocation per frame


def test_projection_from_several_threads():
    clouds = [awkward_points(seed, 20000) for seed in range(6)]
    want = [project_points_reference(p, CAM, EXTRINSIC) for p in clouds]
    with ThreadPoolExecutor(3) as pool:
        for _ in range(3):
            got = list(pool.map(lambda p: project_points(p, CAM, EXTRINSIC), clouds))
            for a, b in zip(got, want):
                assert_same(a, b)


# --- sampling an image at the returns --------------------------------------------------------

def test_sample_is_numpys_gather_for_every_kind_of_input():
    lidar_module.warm_up()
    rng = np.random.default_rng(4)
    h, w = 30, 40
    u = rng.integers(0, w, 500).astype(np.int32)
    v = rng.integers(0, h, 500).astype(np.int32)
    sparse = SparseDepth(u, v, np.ones(500, np.float32), w, h)
    base = rng.random((h, w))
    read_only = base.astype(np.float32)
    read_only.flags.writeable = False
    for image in (base, base.astype(np.float32), base[:, ::-1], base.astype(np.float32).T.T,
                  (base * 100).astype(np.uint8), read_only):
        got = sparse.sample(image)
        assert got.dtype == image.dtype
        np.testing.assert_array_equal(got, image[v, u])
    # The compiled gather was used for the float images (no compilation on a frame).
    assert len(lidar_module._compiled_gather.signatures) == 4
    # Pixels outside the image: numpy's behaviour, an IndexError or a wrapped negative index.
    outside = SparseDepth(np.array([1, w], np.int32), np.array([1, 1], np.int32),
                          np.ones(2, np.float32), w, h)
    with pytest.raises(IndexError):
        outside.sample(base)
    negative = SparseDepth(np.array([1, -1], np.int32), np.array([1, 1], np.int32),
                           np.ones(2, np.float32), w, h)
    np.testing.assert_array_equal(negative.sample(base), base[[1, 1], [1, -1]])


# --- see-through ---------------------------------------------------------------------------

#: The see-through test's two ways: every band dilated, every return's neighbourhood read.
BOTH_WAYS = pytest.mark.parametrize('density', [0.0, math.inf], ids=['dilated', 'by return'])


@BOTH_WAYS
def test_see_through_matches_reference_on_street_sweeps(street, density, monkeypatch):
    monkeypatch.setattr(see_through_module, 'DILATION_DENSITY', density)
    rig, sweeps = street
    for points in sweeps:
        sparse = project_points(points, rig.camera, rig.lidar_to_camera, 0.5)
        for window in (3, 5, 7, 11):
            for gap in (0.0, 0.1, 0.4):
                for focal in (None, rig.camera.fy):
                    got = reject_see_through(sparse, window, gap, focal)
                    want = reject_see_through_reference(sparse, window, gap, focal)
                    assert got.dtype == bool
                    np.testing.assert_array_equal(got, want)
        assert not reject_see_through(sparse, focal_px=rig.camera.fy).all()  # it rejects some


@BOTH_WAYS
@pytest.mark.parametrize('seed', range(3))
def test_see_through_matches_reference_on_random_returns(seed, density, monkeypatch):
    monkeypatch.setattr(see_through_module, 'DILATION_DENSITY', density)
    rng = np.random.default_rng(seed)
    m, w, h = 600, 40, 30
    u = rng.integers(0, w, m).astype(np.int32)  # many pixels twice: the last one counts
    v = rng.integers(0, h, m).astype(np.int32)
    z = rng.choice([2.0, 2.1, 5.0, 20.0], m) * rng.uniform(0.97, 1.03, m)
    for zz in (z.astype(np.float32), z):  # float64 depths are rounded as the reference does
        sparse = SparseDepth(u, v, zz, w, h)
        for window in (3, 7):
            np.testing.assert_array_equal(
                reject_see_through(sparse, window, 0.1, 30.0),
                reject_see_through_reference(sparse, window, 0.1, 30.0))
    assert not see_through_module._BUFFERS.inv.any()  # left clean for the next frame


def test_see_through_warm_up_compiles_both_ways():
    see_through_module.warm_up()
    for kernel in ('_compiled_scatter', '_compiled_ring', '_compiled_neighbourhood',
                   '_compiled_clear'):
        assert getattr(see_through_module, kernel).signatures, kernel


def test_see_through_chooses_by_density():
    """A 64-beam sweep is dilated, a 16-beam one read return by return (both exact)."""
    calls = []
    real = see_through_module._compiled_neighbourhood

    def spy(*args):
        calls.append(args[2].size)
        return real(*args)

    see_through_module._compiled_neighbourhood = spy
    try:
        w, h = 640, 480
        for rows, want in ((range(200, 460, 4), 0), (range(200, 460, 16), 1)):
            vv, uu = np.meshgrid(np.array(rows), np.arange(0, w, 2), indexing='ij')
            z = np.full(vv.size, 10.0, np.float32)
            sparse = SparseDepth(uu.ravel().astype(np.int32), vv.ravel().astype(np.int32), z,
                                 w, h)
            before = len(calls)
            reject_see_through(sparse, 7, 0.1, 300.0)
            assert len(calls) - before == want
    finally:
        see_through_module._compiled_neighbourhood = real


def test_see_through_odd_depths_fall_back_to_the_reference():
    u = np.array([5, 6, 7, 6], np.int32)
    v = np.array([5, 5, 5, 6], np.int32)
    for bad in (0.0, -3.0, np.nan):
        z = np.array([10.0, bad, 10.0, 4.0], np.float32)
        sparse = SparseDepth(u, v, z, 12, 12)
        np.testing.assert_array_equal(reject_see_through(sparse, 3, 0.1),
                                      reject_see_through_reference(sparse, 3, 0.1))
        assert not see_through_module._BUFFERS.inv.any()
    outside = SparseDepth(np.array([5, 12], np.int32), np.array([5, 5], np.int32),
                          np.array([10.0, 4.0], np.float32), 12, 12)
    with pytest.raises(IndexError):  # as the reference: no write outside the buffer
        reject_see_through(outside, 3, 0.1)
    assert not see_through_module._BUFFERS.inv.any()


# --- zero-copy decode ----------------------------------------------------------------------

def _cloud(points: np.ndarray, offsets=(0, 4, 8), point_step=16, height=1,
           big_endian=False) -> PointCloud2:
    width = points.shape[0] // height
    data = np.zeros((points.shape[0], point_step), np.uint8)
    order = '>f4' if big_endian else '<f4'
    for i, offset in enumerate(offsets):
        data[:, offset:offset + 4] = points[:, i].astype(order).view(np.uint8).reshape(-1, 4)
    fields = [PointField(name=name, offset=offset, datatype=PointField.FLOAT32, count=1)
              for name, offset in zip('xyz', offsets)]
    return PointCloud2(height=height, width=width, fields=fields, is_bigendian=big_endian,
                       point_step=point_step, row_step=width * point_step,
                       data=data.tobytes(), is_dense=False)


def test_decode_is_a_read_only_view_of_the_message():
    pts = awkward_points(2, 1000)
    for msg in (xyz_to_pointcloud2(pts, Header()), _cloud(pts), _cloud(pts, (4, 8, 12), 20),
                _cloud(pts, (0, 8, 16), 24), _cloud(pts, height=10)):
        xyz = pointcloud2_to_xyz(msg, finite=False)
        raw = np.frombuffer(msg.data, np.uint8)
        assert np.shares_memory(xyz, raw) and not xyz.flags.writeable
        assert xyz.dtype == np.float32 and xyz.shape == pts.shape
        np.testing.assert_array_equal(xyz, pts)  # NaN and inf kept, in place
        np.testing.assert_array_equal(pointcloud2_to_xyz(msg), pts[np.isfinite(pts).all(1)])
        assert pointcloud2_to_xyz(msg).flags.owndata  # the finite copy owns its memory
        assert_same(project_points(xyz, CAM, EXTRINSIC),  # the projection drops non-finite
                    project_points_reference(pointcloud2_to_xyz(msg), CAM, EXTRINSIC))


def test_decode_copies_where_no_view_fits():
    pts = awkward_points(3, 600)
    padded = _cloud(pts, height=6)
    padded.row_step += 4
    padded.data = np.concatenate([np.frombuffer(padded.data, np.uint8).reshape(6, -1),
                                  np.zeros((6, 4), np.uint8)], axis=1).tobytes()
    for msg in (_cloud(pts, big_endian=True), _cloud(pts, (8, 4, 0)), _cloud(pts, (0, 4, 12)),
                padded):
        xyz = pointcloud2_to_xyz(msg, finite=False)
        assert not np.shares_memory(xyz, np.frombuffer(msg.data, np.uint8))
        assert xyz.dtype == np.float32
        np.testing.assert_array_equal(xyz, pts)
        xyz2, values = pointcloud2_to_arrays(msg, ('intensity',), finite=False)
        np.testing.assert_array_equal(xyz2, pts)
        assert values == {}


def test_projection_does_not_depend_on_the_cameras_number_types():
    # Points on a 1/256 m grid (as a bag's quantised sweep) land exactly on half pixels; a
    # camera of Python floats used to round them in float32, one of numpy floats in float64.
    rng = np.random.default_rng(11)
    pts = np.round(rng.uniform(-20, 20, (60000, 3)) * 256) / 256
    pts[:, 2] = np.round(rng.uniform(1, 40, 60000) * 8) / 8
    pts = pts.astype(np.float32)
    plain = PinholeCamera(640, 480, 400.0, 400.0, 319.5, 239.5)
    numpy_floats = PinholeCamera(640, 480, *(np.float64(v) for v in (400, 400, 319.5, 239.5)))
    ident = RigidTransform.identity()
    want = project_points_reference(pts, numpy_floats, ident)
    for camera in (plain, numpy_floats):
        assert_same(project_points_reference(pts, camera, ident), want)
        assert_same(project_points(pts, camera, ident), want)
