"""Thin and huge images cannot stall the node: ``input.*`` limits and the inference watchdog.

A valid 640x1 rgb8 image used to become a 196x125440 network input and stall the worker for
minutes with ``/diagnostics`` OK. Now it is letterboxed (or refused) at once, named in the
log and the diagnostics; a frame that runs longer than ``watchdog.timeout`` turns the
diagnostics ERROR while it runs.
"""

import threading
import time

import numpy as np
import pytest

from graph import client, start_node

from depth_node.core.align import OutputKind, OutputSpec
from depth_node.core.camera import PinholeCamera
from depth_node.core.errors import ConfigError
from depth_node.pipeline.config import PipelineConfig
from depth_node.pipeline.input_limits import InputLimits, InputRefused, letterboxed
from depth_node.pipeline.published import DIAG_ERROR, diagnostic_status
from depth_node.pipeline.runner import CameraModel, FrameRunner, ImageFrame, RunnerConfig
from depth_node.ros.player import stamp_of, wait_until


class ShapeRecorder:
    """A disparity ramp over rows; records the shape of every image it is given."""

    output = OutputSpec(OutputKind.DISPARITY)
    name = 'recorder'

    def __init__(self, delay: float = 0.0) -> None:
        self.shapes = []
        self.delay = delay

    def predict(self, rgb):
        self.shapes.append(rgb.shape[:2])
        time.sleep(self.delay)
        h, w = rgb.shape[:2]
        return np.tile(np.linspace(1.0, 2.0, h, dtype=np.float32)[:, None], (1, w))


def _camera(w, h):
    return CameraModel(PinholeCamera(w, h, 500.0, 500.0, w / 2, h / 2))


def _image(w, h, stamp=1.0):
    rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return ImageFrame(rgb, int(stamp * 1e9), 'camera_optical')


def test_limits_letterbox_or_refuse_naming_the_parameter():
    limits = InputLimits()
    assert limits.letterbox_shape(480, 640) is None and limits.letterbox_shape(160, 640) is None
    assert limits.letterbox_shape(1, 640) == (160, 640)
    assert limits.letterbox_shape(640, 10) == (640, 160)
    with pytest.raises(InputRefused, match=r"640x1 .*input.max_aspect \(4; input.oversize"):
        InputLimits(oversize='refuse').letterbox_shape(1, 640)
    with pytest.raises(InputRefused, match='input.max_pixels'):
        limits.letterbox_shape(8000, 6000)  # 48 MP
    with pytest.raises(InputRefused, match='letterboxed to 100000x25000'):
        limits.letterbox_shape(1, 100_000)  # within max_pixels, not once letterboxed
    with pytest.raises(InputRefused, match='0x480 has no pixels'):
        limits.letterbox_shape(480, 0)
    with pytest.raises(ConfigError, match='input.max_aspect'):
        PipelineConfig(input_limits=InputLimits(max_aspect=0.5)).validate()
    with pytest.raises(ConfigError, match='input.oversize'):
        InputLimits(oversize='crop').validate()


def test_letterboxed_prediction_is_the_centre_of_the_padded_one():
    rgb = np.full((3, 20, 3), 200, np.uint8)
    seen = []

    def predict(x):
        seen.append(x.copy())
        return np.arange(x.shape[0] * x.shape[1], dtype=np.float32).reshape(x.shape[:2])
    out = letterboxed(predict, rgb, (5, 20))
    assert seen[0].shape == (5, 20, 3) and (seen[0][1:4] == 200).all()
    assert (seen[0][[0, 4]] == 0).all()  # black bars above and below
    np.testing.assert_array_equal(out, np.arange(100, dtype=np.float32).reshape(5, 20)[1:4])


def test_runner_letterboxes_a_thin_image_and_refuses_when_told():
    model = ShapeRecorder()
    runner = FrameRunner(model, RunnerConfig())
    run = runner.run(_image(640, 1), _camera(640, 1), None)
    assert run.published and model.shapes == [(160, 640)]
    assert run.result.relative.shape == (1, 640)
    assert 'letterboxed to 640x160' in run.warning and 'input.max_aspect 4' in run.warning
    assert runner.stats.counts['letterboxed'] == 1

    refuse = FrameRunner(model, RunnerConfig(pipeline=PipelineConfig(
        input_limits=InputLimits(oversize='refuse'))))
    t0 = time.perf_counter()
    run = refuse.run(_image(640, 1), _camera(640, 1), None)
    assert time.perf_counter() - t0 < 0.1 and run.dropped == 'dropped_input_limits'
    assert 'input.max_aspect' in run.reason and len(model.shapes) == 1  # never inferred
    refuse.stats.count('frames_in')  # the caller counts what arrives
    snap = refuse.stats.snapshot()
    level, message, values = diagnostic_status(snap, 'disparity', 10.0)
    assert level == 1 and 'input.max_aspect' in message
    assert dict(values)['dropped_input_limits'] == '1'


