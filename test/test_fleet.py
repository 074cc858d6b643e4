"""Fleet evaluation on Ray: many bags, 2 local workers, the numbers of one process; a worker
killed mid-bag; a corrupt bag among good ones; resuming; the bag set and lossless results.

One local Ray session serves the whole module (starting one takes seconds).
"""

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from depth_node.core.errors import ConfigError
from depth_node.core.metrics import mean_metrics
from depth_node.cli.evaluate import main
from depth_node.estimators import build_estimator
from depth_node.estimators.base import EstimatorConfig
from depth_node.offline.bag_set import bag_key, resolve_bags
from depth_node.offline.eval_config import EvaluationOptions, NodeSettings
from depth_node.offline.evaluate import BagEvaluation
from depth_node.offline.fleet import RaySession, RaySettings
from depth_node.offline.reader import read_drive
from depth_node.offline.result_files import load_result, save_result, stored_hash
from depth_node.sim.frames import save_frames, SimFrame

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SAMPLE = os.path.join(ROOT, 'data', 'sample_drive')
ORACLE = 'depth_node.testing.oracle:DisparityOracle'
# What differs between two runs of the same bags: wall times and where things ran.
TIMING = ('latency_ms', 'throughput', 'fleet', 'files')
FEW = ('--max-frames', '8')  # frames per bag: enough to run the filter, held fits, bins


@pytest.fixture(scope='module')
def ray_session(tmp_path_factory):
    """One local Ray session (2 CPUs, small object store) for the module; test/ importable by
    the workers (the crashing estimator lives there)."""
    old = os.environ.get('PYTHONPATH')
    os.environ['PYTHONPATH'] = os.pathsep.join(p for p in (HERE, ROOT, old) if p)
    temp = str(tmp_path_factory.mktemp('ray'))
    session = RaySession(RaySettings(workers=2, object_store_mb=100, temp_dir=temp))
    try:
        with session:
            yield session
    finally:
        if old is None:
            os.environ.pop('PYTHONPATH', None)
        else:
            os.environ['PYTHONPATH'] = old


@pytest.fixture(scope='module')
def frames_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp('oracle_frames')
    save_frames(folder, [SimFrame(f.index, f.stamp, f.rgb, f.depth, f.lidar)
                         for f in read_drive(SAMPLE)])
    return str(folder)


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    """Three copies of the sample bag in a folder (a set of bags)."""
    root = tmp_path_factory.mktemp('fleet_bags')
    for name in ('drive_a', 'drive_b', 'drive_c'):
        shutil.copytree(SAMPLE, root / name)
    return root


def _params(path, frames_dir, estimator=ORACLE, **options):
    section = {'estimator': {'type': estimator,
                             'options': json.dumps({'frames_dir': frames_dir, **options})},
               'lidar': {'max_age': 0.05}}
    path.write_text(yaml.safe_dump({'/**': {'ros__parameters': section}}))
    return str(path)


def _numbers(out):
    """summary.json without what depends on timing."""
    s = json.loads((out / 'summary.json').read_text())
    return {k: v for k, v in s.items() if k not in TIMING}


def _records(folder):
    data = json.loads((folder / 'result.json').read_text())
    return [{k: v for k, v in r.items() if k != 'timings_ms'} for r in data['records']]


@pytest.fixture(scope='module')
def one_process(tmp_path_factory, frames_dir, bags):
    """The reference: the same bags one after the other in this process (--workers 0)."""
    import torch
    tmp = tmp_path_factory.mktemp('one_process')
    threads = torch.get_num_threads()
    try:  # the worker sets torch's process-wide threads: give them back
        assert main([str(bags), '--params-file', _params(tmp / 'p.yaml', frames_dir),
                     '--out', str(tmp / 'out'), '--workers', '0', '-q', '--no-plots', *FEW]) == 0
    finally:
        torch.set_num_threads(threads)
    return tmp / 'out'


