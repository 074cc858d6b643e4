"""The runner's deskew (pipeline/sweep_motion.py through FrameRunner): every return moved to
the image stamp with the caller's motion, the whole sweep without per-point time, nothing
without motion, each change of state said once and shown in diagnostics."""

import numpy as np
import pytest

from depth_node.core.deskew import deskew
from depth_node.core.motion import PoseTrack
from depth_node.core.transforms import rpy_to_matrix, RigidTransform
from depth_node.pipeline.published import diagnostic_status
from depth_node.pipeline.runner import CameraModel, FrameRunner, ImageFrame, RunnerConfig, Sweep
from depth_node.pipeline.sweep_motion import (deskew_sweep, DeskewSettings, DeskewState,
                                              SweepMotion)
from depth_node.sim.frames import save_frames, SimRig
from depth_node.testing.oracle import DisparityOracle

SPEED, YAW_RATE = 20.0, 0.4  # m/s, rad/s
# The LiDAR in the base: 1.5 m up, 0.8 m forward; body axes (x forward, z up) as the base.
BASE_TO_LIDAR = RigidTransform(rpy_to_matrix(0.0, 0.0, 0.05), np.array([0.8, 0.0, 1.5]))
IMAGE_NS = 1_700_000_000_000_000_000
SWEEP_NS = IMAGE_NS - 60_000_000  # the sweep starts 60 ms before the image


def base_pose(t):
    r, yaw = SPEED / YAW_RATE, YAW_RATE * t
    return RigidTransform(rpy_to_matrix(0, 0, yaw),
                          np.array([r * np.sin(yaw), r * (1 - np.cos(yaw)), 0.0]))


def track(start_s=-0.3, stop_s=0.1, rate=50.0):
    times = np.arange(start_s, stop_s + 1e-9, 1.0 / rate)
    return PoseTrack.from_transforms(times, [base_pose(t) for t in times])


def skew(xyz_at_image, times_rel_image):
    """What the driver publishes: points known in the LiDAR frame at the image stamp, each
    seen from the LiDAR at its own time (the inverse of the deskew, exact; yaw-only motion in
    closed form, vectorised)."""
    t = np.asarray(times_rel_image, dtype=np.float64)
    at_image = base_pose(0.0) @ BASE_TO_LIDAR
    world = xyz_at_image.astype(np.float64) @ at_image.rotation.T + at_image.translation
    yaw = YAW_RATE * t
    c, s = np.cos(yaw), np.sin(yaw)
    r = SPEED / YAW_RATE
    base_t = np.stack([r * s, r * (1 - c), np.zeros_like(t)], axis=1)  # [N, 3]
    e_r, e_t = BASE_TO_LIDAR.rotation, BASE_TO_LIDAR.translation
    lidar_t = base_t + np.stack([c * e_t[0] - s * e_t[1], s * e_t[0] + c * e_t[1],
                                 np.full_like(t, e_t[2])], axis=1)
    d = world - lidar_t  # in odom; rotate by (Rz(yaw) @ E_R)^T = E_R^T @ Rz(-yaw)
    in_base = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], 1)
    return (in_base @ e_r).astype(np.float32)


@pytest.fixture(scope='module')
def sim(tmp_path_factory):
    rig = SimRig.default(160, 120)
    frames = list(rig.frames(1))
    return rig, frames[0], save_frames(tmp_path_factory.mktemp('frames'), frames)


