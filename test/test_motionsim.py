"""A moving vehicle in the sim: trajectory, rotating sweeps with per-point time, odometry, bags."""

import dataclasses
import math

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from bag_messages import bag_messages, bag_ns  # noqa: I100
from depth_node.cli import make_bag
from depth_node.core.errors import DepthNodeError
from depth_node.core.transforms import RigidTransform
from depth_node.offline.drive_bag import (BASE_FRAME, CAMERA_FRAME, DEFAULT_START_NS,
                                          LIDAR_FRAME, ODOM_FRAME, write_drive)
from depth_node.offline.reader import DriveReader
from depth_node.offline.tf_tree import StaticTree
from depth_node.sim.frames import load_frames, save_frames, SimRig
from depth_node.sim.geometry import GROUND
from depth_node.sim.motion import (camera_poses, odom_in_world, odometry, OdometryNoise,
                                   Trajectory)
from depth_node.sim.rigs import RigSpec
from depth_node.sim.scene import LidarModel
from depth_node.sim.world import MOTION_SCENARIOS, scenario

W, H = 96, 64
FAST = LidarModel(azimuth_step_deg=1.0)
ROTATING = dataclasses.replace(FAST, sweep='rotating')


def _rig(lidar=ROTATING, **kw):
    return SimRig.build(RigSpec(width=W, height=H, lidar=lidar, **kw))


def _static(rig):
    """The rig with every moving primitive stopped."""
    scene = rig.scene
    stopped = dataclasses.replace(
        scene, boxes=[dataclasses.replace(b, velocity=(0.0, 0.0, 0.0)) for b in scene.boxes],
        ellipsoids=[dataclasses.replace(e, velocity=(0.0, 0.0, 0.0)) for e in scene.ellipsoids])
    return dataclasses.replace(rig, scene=stopped)


def _world_points(rig, scan, tau, speed=None):
    """Each point moved to the world with the LiDAR's true pose at its own time."""
    rot, pos = rig.camera_path(speed)(tau + scan.times)
    ext = rig.lidar_to_camera
    r = rot @ ext.rotation
    origin = pos + rot @ ext.translation
    return np.einsum('nij,nj->ni', r, scan.points.astype(np.float64)) + origin, origin


def test_trajectory_is_an_arc_of_radius_speed_over_yaw_rate():
    traj = Trajectory(20.0, 10.0)
    radius = 20.0 / math.radians(10.0)
    t = np.linspace(-1.0, 3.0, 9)
    rot, pos = traj.base_poses(t)
    centre = np.array([0.0, radius, 0.0])  # a left turn circles a centre on the left
    np.testing.assert_allclose(np.linalg.norm(pos - centre, axis=1), radius, rtol=1e-12)
    np.testing.assert_allclose(np.arctan2(rot[:, 1, 0], rot[:, 0, 0]), np.radians(10.0) * t,
                               atol=1e-12)
    heading = rot[:, :, 0]
    dt = 1e-6  # the base moves along its heading at the speed
    _, later = traj.base_poses(t + dt)
    np.testing.assert_allclose((later - pos) / dt, 20.0 * heading, atol=1e-3)
    straight = Trajectory(8.0)
    assert straight.straight and straight.base_pose(0.5).translation.tolist() == [4.0, 0.0, 0.0]
    np.testing.assert_array_equal(straight.base_pose(0.5).rotation, np.eye(3))
    for bad in (dict(speed=-1.0), dict(yaw_rate_deg_s=400.0), dict(speed=float('nan'))):
        with pytest.raises(ValueError, match='Trajectory'):
            Trajectory(**bad)


