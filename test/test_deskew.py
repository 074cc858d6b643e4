"""Deskew (core/deskew.py, core/motion.py) against known motions, to the millimetre."""

import numpy as np
import pytest

from depth_node.core.deskew import deskew, deskew_reference
from depth_node.core.errors import DepthNodeError
from depth_node.core.motion import PoseBuffer, PoseTrack
from depth_node.core.transforms import rpy_to_matrix, RigidTransform

SPEED = 20.0  # m/s
YAW_RATE = 0.5  # rad/s
# The LiDAR 1.2 m forward of and 1.8 m above the base, yawed 90 degrees (a lever arm and a
# rotation the deskew must carry through).
BASE_TO_LIDAR = RigidTransform(rpy_to_matrix(0.0, 0.02, np.pi / 2), np.array([1.2, 0.1, 1.8]))


def base_pose(t: float, yaw_rate: float) -> RigidTransform:
    """Exact pose of the base: constant speed along its x axis, constant yaw rate."""
    if yaw_rate == 0.0:
        return RigidTransform(np.eye(3), np.array([SPEED * t, 0.0, 0.0]))
    r = SPEED / yaw_rate
    yaw = yaw_rate * t
    return RigidTransform(rpy_to_matrix(0.0, 0.0, yaw),
                          np.array([r * np.sin(yaw), r * (1 - np.cos(yaw)), 0.0]))


def sweep_of(world: np.ndarray, times: np.ndarray, yaw_rate: float) -> np.ndarray:
    """What a driver publishes: each world point in the LiDAR frame at its own time."""
    out = np.empty_like(world)
    for i, (w, t) in enumerate(zip(world, times)):
        lidar = base_pose(t, yaw_rate) @ BASE_TO_LIDAR
        out[i] = lidar.inverse().rotation @ w + lidar.inverse().translation
    return out


def track_of(times: np.ndarray, yaw_rate: float) -> PoseTrack:
    return PoseTrack.from_transforms(times, [base_pose(t, yaw_rate) for t in times])