def test_the_runner_deskews_to_the_image_stamp_and_says_each_change_once(sim):
    rig, f, folder = sim
    truth = np.asarray(f.lidar, np.float32)  # the instantaneous sweep at the image stamp
    n = len(truth)
    times = np.linspace(0.0, 0.1, n)  # since the sweep stamp
    skewed = skew(truth, (SWEEP_NS - IMAGE_NS) * 1e-9 + times)
    asked = []

    def motion(lidar_frame, start_ns, stop_ns, image_ns):
        asked.append((lidar_frame, start_ns, stop_ns, image_ns))
        return SweepMotion(track(), BASE_TO_LIDAR, 'exact')

    runner = FrameRunner(DisparityOracle(str(folder)),
                         RunnerConfig(extrinsic=rig.lidar_to_camera))
    image = ImageFrame(f.rgb, IMAGE_NS, 'camera_optical')
    camera = CameraModel(rig.camera)
    run = runner.run(image, camera, Sweep(SWEEP_NS, 'lidar', skewed, times), motion=motion)
    assert run.published and run.deskew == DeskewState.PER_POINT
    assert asked == [('lidar', SWEEP_NS, SWEEP_NS + 100_000_000, IMAGE_NS)]
    err = np.linalg.norm(run.frame.lidar - truth, axis=1)
    assert err.max() < 2e-3, err.max()  # mm, from 50 Hz poses of a 20 m/s turn
    assert np.linalg.norm(skewed - truth, axis=1).max() > 1.0  # there was something to undo
    assert run.deskew_note == 'LiDAR deskew: per-point: every return moved to the image ' \
                              'stamp (exact)'
    assert 'deskew' in run.timings_ms
    again = runner.run(image, camera, Sweep(SWEEP_NS, 'lidar', skewed, times), motion=motion)
    assert again.deskew == DeskewState.PER_POINT and again.deskew_note == ''  # said once

    # No motion: used as it is, counted, said once, shown in diagnostics.
    for k in range(2):
        run = runner.run(image, camera, Sweep(SWEEP_NS, 'lidar', skewed, times))
        assert run.deskew == DeskewState.NO_MOTION
        assert np.array_equal(run.frame.lidar, skewed)
        assert bool(run.deskew_note) == (k == 0)
    assert runner.stats.counts['sweeps_not_deskewed'] == 2
    values = dict(diagnostic_status(runner.stats.snapshot(), 'disparity')[2])
    assert values['deskew'].startswith('no motion: no motion source')
    assert values['sweeps_not_deskewed'] == '2'

    # Without per-point time: the whole sweep from its stamp.
    whole = skew(truth, np.full(n, (SWEEP_NS - IMAGE_NS) * 1e-9))
    run = runner.run(image, camera, Sweep(SWEEP_NS, 'lidar', whole), motion=motion)
    assert run.deskew == DeskewState.WHOLE_SWEEP and run.deskew_note
    assert np.linalg.norm(run.frame.lidar - truth, axis=1).max() < 2e-3

    # ... taken 60 ms after its stamp (lidar.sweep_offset): moved from then.
    late = skew(truth, np.zeros(n))  # as seen at the image stamp = sweep stamp + 60 ms
    runner.config = RunnerConfig(extrinsic=rig.lidar_to_camera,
                                 deskew=DeskewSettings(sweep_offset=0.06))
    run = runner.run(image, camera, Sweep(SWEEP_NS, 'lidar', late), motion=motion)
    assert np.linalg.norm(run.frame.lidar - truth, axis=1).max() < 1e-4

    # lidar.deskew false: as it is.
    runner.config = RunnerConfig(extrinsic=rig.lidar_to_camera,
                                 deskew=DeskewSettings(enable=False))
    run = runner.run(image, camera, Sweep(SWEEP_NS, 'lidar', skewed, times), motion=motion)
    assert run.deskew == DeskewState.OFF and np.array_equal(run.frame.lidar, skewed)


def test_no_deskew_when_the_motion_is_stale_or_unknown():
    xyz = np.ones((10, 3), np.float32)
    times = np.linspace(0, 0.1, 10)
    settings = DeskewSettings(max_extrapolation=0.25)

    def old(lidar_frame, start_ns, stop_ns, image_ns):  # odometry stopped 0.5 s ago
        return SweepMotion(track(-1.0, -0.5), BASE_TO_LIDAR, 'odom')
    got = deskew_sweep(xyz, times, SWEEP_NS, IMAGE_NS, 'lidar', old, settings)
    assert got.state == DeskewState.NO_MOTION and got.xyz is xyz
    assert 'motion.max_extrapolation 0.25' in got.note and '(odom)' in got.note

    def recent(lidar_frame, start_ns, stop_ns, image_ns):  # last pose 100 ms ago: extrapolated
        return SweepMotion(track(-1.0, -0.1), BASE_TO_LIDAR, 'odom')
    got = deskew_sweep(xyz, times, SWEEP_NS, IMAGE_NS, 'lidar', recent, settings)
    assert got.state == DeskewState.PER_POINT

    def fails(*args):
        raise LookupError('"odom" passed to lookupTransform argument target_frame does not exist')
    got = deskew_sweep(xyz, times, SWEEP_NS, IMAGE_NS, 'lidar', fails, settings)
    assert got.state == DeskewState.NO_MOTION and 'does not exist' in got.note

    def one_pose(*args):
        return SweepMotion(None, BASE_TO_LIDAR, 'odom')
    got = deskew_sweep(xyz, None, SWEEP_NS, IMAGE_NS, 'lidar', one_pose, settings)
    assert got.state == DeskewState.NO_MOTION and 'fewer than two poses' in got.note


def test_whole_sweep_equals_per_point_with_one_time():
    xyz = np.random.default_rng(0).uniform(-30, 30, (50, 3)).astype(np.float32)
    t = track()
    whole = deskew(xyz, -0.06, t, BASE_TO_LIDAR)
    per_point = deskew(xyz, np.full(50, -0.06), t, BASE_TO_LIDAR)
    np.testing.assert_allclose(whole, per_point, atol=1e-5)