def test_watchdog_turns_diagnostics_error_during_and_after_a_slow_frame():
    runner = FrameRunner(ShapeRecorder(delay=0.6), RunnerConfig(watchdog_timeout=0.2))
    thread = threading.Thread(target=runner.run, args=(_image(64, 48), _camera(64, 48), None))
    thread.start()
    time.sleep(0.4)
    level, message, values = diagnostic_status(runner.stats.snapshot(), 'disparity', 0.2)
    thread.join()
    assert level == DIAG_ERROR and message.startswith('inference stalled: a 64x48 image')
    assert float(dict(values)['inference_busy_s']) >= 0.3
    level, message, values = diagnostic_status(runner.stats.snapshot(), 'disparity', 0.2)
    assert level == DIAG_ERROR and 'more than watchdog.timeout (0.2 s)' in message
    assert dict(values)['frames_over_time'] == '1'
    level, _, _ = diagnostic_status(runner.stats.snapshot(), 'disparity', 0.2)
    assert level != DIAG_ERROR  # reported once; the next period is back to normal


def test_node_letterboxes_a_640x1_image_at_once_and_says_so(tmp_path):
    """The shipped student on a real graph: the thin image is published within seconds."""
    params = {'diagnostics.period': 0.2, 'lidar.wait': 0.0}
    proc = start_node(tmp_path, params)
    feed = client('feeder_thin')
    camera = PinholeCamera(640, 1, 500.0, 500.0, 320.0, 0.5)
    rgb = np.random.default_rng(1).integers(0, 255, (1, 640, 3), dtype=np.uint8)
    try:
        assert feed.wait_connected(90), proc.output()
        t0 = time.monotonic()
        feed.send(rgb, camera, 10.0)
        assert wait_until(lambda: any(stamp_of(m) == 10.0
                                      for m in feed.messages('depth/relative')), 30,
                          proc.alive), (feed.diagnostics(), proc.output())
        took = time.monotonic() - t0
        assert wait_until(lambda: feed.diagnostics().get('letterboxed') == '1', 5, proc.alive), \
            feed.diagnostics()
    finally:
        code = proc.stop()
        feed.close()
    assert code == 0, proc.output()
    out = [m for m in feed.messages('depth/relative') if stamp_of(m) == 10.0][0]
    assert (out.width, out.height) == (640, 1)
    assert 'letterboxed to 640x160' in proc.output(), proc.output()
    # transformers' weight-loading bar, redrawn with \r, is a blank line in launch's logs
    assert 'Loading weights' not in proc.output(), proc.output()
    print(f'640x1 image: letterboxed and published in {took * 1e3:.0f} ms')


def test_node_diagnostics_error_while_inference_stalls(tmp_path):
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ['PYTHONPATH'] = here + os.pathsep + os.environ.get('PYTHONPATH', '')
    params = {'estimator.type': 'slow_estimator:SlowEstimator',
              'estimator.options': '{"delay": 3.0}', 'diagnostics.period': 0.2,
              'watchdog.timeout': 1.0, 'lidar.wait': 0.0}
    proc = start_node(tmp_path, params)
    feed = client('feeder_stall')
    camera = PinholeCamera(64, 48, 50.0, 50.0, 32.0, 24.0)

    def statuses():
        return [st for arr in feed.messages('/diagnostics') for st in arr.status
                if st.name.endswith(': metric depth')]
    try:
        assert feed.wait_connected(60), proc.output()
        feed.send(np.zeros((48, 64, 3), np.uint8), camera, 20.0)
        assert wait_until(lambda: any(st.level == bytes([DIAG_ERROR])
                                      and 'inference stalled' in st.message
                                      for st in statuses()), 10, proc.alive), \
            ([st.message for st in statuses()][-5:], proc.output())
        assert wait_until(lambda: feed.diagnostics().get('frames_over_time') == '1', 10,
                          proc.alive), feed.diagnostics()
    finally:
        code = proc.stop()
        feed.close()
    assert code == 0, proc.output()
    assert any('more than watchdog.timeout' in st.message for st in statuses())
