"""Bag evaluation: the sample bag through the node's pipeline, scored; reports, damaged bags,
held-out LiDAR without leakage, the output bag's bytes, Ctrl-C, params files, rviz config."""

import ast
import csv
import json
import math
import os
import py_compile
import shutil

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.core.lidar import project_points, SparseDepth
from depth_node.core.metrics import METRIC_NAMES
from depth_node.estimators import build_estimator
from depth_node.offline import evaluate as evaluate_module
from depth_node.offline.drive_bag import typestore, write_drive
from depth_node.offline.reader import read_drive
from depth_node.offline.report import PLOTS
from depth_node.offline.evaluate import (BagEvaluation, check_no_leak, EvaluationOptions,
                                         NodeSettings, point_pixels, split_lidar)
from depth_node.messages.layout import pack_cloud
from depth_node.ros.param_files import load_params_file
from depth_node.ros.params import build_config
from depth_node.sim.frames import save_frames, SimFrame, SimRig
from depth_node.sim.scene import LidarModel
from depth_node.cli.evaluate import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, 'data', 'sample_drive')
ORACLE = 'depth_node.testing.oracle:DisparityOracle'
OUTPUT_TOPICS = ('/depth', '/depth/uncertainty', '/depth/camera_info', '/depth/points',
                 '/depth/relative', '/depth/colored')


@pytest.fixture(scope='module')
def sample_frames():
    """The sample bag's frames (exact depth) and an oracle frames folder made from them."""
    return list(read_drive(SAMPLE))


@pytest.fixture(scope='module')
def frames_dir(tmp_path_factory, sample_frames):
    folder = tmp_path_factory.mktemp('oracle_frames')
    save_frames(folder, [SimFrame(f.index, f.stamp, f.rgb, f.depth, f.lidar)
                         for f in sample_frames])
    return str(folder)


def _params(path, frames_dir, **extra):
    """A node params file naming the exact oracle (as a user's YAML would)."""
    section = {'estimator': {'type': ORACLE,
                             'options': json.dumps({'frames_dir': frames_dir})},
               'lidar': {'max_age': 0.05}}
    for name, value in extra.items():
        group, key = name.split('__')
        section.setdefault(group, {})[key] = value
    path.write_text(yaml.safe_dump({'/**': {'ros__parameters': section}}))
    return str(path)


def _rows(out):
    with open(out / 'frames.csv') as fh:
        return list(csv.DictReader(fh))


def _summary(out):
    return json.loads((out / 'summary.json').read_text())


def _is_png(path):
    return path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


# ----------------------------------------------------------------------------- accuracy


def test_oracle_on_the_sample_bag_and_the_report(tmp_path, frames_dir, capsys):
    out = tmp_path / 'report'
    params = _params(tmp_path / 'p.yaml', frames_dir)
    assert main([SAMPLE, '--params-file', params, '--out', str(out)]) == 0
    s = _summary(out)
    assert s['ground_truth'] == 'depth' and s['estimator'] == 'oracle'
    assert s['frames'] == {'declared': 20, 'processed': 20, 'with_metric_depth': 20,
                           'evaluated': 20, 'skipped_unreadable': 0, 'failed': 0}
    assert s['metrics']['abs_rel'] <= 0.01 and s['metrics']['delta1'] >= 0.99
    assert not s['interrupted'] and not s['damaged'] and s['issues'] == []
    for label in ('0-10', '10-20', '20-40', '40-80'):
        assert s['metrics_by_depth'][label]['valid'] > 0
        assert s['metrics_by_depth'][label]['abs_rel'] <= 0.01
    # The bins split the evaluated pixels (80 m is the cap and in the last bin).
    assert sum(b['valid'] for b in s['metrics_by_depth'].values()) == s['metrics']['valid']
    assert {'estimate', 'project', 'see_through', 'fit', 'filter', 'depth', 'points'} <= \
        set(s['latency_ms'])
    assert s['throughput']['frames_per_s'] > 0
    assert 0 < s['throughput']['outside_model_share'] < 1
    # The published sigma against the ground truth (the reliability diagram's figures).
    u = s['uncertainty']
    assert u['pixels'] > 0.5 * s['metrics']['valid']
    assert 0.5 < u['within_1sigma'] < u['within_2sigma'] <= 1.0, u

    # Files, and that they agree with each other.
    for name in ('frames.csv', 'summary.json', 'index.html', 'error_vs_depth.png',
                 'abs_rel_over_time.png', 'scale_shift.png', 'latency.png', 'reliability.png',
                 'sample_frame.png'):
        assert (out / name).is_file(), name
        assert name in s['files']
    assert all(_is_png(p) for p in out.glob('*.png'))
    rows = _rows(out)
    assert [int(r['index']) for r in rows] == list(range(20))
    assert math.isclose(np.mean([float(r['abs_rel']) for r in rows]), s['metrics']['abs_rel'],
                        rel_tol=1e-5)
    assert sum(int(r['valid']) for r in rows) == s['metrics']['valid']
    assert math.isclose(np.mean([float(r['scale']) for r in rows]), s['scale']['mean'],
                        rel_tol=1e-5)
    assert all(r['fit_state'] in ('fresh', 'held') and r['extrinsic'] == 'bag' for r in rows)
    page = (out / 'index.html').read_text()
    assert page.count('src="data:image/png;base64,') == len(PLOTS)
    assert 'href="frames.csv"' in page and 'href="summary.json"' in page
    assert f"{s['metrics']['abs_rel']:.4f}" in page
    printed = capsys.readouterr().out
    assert 'AbsRel' in printed and 'index.html' in printed


