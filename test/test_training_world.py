"""The diverse training world: deterministic per seed, spans the axes, never the held-out seeds."""

from __future__ import annotations

import numpy as np
import pytest

from depth_node.core.errors import ConfigError
from depth_node.sim.geometry import CURB_X
from depth_node.sim.street import Scene
from depth_node.sim.world import Conditions, RigSpec
from depth_node.training.data import synthetic_samples
from depth_node.training.recipe import DataOptions, parse_seeds, training_data
from depth_node.training.world import (DEFAULT_DIVERSE_SEEDS, diverse_samples, draw_world,
                                       HELD_OUT_SEEDS)

SEEDS = range(1, 25)


def test_a_seed_always_draws_the_same_world_and_frames():
    assert [draw_world(s) for s in SEEDS] == [draw_world(s) for s in SEEDS]
    assert len({draw_world(s) for s in SEEDS}) > 15  # seeds differ (a few are today's)
    a = list(diverse_samples([2, 7], 2, 64, 48))
    b = list(diverse_samples([2, 7], 2, 64, 48))
    assert len(a) == 4
    for x, y in zip(a, b):
        assert np.array_equal(x.rgb, y.rgb) and np.array_equal(x.target, y.target, True)
        assert x.source == y.source
    assert not np.array_equal(a[0].rgb, a[2].rgb)
    # The image size is the caller's; the world is the seed's.
    assert draw_world(7, 64, 48).conditions == draw_world(7).conditions


def test_the_draws_of_24_seeds_span_every_axis():
    draws = [draw_world(s) for s in SEEDS]
    cond = [d.conditions for d in draws]
    spec = [d.spec for d in draws]
    assert {s.scene for s in spec} == {'street', 'open_road', 'dense_trees', 'parking_lot'}
    today = [d for d in draws if d.spec == RigSpec(320, 240) and d.conditions == Conditions()]
    assert 2 <= len(today) <= 12
    sun = [c for c in cond if c.sun_changed]
    assert min(c.elevation_deg for c in sun) < 10 and max(c.elevation_deg for c in sun) > 45
    assert any(abs(c.azimuth_deg) < 30 and c.elevation_deg < 20 for c in sun)  # against it
    assert any(abs(c.azimuth_deg) > 150 for c in sun)  # behind the camera
    assert any(c.azimuth_deg > 0 for c in sun) and any(c.azimuth_deg < 0 for c in sun)
    assert min(c.exposure for c in cond) < 0.5 and max(c.exposure for c in cond) > 1.5
    assert any(c.photon_noise > 0.01 and c.read_noise > 0 for c in cond)
    fog = [c.fog_visibility_m for c in cond if c.foggy]
    assert fog and min(fog) < 150
    assert any(c.mono for c in cond)
    heights = [s.camera_height_m for s in spec]
    assert min(heights) < 1.6 and max(heights) > 2.4
    pitches = [s.camera_pitch_deg for s in spec]
    assert min(pitches) < -1 and max(pitches) > 5
    fov = [d.hfov_deg for d in draws]
    assert min(fov) < 35 and max(fov) > 80
    assert any(abs(f - draws[0].hfov_deg) < 0.01 for f in fov)  # today's lens kept too


def test_todays_world_renders_as_todays_streets():
    seed = next(s for s in SEEDS if draw_world(s).conditions == Conditions()
                and draw_world(s).spec == RigSpec(320, 240))
    mine = next(diverse_samples([seed], 1, 96, 72))
    today = next(synthetic_samples([seed], 1, 96, 72))
    assert np.array_equal(mine.rgb, today.rgb)
    assert np.array_equal(mine.target, today.target, equal_nan=True)


