"""Student training: losses against an independent implementation, data, the loop, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from depth_node.core.errors import ConfigError, DepthNodeError  # noqa: E402
from depth_node.training.data import (inverse_depth, make_batch, Sample,  # noqa: E402
                                      synthetic_samples, uncertainty_weight)
from depth_node.training.losses import LossConfig, normalize_ssi, student_loss  # noqa: E402
from depth_node.training.trainer import TrainConfig, Trainer  # noqa: E402

SMALL = dict(steps=4, batch_size=2, input_size=56, crop=(56, 70), preset='micro', grid=4,
             warmup=2, checkpoint_every=2, val_every=2)


# ------------------------------------------------------------------------------------------ loss


def _reference_loss(pred, target, weight, grad_weight=2.0, trim=0.1, scales=4, min_pixels=16):
    """Straightforward per-image numpy version of the Depth Anything V2 student loss."""
    ssis, grads = [], []
    for p, t, w in zip(pred.astype(np.float64), target.astype(np.float64),
                       weight.astype(np.float64)):
        m = (w > 0) & np.isfinite(t)
        if m.sum() < min_pixels:
            continue

        def norm(d):
            v = np.sort(d[m])
            med = v[(len(v) - 1) // 2]  # the lower middle value for an even count, as torch
            s = max(np.mean(np.abs(d[m] - med)), 1e-6)
            return np.where(m, (d - med) / s, 0.0)

        r = norm(p) - norm(np.where(m, t, 0.0))
        wr = np.abs(r) * w
        idx = np.argwhere(m)
        keep_n = int(np.floor(len(idx) * (1 - trim)))
        order = np.argsort(wr[m], kind='stable')
        kept = np.zeros_like(m)
        for i in order[:keep_n]:
            kept[tuple(idx[i])] = True
        wk = w * kept
        ssis.append(np.sum(np.abs(r) * wk) / np.sum(wk))
        g = 0.0
        for k in range(scales):
            rs, ws = r[::2 ** k, ::2 ** k], wk[::2 ** k, ::2 ** k]
            num = den = 0.0
            for y in range(rs.shape[0]):
                for x in range(rs.shape[1]):
                    if x + 1 < rs.shape[1] and ws[y, x] > 0 and ws[y, x + 1] > 0:
                        wx = min(ws[y, x], ws[y, x + 1])
                        num += wx * abs(rs[y, x + 1] - rs[y, x])
                        den += wx
                    if y + 1 < rs.shape[0] and ws[y, x] > 0 and ws[y + 1, x] > 0:
                        wy = min(ws[y, x], ws[y + 1, x])
                        num += wy * abs(rs[y + 1, x] - rs[y, x])
                        den += wy
            g += num / max(den, 1e-6)
        grads.append(g)
    ssi, grad = float(np.mean(ssis)), float(np.mean(grads))
    return ssi + grad_weight * grad, ssi, grad


def test_loss_matches_an_independent_implementation():
    rng = np.random.default_rng(0)
    b, h, w = 3, 17, 23
    pred = rng.uniform(0.1, 2.0, (b, h, w)).astype(np.float32)
    target = rng.uniform(0.01, 1.0, (b, h, w)).astype(np.float32)
    target[0, :4] = np.nan  # unlabelled rows
    weight = rng.uniform(0.2, 1.0, (b, h, w)).astype(np.float32)
    weight[1, :, :5] = 0.0  # zero-weight columns
    weight[2] = 1.0
    got = student_loss(torch.from_numpy(pred), torch.from_numpy(target),
                       torch.from_numpy(weight))
    total, ssi, grad = _reference_loss(pred, target, weight)
    assert got.images == 3
    assert float(got.ssi) == pytest.approx(ssi, rel=1e-4)
    assert float(got.grad) == pytest.approx(grad, rel=1e-4)
    assert float(got.total) == pytest.approx(total, rel=1e-4)


def test_loss_is_scale_and_shift_invariant_and_trims_label_noise():
    rng = np.random.default_rng(1)
    target = torch.from_numpy(rng.uniform(0.02, 1.0, (2, 32, 40)).astype(np.float32))
    ones = torch.ones_like(target)
    exact = student_loss(3.7 * target + 0.4, target, ones)
    assert float(exact.total) < 1e-5
    flipped = student_loss(-target + 2.0, target, ones)  # inverted order: far looks near
    assert float(flipped.ssi) > 1.0
    # 5 % label noise (wrong but plausible values): trimmed away with trim 0.1, not without
    noisy = target.clone()
    noise = torch.from_numpy(rng.random((2, 32, 40)) < 0.05)
    noisy[noise] = torch.from_numpy(rng.uniform(0.02, 1.0, int(noise.sum())).astype(np.float32))
    trimmed = student_loss(target, noisy, ones, LossConfig(trim=0.1, grad_weight=0.0))
    untrimmed = student_loss(target, noisy, ones, LossConfig(trim=0.0, grad_weight=0.0))
    assert float(untrimmed.ssi) > 5 * float(trimmed.ssi)
    # zero weight on the noise removes it as well
    weighted = student_loss(target, noisy, (~noise).float(), LossConfig(trim=0.0))
    assert float(weighted.total) < 1e-4


def test_loss_gradient_flows_and_empty_images_do_not_count():
    pred = torch.rand(2, 20, 20, requires_grad=True)
    target = torch.rand(2, 20, 20)
    weight = torch.ones(2, 20, 20)
    weight[1] = 0.0
    terms = student_loss(pred, target, weight)
    terms.total.backward()
    assert terms.images == 1
    assert pred.grad[0].abs().sum() > 0 and pred.grad[1].abs().sum() == 0
    none = student_loss(pred, target, torch.zeros_like(weight))
    assert none.images == 0 and float(none.total.detach()) == 0.0
    with pytest.raises(ValueError, match='trim'):
        LossConfig(trim=1.0).validate()
    with pytest.raises(ValueError, match=r'\[B, H, W\]'):
        student_loss(pred[0], target[0], weight[0])


def test_normalize_ssi_gives_median_zero_and_unit_mean_deviation():
    gen = torch.Generator().manual_seed(0)
    d = torch.rand(2, 9, 11, generator=gen) * 5 + 1
    mask = torch.rand(2, 9, 11, generator=gen) > 0.3
    n, _ = normalize_ssi(d, mask)
    for i in range(2):
        v = np.sort(n[i][mask[i]].numpy())
        assert abs(v[(len(v) - 1) // 2]) < 1e-6  # the (lower) median
        assert np.mean(np.abs(v)) == pytest.approx(1.0, rel=1e-5)
        assert (n[i][~mask[i]] == 0).all()


# ------------------------------------------------------------------------------------------ data


def test_inverse_depth_and_uncertainty_weight():
    z = np.array([[2.0, np.inf, np.nan, -1.0, 0.0]], np.float32)
    assert np.array_equal(inverse_depth(z, sky_is_far=True),
                          np.array([[0.5, 0.0, np.nan, np.nan, np.nan]], np.float32),
                          equal_nan=True)
    assert np.isnan(inverse_depth(z)[0, 1])
    w = uncertainty_weight(np.array([10.0, 10.0, 10.0, np.nan]), np.array([0.0, 0.5, np.nan, 1]))
    assert w.tolist() == [1.0, 0.5, 0.0, 0.0]
    with pytest.raises(ValueError):
        uncertainty_weight(z, z, relative=0.0)


def test_make_batch_keeps_image_and_labels_aligned_under_augmentation():
    h, w = 60, 80
    cols = np.tile(np.arange(w, dtype=np.float32), (h, 1))
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = (cols * 3).astype(np.uint8)  # red grows to the right, as the target does
    target = 1.0 + cols
    target[:5] = np.nan  # unlabelled top rows
    sample = Sample(rgb, target)
    for seed in range(8):
        batch = make_batch([sample], (28, 42), np.random.default_rng(seed))
        assert batch.pixels.shape == (1, 3, 28, 42) and batch.target.shape == (1, 28, 42)
        red = batch.pixels[0, 0].mean(axis=0)
        lab = np.where(batch.weight[0] > 0, batch.target[0], np.nan)
        tgt = np.nanmean(lab, axis=0)
        assert np.sign(red[-1] - red[0]) == np.sign(tgt[-1] - tgt[0])  # flipped together
        assert np.all(batch.target[0][batch.weight[0] == 0] == 0)
    plain = make_batch([sample], (28, 42))
    assert np.array_equal(plain.pixels, make_batch([sample], (28, 42)).pixels)
    with pytest.raises(Exception, match='does not match'):
        Sample(rgb, target[:10])


def test_synthetic_samples_are_seeded_and_label_the_sky_far():
    a = list(synthetic_samples([3], 2, 64, 48))
    b = list(synthetic_samples([3], 2, 64, 48))
    assert len(a) == 2 and np.array_equal(a[1].rgb, b[1].rgb)
    assert (a[0].target == 0).any()  # sky
    assert np.isfinite(a[0].target).all() and (a[0].target >= 0).all()


# ---------------------------------------------------------------------------------------- trainer


@pytest.fixture(scope='module')
def samples():
    return list(synthetic_samples([0, 1], 3, 96, 72))


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_training_is_seeded_and_resume_continues_exactly(tmp_path, samples):
    torch.set_num_threads(1)
    full = Trainer(TrainConfig(**SMALL), tmp_path / 'full', samples, samples[:2])
    full.run(progress=False)
    again = Trainer(TrainConfig(**SMALL), tmp_path / 'again', samples, samples[:2])
    again.run(progress=False)
    half = Trainer(TrainConfig(**SMALL), tmp_path / 'half', samples, samples[:2])
    half.run(progress=False, stop_after=2)
    assert half.step == 2
    resumed = Trainer(TrainConfig(**SMALL), tmp_path / 'half', samples, samples[:2],
                      resume=True)
    assert resumed.step == 2 and len(resumed.history) == 2
    result = resumed.run(progress=False)
    assert result.final_step == 4 and result.steps == 2
    a, b, c = _weights(full.model), _weights(again.model), _weights(resumed.model)
    for key in a:
        assert torch.equal(a[key], b[key]), key
        assert torch.allclose(a[key], c[key], atol=1e-6, rtol=1e-5), key
    assert [r['loss'] for r in full.history] == pytest.approx(
        [r['loss'] for r in resumed.history], rel=1e-5)
    assert (tmp_path / 'full' / 'loss.png').stat().st_size > 1000
    assert (tmp_path / 'full' / 'history.csv').read_text().count('\n') == 5
    # a finished run is not overwritten, and a resume must match its configuration
    with pytest.raises(ConfigError, match='already holds a run'):
        Trainer(TrainConfig(**SMALL), tmp_path / 'full', samples)
    with pytest.raises(ConfigError, match='lr'):
        Trainer(TrainConfig(**{**SMALL, 'lr': 1e-2}), tmp_path / 'full', samples, resume=True)
    with pytest.raises(ConfigError, match='no checkpoint'):
        Trainer(TrainConfig(**SMALL), tmp_path / 'nothing', samples, resume=True)


def test_training_reduces_the_loss(tmp_path, samples):
    torch.set_num_threads(1)
    config = TrainConfig(**{**SMALL, 'steps': 40, 'lr': 2e-3, 'warmup': 5,
                            'checkpoint_every': 100, 'val_every': 100})
    trainer = Trainer(config, tmp_path / 'run', samples[:2])
    trainer.run(progress=False)
    losses = [r['loss'] for r in trainer.history]
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:4])


def test_train_config_validation_names_the_field():
    for field, value in (('steps', 0), ('lr', 0.0), ('crop', (50, 70)), ('input_size', 7),
                         ('grad_clip', 0.0)):
        with pytest.raises(ConfigError, match=field):
            TrainConfig(**{**SMALL, field: value}).validate()
    with pytest.raises(DepthNodeError, match='no training samples'):
        Trainer(TrainConfig(**SMALL), '/nonexistent/x', [])


def test_train_cli_writes_a_student_the_estimator_loads(tmp_path):
    from depth_node.estimators.base import EstimatorConfig
    from depth_node.estimators.registry import build_estimator
    from depth_node.cli.train import main

    out = tmp_path / 'run'
    args = ['--out', str(out), '--synthetic-seeds', '0-1', '--per-street', '2',
            '--synthetic-size', '96x72', '--val-seeds', '1000', '--val-per-street', '1',
            '--preset', 'micro', '--grid', '4', '--input-size', '56', '--steps', '3',
            '--batch-size', '2', '--warmup', '1', '--threads', '1', '-q']
    assert main(args + ['--stop-after', '2']) == 0
    assert main(args) == 2  # the run exists: refuse to overwrite it
    assert main(args + ['--resume']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['step'] == 3 and summary['steps_this_run'] == 1
    assert summary['train_samples'] == 4 and summary['val_samples'] == 1
    assert summary['peak_memory_mb'] > 0
    student = out / 'student'
    for name in ('config.json', 'model.safetensors', 'preprocessor_config.json', 'README.md'):
        assert (student / name).is_file(), name
    assert 'synthetic' in (student / 'README.md').read_text()
    est = build_estimator(EstimatorConfig(model_path=str(student), input_size=0))
    assert est.input_size == 56  # from preprocessor_config.json
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    pred = est.predict(rgb)
    assert pred.shape == (48, 64) and np.isfinite(pred).all()
    assert main(['--out', str(tmp_path / 'bad'), '--bag', str(tmp_path / 'missing'),
                 '-q']) == 2


def test_train_cli_on_a_bag_with_ground_truth_depth(tmp_path):
    import os

    from depth_node.cli.train import main
    from depth_node.training.data import bag_samples, TeacherTopics

    bag = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data',
                       'sample_drive')
    first = next(bag_samples(bag, TeacherTopics(depth='/camera/depth_gt', uncertainty='')))
    assert first.weight is None and np.isnan(first.target).any()  # the sky has no label
    assert 0.5 < first.labelled < 1.0
    out = tmp_path / 'gt'
    assert main(['--out', str(out), '--bag', bag, '--depth-topic', '/camera/depth_gt',
                 '--uncertainty-topic', '', '--preset', 'micro', '--grid', '4',
                 '--input-size', '56', '--steps', '1', '--batch-size', '2', '--threads', '1',
                 '-q']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['train_samples'] == 20 and 'sample_drive' in summary['data']
