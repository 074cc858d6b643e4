"""The synthetic drive: determinism, exact culling, camera/LiDAR agreement, sensor models."""

import dataclasses

import numpy as np
import pytest

from depth_node.sim.frames import load_frames, save_frames, SimRig
from depth_node.sim.scene import (BODY_TO_OPTICAL, Box, default_camera, default_extrinsic,
                                  Ellipsoid, GROUND, LidarModel, render_camera, scan_lidar,
                                  Scene, SKY)


@pytest.fixture(scope='module')
def rig():
    return SimRig.default(320, 240, seed=0)


def _lidar_rays(model, rig, tau, speed=8.0):
    """World origin and directions of a sweep, in scan_lidar's (azimuth-major) order."""
    d = model.directions().reshape(len(model.elevations_deg), -1, 3).transpose(1, 0, 2)
    origin = rig.position(tau, speed) + rig.lidar_to_camera.translation
    return origin, d.reshape(-1, 3) @ rig.lidar_to_camera.rotation.T


def _project(rig, points):
    """Sub-pixel (u, v) and depth of LiDAR points in the camera, float64."""
    p = points.astype(np.float64) @ rig.lidar_to_camera.rotation.T \
        + rig.lidar_to_camera.translation
    z = p[:, 2]
    cam = rig.camera
    with np.errstate(divide='ignore', invalid='ignore'):
        return cam.fx * p[:, 0] / z + cam.cx, cam.fy * p[:, 1] / z + cam.cy, z


def test_street_is_deterministic_by_seed():
    a, b, c = Scene.street(5), Scene.street(5), Scene.street(6)
    assert a == b and a != c
    assert len(a.boxes) > 100 and len(a.ellipsoids) > 10
    assert any(box.velocity[2] > 0 for box in a.boxes)  # traffic ahead
    assert any(box.velocity[2] < 0 for box in a.boxes)  # oncoming
    cam = default_camera(160, 120)
    ra, rb = render_camera(a, cam, (0, 0, 3.0), 0.4), render_camera(b, cam, (0, 0, 3.0), 0.4)
    assert np.array_equal(ra.rgb, rb.rgb) and np.array_equal(ra.depth, rb.depth)
    rc = render_camera(c, cam, (0, 0, 3.0), 0.4)
    assert not np.array_equal(ra.depth, rc.depth)
    model = LidarModel(azimuth_step_deg=1.0)
    sa = scan_lidar(a, model, default_extrinsic(), (0, 0, 3.0), seed=1, time=0.4)
    sb = scan_lidar(b, model, default_extrinsic(), (0, 0, 3.0), seed=1, time=0.4)
    assert np.array_equal(sa.points, sb.points) and np.array_equal(sa.intensity, sb.intensity)
    sn = scan_lidar(a, model, default_extrinsic(), (0, 0, 3.0), seed=2, time=0.4)
    assert not np.array_equal(sa.points, sn.points)


@pytest.mark.parametrize('tau', [0.0, 1.7])
def test_culled_casters_equal_the_reference_raycast(rig, tau):
    # The camera and LiDAR casters test only the rays each primitive's bounds allow; the
    # reference tests every ray against every primitive. They must agree exactly.
    cam = rig.render(tau)
    c = rig.camera
    v, u = np.mgrid[0:c.height, 0:c.width]
    dirs = np.stack([(u - c.cx) / c.fx, (v - c.cy) / c.fy, np.ones(u.shape)], -1)
    t, hit = rig.scene.raycast(cam.position, dirs.reshape(-1, 3).astype(np.float32), tau)
    assert np.array_equal(hit.reshape(u.shape), cam.labels)
    assert np.array_equal(t.reshape(u.shape), cam.depth)
    assert (cam.labels == SKY).any() and (cam.labels == GROUND).any()
    for model in (LidarModel(azimuth_step_deg=0.5).exact(),
                  LidarModel(azimuth_step_deg=0.3, fov_deg=90).exact()):
        scan = scan_lidar(rig.scene, model, rig.lidar_to_camera, rig.position(tau, 8.0), 0, tau)
        origin, d = _lidar_rays(model, rig, tau)
        t, hit = rig.scene.raycast(origin, d, tau)
        keep = np.isfinite(t) & (t <= model.max_range)
        assert np.array_equal(hit[keep], scan.labels)
        np.testing.assert_allclose(np.linalg.norm(scan.points, axis=1), t[keep], rtol=1e-6)


