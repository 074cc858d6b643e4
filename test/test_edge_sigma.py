"""The edge term of sigma (depth_node.core.edge_sigma): definition, compiled passes, refusal."""

from dataclasses import replace

import numpy as np
import pytest

from depth_node.core.edge_sigma import add_edge_sigma, edge_steps, edge_steps_reference
from depth_node.core.errors import ConfigError
from depth_node.core.uncertainty import UncertaintyModel


def _random_depth(rng, h, w):
    z = rng.uniform(1.0, 40.0, (h, w)).astype(np.float32)
    z[rng.random((h, w)) < 0.15] = np.nan
    z[rng.random((h, w)) < 0.03] = 0.0  # no depth either
    z[rng.random((h, w)) < 0.02] = -3.0  # nor this
    z[rng.random((h, w)) < 0.02] = np.inf  # nor this (no step to it)
    return z


def test_compiled_edge_steps_match_the_reference():
    rng = np.random.default_rng(4)
    for trial in range(30):
        h, w = (int(n) for n in rng.integers(1, 40, 2))
        z = _random_depth(rng, h, w)
        for radius in range(4):
            for min_step in (0.0, 0.1, 1.0):
                np.testing.assert_allclose(edge_steps(z, radius, min_step),
                                           edge_steps_reference(z, radius, min_step),
                                           rtol=1e-6, atol=1e-6,
                                           err_msg=f'trial {trial} r {radius} {min_step}')


def test_edge_step_reaches_radius_pixels_from_the_step_and_nothing_else():
    z = np.full((9, 30), 20.0, np.float32)
    z[:, :10] = 10.0  # a step of log 2 between columns 9 and 10
    z[:, 20:] = np.linspace(20.0, 21.0, 10, dtype=np.float32)  # a slant: 0.5 % per pixel
    z[4, 25] = np.nan  # no depth: no step to it
    for ours in (edge_steps(z, 2, 0.1), edge_steps_reference(z, 2, 0.1)):
        np.testing.assert_allclose(ours[:, 7:13], np.log(2.0), rtol=1e-6)
        assert not ours[:, :7].any() and not ours[:, 13:].any()
    # Without the level, the slant's own small steps count.
    slant = max(np.log(z[0, 25] / z[0, 24]), np.log(z[0, 26] / z[0, 25]))  # either side
    assert edge_steps(z, 0, 0.0)[0, 25] == pytest.approx(slant, rel=1e-4)
    assert edge_steps(z, 0, 0.0)[4, 25] == 0.0


def test_edge_term_in_place_matches_the_reference_and_refuses():
    from depth_node.pipeline.trust import Composed, with_edges
    from depth_node.pipeline.trust_reference import edges_reference
    rng = np.random.default_rng(5)
    model = replace(UncertaintyModel.load(), edge_weight=0.5, edge_radius=2,
                    edge_min_step=0.1, max_relative=0.4)
    for trial in range(10):
        h, w = (int(n) for n in rng.integers(2, 60, 2))
        depth = _random_depth(rng, h, w)
        rel = rng.uniform(0.002, 0.3, (h, w)).astype(np.float32)
        keep = np.isfinite(depth) & (depth > 0) & (rel <= 0.2)
        published = np.where(keep, depth, np.nan).astype(np.float32)

        def composed():
            return Composed(depth.copy(), published.copy(), published * rel, rel.copy(),
                            np.array([0, keep.sum(), 0], np.int64))
        fast, ref = with_edges(composed(), model, 0.2), edges_reference(composed(), model, 0.2)
        for name in ('published', 'sigma', 'relative_sigma'):
            np.testing.assert_allclose(getattr(fast, name), getattr(ref, name), rtol=1e-6,
                                       atol=1e-7, equal_nan=True, err_msg=f'{trial} {name}')
        assert fast.counts[1] == ref.counts[1] == np.isfinite(fast.published).sum()
        assert np.all(fast.relative_sigma >= rel) and np.all(fast.relative_sigma <= 0.4)
    # Weight 0: nothing changes.
    c = composed()
    assert add_edge_sigma(depth, 2, 0.1, 0.0, 0.2, 10.0, c.relative_sigma, c.published,
                          c.sigma) == 0
    np.testing.assert_array_equal(c.relative_sigma, rel)


def test_a_silhouette_two_pixels_off_is_refused_not_published_at_the_other_depth():
    """A pole 10 m away in front of a façade at 20 m, the network's silhouette 2 px to the
    right of the true one, and no return near either edge (a sparse LiDAR's beams miss it):
    the pixels between the two edges carry the other surface's depth, 50-100 % off. They were
    published at the grid model's sigma / z (about 0.05); every one must now be refused or
    have its error within 2 sigma, and the pole and the façade away from the edges stay."""
    from depth_node.core.align import AffineFit, OutputKind
    from depth_node.core.lidar import SparseDepth
    from depth_node.pipeline.frame import PipelineConfig
    from depth_node.pipeline.trust import trusted_depth

    h, w = 120, 160
    cols = np.arange(w)[None, :]
    truth = np.where((cols >= 60) & (cols < 80), 10.0, 20.0) * np.ones((h, 1))
    network = np.where((cols >= 62) & (cols < 82), 10.0, 20.0).astype(np.float32) \
        * np.ones((h, 1), np.float32)
    v, u = np.mgrid[4:h:8, 0:w:2]
    away = (u < 50) | (u > 92) | ((u >= 66) & (u < 76))  # no return within 6 px of an edge
    v, u = v[away].astype(np.int32), u[away].astype(np.int32)
    lidar = SparseDepth(u, v, truth[v, u].astype(np.float32), w, h)
    fit = AffineFit(1.0, 0.0, OutputKind.DEPTH, lidar.count, 0.05, 0.05, inliers=lidar.count)
    model = UncertaintyModel.load()
    assert model.edge_weight > 0  # the shipped calibration holds the term
    t = trusted_depth(network, lidar, fit, PipelineConfig(), model)
    wrong = np.abs(t.unrefused - truth) > 0.2 * truth
    assert wrong.sum() >= 3 * h  # the silhouette stayed where the network put it
    with np.errstate(invalid='ignore'):
        caught = ~np.isfinite(t.depth) | (np.abs(t.depth - truth) <= 2 * t.sigma)
    assert caught[wrong].all(), caught[wrong].mean()
    far = (np.abs(cols - 61) > 5) & (np.abs(cols - 81) > 5) & np.ones((h, 1), bool)
    assert np.isfinite(t.depth[far]).mean() > 0.95
    assert np.nanmax(np.abs(t.depth[far] - truth[far]) / truth[far]) < 0.05


@pytest.mark.parametrize('key, value', [('edge_weight', -0.5), ('edge_radius', 1.5),
                                        ('edge_radius', 99), ('edge_min_step', float('nan'))])
def test_bad_edge_values_in_a_calibration_file_name_the_field(tmp_path, key, value):
    import json
    data = json.loads(UncertaintyModel.load().to_json())
    data[key] = value
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=key):
        UncertaintyModel.load(bad)
    # A file from before the term has none.
    for k in ('edge_weight', 'edge_radius', 'edge_min_step'):
        data.pop(k)
    bad.write_text(json.dumps(data))
    assert UncertaintyModel.load(bad).edge_weight == 0.0
