"""Keyframe policy, the keyframe worker (thread and process modes) and the per-keyframe math."""

import functools
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from depth_node.core.align import OutputKind
from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.estimators.base import EstimatorConfig
from depth_node.pipeline.frame import FrameInput, PipelineConfig
from depth_node.pipeline.keyframes import (cross_check, KeyframeConfig, KeyframePolicy,
                                           KeyframeWorker, process_keyframe)
from depth_node.sim.frames import SimRig
from keyframe_stubs import (AffineOracleTeacher, DyingTeacher, FailingTeacher, GatedTeacher,
                            SleepyTeacher)

SCALE, SHIFT = 40.0, 2.0  # the oracle teacher's affine map (depth space: z = s·m + t)
THREAD = KeyframeConfig(mode='thread')  # built stub teachers run on a thread


@pytest.fixture(scope='module')
def scene():
    rig = SimRig.default(320, 240)
    frame = next(rig.frames(1))
    return rig, frame


def _input(rig, frame, lidar=True):
    return FrameInput(frame.rgb, rig.camera, frame.stamp, frame.lidar if lidar else None,
                      rig.lidar_to_camera)


def _small_frame(value=1, stamp=0.0):
    rgb = np.full((48, 64, 3), value, np.uint8)
    rig_cam = SimRig.default(64, 48).camera
    return FrameInput(rgb, rig_cam, stamp, None)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class _Collector:
    def __init__(self):
        self.results = []
        self.errors = []
        self.event = threading.Event()

    def __call__(self, result):
        self.results.append(result)
        self.event.set()

    def on_error(self, tag, message):
        self.errors.append((tag, message))
        self.event.set()


# ------------------------------------------------------------------------------------------------
# Policy


def _run_policy(policy, stamps, images=None):
    out = []
    for i, stamp in enumerate(stamps):
        rgb = None if images is None else images[i]
        out.append(policy.should_trigger(stamp, rgb))
    return out


def test_policy_every_n_frames():
    decisions = _run_policy(KeyframePolicy(every_n=3), [0.1 * i for i in range(10)])
    assert [i for i, (hit, _) in enumerate(decisions) if hit] == [0, 3, 6, 9]
    assert decisions[0][1] == 'first' and decisions[3][1] == 'every_n'
    assert decisions[1] == (False, '')


def test_policy_every_t_seconds_tolerates_float_stamps():
    decisions = _run_policy(KeyframePolicy(every_t=0.3), [0.1 * i for i in range(10)])
    assert [i for i, (hit, _) in enumerate(decisions) if hit] == [0, 3, 6, 9]
    assert {reason for hit, reason in decisions[1:] if hit} == {'every_t'}


def test_policy_scene_change_triggers_on_a_new_view_not_on_noise():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    noisy = np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
    other = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    policy = KeyframePolicy(scene_change=0.05, thumbnail=16)
    decisions = _run_policy(policy, [0.0, 0.1, 0.2, 0.3, 0.4], [base, noisy, base, other, other])
    assert [hit for hit, _ in decisions] == [True, False, False, True, False]
    assert decisions[3][1] == 'scene_change'
    assert policy.last_score == 0.0  # compared with the new keyframe (the same image)


def test_policy_combinations_and_min_interval():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    b = 255 - a
    images = [a, a, b, b, a, a, a, a, a, a]
    stamps = [0.1 * i for i in range(10)]
    both = _run_policy(KeyframePolicy(every_n=5, scene_change=0.1), stamps, images)
    assert [i for i, (hit, _) in enumerate(both) if hit] == [0, 2, 4, 9]
    assert both[2][1] == 'scene_change' and both[9][1] == 'every_n'
    # every_n and scene change at once: both reasons
    again = _run_policy(KeyframePolicy(every_n=2, scene_change=0.1), stamps[:3], [a, a, b])
    assert again[2] == (True, 'every_n+scene_change')
    # min_interval 0.25 s delays each change until 0.25 s after the last keyframe: the change
    # at 0.2 s fires at 0.3 s, the one at 0.4 s (back to a) at 0.6 s
    limited = _run_policy(KeyframePolicy(scene_change=0.1, min_interval=0.25), stamps, images)
    assert [i for i, (hit, _) in enumerate(limited) if hit] == [0, 3, 6]


def test_policy_off_time_jump_and_reset():
    assert _run_policy(KeyframePolicy(), [0.0, 1.0]) == [(False, ''), (False, '')]
    assert not KeyframePolicy().enabled
    policy = KeyframePolicy(every_t=10.0)
    assert _run_policy(policy, [5.0, 6.0, 2.0, 3.0]) == [
        (True, 'first'), (False, ''), (True, 'time_jump'), (False, '')]
    policy.reset()
    assert policy.should_trigger(3.5) == (True, 'first')