def test_held_out_lidar_never_leaks_into_the_fit(frames_dir, sample_frames, monkeypatch):
    """Force LiDAR ground truth on the sample bag; spy on what the pipeline receives."""
    config = build_config({'estimator.type': ORACLE,
                           'estimator.options': json.dumps({'frames_dir': frames_dir}),
                           'lidar.max_age': 0.05})
    splits = []

    def spy_split(*args, **kwargs):
        splits.append(split_lidar(*args, **kwargs))
        return splits[-1]

    monkeypatch.setattr(evaluate_module, 'split_lidar', spy_split)
    evaluation = BagEvaluation(SAMPLE, build_estimator(config.estimator),
                               NodeSettings.from_node_config(config),
                               EvaluationOptions(ground_truth='lidar', max_frames=6, seed=3))
    received = []
    process = evaluation.pipeline.process

    def spy_process(frame, want_points=True):
        received.append((frame.lidar.copy(), frame.camera, frame.lidar_to_camera))
        return process(frame, want_points)

    monkeypatch.setattr(evaluation.pipeline, 'process', spy_process)
    result = evaluation.run()
    assert result.ground_truth == 'lidar' and result.frames == 6 == len(splits) == len(received)
    cfg = config.pipeline
    for split, (points, camera, extrinsic), record in zip(splits, received, result.records):
        assert np.intersect1d(split.fit_pixels, split.eval_pixels).size == 0
        assert split.fit_pixels.size + split.eval_pixels.size == split.full.count
        assert abs(split.eval_pixels.size - 0.2 * split.full.count) <= 1
        # Everything the pipeline received lands on fit pixels, and every fit pixel is fed.
        pix = point_pixels(points, camera, extrinsic, cfg.lidar_min_depth, cfg.lidar_max_depth)
        assert np.isin(pix[pix >= 0], split.fit_pixels).all()
        assert not np.isin(pix, split.eval_pixels).any()
        assert np.array_equal(np.unique(pix[pix >= 0]), split.fit_pixels)
        # The metrics use held-out pixels only (fewer after see-through cleaning).
        e = split.eval_depth
        gt_pix = e.v.astype(np.int64) * camera.width + e.u
        assert np.isin(gt_pix, split.eval_pixels).all() and 0 < e.count <= split.eval_pixels.size
        assert record.eval_pixels == e.count and record.gt == 'lidar'
        assert record.fit_points <= split.fit_pixels.size
    overall = result.overall()
    # Exact oracle vs held-out LiDAR (2 cm noise, pixel rounding): well under 1 %.
    assert overall.abs_rel <= 0.01
    assert all(0 < r.metrics.valid <= r.gt_pixels <= r.eval_pixels for r in result.records)
    # Seeded: the same split again.
    again = split_lidar(sample_frames[0].lidar, received[0][1], received[0][2], cfg, 0.2,
                        np.random.default_rng([3, 0]))
    assert np.array_equal(again.eval_pixels, splits[0].eval_pixels)


