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

    The backbone is a DINOv2 with 14-pixel patches and 37 x 37 position embeddings (the real
    518 x 518 grid), ``hidden_size`` wide and ``num_layers`` deep, tapped after each of its last
    four layers; neck and head are a few channels wide.

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
    from transformers import DepthAnythingConfig, Dinov2Config

    if num_layers < 4:
        raise ValueError(f'num_layers must be >= 4 (four tapped layers), got {num_layers}')
    backbone = Dinov2Config(
        image_size=518, patch_size=14, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=2, mlp_ratio=2, layerscale_value=1.0, reshape_hidden_states=False,
        out_indices=list(range(num_layers - 3, num_layers + 1)))
    config = DepthAnythingConfig(
        backbone_config=backbone, patch_size=14, reassemble_hidden_size=hidden_size,
        reassemble_factors=[4, 2, 1, 0.5], neck_hidden_sizes=[8, 8, 16, 16],
        fusion_hidden_size=16, head_hidden_size=8, depth_estimation_type=depth_estimation_type,
        max_depth=max_depth if depth_estimation_type == 'metric' else 1)
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