def test_policy_validation_names_the_parameter():
    for kwargs, name in [({'every_n': -1}, 'keyframes.every_n'),
                         ({'every_n': 1.5}, 'keyframes.every_n'),
                         ({'every_t': -0.1}, 'keyframes.every_t'),
                         ({'scene_change': 1.5}, 'keyframes.scene_change'),
                         ({'min_interval': float('nan')}, 'keyframes.min_interval'),
                         ({'thumbnail': 2}, 'keyframes.thumbnail')]:
        with pytest.raises(ConfigError) as info:
            KeyframePolicy(**kwargs)
        assert info.value.name == name
    with pytest.raises(DepthNodeError, match='rgb'):
        KeyframePolicy(scene_change=0.1).should_trigger(0.0)


def test_config_validation_names_the_parameter():
    for kwargs, name in [({'mode': 'fork'}, 'keyframes.mode'),
                         ({'teacher_threads': -1}, 'keyframes.teacher_threads'),
                         ({'teacher_nice': 20}, 'keyframes.teacher_nice'),
                         ({'teacher_nice': -1}, 'keyframes.teacher_nice'),
                         ({'cross_check_quantile': 0.0}, 'keyframes.cross_check_quantile'),
                         ({'teacher_cpus': (-1,)}, 'keyframes.teacher_cpus'),
                         ({'alignment': PipelineConfig(max_depth=-1)}, 'output.max_depth')]:
        with pytest.raises(ConfigError) as info:
            KeyframeConfig(**kwargs).validate()
        assert info.value.name == name


# ------------------------------------------------------------------------------------------------
# One keyframe


def test_process_keyframe_recovers_the_affine_map_in_depth_space(scene):
    rig, frame = scene
    unc = np.full(frame.depth.shape, 0.01, np.float32)
    teacher = AffineOracleTeacher(frame.depth, SCALE, SHIFT, unc)
    result = process_keyframe(teacher, _input(rig, frame))
    assert result.space is OutputKind.DEPTH and result.fit.space is OutputKind.DEPTH
    assert result.fit.ok, result.fit.reason
    assert result.fit.scale == pytest.approx(SCALE, rel=0.01)
    assert result.fit.shift == pytest.approx(SHIFT, abs=0.2)
    assert result.lidar_pixels > result.lidar_kept > 1000  # see-through returns rejected
    valid = np.isfinite(frame.depth) & (frame.depth < 60)
    rel = np.abs(result.depth[valid] - frame.depth[valid]) / frame.depth[valid]
    assert np.median(rel) < 0.01
    assert result.depth.dtype == np.float32 and result.depth.shape == frame.depth.shape
    # uncertainty in metres = |s| x relative uncertainty, NaN where the depth is
    ok = np.isfinite(result.depth)
    np.testing.assert_allclose(result.uncertainty[ok], 0.01 * result.fit.scale, rtol=1e-5)
    assert np.all(np.isnan(result.uncertainty[~ok]))
    assert np.isnan(result.cross_check) and result.cross_check_pixels == 0  # no student given
    assert result.teacher_ms >= 0 and result.total_ms >= result.teacher_ms


def test_process_keyframe_without_lidar_or_uncertainty(scene):
    rig, frame = scene
    teacher = AffineOracleTeacher(frame.depth, SCALE, SHIFT, None)
    refused = process_keyframe(teacher, _input(rig, frame, lidar=False))
    assert not refused.fit.ok and 'LiDAR' in refused.fit.reason
    assert refused.depth is None and refused.uncertainty is None
    plain = process_keyframe(teacher, _input(rig, frame))
    assert plain.fit.ok and plain.uncertainty is None and plain.relative_uncertainty is None


def test_cross_check_is_zero_when_depths_agree_and_grows_with_disagreement():
    rng = np.random.default_rng(0)
    teacher = rng.uniform(2.0, 50.0, (40, 60)).astype(np.float32)
    teacher[0, :5] = np.nan
    unc = rng.uniform(0.0, 1.0, teacher.shape).astype(np.float32)
    assert cross_check(teacher.copy(), teacher, unc) == (0.0, pytest.approx(2395 / 2, abs=2))
    value, n = cross_check(teacher * 1.1, teacher, unc)
    assert value == pytest.approx(0.1, rel=1e-4) and n > 0
    assert cross_check(teacher * 1.3, teacher, unc)[0] > value
    # wrong only where the teacher is unsure: the confident half does not see it
    student = np.where(unc > np.nanmedian(unc) + 0.05, teacher * 2.0, teacher)
    assert cross_check(student, teacher, unc, quantile=0.5)[0] == 0.0
    assert cross_check(student, teacher, None)[0] > 0.3  # no uncertainty: every pixel counts
    assert cross_check(student, teacher, unc, quantile=1.0, max_uncertainty=0.5)[0] == 0.0
    assert np.isnan(cross_check(None, teacher, unc)[0])


