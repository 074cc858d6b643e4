"""Core layer: geometry, projection, affine fit, back-projection, metrics."""

import numpy as np
import pytest

from depth_node.core.align import AffineFit, apply_affine, fit_affine, OutputKind
from depth_node.core.camera import PinholeCamera
from depth_node.core.cloud import depth_to_points
from depth_node.core.errors import DepthNodeError
from depth_node.core.lidar import project_points
from depth_node.core.metrics import depth_metrics, mean_metrics
from depth_node.core.transforms import quaternion_to_matrix, RigidTransform, rpy_to_matrix

CAM = PinholeCamera(width=100, height=80, fx=50.0, fy=40.0, cx=49.5, cy=39.5)


def test_rpy_matches_quaternion_and_tf_convention():
    # yaw of 90 deg about z: x axis goes to y (tf2 setRPY(0, 0, pi/2)).
    r = rpy_to_matrix(0.0, 0.0, np.pi / 2)
    np.testing.assert_allclose(r @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    q = [0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4)]
    np.testing.assert_allclose(quaternion_to_matrix(q), r, atol=1e-12)
    # A general rotation: quaternion of rpy (0.1, -0.2, 0.3) computed by hand (tf2 formula).
    roll, pitch, yaw = 0.1, -0.2, 0.3
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    q = [sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
         cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy]
    np.testing.assert_allclose(quaternion_to_matrix(q), rpy_to_matrix(roll, pitch, yaw),
                               atol=1e-12)


def test_rigid_transform_parameters_and_errors():
    t = RigidTransform.from_parameters([1, 2, 3], [0, 0, 0, 1])
    np.testing.assert_allclose(t.apply(np.array([[1.0, 0, 0]], np.float32)), [[2, 2, 3]])
    inv = t.inverse()
    np.testing.assert_allclose((inv @ t).translation, 0, atol=1e-12)
    with pytest.raises(DepthNodeError, match='rotation'):
        RigidTransform.from_parameters([0, 0, 0], [1, 2])
    with pytest.raises(DepthNodeError, match='translation'):
        RigidTransform.from_parameters([0, 0], [0, 0, 0])
    with pytest.raises(DepthNodeError, match='quaternion'):
        RigidTransform.from_parameters([0, 0, 0], [0, 0, 0, 0])


def test_camera_from_camera_info_prefers_p_and_handles_binning_roi():
    k = [100, 0, 50, 0, 100, 40, 0, 0, 1]
    p = [90, 0, 45, 0, 0, 90, 35, 0, 0, 0, 1, 0]
    cam = PinholeCamera.from_camera_info(100, 80, k, p)
    assert (cam.fx, cam.cx, cam.cy) == (90, 45, 35)
    cam_k = PinholeCamera.from_camera_info(100, 80, k, [0] * 12)
    assert (cam_k.fx, cam_k.cx) == (100, 50)
    binned = PinholeCamera.from_camera_info(100, 80, k, p, binning_x=2, binning_y=2)
    assert (binned.width, binned.height, binned.fx, binned.cx) == (50, 40, 45, 22.5)
    roi = PinholeCamera.from_camera_info(100, 80, k, p, roi=(10, 5, 60, 50))
    assert (roi.width, roi.height, roi.cx, roi.cy) == (60, 50, 35, 30)
    with pytest.raises(DepthNodeError, match='uncalibrated'):
        PinholeCamera.from_camera_info(100, 80, [0] * 9, [0] * 12)
    with pytest.raises(DepthNodeError, match='fx'):
        PinholeCamera(10, 10, -1.0, 1.0, 0, 0)


def test_projection_hand_computed():
    # LiDAR body frame (x fwd, y left, z up) 0.3 m above the camera.
    body_to_optical = np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])
    ext = RigidTransform(body_to_optical, np.array([0.0, -0.3, 0.0]))
    # Point 10 m ahead, 1 m left, 0.3 m below the LiDAR -> optical (-1, 0, 10).
    pts = np.array([[10.0, 1.0, -0.3]], np.float32)
    sp = project_points(pts, CAM, ext)
    # u = 50 * -1 / 10 + 49.5 = 44.5 -> rint -> 44 (banker's rounding of .5 goes to even)
    assert sp.count == 1
    assert (int(sp.u[0]), int(sp.v[0])) == (int(np.rint(44.5)), int(np.rint(39.5)))
    assert sp.z[0] == pytest.approx(10.0)