def test_camera_and_lidar_poses_follow_the_odom_chain():
    rig = _rig(speed_mps=20.0, yaw_rate_deg_s=10.0, camera_pitch_deg=3.0)
    for tau in (0.0, 0.7):
        position, rotation = rig.camera_pose(tau)
        world = odom_in_world(rig.camera_height) @ rig.camera_in_odom(tau)
        np.testing.assert_allclose(world.translation, position, atol=1e-12)
        np.testing.assert_allclose(world.rotation, rotation, atol=1e-12)
        lidar = odom_in_world(rig.camera_height) @ rig.lidar_in_odom(tau)
        np.testing.assert_allclose(lidar.translation,
                                   position + rotation @ rig.lidar_to_camera.translation,
                                   atol=1e-12)
    position, rotation = rig.camera_pose(0.0)  # at the start: today's pose
    np.testing.assert_allclose(position, 0.0, atol=1e-12)
    np.testing.assert_allclose(rotation, rig.camera_rotation, atol=1e-12)
    straight = _rig(lidar=FAST)
    assert straight.camera_pose(0.5)[1] is None  # straight and level: the separable caster
    np.testing.assert_array_equal(straight.camera_pose(0.5)[0], [0.0, 0.0, 4.0])
    # The turning camera looks along its heading: yawed left by 10 deg after 1 s.
    rot, _ = camera_poses(Trajectory(20.0, 10.0), np.array([1.0]), 1.65)
    forward = rot[0] @ np.array([0.0, 0.0, 1.0])
    assert math.degrees(math.atan2(-forward[0], forward[2])) == pytest.approx(10.0)


def test_column_times_follow_the_spin():
    model = dataclasses.replace(ROTATING, rate_hz=20.0, start_azimuth_deg=90.0)
    az, t = model.azimuths_deg, model.column_times()
    assert t[az == 90.0] == 0.0 and t.min() == 0.0 and t.max() < 0.05
    np.testing.assert_allclose(t[az == 0.0], 0.05 / 4)  # clockwise: left, front, right, back
    np.testing.assert_allclose(t[az == -90.0], 0.05 / 2)
    ccw = dataclasses.replace(model, clockwise=False)
    np.testing.assert_allclose(ccw.column_times()[az == 0.0], 0.05 * 3 / 4)
    assert not FAST.column_times().any()
    with pytest.raises(ValueError, match='LidarModel.sweep'):
        LidarModel(sweep='spinning')


def test_rotating_sweep_of_a_still_vehicle_in_a_static_scene_is_the_instantaneous_sweep():
    still = _static(_rig(lidar=ROTATING.exact(), speed_mps=0.0))
    ref = _static(_rig(lidar=FAST.exact(), speed_mps=0.0))
    a, b = still.sweep(0.3), ref.sweep(0.3)
    assert b.times is None and a.times is not None
    assert a.points.shape == b.points.shape

    def key(s):  # order-free: by beam, then azimuth column
        col = np.rint(np.degrees(np.arctan2(s.points[:, 1], s.points[:, 0])) / 1.0) % 360
        return np.lexsort((col, s.ring))
    ka, kb = key(a), key(b)
    np.testing.assert_array_equal(a.ring[ka], b.ring[kb])
    np.testing.assert_array_equal(a.labels[ka], b.labels[kb])
    np.testing.assert_allclose(a.points[ka], b.points[kb], atol=1e-5)
    np.testing.assert_array_equal(a.intensity[ka], b.intensity[kb])
    # Points come in firing order: times never go back, from 0 to one period.
    assert np.all(np.diff(a.times) >= 0) and a.times[0] == 0.0 and a.times[-1] < 0.1
    az = np.degrees(np.arctan2(a.points[:, 1], a.points[:, 0]))
    want = np.mod(180.0 - az, 360.0) / 360.0 / 10.0
    err = np.abs((a.times - want + 0.05) % 0.1 - 0.05)
    assert err.max() < 1.0 / 360 / 10 / 2 + 1e-9  # within half a column


@pytest.fixture(scope='module', params=['left', 'pitched_right_ccw_sector'])
def moving(request):
    if request.param == 'left':  # starting mid-chunk of the caster's culling
        lidar = dataclasses.replace(ROTATING, start_azimuth_deg=123.4).exact()
        rig = _rig(lidar=lidar, speed_mps=20.0, yaw_rate_deg_s=15.0)
    else:  # a pitched camera (the LiDAR turns about a tilted axis), 20 Hz from the front
        lidar = dataclasses.replace(ROTATING, fov_deg=120.0, clockwise=False, rate_hz=20.0,
                                    start_azimuth_deg=0.0).exact()
        rig = _rig(lidar=lidar, speed_mps=15.0, yaw_rate_deg_s=-30.0, camera_pitch_deg=4.0)
    return rig, rig.sweep(0.3)