# ------------------------------------------------------------------------------------------------
# Worker, thread mode


def test_worker_delivers_fit_uncertainty_and_cross_check(scene):
    rig, frame = scene
    unc = np.full(frame.depth.shape, 0.02, np.float32)
    teacher = AffineOracleTeacher(frame.depth, SCALE, SHIFT, unc)
    got = _Collector()
    with KeyframeWorker(teacher, got, THREAD) as worker:
        worker.submit(_input(rig, frame), tag='header-1')
        assert worker.wait_idle(20.0)
        first = got.results[-1]
        # the student agrees exactly with the teacher's metric depth: AbsRel 0
        worker.submit(_input(rig, frame), student_depth=first.depth, tag='header-2')
        # the student reads 10 % far everywhere
        worker.submit(_input(rig, frame), student_depth=first.depth * 1.1, tag='header-3')
        assert worker.wait_idle(20.0)
        stats = worker.stats()
    tags = [r.tag for r in got.results]
    assert tags[0] == 'header-1' and tags[-1] == 'header-3'
    assert first.fit.scale == pytest.approx(SCALE, rel=0.01) and first.index == 1
    assert np.isnan(first.cross_check)
    last = got.results[-1]
    assert last.cross_check == pytest.approx(0.1, rel=1e-3)
    if len(got.results) == 3:  # header-2 may have been replaced by header-3
        assert got.results[1].cross_check == 0.0 and got.results[1].cross_check_pixels > 1000
    assert last.index == len(got.results) and last.replaced == 3 - len(got.results)
    assert stats.run == len(got.results) and stats.failed == 0 and stats.refused == 0
    assert stats.submitted == 3 and stats.teacher_ms_p50 >= 0
    assert stats.fit_residual_last < 0.05 and stats.fit_inliers_last > 1000
    assert stats.cross_check_last == pytest.approx(0.1, rel=1e-3) and stats.alive
    assert not worker.stats().alive  # closed


def test_worker_runs_one_at_a_time_and_replaces_the_waiting_candidate():
    teacher = GatedTeacher()
    got = _Collector()
    worker = KeyframeWorker(teacher, got, THREAD)
    try:
        worker.submit(_small_frame(stamp=0.0), tag='a')
        assert teacher.entered.wait(5.0)
        assert worker.busy
        replaced = [worker.submit(_small_frame(stamp=0.1 * i), tag=t)
                    for i, t in enumerate('bcde', start=1)]
        assert replaced == [False, True, True, True]
        stats = worker.stats()
        assert stats.busy and stats.waiting and stats.replaced == 3 and teacher.calls == 1
        teacher.gate.set()
        assert worker.wait_idle(10.0)
    finally:
        teacher.gate.set()
        assert worker.close(5.0)
    assert [r.tag for r in got.results] == ['a', 'e']
    assert teacher.calls == 2 and teacher.peak == 1
    assert got.results[-1].replaced == 3 and got.results[-1].index == 2
    assert all(not r.fit.ok for r in got.results)  # no LiDAR given: refused, still delivered
    assert worker.stats().refused == 2


def test_worker_close_joins_and_drops_the_waiting_candidate():
    teacher = GatedTeacher()
    got = _Collector()
    worker = KeyframeWorker(teacher, got, THREAD)
    worker.submit(_small_frame(), tag='a')
    assert teacher.entered.wait(5.0)
    worker.submit(_small_frame(), tag='b')
    t0 = time.monotonic()
    assert worker.close(timeout=0.2) is False  # the teacher is stuck: close does not hang
    assert time.monotonic() - t0 < 2.0
    assert worker.stats().dropped == 1
    with pytest.raises(DepthNodeError, match='close'):
        worker.submit(_small_frame(), tag='c')
    teacher.gate.set()  # the teacher returns: the daemon thread ends without a callback
    worker._thread.join(5.0)
    assert not worker._thread.is_alive()
    assert got.results == []
    assert worker.close() is True  # idempotent