def test_point_pixels_agree_with_the_pipelines_projection():
    rig = SimRig.default(96, 64)
    rng = np.random.default_rng(5)
    points = rng.uniform(-30, 30, (20000, 3)).astype(np.float32)  # many behind or outside
    points[:5] = np.nan
    cam, ext = rig.camera, rig.lidar_to_camera
    full = project_points(points, cam, ext, 0.5, 25.0)
    pix = point_pixels(points, cam, ext, 0.5, 25.0)
    assert np.array_equal(np.unique(pix[pix >= 0]),
                          np.unique(full.v.astype(np.int64) * cam.width + full.u))
    assert (pix[:5] == -1).all() and (pix >= 0).sum() > full.count  # z-buffer kept one each


def test_leak_check_refuses_a_fit_that_saw_held_out_pixels():
    rng = np.random.default_rng(0)
    full = SparseDepth(np.arange(10, dtype=np.int32), np.zeros(10, np.int32),
                       rng.uniform(5, 10, 10).astype(np.float32), 16, 4)
    split = evaluate_module.HeldOutSplit(np.zeros((0, 3), np.float32), np.arange(0, 8),
                                         np.arange(8, 10), full.subset(np.arange(10) >= 8), full)
    check_no_leak(split, full.subset(np.arange(10) < 8), 16)  # exactly the fit set: fine
    check_no_leak(split, None, 16)  # nothing projected (metric model): fine
    with pytest.raises(DepthNodeError, match='outside the 8 fit pixels'):
        check_no_leak(split, full, 16)


def test_tiny_real_model_gives_finite_metrics_or_says_why(tmp_path, capsys):
    """The real Depth Anything V2 path with random weights: its fits are poor. With the
    default max_residual they are refused (no metric depth, counted, no crash); with a
    lenient one they are accepted and the metrics are finite."""
    import torch

    from tiny_models import save_tiny_depth_anything
    model = save_tiny_depth_anything(tmp_path / 'tiny')
    runs = {}
    threads = torch.get_num_threads()
    try:  # --threads sets torch's process-wide setting: give it back afterwards
        for name, extra in (('strict', []), ('lenient', ['-p', 'fit.max_residual:=10.0'])):
            out = tmp_path / name
            assert main([SAMPLE, '--model', str(model), '--out', str(out), '--max-frames', '4',
                         '--threads', '1', '--quiet', '--no-plots', *extra]) == 0
            runs[name] = (_summary(out), _rows(out), capsys.readouterr().err)
    finally:
        torch.set_num_threads(threads)
    for s, rows, _ in runs.values():
        assert s['frames']['processed'] == 4 == len(rows)
        with_depth = [r for r in rows if r['fit_state'] != 'none']
        assert s['frames']['with_metric_depth'] == len(with_depth)
        assert s['frames']['evaluated'] == sum(int(r['valid']) > 0 for r in rows)
        assert all(r['fit_reason'] for r in rows if r['fit_ok'] == '0')
        assert s['latency_ms']['estimate']['mean'] > 0
        assert s['estimator'].startswith('depth_anything')
    strict, rows, err = runs['strict']
    assert strict['frames']['with_metric_depth'] == 0
    assert strict['metrics']['abs_rel'] is None and strict['metrics']['valid'] == 0
    assert sum(strict['fit_refusals'].values()) == 4
    assert '4 of 4 frames had no metric depth (fit refused: ' in err
    lenient = runs['lenient'][0]
    assert lenient['frames']['with_metric_depth'] >= 2
    assert all(math.isfinite(lenient['metrics'][k]) for k in METRIC_NAMES)


# ----------------------------------------------------------------------------- damaged bags


def _damaged_copy(tmp_path, name, damage):
    bag = tmp_path / name
    shutil.copytree(SAMPLE, bag)
    mcap = bag / 'sample_drive.mcap'
    data = bytearray(mcap.read_bytes())
    mcap.write_bytes(damage(data))
    return bag


