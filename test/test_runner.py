"""The per-frame runner: the node's decisions for frames without camera_info, LiDAR or
extrinsic, for refused frames, and the sweep rule, as the node and the evaluation both get them."""

import numpy as np
import pytest

from depth_node.core.stamped import StampedCache
from depth_node.core.transforms import RigidTransform
from depth_node.pipeline.frame import FitState
from depth_node.pipeline.runner import (add_sweep, CameraModel, FrameRunner, FUTURE_S,
                                        ImageFrame, nearest_sweep, NO_CAMERA_INFO, RunnerConfig,
                                        Sweep, SweepAdded)
from depth_node.sim.frames import save_frames, SimRig
from depth_node.testing.oracle import DisparityOracle


@pytest.fixture(scope='module')
def sim(tmp_path_factory):
    rig = SimRig.default(320, 240)
    frames = list(rig.frames(2))
    folder = save_frames(tmp_path_factory.mktemp('frames'), frames)
    return rig, frames, folder


def _runner(folder, rig):
    return FrameRunner(DisparityOracle(str(folder)), RunnerConfig(extrinsic=rig.lidar_to_camera))


def test_nearest_sweep_is_within_max_age_and_earlier_on_a_tie():
    cache = StampedCache(10)
    for s in (100, 200, 300):
        cache.add(s * 10**6, s)
    assert nearest_sweep(cache, 250 * 10**6, 0.1) == (200 * 10**6, 200)  # tie: the earlier
    assert nearest_sweep(cache, 260 * 10**6, 0.1) == (300 * 10**6, 300)
    assert nearest_sweep(cache, 450 * 10**6, 0.1) is None
    assert nearest_sweep(cache, 400 * 10**6, 0.1) == (300 * 10**6, 300)  # inclusive


def test_a_jump_back_in_time_clears_the_sweeps():
    cache = StampedCache(3)
    for k in range(5):  # a first pass fills the cache
        assert add_sweep(cache, 10**9 * (100 + k), k) == SweepAdded.KEPT
    assert add_sweep(cache, 10**9 * 100, 'again') == SweepAdded.JUMPED  # the bag starts again
    assert list(cache) == [(10**9 * 100, 'again')]
    assert add_sweep(cache, 10**9 * 99, 'late') == SweepAdded.KEPT  # a little out of order
    assert len(cache) == 2
    assert add_sweep(cache, 10**9 * 99, 'twice') == SweepAdded.DUPLICATE
    assert SweepAdded.DUPLICATE.discarded and not SweepAdded.JUMPED.discarded


def test_far_future_sweeps_are_discarded_and_do_not_clear_the_cache():
    cache = StampedCache(10)
    image = 10**9 * 100
    for k in range(3):
        add_sweep(cache, image + 10**8 * k, k, reference_ns=image)
    for k in range(10):  # ten sweeps stamped +1 h (a driver on another clock)
        got = add_sweep(cache, image + 3600 * 10**9 + k, 'future', reference_ns=image)
        assert got == SweepAdded.FUTURE and got.discarded
    assert add_sweep(cache, image + 3 * 10**8, 3, reference_ns=image) == SweepAdded.KEPT
    assert [item for _, item in cache] == [0, 1, 2, 3]
    near = image + int(FUTURE_S * 1e9) - 1  # just inside the bound: trusted
    assert add_sweep(cache, near, 'near', reference_ns=image) == SweepAdded.KEPT


def test_runner_decisions_are_the_nodes(sim):
    rig, frames, folder = sim
    f = frames[0]
    runner = _runner(folder, rig)
    image = ImageFrame(f.rgb, int(round(f.stamp * 1e9)), 'camera_optical')
    camera = CameraModel(rig.camera, 'plumb_bob', 5)
    sweep = Sweep(image.stamp_ns, 'lidar', f.lidar)

    run = runner.run(image, None, sweep)  # no camera_info yet: dropped, counted
    assert run.dropped == 'dropped_no_camera_info' and run.reason == NO_CAMERA_INFO
    assert runner.stats.counts['dropped_no_camera_info'] == 1

    emitted = []
    run = runner.run(image, camera, sweep, emit=lambda out, inp, res: emitted.append(out),
                     timings_ms={'convert': 1.0})
    assert run.published and run.result.fit_state == FitState.FRESH
    assert emitted == [run.outputs] and run.outputs.depth is not None
    assert {'convert', 'estimate', 'project', 'fit', 'publish', 'total'} <= set(run.timings_ms)

    run = runner.run(image, camera, None)  # no sweep: runs without LiDAR, counted
    assert run.published and run.frame.lidar is None
    assert run.result.fit.reason == 'no LiDAR sweep within max_age'
    assert runner.stats.counts['frames_without_lidar'] == 1

    def no_tf(camera_frame, lidar_frame, stamp):
        raise LookupError(f'{lidar_frame} -> {camera_frame} unknown at {stamp}')
    run = runner.run(image, camera, sweep, no_tf)  # no extrinsic: without LiDAR, a problem
    assert run.published and run.frame.lidar is None
    assert run.extrinsic_error.startswith('no LiDAR->camera transform: lidar -> camera_optical')
    assert runner.stats.counts['frames_without_extrinsic'] == 1
    assert runner.stats.counts['frames_without_lidar'] == 1  # not counted twice

    seen = []
    run = runner.run(image, camera, sweep,
                     lambda c, lf, s: seen.append((c, lf, s)) or rig.lidar_to_camera)
    assert seen == [('camera_optical', 'lidar', image.stamp_ns)] and run.frame.lidar is not None

    # A camera_info of another resolution is scaled to the image (as the node always did).
    big = CameraModel(rig.camera.resized(640, 480))
    run = runner.run(image, big, sweep)
    assert run.published and run.frame.camera == rig.camera.resized(320, 240)
    assert runner.stats.counts['published'] == 5
    assert run.warning.startswith('camera_info is 640x480 but the image 320x240'), run.warning


def test_refused_and_failing_frames_are_dropped_and_counted(sim):
    rig, frames, folder = sim
    runner = _runner(folder, rig)
    camera = CameraModel(rig.camera)
    grey = ImageFrame(np.zeros((240, 320), np.uint8), 1, 'camera_optical')
    run = runner.run(grey, camera, None)
    assert run.dropped == 'dropped_error' and run.reason.startswith('frame dropped: ')
    assert not run.unexpected

    class Broken(DisparityOracle):
        def predict(self, rgb):
            raise RuntimeError('the GPU fell off')
    broken = FrameRunner(Broken(str(folder)), RunnerConfig(extrinsic=RigidTransform.identity()))
    run = broken.run(ImageFrame(frames[0].rgb, 1, 'c'), camera, None)
    assert run.dropped == 'dropped_error' and run.unexpected
    assert run.reason == 'frame dropped by an unexpected error: RuntimeError: the GPU fell off'
    assert broken.stats.snapshot().last_error == run.reason
