"""The scenario table's rows: the single-axis list and the rows of two axes at once."""

import math

import pytest

from depth_node.bench.accuracy_table import main
from depth_node.bench.scenario_table import COMBINED_REFUSAL, goals, REFUSAL_SCENARIOS, select
from depth_node.offline.scenarios import COLUMNS, COMBINED, SCENARIOS, ScenarioScore
from depth_node.sim.world import COMBINED_SCENARIOS, scenario, SCENARIOS as WORLD_SCENARIOS


def _score(name: str, axis: str, **values: float) -> ScenarioScore:
    v = {k: math.nan for k in COLUMNS}
    v.update(values)
    return ScenarioScore(name, axis, 6, v)


def test_combined_rows_are_off_the_calibrated_list_and_change_two_things():
    singles = {(repr(sorted(s.rig.items())), s.conditions) for s in WORLD_SCENARIOS.values()}
    assert len(COMBINED) == len(COMBINED_SCENARIOS) >= 10
    for sc in COMBINED:
        assert sc.name not in WORLD_SCENARIOS and sc.axis == 'combined'
        world = COMBINED_SCENARIOS[sc.name]
        assert (repr(sorted(world.rig.items())), world.conditions) not in singles, sc.name
        rig = scenario(sc.name, 64, 48, seed=3)  # the sim's builder knows them too
        assert rig.render(0.0).rgb.shape == (48, 64, 3)
    # The calibration and the default table read SCENARIOS: none of these is among them.
    assert not {s.name for s in COMBINED} & {s.name for s in SCENARIOS}


def test_select_picks_from_the_list_asked_for():
    assert [s.name for s in select('fog_wide', combined=True)] == ['fog_wide']
    assert all(s.axis == 'combined' for s in select('all', combined=True))
    assert 'fog_wide' not in [s.name for s in select('fog')]
    with pytest.raises(ValueError, match='dusk_vlp16'):  # names what there is
        select('moon', combined=True)


def test_the_refusal_goal_holds_in_combined_rows_of_dim_light_or_fog():
    assert set(COMBINED_REFUSAL) == {'night', 'dusk_vlp16', 'dusk_tele', 'dusk_open_road',
                                     'fog_wide', 'fog_dense_trees', 'dense_fog'}
    dusk = _score('dusk_vlp16', 'combined', flagged_wrong=0.7, within_2s=0.95)
    assert goals(dusk) == {'fuse': None, 'cal': True, 'ref': False}
    clear = _score('tele_camera_high', 'combined', flagged_wrong=0.5, within_2s=0.99,
                   fused=0.04, **{'global': 0.1})
    assert goals(clear) == {'fuse': True, 'cal': False, 'ref': None}
    # A single-axis row keeps its own list.
    assert 'dusk_vlp16' not in REFUSAL_SCENARIOS
    assert goals(_score('dusk', 'light/weather', flagged_wrong=0.85))['ref'] is True


def test_accuracy_cli_names_the_combined_rows_when_none_matches(capsys):
    with pytest.raises(SystemExit) as exc:
        main(['--no-oracle', '--combined', '--scenarios', 'moon'])
    assert exc.value.code == 2
    assert 'fog_wide' in capsys.readouterr().err