def test_projection_zbuffer_near_limits_and_bounds():
    ident = RigidTransform.identity()
    pts = np.array([
        [0.0, 0.0, 10.0],   # centre, far
        [0.0, 0.0, 5.0],    # centre, near: wins
        [0.0, 0.0, 0.05],   # too near
        [0.0, 0.0, -3.0],   # behind
        [100.0, 0.0, 1.0],  # outside the image
        [np.nan, 0.0, 2.0],  # invalid
        [0.0, 0.0, 200.0],  # beyond max
    ], np.float32)
    sp = project_points(pts, CAM, ident, min_depth=0.1, max_depth=100.0)
    assert sp.count == 1 and sp.z[0] == pytest.approx(5.0)
    img = sp.to_image()
    assert np.isfinite(img).sum() == 1 and img[int(sp.v[0]), int(sp.u[0])] == 5.0
    with pytest.raises(DepthNodeError, match=r'\[N, 3\]'):
        project_points(np.zeros((4, 2)), CAM, ident)


def test_projection_agrees_with_backprojection():
    rng = np.random.default_rng(0)
    depth = rng.uniform(2, 50, (CAM.height, CAM.width)).astype(np.float32)
    pts = depth_to_points(depth, CAM).reshape(-1, 3)
    sp = project_points(pts, CAM, RigidTransform.identity())
    assert sp.count == CAM.width * CAM.height
    np.testing.assert_allclose(sp.z, depth[sp.v, sp.u], rtol=1e-6)


def test_fit_recovers_known_disparity_and_depth_affine():
    rng = np.random.default_rng(1)
    z = rng.uniform(2, 80, 500)
    d = (1 / z - 0.004) / 0.8  # 1/z = 0.8 d + 0.004
    fit = fit_affine(d, z, OutputKind.DISPARITY)
    assert fit.ok and fit.points == 500
    assert fit.scale == pytest.approx(0.8, rel=1e-9)
    assert fit.shift == pytest.approx(0.004, abs=1e-12)
    assert fit.abs_rel < 1e-9
    m = (z - 3.0) / 20.0
    fit_d = fit_affine(m, z, OutputKind.DEPTH)
    assert fit_d.scale == pytest.approx(20.0) and fit_d.shift == pytest.approx(3.0)
    out = apply_affine(d.reshape(20, 25), fit.scale, fit.shift, OutputKind.DISPARITY)
    np.testing.assert_allclose(out.ravel(), z, rtol=1e-5)


def test_fit_refuses_degenerate_input():
    z = np.linspace(5, 50, 100)
    assert not fit_affine(np.ones(100), z, OutputKind.DISPARITY).ok  # constant prediction
    few = fit_affine(1 / z[:5], z[:5], OutputKind.DISPARITY, min_points=10)
    assert not few.ok and 'too few' in few.reason
    anti = fit_affine(z, z, OutputKind.DISPARITY)  # larger = farther is not disparity
    assert not anti.ok and 'non-positive scale' in anti.reason
    nan = fit_affine(np.full(100, np.nan), z, OutputKind.DISPARITY)
    assert not nan.ok and nan.points == 0
    with pytest.raises(DepthNodeError, match='same length'):
        fit_affine(np.ones(3), np.ones(4), OutputKind.DEPTH)


def test_apply_affine_marks_invalid():
    d = np.array([[1.0, 0.0, -1.0, np.nan]], np.float32)
    out = apply_affine(d, 0.1, 0.0, OutputKind.DISPARITY, max_depth=50)
    assert out[0, 0] == pytest.approx(10.0)
    assert np.isnan(out[0, 1:]).all()
    far = apply_affine(np.array([[0.001]], np.float32), 1.0, 0.0, OutputKind.DISPARITY, 80.0)
    assert np.isnan(far).all()


