"""The wider synthetic world: every axis changes what it should and, by default, nothing at all."""

import dataclasses
import hashlib
import math

import numpy as np
import pytest

from depth_node.core.transforms import rpy_to_matrix
from depth_node.sim.conditions import (Conditions, CONDITIONS, develop, GAMMA, KOSCHMIEDER,
                                       sun_color)
from depth_node.sim.geometry import FOG, GROUND, MATERIAL_ID, SKY
from depth_node.sim.rigs import (LENSES, LIDAR_MODELS, pitch_rotation, RigSpec,
                                 rotation_angle_deg)
from depth_node.sim.scene import default_camera, LidarModel, render_camera, scan_lidar, Scene
from depth_node.sim.frames import load_frames, save_frames, SimRig
from depth_node.sim.world import scenario, SCENARIOS

W, H = 160, 120
FAST = dict(azimuth_step_deg=1.0)


def _hash(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


# Today's default drive (SimRig.default(160, 120), frames(2, speed=8, rate=2, seed=3)), hashed
# before the world gained its axes: rgb, depth, LiDAR points, intensity per frame.
TODAY = [('57ab11caf9d00ae5', 'd7709056842329f5', 'd450abed05b71034', 'd21c2c4bc033cebb'),
         ('27fb1c2bba452229', '43ecd16ea8285d6e', '4114968195d335f4', 'a4591f0553bb3548')]


def _lin(rgb):
    return (rgb.astype(np.float64) / 255.0) ** GAMMA


def _spec(**kw):
    kw.setdefault('width', W)
    kw.setdefault('height', H)
    return RigSpec(**kw)


def test_defaults_render_todays_drive_bit_for_bit():
    for rig in (SimRig.default(W, H), SimRig.build(_spec()),
                SimRig.build(_spec(), Conditions(), seed=0)):
        got = [(_hash(f.rgb), _hash(f.depth), _hash(f.lidar), _hash(f.intensity))
               for f in rig.frames(2, speed=8.0, rate=2.0, seed=3)]
        assert got == TODAY
    rig = SimRig.build(_spec())
    assert rig.nominal is rig.lidar_to_camera and rig.camera_rotation is None
    clear = CONDITIONS['clear']
    assert not clear.photometric and not clear.foggy and clear.sun() == tuple(rig.scene.sun)


def test_pitch_moves_the_horizon_and_keeps_depth_along_the_optical_axis():
    g = 1.65
    flat = Scene(ground_y=g)  # nothing but ground: the horizon is the first ground row
    cam = default_camera(W, 240)
    for pitch in (0.0, 6.0, -4.0):
        rot = pitch_rotation(pitch)
        r = render_camera(flat, cam, rotation=rot)
        ground_rows = np.flatnonzero((r.labels == GROUND).all(axis=1))
        sky_rows = np.flatnonzero((r.labels == SKY).all(axis=1))
        horizon = cam.cy - cam.fy * math.tan(math.radians(pitch))
        assert sky_rows.max() < horizon < ground_rows.min()
        assert ground_rows.min() - horizon <= 1.0 and horizon - sky_rows.max() <= 1.0
        # Depth along the optical axis: the ground at row v is at g / (c * y + s).
        yr = (np.arange(240) - cam.cy) / cam.fy
        c, s = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
        expect = g / (c * yr + s)
        rows = ground_rows[expect[ground_rows] < 500]  # float32 rays: far rows lose digits
        np.testing.assert_allclose(r.depth[rows], np.broadcast_to(expect[rows, None],
                                                                  (rows.size, W)), rtol=2e-6)


@pytest.mark.parametrize('rpy', [(0.0, 0.0, 0.0), (0.0, 0.0, 0.1), (0.05, -0.08, 0.12)])
def test_rotated_casters_equal_the_reference_raycast(rpy):
    # Pitch about the camera's x axis (the last is a general rotation: [H, W] rays).
    rot = pitch_rotation(7.0) @ rpy_to_matrix(*rpy)
    scene = Scene.street(2)
    cam = default_camera(W, H)
    pos = np.array([0.3, -0.2, 4.0])
    r = render_camera(scene, cam, pos, 0.5, rotation=rot)
    v, u = np.mgrid[0:H, 0:W]
    d = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones(u.shape)], -1)
    world = (d.reshape(-1, 3) @ rot.T).astype(np.float32)
    t, hit = scene.raycast(pos, world, 0.5)
    assert np.array_equal(hit.reshape(u.shape), r.labels)
    # float32 rays rounded in another order than the reference's: a few 1e-6 apart.
    np.testing.assert_allclose(t.reshape(u.shape), r.depth, rtol=1e-5)
    assert (r.labels > 0).mean() > 0.3
    if rpy == (0.0, 0.0, 0.0):  # a plain pitch keeps the rays separable
        assert (r.labels == SKY).any()
    # The LiDAR turns with the camera: its beams are the camera's rotation of the body grid.
    spec = _spec()
    model = dataclasses.replace(spec.lidar_model(), **FAST).exact()
    ext = spec.true_extrinsic()
    scan = scan_lidar(scene, model, ext, pos, 0, 0.5, camera_rotation=rot)
    body = model.directions().reshape(len(model.elevations_deg), -1, 3).transpose(1, 0, 2)
    dirs = body.reshape(-1, 3) @ (rot @ ext.rotation).T
    t, hit = scene.raycast(pos + rot @ ext.translation, dirs, 0.5)
    keep = np.isfinite(t) & (t <= model.max_range)
    assert np.array_equal(hit[keep], scan.labels)
    np.testing.assert_allclose(np.linalg.norm(scan.points, axis=1), t[keep], rtol=1e-6)