def test_truncated_bag_names_bag_and_topics_and_evaluates_what_is_there(tmp_path, frames_dir,
                                                                        capsys):
    bag = _damaged_copy(tmp_path, 'truncated', lambda d: bytes(d[:len(d) // 2]))
    out = tmp_path / 'out'
    code = main([str(bag), '--params-file', _params(tmp_path / 'p.yaml', frames_dir),
                 '--out', str(out), '--quiet', '--no-plots'])
    assert code == 3
    err = capsys.readouterr().err
    assert f'{bag}: ' in err and 'truncated' in err
    assert f'{bag}: /camera/image_rect: only 10 of its 20 messages could be read' in err
    s = _summary(out)
    assert s['damaged'] and s['frames']['processed'] == 10
    assert s['frames']['with_metric_depth'] == 10 and s['metrics']['abs_rel'] <= 0.01
    assert any(i['topic'] == '/lidar/points' for i in s['issues'])


def test_corrupt_chunk_is_skipped_and_reported_per_topic(tmp_path, frames_dir, capsys):
    def corrupt(d):
        mid = len(d) // 2
        d[mid:mid + 4096] = np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes()
        return bytes(d)

    bag = _damaged_copy(tmp_path, 'corrupt', corrupt)
    out = tmp_path / 'out'
    code = main([str(bag), '--params-file', _params(tmp_path / 'p.yaml', frames_dir),
                 '--out', str(out), '--quiet', '--no-plots'])
    assert code == 3
    err = capsys.readouterr().err
    assert f'{bag}: /camera/image_rect: 1 messages lost: chunk at byte' in err
    s = _summary(out)
    # Frames after the damaged chunk are read too.
    assert s['frames']['processed'] == 19 and s['frames']['with_metric_depth'] == 19
    assert s['metrics']['abs_rel'] <= 0.01
    assert max(int(r['index']) for r in _rows(out)) == 18


def test_missing_bag_and_bad_parameters_fail_clearly(tmp_path, frames_dir, capsys):
    assert main([str(tmp_path / 'nope'), '--params-file',
                 _params(tmp_path / 'p.yaml', frames_dir), '--out', str(tmp_path / 'o'),
                 '-q']) == 1
    assert f"{tmp_path / 'nope'}: no such bag" in capsys.readouterr().err
    bad = _params(tmp_path / 'bad.yaml', frames_dir, fit__method='median')
    assert main([SAMPLE, '--params-file', bad, '--out', str(tmp_path / 'o'), '-q']) == 2
    assert "parameter 'fit.method'" in capsys.readouterr().err
    # The node's own rules, for an override too
    assert main([SAMPLE, '--out', str(tmp_path / 'o'), '-q', '-p',
                 'estimator.input_size:=7']) == 2
    assert "'estimator.input_size'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- output bag


def test_output_bag_round_trip_holds_the_bytes_the_node_publishes(tmp_path, frames_dir,
                                                                  sample_frames):
    from builtin_interfaces.msg import Time
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from depth_node.core.colormap import colorize_depth
    from depth_node.pipeline.frame import DepthPipeline, FrameInput
    from depth_node.ros.messages import array_to_image, xyz_to_pointcloud2

    out, bag = tmp_path / 'report', tmp_path / 'published'
    params = _params(tmp_path / 'p.yaml', frames_dir, cloud__color=True)
    assert main([SAMPLE, '--params-file', params, '--out', str(out), '--output-bag', str(bag),
                 '--max-frames', '3', '-q', '--no-plots']) == 0
    ts = typestore()
    msgs = {}
    with Reader(bag) as reader:
        assert set(reader.topics) == {*OUTPUT_TOPICS, '/diagnostics', '/tf_static'}
        for conn, t, raw in reader.messages():
            msgs.setdefault(conn.topic, []).append((t, conn.msgtype, bytes(raw)))
    assert all(len(msgs[t]) == 3 for t in OUTPUT_TOPICS)
    assert len(msgs['/tf_static']) == 1 and len(msgs['/diagnostics']) >= 1

    # Frame 0 again, straight through a fresh pipeline, published as the node publishes it.
    config = build_config(load_params_file(params))
    f = sample_frames[0]
    res = DepthPipeline(build_estimator(config.estimator), config.pipeline).process(
        FrameInput(f.rgb, f.camera, f.stamp, f.lidar, f.lidar_to_camera))
    sec, nsec = divmod(f.stamp_ns, 10**9)
    header = Header(stamp=Time(sec=sec, nanosec=nsec), frame_id=f.frame_id)
    s = config.pipeline.cloud_stride
    expected = {
        '/depth': array_to_image(res.depth, '32FC1', header),
        '/depth/points': xyz_to_pointcloud2(res.points, header, f.rgb[::s, ::s]),
        '/depth/relative': array_to_image(res.relative, '32FC1', header),
        '/depth/colored': array_to_image(colorize_depth(res.depth, *config.publish.colormap_range),
                                         'rgb8', header)}
    for topic, msg in expected.items():
        log_ns, msgtype, raw = msgs[topic][0]
        assert log_ns == f.stamp_ns  # stored at the input image's bag time
        # rclpy leaves CDR padding bytes uninitialised: compare canonical serialisations.
        canonical = ts.serialize_cdr(ts.deserialize_cdr(serialize_message(msg), msgtype),
                                     msgtype)
        assert raw == bytes(canonical), topic
    cloud = ts.deserialize_cdr(msgs['/depth/points'][0][2], 'sensor_msgs/msg/PointCloud2')
    assert [p.name for p in cloud.fields] == ['x', 'y', 'z', 'rgb'] and not cloud.is_dense
    info = ts.deserialize_cdr(msgs['/depth/camera_info'][0][2], 'sensor_msgs/msg/CameraInfo')
    assert (info.width, info.height) == (640, 480) and list(info.d) == [0.0] * 5
    assert np.allclose(info.p, [f.camera.fx, 0, f.camera.cx, 0, 0, f.camera.fy, f.camera.cy,
                                0, 0, 0, 1, 0])
    diag = ts.deserialize_cdr(msgs['/diagnostics'][0][2], 'diagnostic_msgs/msg/DiagnosticArray')
    values = {kv.key: kv.value for kv in diag.status[0].values}
    assert diag.status[0].name == 'depth_node: metric depth'
    assert values['fit_state'] == 'fresh' and float(values['scale']) > 0
    assert {'shift', 'filter_event', 'latency_estimate_ms'} <= set(values)
    summary = _summary(out)
    assert summary['output_bag']['messages']['/depth'] == 3


def test_pack_cloud_is_the_nodes_cloud_layout():
    from std_msgs.msg import Header

    from depth_node.ros.messages import xyz_to_pointcloud2
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(5, 7, 3)).astype(np.float32)
    pts[2, 3] = np.nan
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for colours in (None, rgb):
        ours = pack_cloud(pts, colours)
        node = xyz_to_pointcloud2(pts, Header(), colours)
        assert bytes(ours.data) == bytes(node.data)
        assert [(n, o) for n, o in ours.fields] == [(f.name, f.offset) for f in node.fields]
        assert (ours.height, ours.width, ours.point_step, ours.row_step, ours.is_dense,
                ours.is_bigendian) == (node.height, node.width, node.point_step, node.row_step,
                                       node.is_dense, node.is_bigendian)


# ----------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_writes_the_frames_done(tmp_path, frames_dir, capsys):
    out, bag = tmp_path / 'report', tmp_path / 'published'
    code = main([SAMPLE, '--estimator', 'evaluate_stubs:InterruptingOracle',
                 '--estimator-options', json.dumps({'frames_dir': frames_dir, 'after': 3}),
                 '--out', str(out), '--output-bag', str(bag), '-q'])
    assert code == 130
    assert 'interrupted after 3 frames' in capsys.readouterr().err
    s = _summary(out)
    assert s['interrupted'] and s['frames']['processed'] == 3 and len(_rows(out)) == 3
    assert s['metrics']['abs_rel'] <= 0.01
    assert (out / 'index.html').is_file() and _is_png(out / 'sample_frame.png')
    assert 'Interrupted' in (out / 'index.html').read_text()
    with Reader(bag) as reader:  # closed properly: metadata written, readable
        assert reader.topics['/depth'].msgcount == 3


# ----------------------------------------------------------------------------- other bags


def test_sqlite3_bag_without_ground_truth_uses_held_out_lidar(tmp_path):
    rig = SimRig.default(160, 120, lidar=LidarModel(azimuth_step_deg=0.5))
    frames = list(rig.frames(4, speed=6.0, rate=5.0, start=0.5))
    bag = tmp_path / 'bag'
    write_drive(bag, frames, rig.camera, rig.lidar_to_camera, storage='sqlite3',
                ground_truth=False)
    folder = save_frames(tmp_path / 'frames', frames)
    out = tmp_path / 'out'
    assert main([str(bag), '--estimator', ORACLE, '--estimator-options',
                 json.dumps({'frames_dir': str(folder)}), '-p', 'fit.min_points:=10',
                 '--out', str(out), '-q', '--no-plots']) == 0
    s = _summary(out)
    assert s['ground_truth'] == 'lidar' and s['frames']['processed'] == 4
    assert s['frames']['with_metric_depth'] == 4 and s['metrics']['abs_rel'] <= 0.02
    assert all(int(r['eval_pixels']) > 0 for r in _rows(out))


def test_camera_and_ground_truth_encodings():
    import cv2

    from depth_node.messages.readers import depth_image_to_metres
    from depth_node.messages.readers import image_to_rgb8 as image_to_rgb
    t = typestore().types
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)

    def image(array, encoding):
        a = np.ascontiguousarray(array)
        return t['sensor_msgs/msg/Image'](
            header=None, height=a.shape[0], width=a.shape[1], encoding=encoding,
            is_bigendian=0, step=a.strides[0], data=a.reshape(-1).view(np.uint8))

    assert np.array_equal(image_to_rgb(image(rgb[..., ::-1], 'bgr8')), rgb)
    assert np.array_equal(image_to_rgb(image(rgb[..., ::-1], '8UC3')), rgb)  # BGR, cv_bridge
    rgba = np.concatenate([rgb, np.full((4, 5, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(image_to_rgb(image(rgba, 'rgba8')), rgb)
    assert np.array_equal(image_to_rgb(image(rgba[..., [2, 1, 0, 3]], 'bgra8')), rgb)
    mono = rng.integers(0, 65536, (4, 5), dtype=np.uint16)
    assert np.array_equal(image_to_rgb(image(mono, 'mono16'))[..., 1], mono >> 8)
    png = cv2.imencode('.png', rgb[..., ::-1])[1]
    compressed = t['sensor_msgs/msg/CompressedImage'](
        header=None, format='rgb8; png', data=png.reshape(-1))
    assert np.array_equal(image_to_rgb(compressed, msgtype='sensor_msgs/msg/CompressedImage'),
                          rgb)
    mm = np.array([[0, 1500], [65535, 250]], np.uint16)
    assert np.allclose(depth_image_to_metres(image(mm, '16UC1')),
                       [[np.nan, 1.5], [65.535, 0.25]], equal_nan=True)
    m = np.array([[np.inf, -1.0], [2.5, 0.0]], np.float32)
    assert np.allclose(depth_image_to_metres(image(m, '32FC1')),
                       [[np.nan, np.nan], [2.5, np.nan]], equal_nan=True)
    with pytest.raises(DepthNodeError, match="'32FC1' cannot be converted to rgb8"):
        image_to_rgb(image(m, '32FC1'))


# ----------------------------------------------------------------------------- params file


def test_params_file_sections_merge_and_flatten(tmp_path):
    path = tmp_path / 'p.yaml'
    path.write_text(yaml.safe_dump({
        '/**': {'ros__parameters': {'use_sim_time': True, 'fit': {'method': 'lsq'},
                                    'qos_overrides': {'/x': {'depth': 3}}}},
        '/car/depth_node': {'ros__parameters': {'fit': {'min_points': 50},
                                                'extrinsic': {'translation': [0.0, -0.3, 0.0]}}},
        'other_node': {'ros__parameters': {'fit': {'method': 'robust'}}}}))
    values = load_params_file(path)
    assert values == {'fit.method': 'lsq', 'fit.min_points': 50,
                      'extrinsic.translation': [0.0, -0.3, 0.0]}
    assert load_params_file(path, 'other_node')['fit.method'] == 'robust'
    nothing = tmp_path / 'n.yaml'
    nothing.write_text(yaml.safe_dump({'other': {'ros__parameters': {}}}))
    with pytest.raises(ConfigError, match="no section for node 'depth_node'"):
        load_params_file(nothing)
    flat = tmp_path / 'f.yaml'
    flat.write_text(yaml.safe_dump({'/**': {'fit': 1}}))
    with pytest.raises(ConfigError, match='ros__parameters'):
        load_params_file(flat)
    # As rcl reads the file (the node's parser): a quoted JSON string stays a string, a list
    # mixing integers and floats is refused (rclpy's parameter_dict_from_yaml_file differs).
    typed = tmp_path / 't.yaml'
    typed.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'estimator': {'options': '{"a": 1}'}, 'extrinsic': {'rotation': [0.0, 0.0, 0.0, 1.0]}}}}))
    assert load_params_file(typed) == {'estimator.options': '{"a": 1}',
                                       'extrinsic.rotation': [0.0, 0.0, 0.0, 1.0]}
    mixed = tmp_path / 'm.yaml'
    mixed.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'extrinsic': {'translation': [0, -0.3, 0]}}}}))
    with pytest.raises(ConfigError, match="'extrinsic.translation': mixes value types"):
        load_params_file(mixed)
    shipped = load_params_file(os.path.join(ROOT, 'config', 'depth.yaml'))
    assert build_config({**shipped, 'estimator.model_path': '/m'}).pipeline.fit_method == \
        'robust'