def test_worker_counts_failures_and_survives_them_and_a_bad_callback():
    got = _Collector()
    calls = []

    def callback(result):
        calls.append(result.tag)
        raise RuntimeError('subscriber bug')

    with KeyframeWorker(FailingTeacher(), callback, THREAD,
                        on_error=got.on_error) as worker:
        worker.submit(_small_frame(value=0), tag='bad')
        assert worker.wait_idle(5.0)
        worker.submit(_small_frame(value=1), tag='good')
        assert worker.wait_idle(5.0)
        stats = worker.stats()
    assert got.errors[0][0] == 'bad' and 'teacher exploded' in got.errors[0][1]
    assert calls == ['good']
    assert stats.failed == 1 and stats.run == 1 and 'teacher exploded' in stats.last_error


def test_worker_checks_student_shape_and_teacher():
    with KeyframeWorker(FailingTeacher(), lambda r: None, THREAD) as worker:
        with pytest.raises(DepthNodeError, match='student_depth'):
            worker.submit(_small_frame(), student_depth=np.zeros((3, 3), np.float32))
    with pytest.raises(ConfigError) as info:
        KeyframeWorker(object(), lambda r: None, THREAD)
    assert info.value.name == 'keyframes.teacher'


def test_worker_thread_sets_teacher_threads_nice_and_cpus_without_touching_others(scene):
    torch = pytest.importorskip('torch')
    before = torch.get_num_threads()
    if not hasattr(os, 'sched_getaffinity'):
        pytest.skip('CPU affinity is Linux only')
    if before < 2 or len(os.sched_getaffinity(0)) < 2:
        pytest.skip('needs >= 2 CPUs and torch threads to tell the settings apart')
    cpus_before = os.sched_getaffinity(0)
    nice_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    rig, frame = scene
    teacher = AffineOracleTeacher(frame.depth, SCALE, SHIFT)
    config = KeyframeConfig(mode='thread', teacher_threads=1,
                            teacher_cpus=(min(cpus_before),), teacher_nice=3)
    with KeyframeWorker(teacher, lambda r: None, config) as worker:
        worker.submit(_input(rig, frame, lidar=False))
        assert worker.wait_idle(10.0)
        seen = []
        fresh = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        fresh.start()
        fresh.join()
    assert teacher.threads_seen == [1] and teacher.cpus_seen == [{min(cpus_before)}]
    assert os.sched_getaffinity(0) == cpus_before
    assert teacher.nice_seen == [min(nice_before + 3, 19)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == nice_before
    assert torch.get_num_threads() == before  # this thread
    assert seen == [before]  # a thread started afterwards (e.g. the node's inference thread)


# ------------------------------------------------------------------------------------------------
# Worker, process mode


def test_process_mode_matches_thread_mode_and_keeps_tags_local(scene):
    rig, frame = scene
    unc = np.full(frame.depth.shape, 0.02, np.float32)
    factory = functools.partial(AffineOracleTeacher, frame.depth, SCALE, SHIFT, unc)
    expected = process_keyframe(factory(), _input(rig, frame))
    got = _Collector()
    tag = lambda: 'not picklable'  # noqa: E731 - proves the tag never leaves this process
    config = KeyframeConfig(mode='process', teacher_threads=1)
    with KeyframeWorker(factory, got, config) as worker:
        assert worker.teacher_name == 'affine_oracle'
        worker.submit(_input(rig, frame), student_depth=expected.depth, tag=tag)
        assert worker.wait_idle(30.0)
        stats = worker.stats()
        assert stats.alive and stats.mode == 'process'
    result = got.results[0]
    assert result.tag is tag and result.index == 1
    assert (result.fit.scale, result.fit.shift) == (expected.fit.scale, expected.fit.shift)
    np.testing.assert_array_equal(result.uncertainty, expected.uncertainty)
    assert result.cross_check == 0.0
    assert not _pid_alive(worker.teacher_pid)  # the child exited and was reaped


def _pool_threads():
    """The live manager threads of process pools (concurrent.futures' own)."""
    from concurrent.futures import process
    return {t for t in threading.enumerate()
            if isinstance(t, process._ExecutorManagerThread) and t.is_alive()}


def test_process_mode_start_errors_and_stuck_teacher():
    before = _pool_threads()
    with pytest.raises(ConfigError) as info:  # raised in the child, re-raised here
        KeyframeWorker(EstimatorConfig(type='no_such_module_xyz:factory'), lambda r: None,
                       KeyframeConfig(mode='process'))
    assert info.value.name == 'estimator.type'
    # The failed pool's manager thread has ended: left running, it closes its wake-up pipe
    # while concurrent.futures' exit hook may be writing to it (a traceback at exit).
    assert _pool_threads() <= before
    with pytest.raises(ConfigError) as info:  # a built model cannot be sent to a process
        KeyframeWorker(FailingTeacher(), lambda r: None, KeyframeConfig(mode='process'))
    assert info.value.name == 'keyframes.teacher'
    got = _Collector()
    worker = KeyframeWorker(functools.partial(SleepyTeacher, 60.0), got,
                            KeyframeConfig(mode='process', teacher_nice=5))
    worker.submit(_small_frame())
    time.sleep(0.3)
    t0 = time.monotonic()
    assert worker.close(timeout=0.5) is False  # terminated, not waited for
    assert time.monotonic() - t0 < 5.0
    assert not _pid_alive(worker.teacher_pid) and not worker._thread.is_alive()
    assert _pool_threads() <= before  # and so has the stopped one's
    assert got.results == []


def test_process_mode_detects_a_teacher_that_dies_during_a_keyframe():
    got = _Collector()
    worker = KeyframeWorker(functools.partial(DyingTeacher), got, KeyframeConfig(mode='process'),
                            on_error=got.on_error)
    try:
        assert worker.stats().alive
        worker.submit(_small_frame(value=1), tag='lives')
        assert worker.wait_idle(30.0)
        worker.submit(_small_frame(value=0), tag='dies')
        assert got.event.wait(30.0)
        deadline = time.monotonic() + 10.0
        while worker.stats().alive and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = worker.stats()
    finally:
        worker.close(2.0)
    assert [r.tag for r in got.results] == ['lives']
    assert got.errors and got.errors[0][0] == 'dies' and 'died' in got.errors[0][1]
    assert 'exit code 3' in got.errors[0][1]
    assert not stats.alive and stats.failed == 1 and 'died' in stats.last_error
    assert not worker.wait_idle(1.0) or not worker.stats().alive


def test_process_mode_detects_a_teacher_that_dies_while_idle():
    worker = KeyframeWorker(functools.partial(DyingTeacher), lambda r: None,
                            KeyframeConfig(mode='process'))
    try:
        assert worker.stats().alive
        os.kill(worker.teacher_pid, signal.SIGKILL)  # our own child
        deadline = time.monotonic() + 10.0
        while worker.stats().alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not worker.stats().alive
    finally:
        worker.close(2.0)


_EXIT_WITHOUT_CLOSE = """
import functools, sys, time
import numpy as np
from keyframe_stubs import SleepyTeacher
from depth_node.pipeline.frame import FrameInput
from depth_node.pipeline.keyframes import KeyframeConfig, KeyframeWorker
from depth_node.sim.frames import SimRig
if __name__ == '__main__':
    worker = KeyframeWorker(functools.partial(SleepyTeacher, 60.0), lambda r: None,
                            KeyframeConfig(mode='process'))
    worker.submit(FrameInput(np.zeros((48, 64, 3), np.uint8), SimRig.default(64, 48).camera,
                             0.0, None))
    while not worker.busy:
        time.sleep(0.01)
    print(worker.teacher_pid, flush=True)
"""


def test_exit_without_close_does_not_wait_for_a_running_keyframe(tmp_path):
    script = tmp_path / 'exit_without_close.py'
    script.write_text(_EXIT_WITHOUT_CLOSE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(__file__), os.environ.get('PYTHONPATH', '')]))
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, env=env)
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stderr[-2000:]
    assert elapsed < 30.0  # the teacher sleeps 60 s
    assert not _pid_alive(int(out.stdout.split()[0]))


def test_submit_never_waits_for_a_busy_process_teacher():
    # The teacher takes 20 s per keyframe; each submit only swaps the waiting candidate (the
    # bound is loose for a loaded machine: the point is that no submit waits for the teacher).
    worker = KeyframeWorker(functools.partial(SleepyTeacher, 20.0), lambda r: None,
                            KeyframeConfig(mode='process'))
    try:
        worker.submit(_small_frame(), tag='first')
        deadline = time.monotonic() + 10.0
        while not worker.busy and time.monotonic() < deadline:
            time.sleep(0.01)
        times, replaced = [], []
        for i in range(50):
            t0 = time.perf_counter()
            replaced.append(worker.submit(_small_frame(), tag=i))
            times.append(time.perf_counter() - t0)
        stats = worker.stats()
    finally:
        worker.close(0.5)
    assert max(times) < 2.0 and sum(times) < 5.0
    assert replaced == [False] + [True] * 49
    assert stats.busy and stats.waiting and stats.replaced == 49
