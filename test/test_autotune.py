"""Backend, threads and precision chosen by measurement (estimators/autotune.py), cached."""

import dataclasses
import json
import logging
import time

import numpy as np
import pytest

from depth_node.core.align import OutputKind, OutputSpec
from depth_node.estimators import autotune
from depth_node.estimators.base import EstimatorConfig
from depth_node.estimators.registry import build_estimator
from onnx_models import tiny_folder, tiny_onnx
from tiny_models import save_tiny_depth_anything


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))


@pytest.fixture
def tiny(tmp_path, cache):
    folder = save_tiny_depth_anything(tmp_path / 'tiny')
    return EstimatorConfig(type='depth_anything', model_path=str(folder), input_size=56)


def test_open_parameters_are_measured_the_fastest_kept_and_cached(tiny):
    est = build_estimator(tiny)  # threads 0, precision 'auto': both measured
    choice = est.autotune
    assert not choice.cached and choice.backend == 'torch'
    assert {k.split('/')[1] for k in choice.figures_ms} == {'fp32', 'bf16'}
    # the head to head holds the two fastest and the fastest torch fp32; its fastest won
    by_speed = sorted((k for k in choice.figures_ms if k not in choice.rejected),
                      key=choice.figures_ms.get)
    fp32 = [k for k in by_speed if k.startswith('torch/fp32/')]
    assert set(choice.final_ms) == set(by_speed[:2] + fp32[:1])
    assert choice.name == min(choice.final_ms, key=choice.final_ms.get)
    import torch
    assert torch.get_num_threads() == choice.threads
    assert est.predict(autotune.probe_image(64, 48)).shape == (48, 64)
    cached = json.loads(autotune.cache_path().read_text())
    (entry,) = cached.values()
    assert entry['version'] == autotune.CACHE_VERSION and entry['backend'] == 'torch'
    again = build_estimator(tiny).autotune
    assert again.cached and again.name == choice.name
    assert 'cached measurement' in again.describe() and choice.name.split('/')[1] in \
        again.describe()


def test_a_set_value_pins_its_parameter(tiny):
    est = build_estimator(dataclasses.replace(tiny, threads=1, precision='fp32'))
    assert getattr(est, 'autotune', None) is None  # nothing left to choose
    est = build_estimator(dataclasses.replace(tiny, threads=1))  # precision open
    assert set(est.autotune.figures_ms) == {'torch/fp32/t1', 'torch/bf16/t1'}
    assert est.autotune.threads == 1


def test_an_entry_of_the_old_format_is_measured_again(tiny):
    key = autotune.cache_key(tiny)
    path = autotune.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({key: {'threads': 2, 'precision': 'bf16',
                                      'figures_ms': {'fp32/t2': 603.0}}}))
    choice = build_estimator(dataclasses.replace(tiny, threads=1)).autotune
    assert not choice.cached and choice.threads == 1
    assert json.loads(path.read_text())[key]['version'] == autotune.CACHE_VERSION


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
    assert all('differs from torch/fp32' in why for k, why in choice.rejected.items()
               if '/bf16/' in k)
    assert any('/bf16/' in k for k in choice.rejected)


class _Timed:
    """An estimator whose predict takes a scripted time: ``delays(call) -> seconds``."""

    output = OutputSpec(OutputKind.DISPARITY)

    def __init__(self, delay, calls):
        self.delay, self.calls = delay, calls

    def predict(self, rgb):
        self.calls.append(self)
        time.sleep(self.delay(len(self.calls)))
        return np.ones(rgb.shape[:2], np.float32)


def _scripted(delays):
    """A torch ``build`` whose fp32 / bf16 models sleep ``delays[precision](n)``: n = the
    n-th predict of any model (a machine whose load changes during the measurement)."""
    calls = []
    return lambda config: _Timed(delays[config.precision], calls)


def test_a_burst_of_load_does_not_pick_the_slower_candidate(cache):
    """fp32 takes 20 ms, bf16 45 ms; the machine is 5x slower for calls 3-6 (fp32's first
    timed calls when candidates are timed one after the other): the interleaved, rotated
    rounds still find fp32 the faster."""
    def burst(ms):
        return lambda n: ms * (5 if 3 <= n <= 6 else 1) * 1e-3
    config = EstimatorConfig(threads=1)
    cands = autotune.candidates(config, torch_open=True, onnx=False)
    assert [c.name for c in cands] == ['torch/fp32/t1', 'torch/bf16/t1']
    _, choice = autotune.measure(config, cands, _scripted({'fp32': burst(20), 'bf16': burst(45)}),
                                 image=np.zeros((8, 8, 3), np.uint8))
    assert choice.precision == 'fp32'
    assert choice.figures_ms['torch/fp32/t1'] < choice.figures_ms['torch/bf16/t1']


