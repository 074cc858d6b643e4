"""The compiled sigma / z on the fusion's grid equals the stacked numpy features' model."""

import numpy as np
import pytest

from depth_node.core.fusion import fuse_field, FusionConfig
from depth_node.core.fusion_reference import fuse_reference
from depth_node.core.lidar import SparseDepth
from depth_node.core.uncertainty import FEATURES, features, UncertaintyModel


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
    z = (depth[v, u] * rng.uniform(0.9, 1.1, n)).astype(np.float32)
    return depth, SparseDepth(u, v, z, w, h)


@pytest.mark.parametrize('returns', [True, False])
@pytest.mark.parametrize('residual', [0.04, float('nan')])
def test_compiled_relative_sigma_matches_the_features(returns, residual):
    depth, lidar = _scene(returns)
    rng = np.random.default_rng(5)
    # Random weights: every feature counts, so each one must agree.
    model = UncertaintyModel(tuple(rng.normal(0, 0.3, len(FEATURES))),
                             tuple(rng.normal(0, 0.3, len(FEATURES))), 1e-4, 1e4)
    config = FusionConfig()
    ref = fuse_reference(depth, lidar, config)
    field = fuse_field(depth, lidar, config)
    phi = features(ref, residual)
    # The scene varies every per-cell feature (without returns: those of the depth).
    varied = [1, 2, 3, 4, 5, 9, 10] if returns else [5, 9]
    assert np.ptp(phi, axis=(1, 2))[varied].min() > 0
    for fused in (True, False):
        np.testing.assert_allclose(model.relative_sigma_cells(field, residual, fused),
                                   model.relative_sigma(phi, fused), rtol=2e-5)
    shipped = UncertaintyModel.load()
    np.testing.assert_allclose(shipped.relative_sigma_cells(field, residual),
                               shipped.relative_sigma(phi), rtol=2e-5)