def test_evaluation_options_are_validated():
    with pytest.raises(ConfigError, match="'--holdout'"):
        EvaluationOptions(holdout=1.0).validate()
    with pytest.raises(ConfigError, match="'--gt'"):
        EvaluationOptions(ground_truth='stereo').validate()


def test_progress_bar_only_when_asked():
    from tqdm import tqdm
    bar = evaluate_module._progress(True, 3)
    assert isinstance(bar, tqdm)
    bar.close()
    quiet = evaluate_module._progress(False, 3)
    quiet.update(1)
    quiet.close()
    assert not isinstance(quiet, tqdm)


# ----------------------------------------------------------------------------- rviz and launch


def _rviz_topics(display):
    topic = display.get('Topic')
    return [topic['Value']] if isinstance(topic, dict) else []


def test_rviz_config_parses_and_shows_the_launch_topics(tmp_path):
    with open(os.path.join(ROOT, 'config', 'depth.rviz')) as fh:
        config = yaml.safe_load(fh)
    manager = config['Visualization Manager']
    assert manager['Global Options']['Fixed Frame'] == 'base_link'
    displays = manager['Displays']
    assert all(d['Class'].startswith('rviz_default_plugins/') for d in displays)
    by_topic = {}
    for d in displays:
        for t in _rviz_topics(d):
            by_topic.setdefault(t, []).append(d)
    # The launch file's defaults without a namespace: image_rect, points; the node's outputs.
    for topic in ('/image_rect', '/points', '/depth/colored', '/depth/points',
                  '/keyframe/depth', '/keyframe/colored'):
        assert topic in by_topic, topic
    transformers = {d['Color Transformer'] for d in by_topic['/depth/points']}
    assert transformers == {'AxisColor', 'RGB8'}
    axis = [d for d in by_topic['/depth/points'] if d['Color Transformer'] == 'AxisColor'][0]
    assert axis['Axis'] == 'Z' and axis['Use Fixed Frame'] is False and axis['Enabled']
    assert by_topic['/image_rect'][0]['Class'] == 'rviz_default_plugins/Image'

    # The launch file compiles, declares `rviz`, and remaps every topic of the config.
    launch = os.path.join(ROOT, 'launch', 'depth.launch.py')
    py_compile.compile(launch, doraise=True, cfile=str(tmp_path / 'launch.pyc'))
    tree = ast.parse(open(launch).read())
    declared = [n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, 'id', '') == 'DeclareLaunchArgument']
    assert 'rviz' in declared
    from depth_node.ros.launch_args import RVIZ_TOPICS as remapped  # the launch file's table
    assert {'/' + name for _, name in remapped} >= set(by_topic)
    assert {arg for arg, _ in remapped if arg} <= set(declared)
    source = open(launch).read()
    assert "executable='rviz2'" in source and "'-d'" in source and 'depth.rviz' in source
    assert 'if plan.rviz:' in source  # rviz:=true, checked by launch_args.launch_plan