def test_identity_rotation_renders_the_unrotated_image():
    scene, cam = Scene.street(0), default_camera(W, H)
    a = render_camera(scene, cam, (0, 0, 2.0), 0.3)
    b = render_camera(scene, cam, (0, 0, 2.0), 0.3, rotation=np.eye(3))
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth)


def test_camera_height_scales_the_ground_depth():
    low = SimRig.build(_spec(lidar='vlp16'))
    high = SimRig.build(_spec(camera_height_m=2.6, lidar='vlp16'))
    assert high.camera_height == 2.6 and low.camera_height == 1.65
    a, b = low.render(0.0), high.render(0.0)
    both = (a.labels == GROUND) & (b.labels == GROUND)
    assert both.sum() > 2000
    np.testing.assert_allclose(b.depth[both] / a.depth[both], 2.6 / 1.65, rtol=1e-5)
    # The street is the same street, standing on the lower ground.
    assert len(low.scene.boxes) == len(high.scene.boxes)
    for p, q in zip(low.scene.boxes[:50], high.scene.boxes[:50]):
        assert p.hi[1] - 1.65 == pytest.approx(q.hi[1] - 2.6)
        assert (p.lo[0], p.lo[2]) == (q.lo[0], q.lo[2])


def test_pitched_raised_rig_lidar_lands_on_the_camera_depth_with_the_true_extrinsic():
    spec = dataclasses.replace(_spec(width=320, height=240, camera_pitch_deg=8.0,
                                     camera_height_m=2.2, lidar='os1_128',
                                     lidar_offset_m=(0.1, -0.25, -0.4),
                                     extrinsic_error_deg=1.0, extrinsic_error_m=0.05))
    rig = SimRig.build(spec, seed=4)
    rig.lidar = dataclasses.replace(rig.lidar, azimuth_step_deg=0.5).exact()
    cam, scan = rig.render(0.2), rig.sweep(0.2)

    def rel_error(ext):
        p = scan.points.astype(np.float64) @ ext.rotation.T + ext.translation
        z = p[:, 2]
        c = rig.camera
        with np.errstate(divide='ignore', invalid='ignore'):
            u, v = c.fx * p[:, 0] / z + c.cx, c.fy * p[:, 1] / z + c.cy
        ok = (z > 0.5) & (u >= 0) & (u < c.width - 1) & (v >= 0) & (v < c.height - 1)
        u0, v0 = np.floor(u[ok]).astype(int), np.floor(v[ok]).astype(int)
        corners = [(v0, u0), (v0, u0 + 1), (v0 + 1, u0), (v0 + 1, u0 + 1)]
        same = np.all([cam.labels[k] == scan.labels[ok] for k in corners], axis=0)
        d = np.stack([cam.depth[k][same] for k in corners])
        zs = z[ok][same]
        inside = (zs >= d.min(0) * (1 - 1e-5)) & (zs <= d.max(0) * (1 + 1e-5))
        ui, vi = np.rint(u[ok][same]).astype(int), np.rint(v[ok][same]).astype(int)
        return same.sum(), inside.mean(), np.abs(zs - cam.depth[vi, ui]) / zs

    n, inside, err = rel_error(rig.lidar_to_camera)
    assert n > 5000 and inside > 0.99
    assert np.median(err) < 0.01  # nearest-pixel rounding only
    _, inside_nominal, err_nominal = rel_error(rig.nominal)
    assert inside_nominal < 0.5 and np.median(err_nominal) > 3 * np.median(err)