def test_rotating_sweep_points_at_their_own_time_lie_on_the_scene(moving):
    rig, scan = moving
    q, origin = _world_points(rig, scan, 0.3)
    lab = scan.labels
    ground = lab == GROUND
    assert ground.any()
    np.testing.assert_allclose(q[ground, 1], rig.scene.ground_y, atol=1e-3)
    prims = rig.scene.primitives(0.3)
    vel = rig.scene.velocities()
    hit = np.flatnonzero(lab > 0)
    p = lab[hit] - 1
    shift = vel[p] * scan.times[hit, None]  # where each primitive was at the point's time
    lo, hi = prims.lo[p] + shift, prims.hi[p] + shift
    box = ~prims.ellipsoid[p]
    # On a box: inside it (1 mm) and on one of its faces (1 mm).
    out = np.maximum(lo - q[hit], q[hit] - hi)  # <= 0 inside, per axis
    assert out[box].max() < 1e-3 and np.abs(out[box].max(1)).max() < 1e-3
    c, r = (lo + hi) / 2, (hi - lo) / 2
    rho = np.linalg.norm((q[hit] - c) / r, axis=1)
    assert np.abs((rho[~box] - 1) * r[~box].min(1)).max() < 1e-3
    assert (vel[p] != 0).any(axis=1).sum() > 20  # moving vehicles were hit
    # The same points taken as if all fired at the sweep start miss by metres (2 m at 20 m/s).
    start = rig.lidar_in_odom(0.3)
    naive = odom_in_world(rig.camera_height) @ start
    late = scan.times > 0.9 * scan.times.max()
    q_naive = naive.apply(scan.points[late]).astype(np.float64)
    moved = rig.speed * scan.times.max()
    assert np.median(np.linalg.norm(q_naive - q[late], axis=1)) > 0.8 * moved


def test_rotating_sweep_first_hits_equal_the_reference_raycast(moving):
    # The culled caster with its per-column origins and widened windows against the
    # reference (every primitive, every ray) on a sample of columns.
    rig, scan = moving
    q, origin = _world_points(rig, scan, 0.3)
    cols = np.unique(scan.times)
    for ct in cols[np.random.default_rng(0).choice(cols.size, 12, replace=False)]:
        sel = scan.times == ct
        d = q[sel] - origin[sel][0]
        r = np.linalg.norm(d, axis=1)
        t, hit = rig.scene.raycast(origin[sel][0], d / r[:, None], 0.3 + ct)
        np.testing.assert_array_equal(hit, scan.labels[sel])
        np.testing.assert_allclose(t, r, atol=1e-4)


def test_frames_carry_times_ring_and_base_pose_and_save_them(tmp_path):
    rig = _rig(speed_mps=20.0, yaw_rate_deg_s=10.0)
    frames = list(rig.frames(2, rate=5.0, start=3.0, lidar_offset=-0.05))
    for i, f in enumerate(frames):
        assert f.lidar_stamp == pytest.approx(3.0 + i / 5.0 - 0.05)
        assert f.lidar_times.shape == (f.lidar.shape[0],) and f.ring.dtype == np.uint16
        truth = rig.trajectory().base_pose(i / 5.0)
        np.testing.assert_array_equal(f.base_pose.translation, truth.translation)
    back = load_frames(save_frames(tmp_path / 'f', frames))
    for a, b in zip(frames, back):
        np.testing.assert_array_equal(a.lidar_times, b.lidar_times)
        np.testing.assert_array_equal(a.ring, b.ring)
        np.testing.assert_array_equal(a.base_pose.rotation, b.base_pose.rotation)
    assert next(_rig(lidar=FAST).frames(1)).lidar_times is None  # instantaneous: no times


def test_motion_scenarios_build():
    assert set(MOTION_SCENARIOS) >= {'rotating_20mps_turning', 'instant_20mps_turning'}
    rig = scenario('rotating_20mps_turning', W, H)
    assert rig.lidar.rotating and rig.speed == 20.0 and rig.yaw_rate_deg_s == 10.0
    assert not scenario('instant_20mps_turning', W, H).lidar.rotating