def test_cloud_strided_and_nan():
    depth = np.full((CAM.height, CAM.width), 10.0, np.float32)
    depth[0, 0] = np.nan
    pts = depth_to_points(depth, CAM, stride=4)
    assert pts.shape == (20, 25, 3)
    assert np.isnan(pts[0, 0]).all()
    # pixel (u=4, v=8) -> x = (4 - 49.5) / 50 * 10
    assert pts[2, 1, 0] == pytest.approx((4 - 49.5) / 50 * 10)
    assert pts[2, 1, 1] == pytest.approx((8 - 39.5) / 40 * 10)


def test_metrics_known_values():
    gt = np.array([1.0, 2.0, 4.0, np.nan, 100.0])
    pred = np.array([1.1, 2.0, 2.0, 5.0, 100.0])
    m = depth_metrics(pred, gt, max_depth=80)
    assert m.valid == 3
    assert m.abs_rel == pytest.approx((0.1 + 0 + 0.5) / 3)
    assert m.rmse == pytest.approx(np.sqrt((0.01 + 0 + 4) / 3))
    assert m.delta1 == pytest.approx(2 / 3)
    avg = mean_metrics([m, depth_metrics(gt[:3], gt[:3])])
    assert avg.abs_rel == pytest.approx(m.abs_rel / 2)
    assert isinstance(AffineFit.refused(OutputKind.DEPTH, 0, 'x').reason, str)


def test_colorize_nan_black_and_turbo_ends():
    import cv2
    from depth_node.core.colormap import colorize_depth, colorize_relative
    c = colorize_depth(np.array([[np.nan, 1.0, 80.0, 500.0]], np.float32), 1.0, 80.0)
    turbo = cv2.applyColorMap(np.array([[0, 255]], np.uint8), cv2.COLORMAP_TURBO)[0, :, ::-1]
    assert c.dtype == np.uint8 and c.shape == (1, 4, 3)
    assert (c[0, 0] == 0).all()
    np.testing.assert_array_equal(c[0, 1], turbo[1])  # nearest: the hot end
    np.testing.assert_array_equal(c[0, 2], turbo[0])  # farthest: the cold end
    np.testing.assert_array_equal(c[0, 3], turbo[0])  # beyond the range: clipped
    assert colorize_relative(np.full((2, 2), np.nan)).sum() == 0


def test_transform_apply_matches_matrix_product():
    rng = np.random.default_rng(3)
    t = RigidTransform(rpy_to_matrix(0.3, -1.1, 2.0), np.array([0.5, -2.0, 3.0]))
    pts = rng.normal(size=(1000, 3)).astype(np.float32)
    np.testing.assert_allclose(t.apply(pts), pts @ t.rotation.T + t.translation, atol=1e-5)


def test_zbuffer_matches_brute_force():
    rng = np.random.default_rng(7)
    pts = np.stack([rng.uniform(-5, 5, 20000), rng.uniform(-4, 4, 20000),
                    rng.uniform(0.5, 30, 20000)], axis=1).astype(np.float32)
    pts[::50, 2] = pts[1::50, 2]  # exact depth ties on some pixels too
    sp = project_points(pts, CAM, RigidTransform.identity(), min_depth=0.1)
    best = {}
    for x, y, z in pts:
        u = int(np.rint(np.float32(CAM.fx) * x / z + np.float32(CAM.cx)))
        v = int(np.rint(np.float32(CAM.fy) * y / z + np.float32(CAM.cy)))
        if 0 <= u < CAM.width and 0 <= v < CAM.height:
            best[(u, v)] = min(best.get((u, v), np.inf), z)
    got = {(int(u), int(v)): float(z) for u, v, z in zip(sp.u, sp.v, sp.z)}
    assert len(got) == sp.count == len(best)
    # Pixel rounding at exact .5 may differ between float paths; compare the common pixels.
    common = set(got) & set(best)
    assert len(common) > 0.99 * len(best)
    assert all(got[k] == pytest.approx(best[k]) for k in common)
