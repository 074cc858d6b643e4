"""The official Depth Anything V2 code as a test reference: import it, build a random ViT-S.

The official implementation (``depth_anything_v2`` from PyPI ``jkp-depth-anything-v2``) is what
the Depth Anything estimator is checked against (``test/test_depth_anything.py``) and timed
against (``benchmark backends``). It is never imported by the node.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any, Callable, Sequence

import numpy as np


def import_official() -> types.ModuleType:
    """``depth_anything_v2.dpt``; torchvision is stubbed while importing if it is missing.

    The official code imports torchvision only for ``transforms.Compose``, and torchvision
    does not install next to this CPU torch. The stand-in modules are removed afterwards
    (transformers probes for torchvision with ``find_spec``, which they would break).
    """
    if importlib.util.find_spec('depth_anything_v2') is None:
        raise RuntimeError('the official Depth Anything V2 code is not installed '
                           '(pip install --no-deps jkp-depth-anything-v2)')
    if importlib.util.find_spec('torchvision') is not None:
        return importlib.import_module('depth_anything_v2.dpt')

    class Compose:
        def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
            self.transforms = transforms

        def __call__(self, sample: Any) -> Any:
            for transform in self.transforms:
                sample = transform(sample)
            return sample

    transforms = types.ModuleType('torchvision.transforms')
    transforms.Compose = Compose
    package = types.ModuleType('torchvision')
    package.transforms = transforms
    stubs = {'torchvision': package, 'torchvision.transforms': transforms}
    sys.modules.update(stubs)
    try:
        return importlib.import_module('depth_anything_v2.dpt')
    finally:
        for name, stub in stubs.items():
            if sys.modules.get(name) is stub:
                del sys.modules[name]


def random_official_vits(official: types.ModuleType, seed: int = 0) -> Any:
    """Official ViT-S ``DepthAnythingV2`` with fan-in scaled random weights, eval mode."""
    import torch

    model = official.DepthAnythingV2(encoder='vits', features=64,
                                     out_channels=[48, 96, 192, 384]).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * param[0].numel() ** -0.5)
            else:
                scale = name.endswith('.gamma') or ('norm' in name and name.endswith('weight'))
                param.copy_(float(scale) + 0.1 * torch.randn(param.shape, generator=gen))
        last = model.depth_head.scratch.output_conv2[2]  # keep the final ReLU from clipping
        last.weight.abs_()
        last.bias.fill_(0.5)
    return model


def scene_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth textured RGB scene ``[H, W, 3]`` uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([np.sin(6 * xx + 1), np.cos(5 * yy), np.sin(4 * (xx + yy))], axis=-1)
    return np.clip(127.5 + 90 * base + rng.normal(0, 20, (height, width, 3)), 0,
                   255).astype(np.uint8)