def test_odometry_is_exact_without_noise_and_drifts_with_it():
    traj = Trajectory(20.0, 10.0)
    samples = odometry(traj, 0.0, 1.0, 50.0, start=2.0)
    assert len(samples) == 51 and samples[0].stamp == 2.0 and samples[-1].stamp == 3.0
    for s in samples[::10]:
        truth = traj.base_pose(s.stamp - 2.0)
        np.testing.assert_allclose(s.pose.translation, truth.translation, atol=1e-12)
        np.testing.assert_allclose(s.pose.rotation, truth.rotation, atol=1e-12)
    noise = OdometryNoise(position_walk_m=0.05, yaw_walk_deg=0.5)
    a, b = odometry(traj, 0.0, 4.0, 50.0, noise, seed=1), odometry(traj, 0.0, 4.0, 50.0, noise, 1)
    assert all(np.array_equal(x.pose.translation, y.pose.translation) for x, y in zip(a, b))
    err = [np.linalg.norm(s.pose.translation - traj.base_pose(s.stamp).translation) for s in a]
    assert err[0] == 0.0 and 0.01 < max(err) < 2.0
    with pytest.raises(ValueError, match='position_walk_m'):
        OdometryNoise(position_walk_m=-1.0)


@pytest.fixture(scope='module')
def drive():
    rig = _rig(lidar=dataclasses.replace(ROTATING, azimuth_step_deg=2.0), speed_mps=20.0,
               yaw_rate_deg_s=10.0)
    return rig, list(rig.frames(2, rate=5.0, start=0.5))


@pytest.mark.parametrize('convention, field, kind', [('ouster', 't', 'u4'),
                                                     ('velodyne', 'time', 'f4'),
                                                     ('hesai', 'timestamp', 'f8')])
def test_time_fields_decode_to_the_times_written(drive, tmp_path, convention, field, kind):
    rig, frames = drive
    write_drive(tmp_path / 'bag', frames, rig.camera, rig.lidar_to_camera, ground_truth=False,
                time_field=convention)
    clouds = bag_messages(tmp_path / 'bag')['/lidar/points']
    for (t, cloud), f in zip(clouds, frames):
        assert t == bag_ns(f.lidar_stamp) and cloud.header.frame_id == LIDAR_FRAME
        offsets = {p.name: (p.offset, p.datatype) for p in cloud.fields}
        dt = np.dtype({'names': list(offsets), 'offsets': [o for o, _ in offsets.values()],
                       'formats': ['<' + {7: 'f4', 8: 'f8', 6: 'u4', 4: 'u2'}[d]
                                   for _, d in offsets.values()],
                       'itemsize': cloud.point_step})
        rec = np.frombuffer(cloud.data.tobytes(), dt)
        assert rec.dtype[field].str == '<' + kind and rec.size == f.lidar.shape[0]
        np.testing.assert_array_equal(np.stack([rec['x'], rec['y'], rec['z']], 1), f.lidar)
        np.testing.assert_array_equal(rec['ring'], f.ring)
        if convention == 'ouster':  # ns since the header stamp
            np.testing.assert_array_equal(rec['t'], np.rint(f.lidar_times * 1e9))
        elif convention == 'velodyne':  # s since the header stamp
            np.testing.assert_allclose(rec['time'], f.lidar_times, atol=1e-8)
        else:  # absolute s
            stamp = cloud.header.stamp.sec + cloud.header.stamp.nanosec * 1e-9
            np.testing.assert_allclose(rec['timestamp'] - stamp, f.lidar_times, atol=1e-6)
        assert f.lidar_times.max() > 0.09  # the sweep spans its period
    # The package's own reader decodes every layout (padding, unaligned fields) alike.
    for got, f in zip(DriveReader(tmp_path / 'bag').frames(), frames):
        np.testing.assert_array_equal(got.lidar, f.lidar)
        np.testing.assert_array_equal(got.intensity, f.intensity)
    with pytest.raises(DepthNodeError, match='time_field'):
        write_drive(tmp_path / 'other', frames, rig.camera, rig.lidar_to_camera,
                    time_field='livox')


