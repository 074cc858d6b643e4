"""The README's main job: the sample bag through the real node, scored against ground truth."""

import json

import pytest

from graph import ENV  # noqa: F401  (private local graph for this process)

from depth_node.cli.demo import main, sample_bag


def test_demo_runs_the_shipped_student_on_the_sample_bag(tmp_path):
    out = tmp_path / 'student'
    assert main(['--frames', '3', '--out', str(out), '--rate', '3']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert 'shipped student' in summary['estimator'] and summary['with_depth'] == 3
    assert summary['node_exit_code'] == 0
    # a real network on a street it never saw, fused with the LiDAR: better than the LiDAR
    # alone and than the best global affine map of the network's output (the dense-GT bound)
    assert summary['mean']['abs_rel'] < summary['lidar_only']['abs_rel'], summary['mean']
    for row in summary['per_frame']:
        assert row['abs_rel'] < row['bound'], row


def test_demo_replays_the_sample_bag_through_the_node(tmp_path):
    out = tmp_path / 'demo'
    assert main(['--frames', '4', '--oracle', '--out', str(out), '--rate', '5']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['data'] == sample_bag() and summary['with_depth'] == 4
    assert summary['node_exit_code'] == 0
    # Model-like errors: the LiDAR fit gets within 5 % of the best global map's AbsRel.
    for row in summary['per_frame']:
        assert 0 < row['abs_rel'] <= 1.05 * row['bound'], row
    assert len(list(out.glob('frame_*.png'))) == 4


def test_demo_exact_oracle_adds_no_error(tmp_path):
    out = tmp_path / 'exact'
    assert main(['--frames', '3', '--exact', '--out', str(out), '--rate', '5']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['mean']['abs_rel'] <= 0.002


def test_demo_names_a_missing_bag_and_a_bad_rate(tmp_path, capsys):
    missing = str(tmp_path / 'no_such_bag')
    assert main(['--bag', missing, '--out', str(tmp_path / 'out')]) == 1
    err = capsys.readouterr().err
    assert 'demo: error:' in err and missing in err and 'Traceback' not in err
    with pytest.raises(SystemExit) as exc:
        main(['--rate', '0'])
    assert exc.value.code == 2 and '--rate' in capsys.readouterr().err