def test_exact_lidar_lands_on_the_rendered_depth(rig):
    model = LidarModel(azimuth_step_deg=0.4).exact()
    cam = rig.render(0.3)
    scan = scan_lidar(rig.scene, model, rig.lidar_to_camera, rig.position(0.3, 8.0), 0, 0.3)
    u, v, z = _project(rig, scan.points)
    h, w = cam.depth.shape
    ok = (z > 0.5) & (u >= 0) & (u < w - 1) & (v >= 0) & (v < h - 1)
    u0, v0, z, lab = np.floor(u[ok]).astype(int), np.floor(v[ok]).astype(int), z[ok], \
        scan.labels[ok]
    corners = [(v0, u0), (v0, u0 + 1), (v0 + 1, u0), (v0 + 1, u0 + 1)]
    # Away from edges: the four pixel centres around the return see the surface it hit.
    same = np.all([cam.labels[c] == lab for c in corners], axis=0)
    assert same.sum() > 5000 and same.mean() > 0.9
    d = np.stack([cam.depth[c][same] for c in corners])
    zs = z[same]
    # On a plane 1/z is affine in the pixel, so the depth between pixel centres lies between
    # theirs: the return must too (float32 depth: 1e-5 relative).
    inside = (zs >= d.min(0) * (1 - 1e-5)) & (zs <= d.max(0) * (1 + 1e-5))
    assert inside.mean() > 0.99, inside.mean()
    # Rounded to the nearest pixel, as the node projects: well under 1 % off on average.
    ui, vi = np.rint(u[ok][same]).astype(int), np.rint(v[ok][same]).astype(int)
    rel = np.abs(zs - cam.depth[vi, ui]) / zs
    assert np.median(rel) < 0.01


def test_lidar_sees_past_an_occluding_edge():
    g = 1.65
    wall = Box((-15.0, g - 8.0, 20.0), (15.0, g, 20.5), (0.7, 0.6, 0.5), 'facade')
    car = Box((-1.0, g - 1.5, 8.0), (1.0, g, 12.5), (0.8, 0.1, 0.1), 'paint')
    pole = Box((2.9, g - 6.0, 6.0), (3.1, g, 6.2), (0.5, 0.5, 0.5), 'metal')
    scene = Scene(ground_y=g, boxes=[wall, car, pole])
    rig = SimRig(scene, default_camera(640, 480), LidarModel(azimuth_step_deg=0.1).exact(),
                 default_extrinsic())
    cam = rig.render(0.0)
    scan = rig.sweep(0.0)
    u, v, z = _project(rig, scan.points)
    ok = (z > 0.5) & (u > -0.5) & (u < 639.5) & (v > -0.5) & (v < 479.5)
    ui, vi = np.rint(u[ok]).astype(int), np.rint(v[ok]).astype(int)
    seen = cam.labels[vi, ui]
    hit = scan.labels[ok]
    # The LiDAR, 0.3 m higher, sees the wall over the car's roof where the camera sees the car.
    over_car = (hit == 1) & (seen == 2)
    assert over_car.sum() > 20
    assert np.all(z[ok][over_car] > cam.depth[vi, ui][over_car] + 5)
    # ... and, 0.3 m further back, past the pole's side where the camera sees the pole.
    past_pole = (hit == 1) & (seen == 3)
    assert past_pole.sum() > 0


def test_moving_vehicles_move_with_time():
    scene = Scene.street(0)
    i, lead = min(((i, b) for i, b in enumerate(scene.boxes)
                   if b.velocity[2] > 0 and b.material == 'paint'), key=lambda ib: ib[1].lo[2])
    dt = 0.5
    moved = scene.primitives(dt).lo[i] - scene.primitives(0.0).lo[i]
    np.testing.assert_allclose(moved, np.multiply(lead.velocity, dt))
    rig = SimRig(scene, default_camera(320, 240), LidarModel(), default_extrinsic())
    f0, f1 = rig.frames(2, speed=0.0, rate=1 / dt)  # the ego stands still
    label = i + 1
    r0, r1 = rig.render(0.0, speed=0.0), rig.render(dt, speed=0.0)
    # Its rear face is a plane z = const: the nearest depth on it is that plane's z.
    near0 = r0.depth[r0.labels == label].min()
    near1 = r1.depth[r1.labels == label].min()
    assert near0 == pytest.approx(lead.lo[2], abs=1e-4)
    assert near1 - near0 == pytest.approx(lead.velocity[2] * dt, abs=1e-3)
    assert not np.array_equal(f0.rgb, f1.rgb) and f1.stamp - f0.stamp == pytest.approx(dt)
    # The static world stood still: where both frames see it, the depth is the same.
    moving = np.array([False] + [b.velocity != (0.0, 0.0, 0.0) for b in scene.boxes]
                      + [False] * len(scene.ellipsoids))
    still = (r0.labels == r1.labels) & (r0.labels >= 0) & ~moving[np.maximum(r0.labels, 0)]
    assert still.mean() > 0.7
    np.testing.assert_array_equal(r0.depth[still], r1.depth[still])