def test_tf_odometry_in_the_bag_reads_back_to_the_trajectory(drive, tmp_path):
    rig, frames = drive
    odom = odometry(rig.trajectory(), 0.0, 0.3, 50.0, start=0.5)
    write_drive(tmp_path / 'bag', frames, rig.camera, rig.lidar_to_camera, ground_truth=False,
                odometry=odom, odometry_topic='/odom', camera_height=rig.camera_height)
    msgs = bag_messages(tmp_path / 'bag')
    [(_, static)] = msgs['/tf_static']
    stamps = [t for t, _ in msgs['/tf']]
    assert stamps == sorted(stamps) and len(stamps) == 16 and stamps[0] == bag_ns(0.5)
    for t, tf in msgs['/tf']:
        tree = StaticTree()
        tree.add(static)
        tree.add(tf)
        tau = (t - DEFAULT_START_NS) / 1e9 - 0.5
        got = tree.lookup(ODOM_FRAME, LIDAR_FRAME)  # odom -> base_link -> camera -> lidar
        want = rig.lidar_in_odom(tau)
        np.testing.assert_allclose(got.translation, want.translation, atol=1e-9)
        np.testing.assert_allclose(got.rotation, want.rotation, atol=1e-9)
        cam = tree.lookup(ODOM_FRAME, CAMERA_FRAME)
        np.testing.assert_allclose(cam.translation, rig.camera_in_odom(tau).translation,
                                   atol=1e-9)
    (t, od), = msgs['/odom'][5:6]
    assert (od.header.frame_id, od.child_frame_id) == (ODOM_FRAME, BASE_FRAME)
    truth = rig.trajectory().base_pose(0.1)
    assert t == bag_ns(0.6)
    np.testing.assert_allclose([od.pose.pose.position.x, od.pose.pose.position.y],
                               truth.translation[:2], atol=1e-9)
    assert od.twist.twist.linear.x == 20.0
    assert od.twist.twist.angular.z == pytest.approx(math.radians(10.0))


def test_turning_bag_without_odometry_writes_the_true_pose_per_frame(drive, tmp_path):
    rig, frames = drive
    write_drive(tmp_path / 'bag', frames, rig.camera, rig.lidar_to_camera, ground_truth=False)
    for (t, tf), f in zip(bag_messages(tmp_path / 'bag')['/tf'], frames):
        tree = StaticTree()
        tree.add(tf)
        got = tree.lookup(ODOM_FRAME, BASE_FRAME)
        np.testing.assert_allclose(got.rotation, f.base_pose.rotation, atol=1e-12)
        assert isinstance(got, RigidTransform)


def test_make_bag_writes_a_turning_drive_with_rotating_sweeps(tmp_path, capsys):
    out = tmp_path / 'bag'
    assert make_bag.main([str(out), '--seconds', '0.4', '--rate', '5', '--width', '64',
                          '--height', '48', '--lidar-azimuth-step', '4', '--speed', '20',
                          '--yaw-rate', '10', '--sweep', 'rotating', '--time-field', 'ouster',
                          '--tf-rate', '50', '--odom-topic', '/odom', '--odom-noise-m',
                          '0.01', '--lidar-offset', '-0.05', '--no-gt']) == 0
    text = capsys.readouterr().out
    assert 'turning 10 deg/s, rotating sweeps' in text
    with Reader(out) as reader:
        counts = {t: i.msgcount for t, i in reader.topics.items()}
    assert counts['/tf'] == counts['/odom'] == 16  # -0.05 .. 0.25 s: the last sweep's end
    assert counts['/lidar/points'] == 2
    msgs = bag_messages(out)
    assert msgs['/tf'][0][0] == DEFAULT_START_NS - int(0.05e9)
    assert [t for t, _ in msgs['/lidar/points']] == [bag_ns(-0.05), bag_ns(0.15)]
    fields = [p.name for p in msgs['/lidar/points'][0][1].fields]
    assert fields == ['x', 'y', 'z', 'intensity', 't', 'ring']
    with pytest.raises(SystemExit):
        make_bag.main([str(tmp_path / 'b2'), '--odom-noise-m', '0.1'])
    assert '--tf-rate' in capsys.readouterr().err