def test_held_out_seeds_are_refused():
    assert not set(parse_seeds(DEFAULT_DIVERSE_SEEDS)) & HELD_OUT_SEEDS
    assert {500, 505, 700, 702, 900, 905, 1000, 1001} <= HELD_OUT_SEEDS
    for seed in (500, 701, 903, 1001):
        with pytest.raises(ConfigError, match=f'synthetic_seeds.*{seed}'):
            next(diverse_samples([3, seed], 1, 32, 24))
    with pytest.raises(ConfigError, match='700'):
        training_data(DataOptions(synthetic_seeds='1-2,700', world='diverse', per_street=1,
                                  synthetic_size=(32, 24), val_seeds=''))
    with pytest.raises(ConfigError, match='world'):
        training_data(DataOptions(world='moon'))


def test_training_data_from_the_diverse_world():
    data = training_data(DataOptions(synthetic_seeds='3-4', world='diverse', per_street=2,
                                     synthetic_size=(48, 36), val_seeds='1000',
                                     val_per_street=1))
    assert len(data.train) == 4 and len(data.val) == 1
    assert 'diverse' in data.description and all('diverse seed' in s.source for s in data.train)
    assert 'diverse' not in data.val[0].source  # validation stays on today's streets


def test_training_data_of_the_mixed_world_is_todays_streets_and_the_diverse_world(
        monkeypatch):
    import depth_node.training.recipe as recipe
    monkeypatch.setattr(recipe, 'DEFAULT_SEEDS', '5')  # today's part, small for the test
    monkeypatch.setattr(recipe, 'DEFAULT_PER_STREET', 3)
    data = training_data(DataOptions(synthetic_seeds='3-4', world='mixed', per_street=2,
                                     synthetic_size=(48, 36), val_seeds=''))
    diverse = [s for s in data.train if 'diverse seed' in s.source]
    assert len(data.train) == 7 and len(diverse) == 4
    assert '3 frames of 1 synthetic streets (seeds 5' in data.description
    assert '4 frames of 2 worlds of the diverse' in data.description
    today = [s for s in data.train if 'diverse seed' not in s.source]
    expected = synthetic_samples([5], 3, 48, 36)
    assert sorted(s.source for s in today) == sorted(s.source for s in expected)


def test_parking_lot_parks_cars_across_beyond_the_curbs():
    lot = Scene.of_kind('parking_lot', seed=1, length=80.0)
    street = Scene.street(1, length=80.0)
    assert Scene.street(1, length=80.0, lot=0.0) == street

    def across(scene, side):
        return [b for b in scene.boxes if b.material == 'paint'
                and b.hi[0] - b.lo[0] > b.hi[2] - b.lo[2]
                and (b.lo[0] > CURB_X[0] if side > 0 else b.hi[0] < CURB_X[1])]

    assert not across(street, 1) and not across(street, -1)
    # Two double rows of 2.6 m stalls along 80 m, 85 % occupied, on each side.
    for side in (1, -1):
        assert 80 < len(across(lot, side)) < 130
    with pytest.raises(ValueError, match='lot'):
        Scene.street(1, lot=1.5)


def test_train_cli_world_option(tmp_path, capsys):
    import json

    pytest.importorskip('torch')
    from depth_node.cli.train import main

    args = ['--world', 'diverse', '--per-street', '1', '--synthetic-size', '48x36',
            '--val-seeds', '', '--preset', 'micro', '--grid', '4', '--input-size', '56',
            '--steps', '1', '--batch-size', '2', '--threads', '1', '-q']
    assert main(['--out', str(tmp_path / 'ok'), '--synthetic-seeds', '2-3'] + args) == 0
    summary = json.loads((tmp_path / 'ok' / 'summary.json').read_text())
    assert summary['train_samples'] == 2 and 'diverse' in summary['data']
    assert main(['--out', str(tmp_path / 'bad'), '--synthetic-seeds', '499-500'] + args) == 2
    err = capsys.readouterr().err
    assert 'synthetic_seeds' in err and '500' in err and 'Traceback' not in err
    with pytest.raises(SystemExit):
        main(['--out', str(tmp_path / 'x'), '--world', 'moon'])