# ----------------------------------------------------------------------------- node's rules


def test_frames_without_extrinsic_are_counted_as_the_node_counts_them(tmp_path, frames_dir):
    """--extrinsic bag without a transform: the node's rule (tf2 lookup fails): the frame runs
    without LiDAR and ``frames_without_extrinsic`` counts it in the published diagnostics."""
    from rosbags.rosbag2 import Writer
    no_tf = tmp_path / 'no_tf'  # the sample bag without /tf_static
    ts = typestore()
    with Reader(SAMPLE) as reader, Writer(no_tf, version=Writer.VERSION_LATEST) as writer:
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=ts)
                 for c in reader.connections if c.topic != '/tf_static'}
        for c, t, raw in reader.messages([c for c in reader.connections if c.id in conns]):
            writer.write(conns[c.id], t, raw)
    config = build_config(load_params_file(_params(tmp_path / 'p.yaml', frames_dir)))
    bag = tmp_path / 'out'
    result = BagEvaluation(
        no_tf, build_estimator(config.estimator), NodeSettings.from_node_config(config),
        EvaluationOptions(extrinsic='bag'), output_bag=bag).run()
    assert result.frames == 20 and all(r.extrinsic == '' and r.fit_state == 'none'
                                       for r in result.records)
    assert any("no LiDAR->camera transform: no transform from 'lidar' to 'camera_optical'" in
               i.message for i in result.issues)
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == '/diagnostics']
        last = [ts.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages(conns)][-1]
    values = {kv.key: kv.value for kv in last.status[0].values}
    n = int(values['frames_in'])
    assert n > 0 and values['frames_without_extrinsic'] == str(n)
    assert values['sweeps_in'] == str(n) and values['published_relative_only'] == str(n)
    assert values['frames_without_lidar'] == '0'  # a sweep was there: not counted twice
    assert values['last_error'].startswith('no LiDAR->camera transform')


