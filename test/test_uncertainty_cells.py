"""The compiled sigma / z on the fusion's grid equals the stacked numpy features' model."""

import numpy as np
import pytest

from depth_node.core.fusion import fuse_field, FusionConfig
from depth_node.core.fusion_reference import fuse_reference
from depth_node.core.lidar import SparseDepth
from depth_node.core.uncertainty import carried_correction, FEATURES, features, \
    UncertaintyModel


def _scene(returns=True):
    rng = np.random.default_rng(4)
    h, w = 97, 131
    inv = np.linspace(1 / 60, 1 / 5, h)[:, None] * np.ones((1, w))
    depth = (1.0 / inv).astype(np.float32)
    depth[:, 50:70] *= np.float32(0.4)  # a pole: depth steps
    depth[:12] = np.nan  # sky
    n = 900 if returns else 0
    u = rng.integers(0, w, n).astype(np.int32)
    v = rng.integers(40, h, n).astype(np.int32)  # support only in the lower part
    z = (depth[v, u] * rng.uniform(1.15, 1.35, n)).astype(np.float32)  # the network 25 % near
    return depth, SparseDepth(u, v, z, w, h)


@pytest.mark.parametrize('returns', [True, False])
@pytest.mark.parametrize('residual', [0.04, float('nan')])
def test_compiled_relative_sigma_matches_the_features(returns, residual):
    depth, lidar = _scene(returns)
    rng = np.random.default_rng(5)
    # Random weights: every feature counts, so each one must agree.
    # The carried correction in quadrature too (the scene's returns are 25 % off, so the
    # field corrects the depth and the correction reaches cells no return supports).
    model = UncertaintyModel(tuple(rng.normal(0, 0.3, len(FEATURES))),
                             tuple(rng.normal(0, 0.3, len(FEATURES))), 1e-4, 1e4, carried=3.0)
    config = FusionConfig()
    ref = fuse_reference(depth, lidar, config)
    field = fuse_field(depth, lidar, config)
    phi = features(ref, residual)
    carried = carried_correction(ref.support, ref.rho)
    # The scene varies every per-cell feature (without returns: those of the depth).
    varied = [1, 2, 3, 4, 5, 9, 10] if returns else [5, 9]
    assert np.ptp(phi, axis=(1, 2))[varied].min() > 0
    if returns:
        assert (model.relative_sigma(phi, True, carried)
                > model.relative_sigma(phi, True) * 1.01).mean() > 0.05
    for fused in (True, False):
        np.testing.assert_allclose(model.relative_sigma_cells(field, residual, fused),
                                   model.relative_sigma(phi, fused, carried if fused else None),
                                   rtol=2e-5)
    shipped = UncertaintyModel.load()
    assert shipped.carried > 0
    np.testing.assert_allclose(shipped.relative_sigma_cells(field, residual),
                               shipped.relative_sigma(phi, True, carried), rtol=2e-5)