def test_kitti_like_defaults():
    cam = default_camera(1242, 375)
    assert cam.fx == cam.fy == pytest.approx(721.5377)
    assert (cam.cx, cam.cy) == (620.5, 187.0)
    for w, h in ((640, 480), (1242, 375), (320, 240)):
        c = default_camera(w, h)
        hfov = 2 * np.degrees(np.arctan(w / 2 / c.fx))
        assert hfov == pytest.approx(81.4, abs=0.2) and c.fx == c.fy
    lidar = LidarModel()
    assert len(lidar.elevations_deg) == 64
    assert max(lidar.elevations_deg) == pytest.approx(2.0)
    assert min(lidar.elevations_deg) == pytest.approx(-24.8)
    assert 0.08 <= lidar.azimuth_step_deg <= 0.2 and lidar.rate_hz == 10.0
    assert lidar.max_range == 120.0 and lidar.range_noise == 0.02 and 0 < lidar.dropout <= 0.05
    assert lidar.fov_deg == 360.0 and lidar.azimuths_deg.size == 1800
    exact = lidar.exact()
    assert (exact.range_noise, exact.dropout, exact.resolution) == (0.0, 0.0, 0.0)
    ext = default_extrinsic()
    np.testing.assert_array_equal(ext.translation, [0.0, -0.3, -0.3])  # above and behind
    np.testing.assert_array_equal(ext.rotation, BODY_TO_OPTICAL)
    with pytest.raises(ValueError, match='dropout'):
        LidarModel(dropout=1.0)
    with pytest.raises(ValueError, match='fov_deg'):
        LidarModel(fov_deg=0.0)
    with pytest.raises(ValueError, match='lo < hi'):
        Box((0, 0, 0), (1, -1, 1), (1, 1, 1))
    with pytest.raises(ValueError, match='material'):
        Ellipsoid((0, 0, 5), (1, 1, 1), (0, 1, 0), 'cheese')


def test_kitti_sized_frame_and_sweep():
    rig = SimRig.default(1242, 375)
    [f] = rig.frames(1, lidar_offset=0.05, start=100.0)
    assert f.rgb.shape == (375, 1242, 3) and f.rgb.dtype == np.uint8
    assert f.depth.shape == (375, 1242) and f.depth.dtype == np.float32
    assert np.isinf(f.depth).any() and (np.isfinite(f.depth).mean() > 0.8)
    assert f.depth[np.isfinite(f.depth)].min() > 0
    assert f.stamp == 100.0 and f.lidar_stamp == pytest.approx(100.05)
    assert f.lidar.shape[1] == 3 and f.lidar.shape[0] > 90000
    assert f.intensity.shape == (f.lidar.shape[0],) and f.intensity.max() <= 255
    # Textured: many distinct colours, not flat fills.
    assert len(np.unique(f.rgb.reshape(-1, 3), axis=0)) > 2000


def test_range_noise_and_rounding():
    rig = SimRig.default(64, 48, lidar=LidarModel(azimuth_step_deg=0.4))
    exact = rig.lidar.exact()
    pos = rig.position(0.0, 8.0)
    r_exact = np.linalg.norm(scan_lidar(rig.scene, exact, rig.lidar_to_camera, pos).points,
                             axis=1)
    noisy_model = dataclasses.replace(exact, range_noise=0.02)
    noisy = scan_lidar(rig.scene, noisy_model, rig.lidar_to_camera, pos, seed=3).points
    err = np.linalg.norm(noisy, axis=1) - r_exact
    assert err.size > 50000
    assert np.std(err) == pytest.approx(0.02, rel=0.03) and abs(np.mean(err)) < 5e-4
    # Default: also rounded to a 1/512 m grid (exact in float32), noise still about 2 cm.
    model = dataclasses.replace(rig.lidar, dropout=0.0)
    pts = scan_lidar(rig.scene, model, rig.lidar_to_camera, pos, seed=3).points
    np.testing.assert_array_equal(pts * 512, np.round(pts * 512))
    err = np.linalg.norm(pts, axis=1) - r_exact
    assert np.std(err) == pytest.approx(0.02, rel=0.03)


@pytest.mark.parametrize('dropout', [0.03, 0.2])
def test_dropout_fraction(dropout):
    rig = SimRig.default(64, 48)
    model = LidarModel(azimuth_step_deg=0.4, dropout=dropout).exact()
    full = scan_lidar(rig.scene, model, rig.lidar_to_camera).points.shape[0]
    dropped = scan_lidar(rig.scene, dataclasses.replace(model, dropout=dropout),
                         rig.lidar_to_camera, seed=7).points.shape[0]
    assert 1 - dropped / full == pytest.approx(dropout, abs=0.006)


def test_frames_save_and_load(tmp_path):
    rig = SimRig.default(64, 48, lidar=LidarModel(azimuth_step_deg=2.0))
    frames = list(rig.frames(2, speed=5.0, rate=4.0, start=10.0, lidar_offset=0.01))
    assert frames[1].position[2] == pytest.approx(5.0 / 4.0)
    back = load_frames(save_frames(tmp_path, frames))
    for a, b in zip(frames, back):
        assert (a.index, a.stamp, a.lidar_stamp) == (b.index, b.stamp, b.lidar_stamp)
        for name in ('rgb', 'depth', 'lidar', 'intensity', 'position', 'labels'):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
