"""The ``benchmark`` entry point: its names, and the pipeline benchmark it runs by default.

A small pipeline run prints every stage with finite numbers and writes the JSON. No timing
assertions: shared machines are noisy. The run publishes on a real rclpy graph (private domain,
local only), so it needs the rclpy wheels.
"""

import json
import math
import re
import subprocess
import sys

import pytest

pytest.importorskip('rclpy')

from depth_node.bench import cli  # noqa: E402
from depth_node.bench import pipeline as benchmark  # noqa: E402

_NUMBER = r'(-?\d+\.\d+)'


def _row(text, label):
    """The mean, p50 and p99 of the table row that starts with ``label``."""
    for line in text.splitlines():
        if line.startswith(label + '  '):
            numbers = re.findall(_NUMBER + r'(?=\s|$)', line[len(label):])
            assert len(numbers) == 3, line
            return [float(n) for n in numbers]
    raise AssertionError(f'no table row {label!r} in:\n{text}')


def test_small_run_prints_every_stage(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    code = cli.main(['pipeline', '--frames', '3', '--warmup', '1', '--width', '320',
                     '--height', '240', '--json', str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert 'command:  benchmark pipeline --frames 3 --warmup 1 --width 320 --height 240' in text
    for needle in ('machine:', 'cores', 'numpy', 'points/sweep', 'projected pixels',
                   'target:   p50 <= 2.0 ms and <= 8x the memcpy floor',
                   'bare zero-copy np.ndarray view'):
        assert needle in text
    labels = [s.label for s in benchmark.STAGES] + [benchmark.TOTAL.label]
    assert {'projection', 'see-through rejection', 'fit', 'temporal filter', 'metric depth',
            'cloud packing', 'publish'} <= set(labels)
    for label in labels:
        values = _row(text, label)
        assert all(math.isfinite(v) and v >= 0 for v in values), (label, values)

    data = json.loads(out.read_text())
    assert list(data['stages']) == [s.key for s in benchmark.STAGES] + ['total']
    for key, row in data['stages'].items():
        assert len(row['samples_ms']) == 3, key
        for name in ('mean_ms', 'p50_ms', 'p99_ms'):
            assert math.isfinite(row[name]) and row[name] >= 0, (key, name, row[name])
    total = data['stages']['total']['samples_ms']
    parts = [data['stages'][s.key]['samples_ms'] for s in benchmark.STAGES]
    assert total == pytest.approx([sum(p[i] for p in parts) for i in range(3)])
    # A full 64-beam sweep (about 100k points), a good part of it in the image.
    assert data['lidar_points'] > 90_000
    assert 1_000 < data['projected_pixels'] < 320 * 240
    assert data['cloud_points'] == 160 * 120  # stride 2
    assert data['excluded']['cloud_view']['p50'] >= 0  # the decode's floor, side by side
    # The fusion stage by part: each timed on every frame, together within the stage.
    from depth_node.pipeline.trust import PARTS
    fusion = data['stages']['fusion']['samples_ms']
    assert sum(data['excluded'][k]['p50'] for k in PARTS) <= 1.05 * max(fusion) + 0.05
    assert all(data['excluded'][k]['p50'] > 0 for k in PARTS)
    assert 'fusion + uncertainty by part, p50 ms: field ' in text and 'edge_sigma ' in text
    assert data['settings']['width'] == 320 and data['settings']['lidar_beams'] == 64
    assert data['machine']['cores'] >= 1 and data['machine']['numpy']
    # The subscriber got what was published: serialisation and delivery really happened.
    for topic, (received, sent) in data['delivered'].items():
        assert sent == 4 and received >= 1, (topic, received, sent)


def test_color_and_relative_add_their_work(capsys):
    # No name: the pipeline benchmark, as a bare ``benchmark`` has always run.
    code = cli.main(['--frames', '2', '--warmup', '0', '--width', '160', '--height', '120',
                     '--distinct', '1', '--color', '--relative', '--stride', '1'])
    assert code == 0
    text = capsys.readouterr().out
    assert 'command:  benchmark pipeline --frames 2' in text
    assert 'XYZRGB cloud of 19,200 points (stride 1)' in text
    assert all(math.isfinite(v) for v in _row(text, benchmark.RELATIVE_STAGE.label))
    assert 'depth/relative 2/2' in text or re.search(r'depth/relative [12]/2', text)


def test_the_fills_run_by_default_and_the_frame_check_or_edge_fill_option_turn_them_off(
        capsys):
    # As for the shipped student, both fills run on every frame by default; the oracle's
    # exact shape turns them off by the frame check (--frame-check); --no-edge-fill measures
    # the fusion without the edge fill.
    small = ['--frames', '2', '--warmup', '0', '--width', '160', '--height', '120',
             '--distinct', '1']
    assert cli.main(small + ['--frame-check']) == 0
    assert "fills as the frame's check decides" in capsys.readouterr().out
    assert cli.main(small + ['--no-edge-fill']) == 0
    text = capsys.readouterr().out
    assert 'fusion on (beam and edge fills on every frame), no edge fill' in text
    assert all(math.isfinite(v) for v in _row(text, 'fusion + uncertainty'))


@pytest.mark.parametrize('argv', [['--frames', '0'], ['--stride', '0'], ['--warmup', '-1'],
                                  ['--width', 'wide']])
def test_bad_arguments_exit_2_naming_the_option(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        benchmark.main(argv)
    assert exc.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_help_lists_every_benchmark_and_each_name_has_its_options(capsys):
    assert cli.main(['--help']) == 0
    text = capsys.readouterr().out
    assert text.startswith('usage: benchmark [NAME]')
    assert set(cli.BENCHMARKS) == {'pipeline', 'backends', 'keyframes', 'transport', 'accuracy',
                                   'fleet', 'motion', 'overload', 'extrinsic', 'overlap'}
    for name in cli.BENCHMARKS:
        assert f'\n  {name} ' in text, name
        with pytest.raises(SystemExit) as exc:  # argparse's --help of that benchmark
            cli.main([name, '--help'])
        assert exc.value.code == 0
        assert capsys.readouterr().out.startswith(f'usage: benchmark {name} '), name


def test_unknown_name_exits_2_listing_the_names(capsys):
    assert cli.main(['pipline', '--frames', '3']) == 2
    err = capsys.readouterr().err
    assert "'pipline'" in err and \
        'pipeline, backends, keyframes, transport, accuracy, fleet, motion, overload' in err


def test_a_name_imports_only_its_own_benchmark():
    """``benchmark accuracy`` loads neither the other benchmarks nor torch nor rclpy."""
    code = ('import sys\n'
            'from depth_node.bench.cli import main\n'
            "assert main(['accuracy', '--frames', '1', '--width', '96', '--height', '72',"
            " '--no-scenarios']) == 0\n"
            "print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.split('\n')[-2].split()
    assert 'depth_node.bench.accuracy_table' in loaded
    for module in ('depth_node.bench.pipeline', 'depth_node.bench.backends',
                   'depth_node.bench.keyframes', 'depth_node.ros.transport_check',
                   'depth_node.bench.overload', 'torch',
                   'rclpy'):
        assert module not in loaded, module


def test_keyframes_benchmark_runs_and_reports_ratios():
    """``benchmark keyframes`` with an oracle teacher (no Marigold): one short configuration."""
    pytest.importorskip('torch')
    import functools

    from depth_node.bench.keyframes import format_table, parse_config, run
    from depth_node.core.errors import ConfigError
    from depth_node.sim.frames import SimRig
    from keyframe_stubs import AffineOracleTeacher  # test/ is on sys.path (conftest)

    frame = next(SimRig.default(320, 240).frames(1))
    factory = functools.partial(AffineOracleTeacher, frame.depth, 40.0, 2.0, None, 0.01)
    report = run([parse_config('thread:1:0')], 'array', factory, 'oracle stub', frames=6,
                 blocks=1, rate=0.0, width=320, height=240, warmup=1)
    (row,) = report['rows']
    assert row['off']['n'] == row['on']['n'] == 6 and row['keyframes'] >= 1
    assert row['ratio_p50'] > 0 and row['failed'] == 0
    assert 'thread' in format_table(report)
    with pytest.raises(ConfigError):
        parse_config('fork:1')


def test_motion_benchmark_scores_deskew_against_the_instantaneous_sweep(capsys):
    from depth_node.bench.motion import main, ROWS
    assert main(['--width', '160', '--height', '120', '--frames', '2', '--streets', '700']) == 0
    out = capsys.readouterr().out
    rows = {}
    for label, *_ in ROWS:
        line = next(ln for ln in out.splitlines() if ln.startswith(label))
        rows[label] = float(line[len(label):].split()[0])
    assert rows['rotating, Ouster t (ns), deskew'] < rows['rotating, Ouster t (ns), no deskew']
    assert rows['rotating, Velodyne time (s), deskew'] == pytest.approx(
        rows['rotating, Ouster t (ns), deskew'], rel=1e-3)  # same times, two encodings
    assert 'ok' in out


def test_extrinsic_benchmark_counts_false_alarms_and_finds_the_miscalibration(tmp_path, capsys):
    out = tmp_path / 'extrinsic.json'
    code = cli.main(['extrinsic', '--scenarios', 'default,lidar_vlp16,miscalibrated',
                     '--streets', '901', '--frames', '1', '--json', str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert 'false alarms: 0 of 2 frames of calibrated rigs' in text, text
    assert 'found with the true sign: 1 of 1 frames of miscalibrated rigs' in text, text
    data = json.loads(out.read_text())['scenarios']
    assert data['default']['shifts'] == [0] and data['default']['calibrated']
    assert not data['miscalibrated']['calibrated'] and data['miscalibrated']['shifts'][0] != 0
    assert cli.main(['extrinsic', '--scenarios', 'nowhere']) == 2
    assert 'unknown scenarios' in capsys.readouterr().err


def test_overlap_benchmark_times_both_modes_of_the_same_frames(capsys):
    from depth_node.bench import overlap
    assert cli.main(['overlap', '--frames', '3', '--warm-up', '1', '--width', '160',
                     '--height', '120', '--wait-ms', '5']) == 0
    text = capsys.readouterr().out
    rows = {}
    for line in text.splitlines():
        words = line.split()
        if words and words[0] in ('off', 'on'):
            rows[words[0]] = [float(x) for x in words[1:]]
    assert set(rows) == {'off', 'on'} and 'with the overlap' in text, text
    for wall, p90, model, after, side in rows.values():
        assert 5.0 <= model < wall <= p90 and after > 0 and side > 0  # the wait is in the model
    with pytest.raises(SystemExit):
        overlap.main(['--frames', '0'])