def test_two_ray_workers_give_the_numbers_of_one_process(tmp_path, ray_session, frames_dir,
                                                         bags, one_process, capsys):
    out = tmp_path / 'out'
    assert main([str(bags), '--params-file', _params(tmp_path / 'p.yaml', frames_dir),
                 '--out', str(out), '--workers', '2', *FEW]) == 0
    printed = capsys.readouterr().out
    assert '3 bags: 3 evaluated (2 Ray workers)' in printed and 'AbsRel' in printed
    assert _numbers(out) == _numbers(one_process)
    s = json.loads((out / 'summary.json').read_text())
    assert s['frames']['processed'] == 24 and s['fleet']['workers'] == 2
    assert [b['status'] for b in s['fleet']['bags']] == ['done'] * 3
    assert len({b['worker'] for b in s['fleet']['bags']}) == 2  # both workers had bags
    for name in ('drive_a', 'drive_b', 'drive_c'):
        key = bag_key(bags / name)
        assert _records(out / 'bags' / key) == _records(one_process / 'bags' / key)
        assert _numbers(out / 'bags' / key) == _numbers(one_process / 'bags' / key)
        for f in ('index.html', 'frames.csv', 'sample_frame.png', 'error_vs_depth.png'):
            assert (out / 'bags' / key / f).is_file(), f
    # The merged report: the usual files, a row per bag, the frames of all bags.
    for f in ('index.html', 'frames.csv', 'bags.csv', 'sample_frame.png', 'latency.png'):
        assert (out / f).is_file(), f
    page = (out / 'index.html').read_text()
    assert page.count('bags/drive_') == 3 and 'Bags (3)' in page
    lines = (out / 'frames.csv').read_text().splitlines()
    assert lines[0].startswith('bag,index,') and len(lines) == 25

    # And the per-bag numbers are those of plain `evaluate BAG` (the single-bag path).
    single = tmp_path / 'single'
    assert main([str(bags / 'drive_b'), '--params-file', _params(tmp_path / 'p.yaml', frames_dir),
                 '--out', str(single), '-q', '--no-plots', *FEW]) == 0
    assert _numbers(single) == _numbers(out / 'bags' / bag_key(bags / 'drive_b'))


def test_overall_metrics_are_those_of_all_frames_in_one_process(frames_dir, bags, one_process):
    estimator = build_estimator(EstimatorConfig(type=ORACLE, options={'frames_dir': frames_dir}))
    settings = NodeSettings(lidar_max_age=0.05)
    records = []
    for name in ('drive_a', 'drive_b', 'drive_c'):
        records += BagEvaluation(bags / name, estimator, settings,
                                 EvaluationOptions(max_frames=8)).run().records
    want = mean_metrics(r.metrics for r in records if r.metrics is not None).as_dict()
    assert json.loads((one_process / 'summary.json').read_text())['metrics'] == want


def test_a_worker_killed_mid_bag_is_retried_and_the_numbers_stay(tmp_path, ray_session,
                                                                 frames_dir, bags, one_process):
    marker = tmp_path / 'crashed'
    params = _params(tmp_path / 'p.yaml', frames_dir, 'fleet_stubs:CrashOnceOracle',
                     marker=str(marker), after=5)
    out = tmp_path / 'out'
    assert main([str(bags), '--params-file', params, '--out', str(out), '--workers', '2',
                 '-q', '--no-plots', *FEW]) == 0
    assert marker.is_file()  # a worker did die (in its 6th frame)
    got = _numbers(out)
    want = _numbers(one_process)
    assert got['metrics'] == want['metrics'] and got['frames'] == want['frames']
    assert got['metrics_by_depth'] == want['metrics_by_depth']
    for name in ('drive_a', 'drive_b', 'drive_c'):
        key = bag_key(bags / name)
        assert _records(out / 'bags' / key) == _records(one_process / 'bags' / key)


def test_a_bag_that_loses_its_worker_every_time_fails_and_the_others_finish(
        tmp_path, ray_session, frames_dir, bags, one_process, capsys):
    marker = tmp_path / 'crashed'
    params = _params(tmp_path / 'p.yaml', frames_dir, 'fleet_stubs:CrashOnceOracle',
                     marker=str(marker), after=5)
    out = tmp_path / 'out'
    assert main([str(bags), '--params-file', params, '--out', str(out), '--workers', '2',
                 '--retries', '0', '-q', '--no-plots', *FEW]) == 4
    lost = int(marker.read_text())  # the pid of the worker that died
    s = json.loads((out / 'summary.json').read_text())
    failed = [b for b in s['fleet']['bags'] if b['status'] == 'failed']
    assert len(failed) == 1 and 'worker lost 1 time(s)' in failed[0]['error']
    assert f"FAILED {failed[0]['bag']}" in capsys.readouterr().err
    done = [b for b in s['fleet']['bags'] if b['status'] == 'done']
    assert len(done) == 2 and all(not b['worker'].endswith(f':{lost}') for b in done)
    for b in done:  # a fresh worker took over: the others are as in one process
        assert _records(out / 'bags' / b['key']) == _records(one_process / 'bags' / b['key'])


