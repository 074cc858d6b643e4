"""The shipped student: small, self-describing, the default model, and better than baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip('torch')

from depth_node.estimators.base import (EstimatorConfig, model_input_size,  # noqa: E402
                                        SHIPPED_STUDENT)
from depth_node.estimators.registry import build_estimator, resolve_defaults  # noqa: E402


def test_shipped_student_is_small_and_says_what_it_is():
    files = {p.name: p.stat().st_size for p in SHIPPED_STUDENT.iterdir()}
    assert {'config.json', 'model.safetensors', 'preprocessor_config.json',
            'README.md'} <= set(files)
    assert sum(files.values()) <= 15e6, files
    config = json.loads((SHIPPED_STUDENT / 'config.json').read_text())
    assert config['model_type'] == 'depth_anything'
    assert config['depth_estimation_type'] == 'relative'
    card = (SHIPPED_STUDENT / 'README.md').read_text()
    assert 'only ever seen synthetic' in card and 'estimator.model_path' in card


def test_default_estimator_is_the_shipped_student_at_its_own_input_size():
    resolved = resolve_defaults(EstimatorConfig(model_path='', input_size=0))
    assert resolved.model_path == str(SHIPPED_STUDENT)
    assert resolved.input_size == model_input_size(SHIPPED_STUDENT) < 518
    est = build_estimator(EstimatorConfig(model_path='', input_size=0))
    rgb = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    pred = est.predict(rgb)
    assert pred.shape == (480, 640) and np.isfinite(pred).all() and pred.std() > 0
    # an explicit input size still wins
    assert build_estimator(EstimatorConfig(input_size=266)).input_size == 266


def test_model_input_size_reads_hub_preprocessor_configs(tmp_path):
    from depth_node.core.errors import ConfigError

    assert model_input_size(tmp_path) == 518  # no preprocessor_config.json
    for size, expected in (({'height': 518, 'width': 518}, 518), ({'shortest_edge': 384}, 384),
                           (266, 266)):
        (tmp_path / 'preprocessor_config.json').write_text(json.dumps({'size': size}))
        assert model_input_size(tmp_path) == expected
    for bad in ('{"size": "big"}', '{"size": 7}', 'not json'):
        (tmp_path / 'preprocessor_config.json').write_text(bad)
        with pytest.raises(ConfigError, match='estimator.model_path'):
            model_input_size(tmp_path)


def test_shipped_student_beats_random_weights_and_lidar_only_on_held_out_frames():
    """The acceptance figures of the shipped weights, on the first frames of 6 unseen streets."""
    import torch

    from depth_node.training.report import student_report

    torch.set_num_threads(1)
    report = student_report(SHIPPED_STUDENT, frames=1, seeds=range(500, 506))
    assert len(report.methods['student'].per_frame) == 6
    student, rand, lidar = (report.methods[k] for k in ('student', 'random', 'lidar_only'))
    assert student.coverage > 0.95 and not student.refused
    assert lidar.coverage > 0.99
    assert student.metrics.abs_rel < lidar.metrics.abs_rel, report.table()
    assert student.metrics.delta1 > lidar.metrics.delta1, report.table()
    # A random network of the same size: its LiDAR fits are refused or worse, and even the
    # best global affine map of its output (fitted on ground truth) is far behind.
    assert rand.coverage < 0.5 or rand.metrics.abs_rel > 2 * student.metrics.abs_rel
    assert rand.bound.abs_rel > 2 * student.metrics.abs_rel, report.table()


def test_estimator_threads_sets_torch_cpu_threads():
    import torch

    from depth_node.core.errors import ConfigError

    before = torch.get_num_threads()
    try:
        build_estimator(EstimatorConfig(threads=1))
        assert torch.get_num_threads() == 1
        with pytest.raises(ConfigError, match='estimator.threads'):
            build_estimator(EstimatorConfig(threads=-1))
    finally:
        torch.set_num_threads(before)