def test_lens_presets_and_focal_length():
    assert set(LENSES) == {'kitti', 'wide', 'tele'}
    assert SimRig.build(_spec()).camera == default_camera(W, H)
    for lens, fov in (('wide', 120.0), ('tele', 30.0), ('kitti', 81.44)):
        c = _spec(width=640, height=480, lens=lens).camera()
        assert 2 * math.degrees(math.atan(320 / c.fx)) == pytest.approx(fov, abs=0.01)
        assert c.fx == c.fy and (c.cx, c.cy) == (319.5, 239.5)
    assert _spec(focal_px=250.0, lens='wide').camera().fx == 250.0
    with pytest.raises(ValueError, match='lens'):
        _spec(lens='fisheye')


@pytest.mark.parametrize('name,beams,top,bottom', [
    ('vlp16', 16, 15.0, -15.0), ('hdl32', 32, 10.67, -30.67), ('hdl64', 64, 2.0, -24.8),
    ('os1_128', 128, 22.5, -22.5)])
def test_lidar_presets(name, beams, top, bottom):
    model = LIDAR_MODELS[name]
    assert len(model.elevations_deg) == beams
    assert max(model.elevations_deg) == pytest.approx(top)
    assert min(model.elevations_deg) == pytest.approx(bottom)
    assert list(model.elevations_deg) == sorted(model.elevations_deg, reverse=True)
    rig = SimRig.build(_spec(lidar=name).with_lidar(dropout=0.0, **FAST))
    scan = rig.sweep(0.0)
    assert np.unique(scan.ring).size == beams  # a street has something in every beam
    elev = np.degrees(np.arcsin(scan.points[:, 2] / np.linalg.norm(scan.points, axis=1)))
    assert elev.max() == pytest.approx(top, abs=0.05)
    assert elev.min() == pytest.approx(bottom, abs=0.05)
    assert np.linalg.norm(scan.points, axis=1).max() <= model.max_range + 0.1


def test_lidar_mount_offset():
    spec = _spec(lidar_offset_m=(0.2, -0.5, 0.1))
    rig = SimRig.build(spec)
    np.testing.assert_array_equal(rig.lidar_to_camera.translation, [0.2, -0.5, 0.1])
    default = SimRig.build(_spec())
    assert not np.array_equal(rig.sweep(0.0).points, default.sweep(0.0).points)
    with pytest.raises(ValueError, match='lidar_offset_m'):
        _spec(lidar_offset_m=(0.0, 1.0))


