"""Student networks: Depth Anything V2 architecture (transformers) in sizes that train on a CPU.

A student is a ``DepthAnythingForDepthEstimation`` (DINOv2 backbone + DPT head, relative
disparity, ReLU output), saved as an ordinary Hugging Face folder (``config.json``,
``model.safetensors``) plus a ``preprocessor_config.json`` in the format of the Hub's
Depth Anything folders (``size`` = the network input's lower bound). The estimator loads it like
any Depth Anything V2 checkpoint and takes its input size from that file
(``estimator.input_size: 0``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

from depth_node.core.errors import ConfigError
from depth_node.estimators.depth_anything_config import (depth_anything_config,
                                                         PRESETS as ARCHITECTURES, STUDENTS)
from depth_node.estimators.preprocess import IMAGENET_MEAN, IMAGENET_STD, PATCH_SIZE

__all__ = ['PRESETS', 'build_student', 'random_network', 'save_student', 'student_config',
           'write_preprocessor']

#: Student sizes (architectures in :data:`~depth_node.estimators.depth_anything_config.PRESETS`):
#: ``small`` is Depth Anything V2's ViT-S; ``tiny`` is what ships (about 3 M parameters);
#: ``micro`` is for tests.
PRESETS: dict[str, dict[str, Any]] = {name: ARCHITECTURES[name] for name in STUDENTS}


def student_config(preset: str = 'tiny', grid: int = 37) -> DepthAnythingConfig:
    """Transformers configuration of a relative-depth student.

    Parameters
    ----------
    preset : str
        One of :data:`PRESETS`.
    grid : int
        Side of the stored position-embedding grid in patches (37 = 518 px, as DINOv2); any
        other network input resamples it (see :mod:`depth_node.estimators.depth_anything`).

    Raises
    ------
    ConfigError
        (a ValueError) naming ``preset`` or ``grid``.
    """
    if preset not in PRESETS:
        raise ConfigError('preset', 'must be one of ' + ', '.join(PRESETS), preset)
    return depth_anything_config(preset, grid=grid, parameter='preset')


def build_student(config: DepthAnythingConfig, seed: int,
                  head_bias: float = 1.0) -> DepthAnythingForDepthEstimation:
    """A freshly initialised student, seeded (the global torch RNG is left as it was).

    The backbone keeps transformers' ViT initialisation (truncated normal, std 0.02); the
    convolutions of neck and head get PyTorch's default initialisation, as the official DPT
    head has. (Transformers' std-0.02 convolutions shrink the signal through the neck so much
    that the first prediction is ~1e-5 and nearly constant.) The last bias starts at
    ``head_bias`` so that the final ReLU passes most pixels from the first step.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DepthAnythingForDepthEstimation(config)
        for module in list(model.neck.modules()) + list(model.head.modules()):
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                module.reset_parameters()
        with torch.no_grad():
            model.head.conv3.bias.fill_(head_bias)
    return model.train()


def random_network(config: DepthAnythingConfig, seed: int = 0, head_bias: float = 0.5,
                   position_std: Optional[float] = None) -> DepthAnythingForDepthEstimation:
    """A network of ``config`` in eval mode with random, image-dependent weights (a baseline).

    Each weight matrix is drawn from N(0, 1/fan_in) and biases from N(0, 0.1); transformers'
    own std-0.02 initialisation gives a nearly constant output. The last convolution is made
    non-negative with bias ``head_bias``: a relative model's output is then strictly positive
    (the final ReLU never clips). ``position_std`` redraws the position embeddings from
    N(0, std) too (None keeps transformers' draw). The global torch RNG is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DepthAnythingForDepthEstimation(config).eval()
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.ndim >= 2:
                    param.normal_(0.0, param[0].numel() ** -0.5)
                elif name.endswith('bias'):
                    param.normal_(0.0, 0.1)
            if position_std is not None:
                model.backbone.embeddings.position_embeddings.normal_(0.0, position_std)
            model.head.conv3.weight.abs_()
            model.head.conv3.bias.fill_(head_bias)
    return model


def write_preprocessor(folder: Union[str, os.PathLike], input_size: int) -> Path:
    """Write the Hub-style ``preprocessor_config.json`` stating the network input size."""
    path = Path(folder) / 'preprocessor_config.json'
    data = {
        'image_processor_type': 'DPTImageProcessor', 'do_resize': True,
        'size': {'height': int(input_size), 'width': int(input_size)},
        'keep_aspect_ratio': True, 'ensure_multiple_of': PATCH_SIZE, 'resample': 3,
        'do_rescale': True, 'rescale_factor': 1 / 255, 'do_normalize': True,
        'image_mean': IMAGENET_MEAN.tolist(), 'image_std': IMAGENET_STD.tolist(),
        'do_pad': False,
    }
    path.write_text(json.dumps(data, indent=2) + '\n', encoding='utf-8')
    return path


def save_student(model: DepthAnythingForDepthEstimation, folder: Union[str, os.PathLike],
                 input_size: int, card: Optional[str] = None) -> Path:
    """Save ``model`` as a Hugging Face folder the estimator loads (float32 safetensors).

    ``card``, when given, is written as ``README.md`` (what the model is, how it was trained).
    """
    from transformers.utils import logging as hf_logging

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    hf_logging.disable_progress_bar()  # one file: a bar per save only clutters the training bar
    model.save_pretrained(path, safe_serialization=True)
    write_preprocessor(path, input_size)
    if card is not None:
        (path / 'README.md').write_text(card, encoding='utf-8')
    return path
