"""Pipeline layer on the synthetic street: oracle estimator, hold logic, metric accuracy."""

import numpy as np
import pytest

from depth_node.core.align import OutputKind, OutputSpec
from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.core.lidar import project_points
from depth_node.core.metrics import depth_metrics
from depth_node.estimators.base import EstimatorConfig
from depth_node.testing.oracle import DisparityOracle
from depth_node.estimators.registry import build_estimator
from depth_node.pipeline.frame import DepthPipeline, FrameInput, PipelineConfig
from depth_node.sim.frames import save_frames, SimRig
from depth_node.sim.scene import LidarModel


@pytest.fixture(scope='module')
def sim(tmp_path_factory):
    rig = SimRig.default(320, 240, lidar=LidarModel(azimuth_step_deg=0.4))
    frames = list(rig.frames(3))
    folder = save_frames(tmp_path_factory.mktemp('frames'), frames)
    return rig, frames, folder


def test_synthetic_lidar_agrees_with_rendered_depth(sim):
    rig, frames, _ = sim
    sp = project_points(frames[0].lidar, rig.camera, rig.lidar_to_camera, 0.5)
    gt = sp.sample(frames[0].depth)
    rel = np.abs(sp.z - gt) / gt
    assert sp.count > 2000
    # Pixel rounding puts a few percent of returns on a neighbouring surface (edges,
    # see-through); the bulk agrees to well under 1 %.
    assert np.median(rel) < 0.005 and np.mean(rel < 0.02) > 0.9


def test_oracle_by_import_path_gives_metric_depth(sim):
    rig, frames, folder = sim
    est = build_estimator(EstimatorConfig(
        type='depth_node.testing.oracle:DisparityOracle',
        options={'frames_dir': str(folder), 'scale': 0.21, 'shift': 0.07}))
    pipe = DepthPipeline(est, PipelineConfig(max_depth=80.0))
    for f in frames:
        res = pipe.process(FrameInput(f.rgb, rig.camera, f.stamp, f.lidar, rig.lidar_to_camera))
        assert res.fit_state == 'fresh' and res.fit.ok
        m = depth_metrics(res.depth, f.depth, max_depth=80.0)
        # Plain least squares against LiDAR with see-through returns: well under 1 %.
        assert m.abs_rel < 0.01, m
        assert m.valid > 0.5 * f.depth.size
        assert res.points.shape == (120, 160, 3)
        np.testing.assert_allclose(res.points[..., 2], res.depth[::2, ::2], equal_nan=True)
        assert set(res.timings_ms) >= {'estimate', 'project', 'fit', 'depth', 'points'}


def test_hold_then_relative_only(sim):
    rig, frames, folder = sim
    pipe = DepthPipeline(DisparityOracle(str(folder)), PipelineConfig(hold_time=0.5))
    f = frames[0]
    ok = pipe.process(FrameInput(f.rgb, rig.camera, 10.0, f.lidar, rig.lidar_to_camera))
    assert ok.fit_state == 'fresh'
    held = pipe.process(FrameInput(f.rgb, rig.camera, 10.3, None, rig.lidar_to_camera))
    assert held.fit_state == 'held' and held.fit_age == pytest.approx(0.3)
    assert held.applied.scale == ok.fit.scale and held.depth is not None
    gone = pipe.process(FrameInput(f.rgb, rig.camera, 10.8, None, rig.lidar_to_camera))
    assert gone.fit_state == 'none' and gone.depth is None and gone.points is None
    assert gone.relative.shape == f.depth.shape
    # Too few LiDAR points is a refused fit too, never a made-up depth.
    pipe.reset()
    few = pipe.process(FrameInput(f.rgb, rig.camera, 20.0, f.lidar[:3], rig.lidar_to_camera))
    assert few.fit_state == 'none' and few.depth is None and 'too few' in few.fit.reason


def test_metric_estimator_passes_through():
    class Metric:
        output = OutputSpec(OutputKind.DEPTH, metric=True)

        def predict(self, rgb):
            return np.full(rgb.shape[:2], 7.0, np.float32)

    rig = SimRig.default(64, 48)
    pipe = DepthPipeline(Metric())
    picture = rig.render(0.0).rgb
    res = pipe.process(FrameInput(picture, rig.camera, 0.0))
    assert res.fit_state == 'metric' and np.all(res.depth == 7.0)
    # A metric model's metres on a black picture are made up too: refused.
    black = pipe.process(FrameInput(np.zeros((48, 64, 3), np.uint8), rig.camera, 0.1))
    assert black.depth is None and black.fit_state == 'none' and 'dark' in black.fit.reason


def test_pipeline_rejects_bad_input_and_config(sim):
    rig, frames, folder = sim
    pipe = DepthPipeline(DisparityOracle(str(folder)))
    with pytest.raises(DepthNodeError, match='uint8'):
        pipe.process(FrameInput(np.zeros((240, 320, 3), np.float32), rig.camera, 0.0))
    with pytest.raises(DepthNodeError, match='camera model'):
        pipe.process(FrameInput(frames[0].rgb[:100], rig.camera, 0.0))
    with pytest.raises(DepthNodeError, match='not one of the frames'):
        pipe.process(FrameInput(np.zeros((240, 320, 3), np.uint8), rig.camera, 0.0))
    with pytest.raises(ConfigError, match='cloud.stride'):
        DepthPipeline(DisparityOracle(str(folder)), PipelineConfig(cloud_stride=0))