@pytest.mark.parametrize('axis', [None, (0.0, 0.0, 1.0), (1.0, 2.0, -0.5)])
def test_extrinsic_error_is_exactly_the_given_angle_and_shift(axis):
    spec = _spec(extrinsic_error_deg=1.5, extrinsic_error_axis=axis, extrinsic_error_m=0.04)
    rig = SimRig.build(spec, seed=3)
    true, nominal = rig.lidar_to_camera, rig.nominal
    assert rotation_angle_deg(nominal.rotation, true.rotation) == pytest.approx(1.5, abs=1e-6)
    assert np.linalg.norm(nominal.translation - true.translation) == pytest.approx(0.04)
    err = nominal.rotation @ true.rotation.T
    w, v = np.linalg.eig(err)
    k = np.real(v[:, np.argmin(np.abs(w - 1))])
    if axis is not None:
        assert abs(k @ np.asarray(axis) / np.linalg.norm(axis)) == pytest.approx(1.0, abs=1e-9)
    again = SimRig.build(spec, seed=3).nominal
    np.testing.assert_array_equal(again.rotation, nominal.rotation)
    other = SimRig.build(spec, seed=4).nominal
    assert (axis is not None) or not np.allclose(other.rotation, nominal.rotation)
    # The sweep is simulated with the truth, whatever the nominal says.
    base = SimRig.build(_spec(), seed=3)
    np.testing.assert_array_equal(rig.sweep(0.0).points, base.sweep(0.0).points)
    shift = SimRig.build(_spec(extrinsic_error_m=(0.0, 0.0, 0.1))).nominal
    np.testing.assert_allclose(shift.translation, [0.0, -0.3, -0.2])


def test_exposure_scales_radiance_blind_is_black_saturated_is_white():
    rig = SimRig.build(_spec())
    ref = rig.render(0.0)
    blind = SimRig.build(_spec(), CONDITIONS['blind']).render(0.0)
    assert blind.rgb.max() == 0
    np.testing.assert_array_equal(blind.depth, ref.depth)
    half = SimRig.build(_spec(), Conditions(exposure=0.5)).render(0.0)
    ok = ref.rgb > 40  # away from quantisation
    ratio = _lin(half.rgb)[ok] / _lin(ref.rgb)[ok]
    assert np.median(ratio) == pytest.approx(0.5, abs=0.01)
    assert np.percentile(np.abs(ratio - 0.5), 99) < 0.05
    sat = SimRig.build(_spec(), CONDITIONS['saturated']).render(0.0)
    assert (sat.rgb == 255).mean() > 0.6 and (sat.rgb >= ref.rgb).all()
    np.testing.assert_array_equal(SimRig.build(_spec(), Conditions(exposure=0.3)).sweep(0.0)
                                  .points, rig.sweep(0.0).points)  # the LiDAR is not a camera


def test_sensor_noise_is_photon_plus_read_and_seeded():
    n = 200_000
    c = Conditions(photon_noise=0.03, read_noise=0.004)
    dirs = np.tile([0.0, 1.0, 1.0], (n, 1))
    dist = np.full(n, 5.0)
    scene = Scene()
    for v in (0.3, 0.7):
        rgb = np.full((n, 3), v, np.float32)
        out = develop(rgb, dirs, dist, scene, np.zeros(3), 0.0, c, seed=5)
        lin = out.astype(np.float64) ** GAMMA
        signal = v ** GAMMA
        expect = math.sqrt(0.03 ** 2 * signal + 0.004 ** 2)
        assert lin.mean() == pytest.approx(signal, rel=0.01)
        assert lin.std() == pytest.approx(expect, rel=0.05)
    rig = SimRig.build(_spec(), CONDITIONS['dusk'])
    a, b = rig.render(0.0, seed=1), rig.render(0.0, seed=1)
    assert np.array_equal(a.rgb, b.rgb)
    assert not np.array_equal(a.rgb, rig.render(0.0, seed=2).rgb)
    f0, f1 = rig.frames(2, speed=0.0)
    assert not np.array_equal(f0.rgb, f1.rgb)  # each frame its own noise


def test_mono_is_luminance_in_three_channels():
    ref = SimRig.build(_spec()).render(0.0).rgb
    mono = SimRig.build(_spec(), CONDITIONS['mono']).render(0.0).rgb
    assert np.array_equal(mono[..., 0], mono[..., 1])
    assert np.array_equal(mono[..., 0], mono[..., 2])
    y = ref.astype(np.float64) @ [0.299, 0.587, 0.114]
    assert np.abs(mono[..., 0] - y).max() <= 0.51


