"""pseudo_label -> train, end to end on the tiny models: the keyframe teacher over bags on Ray
into Parquet shards (image, aligned depth, uncertainty, provenance), read back by train."""

import json
import os
import shutil

import numpy as np
import pytest

from depth_node.cli.pseudo_label import main
from depth_node.core.errors import DepthNodeError
from depth_node.offline.reader import read_drive
from depth_node.offline.shards import LabelRow, read_rows, shard_files, shard_metadata
from depth_node.training.data import shard_samples

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(os.path.dirname(HERE), 'data', 'sample_drive')
FRAMES = 5  # per bag: keyframes 0, 2, 4 (every_n 2)
# A tiny random teacher (1 step, an ensemble of 3 for the uncertainty); its fits are poor:
# accept them, this checks the wiring.
TEACHER = ['-p', 'keyframes.every_n:=2', '-p', 'keyframes.every_t:=0.0',
           '-p', 'keyframes.ensemble_size:=3', '-p', 'keyframes.num_inference_steps:=1',
           '-p', 'fit.max_residual:=10.0', '--max-frames', str(FRAMES), '--threads', '1',
           '--rows-per-shard', '2']  # 3 keyframes a bag: 2 shards, written as they fill


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    from tiny_models import save_tiny_depth_anything, save_tiny_marigold
    root = tmp_path_factory.mktemp('tiny')
    return (save_tiny_marigold(root / 'marigold', processing_resolution=64),
            save_tiny_depth_anything(root / 'student'))


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('label_bags')
    for name in ('drive_a', 'drive_b'):
        shutil.copytree(SAMPLE, root / name)
    return root


@pytest.fixture(scope='module')
def labelled(tmp_path_factory, models, bags):
    """The two bags labelled by 2 local Ray workers."""
    import torch
    from depth_node.offline.fleet import RaySession, RaySettings

    out = tmp_path_factory.mktemp('labels')
    temp = str(tmp_path_factory.mktemp('ray'))
    threads = torch.get_num_threads()
    try:
        with RaySession(RaySettings(workers=2, object_store_mb=100, temp_dir=temp)):
            code = main([str(bags), '--teacher', str(models[0]), '--out', str(out),
                         '--workers', '2', '-q', *TEACHER])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return out


def test_shards_hold_images_aligned_depth_uncertainty_and_provenance(labelled, bags, models):
    manifest = json.loads((labelled / 'dataset.json').read_text())
    assert manifest['workers'] == 2 and manifest['rows'] == 6
    assert [b['status'] for b in manifest['bags']] == ['done', 'done']
    assert [b['keyframes'] for b in manifest['bags']] == [3, 3]
    assert len({b['worker'] for b in manifest['bags']}) == 2
    files = shard_files(labelled)
    assert [f.name for f in files] == manifest['shards'] and len(files) == 4
    assert [len(b['shards']) for b in manifest['bags']] == [2, 2]
    assert [f for b in manifest['bags'] for f in b['shards']] == manifest['shards']
    assert shard_metadata(files[0])['depth_node.teacher'] == str(models[0])
    rows = list(read_rows(labelled))
    frames = {f.index: f for f in read_drive(SAMPLE) if f.index < FRAMES}
    assert [(os.path.basename(r.bag), r.frame_index, r.reason) for r in rows] == [
        (b, i, reason) for b in ('drive_a', 'drive_b')
        for i, reason in ((0, 'first'), (2, 'every_n'), (4, 'every_n'))]
    for r in rows:
        f = frames[r.frame_index]
        assert isinstance(r, LabelRow) and r.topic == '/camera/image_rect'
        assert r.stamp_ns == f.stamp_ns and r.frame_id == f.frame_id
        np.testing.assert_array_equal(r.rgb, f.rgb)  # PNG: lossless
        assert r.depth.shape == r.rgb.shape[:2] and r.depth.dtype == np.float32
        assert np.isfinite(r.depth).mean() > 0.5 and np.nanmin(r.depth) > 0
        assert r.uncertainty is not None and r.uncertainty.shape == r.depth.shape
        assert np.array_equal(np.isnan(r.uncertainty), np.isnan(r.depth))
        assert r.fit_space == 'depth' and r.fit_points > 0 and r.lidar_pixels >= r.fit_points
        assert r.camera == (f.camera.fx, f.camera.fy, f.camera.cx, f.camera.cy)
    # Two workers, two copies of one bag: the same labels, to the bit.
    for a, b in zip(rows[:3], rows[3:]):
        np.testing.assert_array_equal(a.depth, b.depth)
        np.testing.assert_array_equal(a.uncertainty, b.uncertainty)
        assert (a.fit_scale, a.fit_shift) == (b.fit_scale, b.fit_shift)


def test_train_reads_the_shards_directly(tmp_path, labelled, models):
    from depth_node.cli.train import main as train_main
    import torch

    samples = list(shard_samples(labelled))
    assert len(samples) == 6 and all(s.weight is not None for s in samples)
    assert all(0 < s.labelled <= 1 for s in samples)
    out = tmp_path / 'train'
    threads = torch.get_num_threads()
    try:
        assert train_main(['--shards', str(labelled), '--init', str(models[1]), '--steps', '2',
                           '--batch-size', '2', '--input-size', '56', '--val-seeds', '',
                           '--threads', '1', '-q', '--out', str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['train_samples'] == 6 and summary['step'] == 2
    assert summary['data'].startswith(f'6 pseudo-labelled keyframes of {labelled.name}')
    assert np.isfinite(summary['train_loss_last50'])


def test_resume_skips_bags_done_and_a_corrupt_bag_is_named(tmp_path, labelled, bags, models,
                                                           capsys):
    import torch
    out = tmp_path / 'labels'
    shutil.copytree(labelled, out)
    broken = tmp_path / 'broken_drive'
    broken.mkdir()
    (broken / 'metadata.yaml').write_text('not: [a, rosbag2')
    (broken / 'broken_drive.mcap').write_bytes(b'\x89MCAP0\r\n' + os.urandom(2048))
    before = {f.name: f.stat().st_mtime_ns for f in shard_files(out)}
    threads = torch.get_num_threads()
    try:  # in this process (--workers 0): the two bags done are not labelled again
        code = main([str(bags / 'drive_a'), str(broken), str(bags / 'drive_b'), '--teacher',
                     str(models[0]), '--out', str(out), '--workers', '0', *TEACHER])
    finally:
        torch.set_num_threads(threads)
    assert code == 4
    captured = capsys.readouterr()
    assert f'FAILED {broken}' in captured.err
    assert '6 labelled keyframes of 6 chosen' in captured.out and '(2 already done)' in \
        captured.out
    assert {f.name: f.stat().st_mtime_ns for f in shard_files(out)} == before
    manifest = json.loads((out / 'dataset.json').read_text())
    assert [b['status'] for b in manifest['bags']] == ['resumed', 'failed', 'resumed']


def test_bad_options_and_data_fail_clearly(tmp_path, bags, models, capsys):
    assert main([str(bags), '--out', str(tmp_path / 'o'), '-q', '--workers', '0']) == 2
    assert "'keyframes.model_path'" in capsys.readouterr().err
    assert main([str(bags), '--teacher', str(models[0]), '--out', str(tmp_path / 'o'), '-q',
                 '--workers', '0', '-p', 'keyframes.every_t:=0.0']) == 2
    assert 'never triggers' in capsys.readouterr().err
    (tmp_path / 'no_shards').mkdir()
    with pytest.raises(DepthNodeError, match='no \\*.parquet shards'):
        list(shard_samples(tmp_path / 'no_shards'))
