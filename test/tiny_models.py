"""Tiny randomly initialised models, saved in their real on-disk formats, for fast tests.

They have the architecture of the real models (so every code path that loads and runs one is
exercised) with a few thousand parameters, build in well under a second and run at the real
input sizes on a CPU in milliseconds. Their predictions are meaningless but deterministic for
a given seed, image dependent, non-negative and mostly positive.
"""

from __future__ import annotations

import os
import pathlib
from typing import Union


def random_depth_anything(config, seed: int = 0, head_bias: float = 0.5):
    """A ``DepthAnythingForDepthEstimation`` in eval mode with image-dependent random weights.

    :func:`depth_node.training.student.random_network` with the position embeddings redrawn
    too (std 0.5), so the output depends on where a pixel is as well as on the image.
    """
    from depth_node.training.student import random_network

    return random_network(config, seed, head_bias, position_std=0.5)


def save_tiny_depth_anything(folder: Union[str, os.PathLike], seed: int = 0,
                             depth_estimation_type: str = 'relative', max_depth: int = 20,
                             hidden_size: int = 32, num_layers: int = 4) -> pathlib.Path:
    """Save a tiny ``DepthAnythingForDepthEstimation`` as a Hugging Face folder.

    The ``micro`` architecture of :func:`~depth_node.estimators.depth_anything_config.
    depth_anything_config`: a DINOv2 with 14-pixel patches and 37 x 37 position embeddings (the
    real 518 x 518 grid), ``hidden_size`` wide and ``num_layers`` deep, tapped after each of its
    last four layers; neck and head are a few channels wide.

    Parameters
    ----------
    folder : str or path-like
        Created if needed; receives ``config.json`` and ``model.safetensors``.
    seed : int
        Seed of the random weights (the global torch RNG is left untouched).
    depth_estimation_type : str
        ``'relative'`` (ReLU head, disparity) or ``'metric'`` (sigmoid head x ``max_depth``).
    max_depth : int
        Maximum depth of a metric head, metres (transformers wants an integer); ignored for
        relative models.
    hidden_size : int
        Backbone width (a multiple of 16: two attention heads of at least 8 channels).
    num_layers : int
        Backbone depth, at least 4.

    Returns
    -------
    pathlib.Path
        ``folder``.
    """
    from depth_node.estimators.depth_anything_config import depth_anything_config

    if num_layers < 4:
        raise ValueError(f'num_layers must be >= 4 (four tapped layers), got {num_layers}')
    config = depth_anything_config(
        'micro', metric=depth_estimation_type == 'metric', max_depth=max_depth,
        hidden=hidden_size, layers=num_layers, taps=tuple(range(num_layers - 4, num_layers)))
    model = random_depth_anything(config, seed,
                                  head_bias=0.5 if depth_estimation_type == 'relative' else -1.0)
    path = pathlib.Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    return path


def save_tiny_marigold(folder: Union[str, os.PathLike], seed: int = 0, scheduler: str = 'ddim',
                       denoising_steps: int = 2, processing_resolution: int = 64,
                       prediction_type: str = 'depth') -> pathlib.Path:
    """Save a tiny random ``MarigoldDepthPipeline`` as a diffusers folder (safetensors).

    Built from configs following diffusers' dummy components of its Marigold depth tests
    (UNet2DConditionModel, AutoencoderKL, DDIM or LCM scheduler, CLIPTextModel) with a
    ``CLIPTokenizer`` made from a local vocabulary, every module in eval mode; see
    :func:`depth_node.testing.tiny_marigold.save_tiny_marigold`, which the keyframe benchmark
    uses too. ``denoising_steps`` and ``processing_resolution`` become the checkpoint's
    defaults. Runs at 640x480 in tens of milliseconds per member at a processing resolution
    of 64; keep it <= 256.
    """
    from depth_node.testing.tiny_marigold import save_tiny_marigold as save

    return save(folder, seed=seed, scheduler=scheduler, denoising_steps=denoising_steps,
                processing_resolution=processing_resolution, prediction_type=prediction_type)