def scene(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """World points 3..60 m around the start, per-point times over a 100 ms sweep that
    starts 70 ms before the image stamp (time 0)."""
    rng = np.random.default_rng(seed)
    az = rng.uniform(-np.pi, np.pi, n)
    rng_m = rng.uniform(3.0, 60.0, n)
    world = np.stack([rng_m * np.cos(az), rng_m * np.sin(az), rng.uniform(-1.5, 3.0, n)], 1)
    times = -0.07 + 0.1 * (az + np.pi) / (2 * np.pi)  # the column's firing time
    return world, times


@pytest.mark.parametrize('yaw_rate', [0.0, YAW_RATE])
def test_deskew_to_the_image_stamp_to_the_millimetre(yaw_rate):
    world, times = scene()
    measured = sweep_of(world, times, yaw_rate)
    expected = sweep_of(world, np.zeros(len(world)), yaw_rate)  # all seen at time 0
    track = track_of(np.arange(-0.2, 0.1, 0.01), yaw_rate)  # 100 Hz odometry
    out = deskew(measured.astype(np.float32), times, track, BASE_TO_LIDAR)
    assert out.dtype == np.float32 and out.shape == measured.shape
    err = np.linalg.norm(out - expected, axis=1)
    assert err.max() < 1e-3, err.max()  # mm (float32 points up to 60 m: ~4 um resolution)
    before = np.linalg.norm(measured - expected, axis=1)
    assert before.max() > 1.0  # 20 m/s over up to 70 ms: the test has something to undo


def test_matches_the_matrix_reference_and_another_target():
    world, times = scene(300, seed=1)
    measured = sweep_of(world, times, YAW_RATE).astype(np.float32)
    track = track_of(np.arange(-0.2, 0.1, 0.02), YAW_RATE)
    for target in (0.0, -0.07, 0.03):
        fast = deskew(measured, times, track, BASE_TO_LIDAR, target)
        ref = deskew_reference(measured, times, track, BASE_TO_LIDAR, target)
        np.testing.assert_allclose(fast, ref, atol=2e-5)
    expected = sweep_of(world, np.full(len(world), 0.03), YAW_RATE)
    out = deskew(measured, times, track, BASE_TO_LIDAR, 0.03)
    assert np.linalg.norm(out - expected, axis=1).max() < 1e-3


@pytest.mark.parametrize('yaw_rate', [0.0, YAW_RATE])
def test_constant_velocity_from_the_last_two_poses(yaw_rate):
    """Odometry that stops before the sweep: extrapolated with the last two poses' velocity
    (exact for a straight line; for a turn the arc from the last two poses' twist)."""
    world, times = scene(500, seed=2)
    measured = sweep_of(world, times, yaw_rate).astype(np.float32)
    expected = sweep_of(world, np.zeros(len(world)), yaw_rate)
    track = track_of(np.array([-0.12, -0.1]), yaw_rate)  # last pose 30 ms before the sweep
    out = deskew(measured, times, track, BASE_TO_LIDAR)
    err = np.linalg.norm(out - expected, axis=1)
    # Straight: exact. Turning: the translation is extrapolated along the chord, off the arc
    # by ~ v * w * dt^2 / 2 at dt = 0.1 s: a few centimetres, against metres without.
    assert err.max() < (1e-3 if yaw_rate == 0.0 else 0.06), err.max()


def test_a_sweep_without_per_point_time_moves_as_a_whole():
    world, _ = scene(200, seed=3)
    stamp = -0.05  # the whole sweep taken 50 ms before the image
    measured = sweep_of(world, np.full(len(world), stamp), YAW_RATE).astype(np.float32)
    expected = sweep_of(world, np.zeros(len(world)), YAW_RATE)
    out = deskew(measured, stamp, track_of(np.arange(-0.1, 0.05, 0.01), YAW_RATE),
                 BASE_TO_LIDAR)
    assert np.linalg.norm(out - expected, axis=1).max() < 1e-3


def test_still_vehicle_changes_nothing():
    world, times = scene(100)
    track = PoseTrack(np.array([-1.0, 1.0]), np.ones((2, 3)), np.tile([0, 0, 0.3, 0.95], (2, 1)))
    out = deskew(world.astype(np.float32), times, track, BASE_TO_LIDAR)
    np.testing.assert_allclose(out, world, atol=1e-5)


def test_bad_input_is_named():
    track = track_of(np.array([0.0, 0.1]), 0.0)
    with pytest.raises(DepthNodeError, match='one value per point'):
        deskew(np.zeros((3, 3), np.float32), np.zeros(2), track, BASE_TO_LIDAR)
    with pytest.raises(DepthNodeError, match='at least 2 poses'):
        PoseTrack(np.zeros(1), np.zeros((1, 3)), np.array([[0, 0, 0, 1.0]]))
    with pytest.raises(DepthNodeError, match='strictly increasing'):
        PoseTrack(np.zeros(2), np.zeros((2, 3)), np.tile([0, 0, 0, 1.0], (2, 1)))


def test_slerp_takes_the_short_way_and_interpolates_the_angle():
    # yaw 170 degrees then -170 degrees (the same as 190): half way is 180, not 0.
    q = [[0, 0, np.sin(np.radians(85)), np.cos(np.radians(85))],
         [0, 0, np.sin(np.radians(-85)), np.cos(np.radians(-85))]]
    track = PoseTrack(np.array([0.0, 1.0]), np.zeros((2, 3)), np.array(q))
    mid = track.pose(0.5).rotation
    np.testing.assert_allclose(mid, rpy_to_matrix(0, 0, np.pi), atol=1e-9)


def test_pose_buffer_picks_the_poses_around_a_window_and_forgets_on_a_jump_back():
    buf = PoseBuffer(100)
    q = np.array([0, 0, 0, 1.0])
    for k in range(50):  # 50 Hz from 0 to 0.98 s
        buf.add(k * 20_000_000, np.array([k * 0.4, 0, 0]), q)
    assert not buf.add(0, np.zeros(3), q)  # duplicate stamp
    assert not buf.add(10**9 + 1, np.array([np.nan, 0, 0]), q)
    track = buf.track(500_000_000, 410_000_000, 530_000_000)
    np.testing.assert_allclose(track.times, np.array([-0.1, -0.08, -0.06, -0.04, -0.02, 0.0,
                                                      0.02, 0.04]), atol=1e-12)
    on_one = buf.track(500_000_000, 500_000_000, 500_000_000)  # exactly on a pose
    np.testing.assert_allclose(on_one.times, [0.0, 0.02], atol=1e-12)
    between = buf.track(500_000_000, 505_000_000, 505_000_000)
    np.testing.assert_allclose(between.times, [0.0, 0.02], atol=1e-12)
    before = buf.track(0, -10**8, -10**8)  # before the oldest: the first two
    np.testing.assert_allclose(before.times, [0.0, 0.02], atol=1e-12)
    ahead = buf.track(2 * 10**9, 2 * 10**9, 2 * 10**9)  # past the newest: the last two
    np.testing.assert_allclose(ahead.times, [-1.04, -1.02], atol=1e-12)
    assert buf.add(3 * 10**9, np.array([50.0, 0, 0]), q)
    buf.add(5, np.zeros(3), q)  # 3 s back: a replay restarted
    assert len(buf) == 1 and buf.track(0, 0, 10) is None


def test_compiled_kernel_matches_its_numpy_twin_and_the_reference():
    from depth_node.core import deskew as module
    world, times = scene(3000, seed=5)
    measured = sweep_of(world, times, YAW_RATE).astype(np.float32)
    track = track_of(np.arange(-0.2, 0.1, 0.02), YAW_RATE)
    assert module._compiled_knots is not None  # numba is a dependency
    fast = deskew(measured, times, track, BASE_TO_LIDAR)
    ref = deskew_reference(measured, times, track, BASE_TO_LIDAR)
    np.testing.assert_allclose(fast, ref, atol=5e-5)
    f = np.linspace(0.0, module.KNOTS - 1, len(measured))
    table = np.random.default_rng(0).normal(size=(module.KNOTS, 12))
    a, b = np.empty_like(measured), np.empty_like(measured)
    module._compiled_knots(measured, f, table, a)
    module._knots_numpy(measured, f, table, b)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3)