def test_a_corrupt_bag_is_named_and_the_others_finish(tmp_path, ray_session, frames_dir, bags,
                                                      capsys):
    broken = tmp_path / 'set' / 'broken_drive'
    broken.mkdir(parents=True)
    (broken / 'metadata.yaml').write_text('not: [a, rosbag2')
    (broken / 'broken_drive.mcap').write_bytes(b'\x89MCAP0\r\n' + os.urandom(4096))
    good = tmp_path / 'set' / 'good_drive'
    shutil.copytree(SAMPLE, good)
    out = tmp_path / 'out'
    code = main([str(tmp_path / 'set'), '--params-file', _params(tmp_path / 'p.yaml', frames_dir),
                 '--out', str(out), '--workers', '2', '-q', '--no-plots', *FEW])
    assert code == 4
    err = capsys.readouterr().err
    assert f'FAILED {broken}' in err
    s = json.loads((out / 'summary.json').read_text())
    assert [f['bag'] for f in s['fleet']['failed']] == [str(broken)]
    status = {b['key'].split('-')[0]: b['status'] for b in s['fleet']['bags']}
    assert status == {'broken_drive': 'failed', 'good_drive': 'done'}
    assert s['frames']['processed'] == 8 and s['metrics']['abs_rel'] <= 0.01
    assert 'broken_drive' in (out / 'index.html').read_text()


