"""``benchmark overload`` (bench/overload.py): the real node with images faster than its model."""

import math

import numpy as np

from depth_node.bench import overload
from tiny_models import save_tiny_depth_anything


def _frame(stamp, wait, model, other, transport=0.01):
    received = stamp + transport
    start = received + wait
    return {'k': 'frame', 'stamp': stamp, 'received': received, 'start': start,
            'end': start + model + other + 0.001, 'model_ms': model * 1e3, 'stages': {}}


def test_window_rows_split_the_latency_into_its_parts():
    sent = [100.0 + 0.1 * k for k in range(20)]
    frames, depth, received = {}, {}, {}
    for k, s in enumerate(sent[::4]):  # every 4th frame is run: 0.2 s model, 0.05 s other
        s = round(s, 6)
        frames[s] = _frame(s, wait=0.02 * (k % 3), model=0.2, other=0.05)
        depth[s] = frames[s]['start'] + 0.25
        received[s] = depth[s] + 0.005
    rows = overload.window_rows(sent, frames, depth, received, 100.0, 1.0, 102.0)
    assert [r['window'] for r in rows] == ['0-1s', '1-2s', 'all']
    total = rows[-1]
    assert (total['sent'], total['published'], total['received']) == (20, 5, 5)
    assert math.isclose(total['model_p50_ms'], 200.0)
    parts = total['parts_p50_ms']
    assert math.isclose(parts['transport'], 10.0, abs_tol=1e-3)
    assert math.isclose(parts['wait'], 20.0, abs_tol=1e-3)
    assert math.isclose(parts['other'], 50.0, abs_tol=1e-3)
    # stamp -> publish = transport + wait + model + other; ratio to the model time
    assert math.isclose(total['publish_p50_ms'], 280.0, abs_tol=1e-3)
    assert math.isclose(total['publish_p50_x'], 1.4, abs_tol=1e-5)
    assert math.isclose(total['receive_p99_ms'] - total['publish_p99_ms'], 5.0, abs_tol=1e-3)
    assert np.isfinite(parts['between'])


def test_a_short_overload_run_of_the_real_node(tmp_path, capsys):
    model = save_tiny_depth_anything(tmp_path / 'tiny')
    report = overload.run(seconds=3.0, window=3.0, model=str(model), width=160, height=120,
                          warmup=4, overrides={'estimator.input_size': 56,
                                               'estimator.threads': 1}, progress=print)
    total = report['rows'][-1]
    assert total['window'] == 'all' and total['sent'] == report['sent'] > 0
    assert 0 < total['published'] < total['sent']  # images at 3x the model rate: most dropped
    assert total['published'] <= total['received'] + 2
    assert total['publish_p50_ms'] > total['model_p50_ms'] > 0
    assert total['receive_p50_ms'] >= total['publish_p50_ms']
    assert 'estimate' in total['stages_p50_ms']
    text = overload.format_rows(report['rows'])
    assert text.splitlines()[-1].lstrip().startswith('all')