def test_frames_before_the_first_camera_info_are_dropped_as_the_node_does(tmp_path, frames_dir):
    from rosbags.rosbag2 import Writer
    late = tmp_path / 'late_info'  # the sample bag, camera_info only from the 4th frame on
    ts = typestore()
    with Reader(SAMPLE) as reader, Writer(late, version=Writer.VERSION_LATEST) as writer:
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=ts)
                 for c in reader.connections}
        infos = 0
        for c, t, raw in reader.messages():
            if c.topic == '/camera/camera_info':
                infos += 1
                if infos <= 3:
                    continue
            writer.write(conns[c.id], t, raw)
    config = build_config(load_params_file(_params(tmp_path / 'p.yaml', frames_dir)))
    result = BagEvaluation(late, build_estimator(config.estimator),
                           NodeSettings.from_node_config(config)).run()
    assert result.frames == 17 and result.frames_failed == 3
    assert any('no camera_info received yet' in i.message for i in result.issues)


def test_a_bag_whose_tf_static_is_off_says_so(tmp_path):
    """A bag recorded with a stale calibration (its /tf_static 1.5 deg off in yaw): the
    evaluation names the misalignment once among its issues (printed, and in the report)."""
    from depth_node.sim.world import Conditions, RigSpec
    rig = SimRig.build(RigSpec(width=320, height=240, extrinsic_error_deg=1.5,
                               extrinsic_error_axis=(0.0, 1.0, 0.0)), Conditions(), 4)
    frames = list(rig.frames(3, seed=4))
    bag = tmp_path / 'bag'
    write_drive(bag, frames, rig.camera, rig.nominal)  # the wrong extrinsic, as recorded
    folder = save_frames(tmp_path / 'frames', frames)
    config = build_config(load_params_file(_params(tmp_path / 'p.yaml', str(folder))))
    result = BagEvaluation(bag, build_estimator(config.estimator),
                           NodeSettings.from_node_config(config),
                           EvaluationOptions(extrinsic='bag')).run()
    assert result.frames == 3
    found = [i for i in result.issues if 'misaligned' in i.message]
    assert len(found) == 1, result.issues
    assert 'check the LiDAR -> camera extrinsic' in found[0].message
    assert found[0].topic == '/tf_static'
    # the same frames with the true extrinsic: nothing to say
    good = tmp_path / 'good'
    write_drive(good, frames, rig.camera, rig.lidar_to_camera)
    result = BagEvaluation(good, build_estimator(config.estimator),
                           NodeSettings.from_node_config(config),
                           EvaluationOptions(extrinsic='bag')).run()
    assert not [i for i in result.issues if 'misaligned' in i.message], result.issues


def test_chunks_of_a_misaligned_bag_report_the_misalignment_once():
    from depth_node.offline.chunks import merge_chunks
    from depth_node.offline.records import BagIssue, MISALIGNED_ISSUE
    from depth_node.offline.results import EvaluationResult
    chunks = []
    for k in range(3):
        r = EvaluationResult('bag', 'est', 'depth', EvaluationOptions(), NodeSettings())
        r.issues = [BagIssue('bag', '/tf_static', f'{MISALIGNED_ISSUE} from frame {10 * k}: '
                                                  f'{4 + k} px'),
                    BagIssue('bag', '/image', f'frame {10 * k + 1}: dropped')]
        chunks.append(r)
    merged = merge_chunks(chunks, None)
    found = [i for i in merged.issues if i.message.startswith(MISALIGNED_ISSUE)]
    assert len(found) == 1 and 'from frame 0' in found[0].message
    assert len(merged.issues) == 4  # the other issues all kept
