"""The ground-truth targets of the metric path, on the synthetic drive (no timing asserts)."""

import numpy as np
import pytest

from depth_node.core.align import OutputKind
from depth_node.core.metrics import dense_oracle_fit
from depth_node.sim.oracles import Corruption, distortion_field, oracle_prediction
from depth_node.bench.accuracy_table import format_table, main, measure, passed


@pytest.fixture(scope='module')
def rows():
    return measure(frames=3)


def test_exact_input_adds_no_error(rows):
    assert rows['exact input: AbsRel']['value'] <= 0.002


def test_robust_global_fit_is_as_good_as_the_dense_oracle(rows):
    assert rows['robust / oracle']['value'] <= 1.05
    assert rows['depth space (Marigold-like): robust / oracle']['value'] <= 1.05
    # The alignment's own error (above what any global map must make) is far below that of
    # plain least squares with the see-through returns.
    assert rows['alignment error over oracle: least squares / robust']['value'] >= 2.0


def test_local_alignment_and_temporal_filter(rows):
    assert rows['local: AbsRel reduction vs global']['value'] >= 0.25
    assert rows['temporal: log-scale jitter, unfiltered / filtered']['value'] >= 3.0
    assert rows['temporal: frames to follow a x1.5 step']['value'] <= 2


def test_fusion_removes_low_frequency_error_and_beats_the_global_bound(rows):
    assert rows['fusion: AbsRel reduction vs global (low-frequency)']['value'] >= 0.25
    # Per-pixel noise is left, yet the fusion is below the best any global map can do.
    assert rows['fusion / dense-GT global bound (distorted+noisy)']['value'] <= 0.9


def test_table_prints_every_row_with_its_verdict(rows, capsys):
    table = format_table(rows)
    for name in rows:
        assert name in table
    assert passed({'value': 1.0, 'target': 2.0, 'le': 1}) is True
    assert passed({'value': 1.0, 'target': 2.0, 'le': 0}) is False
    assert passed({'value': 1.0}) is None
    assert main(['--frames', '1', '--width', '160', '--height', '120']) == 0
    out = capsys.readouterr().out
    assert 'robust / oracle' in out and 'alignment cost ms' in out


def test_oracles_and_dense_fit():
    depth = np.full((40, 60), 10.0, np.float32)
    depth[:10] = np.inf
    d = oracle_prediction(depth, OutputKind.DISPARITY, 0.5, 0.1)
    assert d[0, 0] == pytest.approx(0.1) and d[20, 20] == pytest.approx(0.5 / 10 + 0.1)
    m = oracle_prediction(depth, OutputKind.DEPTH, 2.0, 1.0)
    assert m[0, 0] == pytest.approx(21.0)  # sky saturates at the farthest finite depth
    f = distortion_field(40, 60, 0.1)
    assert f.min() >= 0.9 - 1e-6 and f.max() <= 1.1 + 1e-6 and f.std() > 0.01
    noisy = oracle_prediction(depth, OutputKind.DISPARITY, shift=0.0,
                              corruption=Corruption(noise=0.05))
    assert 0.03 < np.std(noisy[20:] / np.mean(noisy[20:])) < 0.07
    ramp = np.linspace(2.0, 60.0, 60, dtype=np.float32)[None, :].repeat(40, 0)
    fitted = dense_oracle_fit(oracle_prediction(ramp, OutputKind.DISPARITY, 0.3, 0.02), ramp,
                              OutputKind.DISPARITY, 80.0)
    np.testing.assert_allclose(fitted, ramp, rtol=1e-4)
    with pytest.raises(ValueError):
        Corruption(distortion=1.5)