def test_registry_errors():
    with pytest.raises(ConfigError, match='estimator.type'):
        build_estimator(EstimatorConfig(type='nonsense'))
    with pytest.raises(ConfigError, match='cannot be imported'):
        build_estimator(EstimatorConfig(type='no_such_module_xyz:f'))
    with pytest.raises(ConfigError, match='no attribute'):
        build_estimator(EstimatorConfig(type='depth_node.testing.oracle:Nope'))
    with pytest.raises(ConfigError, match='estimator.options'):
        build_estimator(EstimatorConfig(type='depth_node.testing.oracle:DisparityOracle',
                                        options={'bogus': 1}))
    with pytest.raises(ConfigError, match='output'):
        build_estimator(EstimatorConfig(type='builtins:object'))


def _same_results(a, b):
    # repr: a refused fit's NaN scale is the same either way
    assert a.fit_state == b.fit_state and repr(a.fit) == repr(b.fit)
    assert repr(a.applied) == repr(b.applied)
    for name in ('relative', 'depth', 'sigma', 'points'):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert set(a.timings_ms) == set(b.timings_ms)


def test_lidar_side_runs_while_the_model_does(sim, monkeypatch):
    """``lidar.overlap``: the image check and the sweep's projection run on the helper thread
    during ``predict``. Here each waits for the other to have started: one after the other
    (the inference thread doing both) times out."""
    import threading

    import depth_node.pipeline.frame as frame_mod
    rig, frames, folder = sim
    started, projected = threading.Event(), threading.Event()
    real = frame_mod.project_lidar
    seen = {}

    def project(*args, **kwargs):
        seen['model_running'] = started.wait(5.0)
        seen['thread'] = threading.current_thread().name
        out = real(*args, **kwargs)
        projected.set()
        return out

    class WaitsForTheProjection(DisparityOracle):
        def predict(self, rgb):
            started.set()
            seen['projected_during'] = projected.wait(5.0)
            return super().predict(rgb)

    monkeypatch.setattr(frame_mod, 'project_lidar', project)
    f = frames[0]
    frame = FrameInput(f.rgb, rig.camera, f.stamp, f.lidar, rig.lidar_to_camera)
    pipe = DepthPipeline(WaitsForTheProjection(str(folder)), PipelineConfig())
    res = pipe.process(frame)
    assert seen == {'model_running': True, 'projected_during': True,
                    'thread': seen['thread']} and seen['thread'].startswith('depth_node_lidar')
    assert res.fit_state == 'fresh'
    # ... and the same frame, LiDAR side on the inference thread before the model: the same.
    started.clear(), projected.clear()
    monkeypatch.setattr(frame_mod, 'project_lidar', real)
    plain = DepthPipeline(DisparityOracle(str(folder)), PipelineConfig(lidar_overlap=False))
    _same_results(res, plain.process(frame))


def test_overlap_gives_the_same_frames_and_errors(sim):
    """On or off, the same outputs frame after frame (held fit, filter, extrinsic check); a
    bad sweep raises the same error either way and the next frame is whole; a model that
    raises leaves the pipeline usable."""
    rig, frames, folder = sim

    class AnyPicture(DisparityOracle):  # a flat disparity for a picture it was not given
        def predict(self, rgb):
            try:
                return super().predict(rgb)
            except DepthNodeError:
                return np.ones(rgb.shape[:2], np.float32)

    on = DepthPipeline(AnyPicture(str(folder)), PipelineConfig())
    off = DepthPipeline(AnyPicture(str(folder)), PipelineConfig(lidar_overlap=False))
    for i, f in enumerate(frames):
        frame = FrameInput(f.rgb, rig.camera, f.stamp, f.lidar, rig.lidar_to_camera)
        _same_results(on.process(frame), off.process(frame))
        assert on.extrinsic_check.alignment == off.extrinsic_check.alignment
    f = frames[1]
    bad = FrameInput(f.rgb, rig.camera, f.stamp + 1, f.lidar[:, :2].copy(), rig.lidar_to_camera)
    for pipe in (on, off):
        with pytest.raises(DepthNodeError, match=r'points must have shape \[N, 3\]'):
            pipe.process(bad)
    frame = FrameInput(f.rgb, rig.camera, f.stamp + 2, f.lidar, rig.lidar_to_camera)
    _same_results(on.process(frame), off.process(frame))
    # A black picture: no projection at all, on or off.
    black = FrameInput(np.zeros_like(f.rgb), rig.camera, f.stamp + 3, f.lidar,
                       rig.lidar_to_camera)
    a, b = on.process(black), off.process(black)
    _same_results(a, b)
    assert a.depth is None and 'project' not in a.timings_ms

    class Fails(DisparityOracle):
        def predict(self, rgb):
            raise RuntimeError('model failed')

    # The LiDAR side (the extrinsic check's state with it) is whole when the error comes out.
    failing = [DepthPipeline(Fails(str(folder)), PipelineConfig(lidar_overlap=overlap))
               for overlap in (True, False)]
    for pipe in failing:
        with pytest.raises(RuntimeError, match='model failed'):
            pipe.process(frame)
        pipe.estimator = DisparityOracle(str(folder))
    _same_results(*(pipe.process(frame) for pipe in failing))
