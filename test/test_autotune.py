"""Threads and precision chosen by measurement (estimators/autotune.py), cached per machine."""

import json

import numpy as np
import pytest

from depth_node.estimators import autotune
from depth_node.estimators.base import EstimatorConfig
from depth_node.estimators.registry import build_estimator
from tiny_models import save_tiny_depth_anything


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    folder = save_tiny_depth_anything(tmp_path / 'tiny')
    return EstimatorConfig(type='depth_anything', model_path=str(folder), input_size=56)


def test_open_parameters_are_measured_the_fastest_kept_and_cached(tiny):
    est = build_estimator(tiny)  # threads 0, precision 'auto': both measured
    choice = est.autotune
    assert not choice.cached
    assert {k.split('/')[0] for k in choice.figures_ms} == {'fp32', 'bf16'}
    accepted = {k: v for k, v in choice.figures_ms.items() if k not in choice.rejected}
    assert f'{choice.precision}/t{choice.threads}' == min(accepted, key=accepted.get)
    import torch
    assert torch.get_num_threads() == choice.threads
    assert est.predict(autotune.probe_image(64, 48)).shape == (48, 64)
    cached = json.loads(autotune.cache_path().read_text())
    assert len(cached) == 1
    again = build_estimator(tiny).autotune
    assert again.cached and (again.threads, again.precision) == (choice.threads, choice.precision)


def test_a_set_value_pins_its_parameter(tiny):
    from dataclasses import replace
    est = build_estimator(replace(tiny, threads=1, precision='fp32'))
    assert getattr(est, 'autotune', None) is None  # nothing left to choose
    est = build_estimator(replace(tiny, threads=1))  # precision open, threads pinned
    assert set(est.autotune.figures_ms) == {'fp32/t1', 'bf16/t1'}
    assert est.autotune.threads == 1


def test_a_precision_that_changes_the_output_is_rejected(tiny):
    from depth_node.estimators.registry import _REGISTRY

    def build(config):
        real = _REGISTRY['depth_anything'](config)
        if config.precision != 'bf16':
            return real

        class Off:  # the real bf16 model, its output scaled as a broken kernel would
            output = real.output

            def predict(self, rgb):
                return np.asarray(real.predict(rgb)) * 1.5
        return Off()

    est, choice = autotune.choose(tiny, build, use_cache=False)
    assert choice.precision == 'fp32'
    assert all('differs from fp32' in why for k, why in choice.rejected.items()
               if k.startswith('bf16'))
    assert any(k.startswith('bf16') for k in choice.rejected)