def test_fog_follows_koschmieder_and_sky_becomes_airlight():
    v = 60.0
    cond = Conditions(fog_visibility_m=v)
    clear = SimRig.build(_spec(width=320, height=240)).render(0.0)
    rig = SimRig.build(_spec(width=320, height=240), cond)
    fog = rig.render(0.0)
    np.testing.assert_array_equal(fog.depth, clear.depth)
    airlight = np.asarray(cond.fog_color) ** GAMMA
    sky = fog.labels == SKY
    np.testing.assert_allclose(fog.rgb[sky], np.broadcast_to(
        np.rint(np.asarray(cond.fog_color) * 255), (sky.sum(), 3)), atol=1)
    # Per pixel (L - A) / (L0 - A) = t = exp(-3.912 s / V), s the ray distance.
    c = rig.camera
    v_, u_ = np.mgrid[0:c.height, 0:c.width]
    ray = np.sqrt(((u_ - c.cx) / c.fx) ** 2 + ((v_ - c.cy) / c.fy) ** 2 + 1)
    s = clear.depth * ray
    t = np.exp(-KOSCHMIEDER * s / v)
    lin0, lin = _lin(clear.rgb), _lin(fog.rgb)
    num, den = lin - airlight, lin0 - airlight
    ok = (np.abs(den) > 0.15) & (t[..., None] > 0.2) & ~sky[..., None]
    assert ok.sum() > 1000
    est = (num / np.where(ok, den, 1))[ok]
    tt = np.broadcast_to(t[..., None], lin.shape)[ok]
    assert np.median(np.abs(est - tt)) < 0.01
    # Contrast falls with distance: near ground keeps most of it, far facades little.
    near, far = ok & (s[..., None] < 10), ok & (s[..., None] > 60)
    assert np.median(est[near[ok]]) > 0.6
    assert not far.any() or np.median(est[far[ok]]) < 0.1


def test_fog_lidar_keeps_fewer_far_returns_never_more_and_backscatters():
    spec = _spec().with_lidar(dropout=0.0, range_noise=0.0, resolution=0.0, **FAST)
    clear = SimRig.build(spec).sweep(0.0)
    np.testing.assert_array_equal(SimRig.build(spec, Conditions(fog_visibility_m=1e9))
                                  .sweep(0.0).points, clear.points)
    ranges = np.linalg.norm(clear.points, axis=1)
    bins = [0, 10, 20, 40, 80, 121]
    n_clear = np.histogram(ranges, bins)[0]
    kept_prev = None
    for v in (300.0, 80.0, 30.0):
        fog = SimRig.build(spec, Conditions(fog_visibility_m=v)).sweep(0.0)
        assert not (fog.labels == FOG).any()
        # Every return in fog is one of the clear returns (same beam, same range).
        known = {p.tobytes() for p in clear.points}
        assert all(p.tobytes() in known for p in fog.points)
        kept = np.histogram(np.linalg.norm(fog.points, axis=1), bins)[0] / np.maximum(n_clear, 1)
        assert np.all(np.diff(kept[n_clear > 0]) <= 0.02)  # falls with range
        assert kept[0] > 0.97
        if kept_prev is not None:
            assert np.all(kept <= kept_prev + 0.02)  # denser fog keeps fewer
        kept_prev = kept
    assert kept_prev[-1] == 0 and kept_prev[-2] < 0.05  # V = 30 m: nothing far
    share = 0.03
    bs = SimRig.build(spec, Conditions(fog_visibility_m=80.0, fog_backscatter=share)).sweep(0.0)
    spurious = bs.labels == FOG
    r = np.linalg.norm(bs.points[spurious], axis=1)
    assert r.min() >= 2.0 and r.max() <= 10.0
    beams = spec.lidar_model().directions().shape[0]
    assert 0.5 * share * beams < spurious.sum() < 1.1 * share * beams
    assert bs.intensity[spurious].max() <= 8


