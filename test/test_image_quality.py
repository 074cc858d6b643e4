"""The compiled image check (core/image_quality.py) against its numpy reference."""

import numpy as np
import pytest

from depth_node.core.image_quality import assess_image, assess_image_reference, block_size, \
    luminance, luminance_reference, QualityConfig


def _images():
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:480, 0:640]
    scene = np.stack([(x * 0.3 + y * 0.1) % 256, (y * 0.4) % 256, (x * y) % 251], -1) \
        .astype(np.uint8)
    return {'scene': scene, 'black': np.zeros((480, 640, 3), np.uint8),
            'noise': rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
            'grey_hd': np.full((720, 1280, 3), 128, np.uint8),
            'odd_size': scene[:301, :457].copy(),
            'non_integer_factor': rng.integers(0, 256, (767, 1023, 3), dtype=np.uint8),
            'small': scene[:90, :120].copy(), 'saturated': np.full((100, 100, 3), 255, np.uint8),
            'one_row': scene[:1].copy(), 'one_column': scene[:, :1].copy()}


@pytest.mark.parametrize('name', list(_images()))
def test_compiled_image_check_matches_the_numpy_reference(name):
    img = _images()[name]
    np.testing.assert_allclose(luminance(img, 160), luminance_reference(img, 160), rtol=1e-6,
                               atol=1e-4)
    fast, ref = assess_image(img), assess_image_reference(img)
    assert fast.problem == ref.problem and fast.message.split('(')[0] == ref.message.split('(')[0]
    np.testing.assert_allclose([fast.p99, fast.saturated, fast.std],
                               [ref.p99, ref.saturated, ref.std], rtol=1e-4, atol=1e-3)
    assert abs(fast.correlation - ref.correlation) < 1e-4


def test_luminance_copy_size_and_percentile_tail():
    assert block_size(480, 640, 160) == (4, 4) and block_size(767, 1023, 160) == (7, 7)
    assert block_size(90, 120, 160) == (1, 1) and block_size(1, 640, 160) == (1, 4)
    assert luminance(np.zeros((767, 1023, 3), np.uint8), 160).shape == (109, 146)
    # The 99th percentile is exact, interpolated as numpy's: 1 % of a black image lit, so
    # it falls 1 % of the way from the last 0 to the first 255.
    img = np.zeros((400, 400, 3), np.uint8)
    img[:4] = 255
    q = assess_image(img, QualityConfig(side=400))
    assert q.p99 == pytest.approx(2.55, abs=1e-3) == float(np.percentile(
        luminance_reference(img, 400), 99))