def test_a_damaged_bag_is_evaluated_as_far_as_it_reads_exit_3(tmp_path, frames_dir, capsys):
    import torch
    root = tmp_path / 'set'
    shutil.copytree(SAMPLE, root / 'good')
    shutil.copytree(SAMPLE, root / 'truncated')
    mcap = root / 'truncated' / 'sample_drive.mcap'
    mcap.write_bytes(mcap.read_bytes()[:mcap.stat().st_size // 2])
    threads = torch.get_num_threads()
    try:
        code = main([str(root), '--params-file', _params(tmp_path / 'p.yaml', frames_dir),
                     '--out', str(tmp_path / 'out'), '--workers', '0', '-q', '--no-plots'])
    finally:
        torch.set_num_threads(threads)
    assert code == 3
    err = capsys.readouterr().err
    assert f"{root / 'truncated'}: /camera/image_rect: only 10 of its 20 messages" in err
    s = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert s['fleet']['damaged'] == [str(root / 'truncated')] and not s['fleet']['failed']
    assert s['frames']['processed'] == 30 and s['damaged']


def test_a_second_run_skips_the_bags_done_and_a_new_configuration_runs_again(
        tmp_path, frames_dir, bags, one_process, capsys):
    import torch
    out = tmp_path / 'out'
    shutil.copytree(one_process, out)
    params = _params(tmp_path / 'p.yaml', frames_dir)
    threads = torch.get_num_threads()
    try:
        # Nothing to do: no Ray, no model; the merged numbers come back exactly.
        assert main([str(bags), '--params-file', params, '--out', str(out), '--workers', '2',
                     '--no-plots', *FEW]) == 0
        assert '3 already done' in capsys.readouterr().out
        assert _numbers(out) == _numbers(one_process)
        s = json.loads((out / 'summary.json').read_text())
        assert [b['status'] for b in s['fleet']['bags']] == ['resumed'] * 3
        # Another configuration is another result: evaluated again (here in this process).
        assert main([str(bags / 'drive_a'), str(bags / 'drive_b'), '--params-file', params,
                     '--out', str(out), '--workers', '0', '-q', '--no-plots', *FEW,
                     '-p', 'fit.method:=lsq']) == 0
        s = json.loads((out / 'summary.json').read_text())
        assert [b['status'] for b in s['fleet']['bags']] == ['done'] * 2
    finally:
        torch.set_num_threads(threads)


def test_the_bag_set_from_folders_globs_and_list_files(tmp_path, bags):
    a, b, c = (bags / n for n in ('drive_a', 'drive_b', 'drive_c'))
    assert resolve_bags([str(bags)]) == [a, b, c]
    assert resolve_bags([str(bags / 'drive_[bc]'), str(a), str(b)]) == [b, c, a]
    listing = tmp_path / 'todo.txt'
    listing.write_text(f'# two of them\n{c}\n{b}  # again below\n{b}\n')
    assert resolve_bags([f'@{listing}']) == [c, b]
    assert resolve_bags([str(listing)]) == [c, b]
    assert resolve_bags([str(a / 'sample_drive.mcap')]) == [a / 'sample_drive.mcap']
    assert resolve_bags([str(tmp_path / 'missing')]) == [tmp_path / 'missing']  # reported later
    (tmp_path / 'empty').mkdir()
    for bad in ([str(tmp_path / 'nothing_*')], [str(tmp_path / 'empty')], ['@/no/such/list']):
        with pytest.raises(ConfigError):
            resolve_bags(bad)
    assert bag_key(a) != bag_key(tmp_path / 'drive_a') and bag_key(a).startswith('drive_a-')


def test_a_stored_result_comes_back_exactly(tmp_path, frames_dir):
    estimator = build_estimator(EstimatorConfig(type=ORACLE, options={'frames_dir': frames_dir}))
    # Held-out LiDAR ground truth (a sparse sample panel), and a frame without a fit (NaN).
    settings = NodeSettings(lidar_max_age=0.05)
    options = EvaluationOptions(ground_truth='lidar', max_frames=6)
    result = BagEvaluation(SAMPLE, estimator, settings, options).run()
    result.records[2] = dataclasses.replace(result.records[2], frame_scale=float('nan'),
                                            fit_ok=False, metrics=None, bins={})
    save_result(result, tmp_path, 'abc')
    assert stored_hash(tmp_path) == 'abc'
    back = load_result(tmp_path, options, settings)
    assert json.dumps(back.summary(), default=str) == json.dumps(result.summary(), default=str)
    assert repr(back.records) == repr(result.records)
    np.testing.assert_array_equal(back.curve_abs, result.curve_abs)
    assert back.sample.index == result.sample.index
    np.testing.assert_array_equal(back.sample.gt_sparse.z, result.sample.gt_sparse.z)
    np.testing.assert_array_equal(back.sample.depth, result.sample.depth)


def test_fleet_options_are_checked_before_anything_runs(tmp_path, bags, capsys):
    for extra, name in ((['--workers', '-1'], '--workers'),
                        (['--retries', '-1'], '--retries'),
                        (['--output-bag', str(tmp_path / 'o')], '--output-bag'),
                        (['--object-store-mb', '10'], '--object-store-mb')):
        assert main([str(bags), '--out', str(tmp_path / 'x'), '-q', *extra]) == 2
        assert f"'{name}'" in capsys.readouterr().err
    assert main([str(tmp_path / 'no_*'), '--out', str(tmp_path / 'x'), '-q']) == 2
    assert 'glob matches no file' in capsys.readouterr().err


def test_fleet_benchmark_prints_bags_per_minute_per_worker_count(ray_session, frames_dir,
                                                                 capsys):
    from depth_node.bench.cli import main as bench_main
    # The oracle, so that the workers start in a blink (the default is the shipped student).
    assert bench_main(['fleet', '--bags', '3', '--frames', '2', '--workers', '1,2', '-q',
                       '--estimator', ORACLE, '--estimator-options',
                       json.dumps({'frames_dir': frames_dir})]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f'fleet evaluation: 3 bags x 2 frames, model {ORACLE}')
    rows = [line.split() for line in lines[2:]]
    assert [r[0] for r in rows] == ['1', '2'] and rows[0][3] == rows[0][5] == '1.00x'
    assert all(float(r[2]) > 0 and float(r[4]) >= float(r[2]) for r in rows)
    assert all(float(r[6]) > 0 and r[8] == 'identical' for r in rows)


# ----------------------------------------------------------------------------- time chunks

# Frames 5 and 10 open the 1 s chunks of the sample bag (5 Hz); their fits (and 11's) are
# refused, so the pipeline holds the fit of the frame before: state across a chunk edge.
FLAT = {'flat': [5, 10, 11]}
CHUNKED = ['-p', 'filter.enable:=false', '--gt', 'lidar', '-q', '--no-plots']


def test_time_chunks_are_planned_at_log_times_with_global_frame_numbers():
    from depth_node.offline.chunks import plan_chunks
    s = 10**9
    times = [k * s // 5 for k in range(20)]  # 5 Hz for 4 s
    windows = plan_chunks(times, 1.0, warmup_s=0.5)
    assert [(w.start_ns, w.stop_ns) for w in windows] == [
        (0, s), (s, 2 * s), (2 * s, 3 * s), (3 * s, None)]
    assert [w.first_index for w in windows] == [0, 3, 8, 13]  # warm-up frames first
    assert [w.warmup_ns for w in windows] == [0, 4 * s // 10, 4 * s // 10, 4 * s // 10]
    assert plan_chunks([], 1.0) == [] and len(plan_chunks(times, 100.0)) == 1


def test_chunks_of_a_bag_on_two_workers_equal_the_whole_bag(tmp_path, ray_session, frames_dir):
    params = _params(tmp_path / 'p.yaml', frames_dir, 'fleet_stubs:FlatAtOracle', **FLAT)
    whole, chunked, cold = tmp_path / 'whole', tmp_path / 'chunked', tmp_path / 'cold'
    assert main([SAMPLE, '--params-file', params, '--out', str(whole), '--workers', '0',
                 *CHUNKED]) == 0
    assert main([SAMPLE, '--params-file', params, '--out', str(chunked), '--chunk', '1.0',
                 '--workers', '2', *CHUNKED]) == 0
    key = bag_key(Path(SAMPLE))
    rows = _records(chunked / 'bags' / key)
    s = json.loads((chunked / 'summary.json').read_text())
    assert s['fleet']['chunks'] == {'chunk_s': 1.0, 'warmup_s': 2.0, 'exact': True}
    assert len(s['fleet']['bags'][0]['worker'].split(',')) == 2  # chunks on both workers
    # Bitwise the records of the whole bag (same held-out split: frames numbered as a whole).
    assert len(rows) == 20 and rows == _records(whole / 'bags' / key)
    assert [r['fit_state'] for r in rows if r['index'] in FLAT['flat']] == ['held'] * 3
    assert _numbers(chunked) == _numbers(whole)  # metrics, uncertainty, fit states, ...
    # Without the warm-up, frame 10 would not know the fit of frame 9.
    assert main([SAMPLE, '--params-file', params, '--out', str(cold), '--chunk', '1.0',
                 '--chunk-warmup', '0', '--workers', '0', *CHUNKED]) == 0
    cold_rows = _records(cold / 'bags' / key)
    assert [r['fit_state'] for r in cold_rows if r['index'] in FLAT['flat']] == \
        ['none', 'none', 'none']
    # Nor would a frame in the self-check's slot (1 s of stamps) of a frame without a fit know
    # that slot's check: it runs on the slot's first frame that has a fit.
    slot = {r['index']: int(r['stamp'] // 1.0) for r in rows}
    unheld = {slot[i] for i in FLAT['flat']}
    assert [r for r in cold_rows if slot[r['index']] not in unheld] == \
        [r for r in rows if slot[r['index']] not in unheld]


def test_ctrl_c_keeps_the_bags_done_and_the_next_run_does_the_rest(tmp_path, frames_dir, bags,
                                                                   one_process, capsys):
    import torch
    out = tmp_path / 'out'
    threads = torch.get_num_threads()
    try:  # Ctrl-C in the 11th frame: in the second bag (8 frames each)
        params = _params(tmp_path / 'p.yaml', frames_dir,
                         'evaluate_stubs:InterruptingOracle', after=10)
        assert main([str(bags), '--params-file', params, '--out', str(out), '--workers', '0',
                     '-q', '--no-plots', *FEW]) == 130
        assert 'interrupted after 1 bags' in capsys.readouterr().err
        s = json.loads((out / 'summary.json').read_text())
        assert [b['key'].split('-')[0] for b in s['fleet']['bags']] == ['drive_a']
        assert s['frames']['processed'] == 8 and s['fleet']['interrupted']
        assert not (out / 'bags' / bag_key(bags / 'drive_b') / 'result.json').exists()
        # Carry on with the real thing: the bag done stays, the other two are evaluated.
        assert main([str(bags), '--params-file', _params(tmp_path / 'p.yaml', frames_dir),
                     '--out', str(out), '--workers', '0', '-q', '--no-plots', *FEW]) == 0
    finally:
        torch.set_num_threads(threads)
    s = json.loads((out / 'summary.json').read_text())
    assert [b['status'] for b in s['fleet']['bags']] == ['done', 'done', 'done']