def test_sun_elevation_and_azimuth_change_the_shading():
    base = SimRig.build(_spec())
    ref = base.render(0.0)
    ground = ref.labels == GROUND

    def facade_side(rig, labels, side):
        prims = rig.scene.primitives()
        lab = np.maximum(labels - 1, 0)
        facade = (labels > 0) & (prims.material[lab] == MATERIAL_ID['facade'])
        x = (prims.lo[lab, 0] + prims.hi[lab, 0]) / 2
        return facade & (np.sign(x) == side)

    low = SimRig.build(_spec(), CONDITIONS['low_sun']).render(0.0)
    lin0, lin1 = _lin(ref.rgb), _lin(low.rgb)
    assert lin1[ground].mean() < 0.8 * lin0[ground].mean()  # the ground gets grazing light
    # Low sun is redder: red over blue rises on the ground.
    rb0 = lin0[ground][:, 0].mean() / lin0[ground][:, 2].mean()
    rb1 = lin1[ground][:, 0].mean() / lin1[ground][:, 2].mean()
    assert rb1 > rb0 * 1.05
    assert sun_color(90.0)[2] > sun_color(10.0)[2] and sun_color(-1.0) == (0.0, 0.0, 0.0)
    # Today's sun is on the left (-x): it lights the facades on the right; mirrored, the left.
    mirrored = SimRig.build(_spec(), CONDITIONS['mirrored_sun'])
    m = mirrored.render(0.0)
    right, left = facade_side(base, ref.labels, 1), facade_side(base, ref.labels, -1)
    assert right.sum() > 200 and left.sum() > 200
    lm = _lin(m.rgb)
    assert lm[right].mean() < 0.8 * lin0[right].mean()
    assert lm[left].mean() > 1.2 * lin0[left].mean()
    np.testing.assert_array_equal(m.depth, ref.depth)
    for rig in (mirrored, SimRig.build(_spec(), CONDITIONS['low_sun'])):  # the LiDAR: no sun
        np.testing.assert_array_equal(rig.sweep(0.0).points, base.sweep(0.0).points)


def test_veiling_glare_is_strongest_towards_the_sun_and_the_sky_glows():
    spec = _spec(width=320, height=240)
    sun = dict(sun_elevation_deg=5.0, sun_azimuth_deg=0.0, exposure=0.25)  # unsaturated
    with_glare = SimRig.build(spec, Conditions(**sun)).render(0.0)
    without = SimRig.build(spec, Conditions(glare=0.0, **sun)).render(0.0)
    c = spec.camera()
    u0, v0 = c.cx, c.cy - c.fy * math.tan(math.radians(5.0))  # the sun's image position
    d = _lin(with_glare.rgb).mean(2) - _lin(without.rgb).mean(2)
    assert d.min() >= -1e-3 and d.mean() > 0.002
    v_, u_ = np.mgrid[0:c.height, 0:c.width]
    r = np.hypot(u_ - u0, v_ - v0)
    near, mid, far = d[r < 10].mean(), d[(r > 40) & (r < 60)].mean(), d[r > 150].mean()
    assert near > 5 * mid > 5 * far
    # A sun behind the camera adds no glare to the picture.
    behind = dict(sun_elevation_deg=5.0, sun_azimuth_deg=180.0, exposure=0.25)
    a = SimRig.build(spec, Conditions(**behind)).render(0.0)
    b = SimRig.build(spec, Conditions(glare=0.0, **behind)).render(0.0)
    assert np.abs(a.rgb.astype(int) - b.rgb).max() <= 1  # a quantisation step at most
    # Sky brighter near the sun (glare off): the sun ahead against the sun behind.
    behind_sky = _lin(b.rgb).mean(2)
    sky = (without.labels == SKY) & (b.labels == SKY)
    ratio = _lin(without.rgb).mean(2) / np.maximum(behind_sky, 1e-6)
    close, away = sky & (r < 15), sky & (r > 120)
    assert close.sum() > 20 and away.sum() > 20
    assert ratio[close].mean() > 1.3 and ratio[close].mean() > 1.2 * ratio[away].mean()