def test_the_choice_is_never_slower_than_torch_fp32_head_to_head(cache):
    """bf16 looks faster in the first rounds (10 ms) but takes 60 ms from then on, fp32 25 ms
    throughout: the head to head keeps fp32."""
    config = EstimatorConfig(threads=1)
    first = 2 + 2 * autotune.REPEATS  # warm-ups and the first rounds
    delays = {'fp32': lambda n: 0.025, 'bf16': lambda n: 0.01 if n <= first else 0.06}
    cands = autotune.candidates(config, torch_open=True, onnx=False)
    _, choice = autotune.measure(config, cands, _scripted(delays),
                                 image=np.zeros((8, 8, 3), np.uint8))
    assert choice.figures_ms['torch/bf16/t1'] < choice.figures_ms['torch/fp32/t1']
    assert choice.final_ms['torch/bf16/t1'] > choice.final_ms['torch/fp32/t1']
    assert choice.name == 'torch/fp32/t1'


def test_a_candidate_far_slower_is_not_timed_again(cache):
    config = EstimatorConfig(threads=1)
    calls = []
    delays = {'fp32': lambda n: 0.005, 'bf16': lambda n: 0.05}

    def build(c):
        return _Timed(delays[c.precision], calls)
    cands = autotune.candidates(config, torch_open=True, onnx=False)
    _, choice = autotune.measure(config, cands, build, image=np.zeros((8, 8, 3), np.uint8))
    slow = [e for e in calls if e.delay is delays['bf16']]
    assert len(slow) == 2  # warm-up and the first round, then pruned (more than 3x slower)
    assert choice.name == 'torch/fp32/t1' and 'torch/bf16/t1' in choice.figures_ms


def test_auto_with_both_files_measures_torch_and_onnxruntime(
        tmp_path_factory, cache, caplog, monkeypatch):
    from depth_node.estimators.onnxruntime_backend import OnnxRuntimeEstimator

    monkeypatch.setattr(autotune, 'REPEATS', 2)  # what is measured, not how well: quick
    monkeypatch.setattr(autotune, 'FINAL_REPEATS', 2)
    folder = tiny_folder(tmp_path_factory)
    onnx = tiny_onnx(tmp_path_factory, batch=None)
    config = EstimatorConfig(type='depth_anything_auto', model_path=str(folder),
                             input_size=56, options={'onnx': str(onnx)})
    with caplog.at_level(logging.INFO, logger='depth_node.estimators.backends'):
        est = build_estimator(config)
    choice = est.autotune
    assert {k.split('/')[0] for k in choice.figures_ms} == {'torch', 'onnxruntime'}
    assert not any(k.startswith('onnxruntime') for k in choice.rejected)  # same numbers
    assert isinstance(est, OnnxRuntimeEstimator) == (choice.backend == 'onnxruntime')
    if choice.backend == 'onnxruntime':
        assert est.session.get_session_options().intra_op_num_threads == choice.threads
    assert f'estimator backend: {choice.backend} (auto, by measurement' in caplog.text
    again = build_estimator(config).autotune
    assert again.cached and again.name == choice.name
    # the backend named: ONNX Runtime alone, its intra-op threads measured
    ort = build_estimator(dataclasses.replace(config, type='depth_anything_onnxruntime',
                                              model_path=str(onnx), options={}))
    assert {k.rpartition('/')[0] for k in ort.autotune.figures_ms} == {'onnxruntime/fp32'}
    assert ort.session.get_session_options().intra_op_num_threads == ort.autotune.threads
    pinned = build_estimator(dataclasses.replace(config, type='depth_anything_onnxruntime',
                                                 model_path=str(onnx),
                                                 options={'threads': 1}))
    assert getattr(pinned, 'autotune', None) is None


def test_thread_counts_tried_stay_under_the_cap(monkeypatch, tiny):
    monkeypatch.setattr(autotune.os, 'cpu_count', lambda: 8)
    assert autotune.thread_candidates() == [1, 2, 4, 8]
    assert autotune.thread_candidates(7) == [1, 2, 4, 7]  # the node: all cores but one
    assert autotune.thread_candidates(1) == [1]
    capped = dataclasses.replace(tiny, max_threads=3)
    assert [c.threads for c in autotune.candidates(capped, True, False)] == [1, 2, 3, 1, 2, 3]
    assert autotune.cache_key(capped) != autotune.cache_key(tiny)
    assert autotune.leave_a_core(tiny).max_threads == 7  # the node's configuration
    assert autotune.leave_a_core(dataclasses.replace(tiny, threads=8)).max_threads == 0