def test_scene_kinds():
    kinds = ('street', 'open_road', 'dense_trees')
    street, road, trees = (Scene.of_kind(k, seed=1) for k in kinds)
    assert street == Scene.street(1)

    def facades(s):
        return sum(b.material == 'facade' for b in s.boxes)

    assert facades(road) < 0.25 * facades(street) and road.verge is not None
    assert len(trees.ellipsoids) > 1.5 * len(street.ellipsoids)
    # Crowns reach over the ego lane.
    over = [e for e in trees.ellipsoids if abs(e.center[0]) - e.radii[0] < 1.75]
    assert len(over) > 10
    far = SimRig.build(_spec(scene='open_road')).render(0.0)
    near = SimRig.build(_spec()).render(0.0)
    assert (far.labels == SKY).mean() > (near.labels == SKY).mean() + 0.1
    # Fields: green ground beyond the verge.
    g = far.labels == GROUND

    def green(f):
        rgb = f.rgb.astype(int)
        return (f.labels == GROUND) & (rgb[..., 1] > rgb[..., 0] + 8) & \
            (rgb[..., 1] > rgb[..., 2] + 8)

    assert green(far).sum() > 0.05 * g.sum() and green(near).sum() < 0.01 * g.sum()
    with pytest.raises(ValueError, match='scene'):
        _spec(scene='desert')


def test_labels_travel_with_the_frames(tmp_path):
    rig = SimRig.build(_spec(width=64, height=48).with_lidar(azimuth_step_deg=2.0))
    frames = list(rig.frames(2))
    assert frames[0].labels.shape == (48, 64) and (frames[0].labels == SKY).any()
    back = load_frames(save_frames(tmp_path, frames))
    for a, b in zip(frames, back):
        assert b.labels.dtype == np.int32
        np.testing.assert_array_equal(a.labels, b.labels)


@pytest.mark.parametrize('field,value', [
    ('exposure', -1.0), ('fog_visibility_m', 0.0), ('sun_elevation_deg', 95.0),
    ('photon_noise', float('nan')), ('fog_backscatter', 1.0)])
def test_bad_conditions_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        Conditions(**{field: value})


@pytest.mark.parametrize('field,value', [
    ('camera_height_m', 0.0), ('camera_pitch_deg', 80.0), ('lidar', 'hdl128'),
    ('focal_px', -3.0), ('extrinsic_error_deg', -1.0), ('extrinsic_error_m', (1.0, 2.0)),
    ('extrinsic_error_axis', (0.0, 0.0, 0.0))])
def test_bad_rig_specs_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        RigSpec(**{field: value})


def test_a_custom_lidar_model():
    model = LidarModel(elevations_deg=(1.0, -1.0, -5.0), azimuth_step_deg=2.0, max_range=50.0)
    rig = SimRig.build(_spec(lidar=model))
    assert rig.lidar is model
    scan = rig.sweep(0.0)
    assert set(np.unique(scan.ring)) <= {0, 1, 2}


def test_every_named_scenario_builds_and_differs_from_the_default():
    base = scenario('default', 64, 48, seed=2)
    ref = base.render(0.0)
    assert len(SCENARIOS) >= 20
    for name, s in SCENARIOS.items():
        rig = scenario(name, 64, 48, seed=2)
        f = rig.render(0.0)
        assert f.rgb.shape == (48, 64, 3), name
        if name == 'default':
            continue
        # Each scenario changes something the sensors see (or what the user configures).
        changed = (not np.array_equal(f.rgb, ref.rgb) or not np.array_equal(f.depth, ref.depth)
                   or rig.lidar != base.lidar or rig.nominal is not rig.lidar_to_camera
                   or not np.array_equal(rig.lidar_to_camera.translation,
                                         base.lidar_to_camera.translation))
        assert changed, name
    assert scenario('fog', 64, 48).conditions.foggy
    assert scenario('default', 64, 48, camera_height_m=2.0).camera_height == 2.0
    with pytest.raises(ValueError, match='scenario'):
        scenario('moon')
