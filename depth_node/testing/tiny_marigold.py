"""A tiny randomly initialised Marigold depth checkpoint, for benchmarks and tests.

:func:`save_tiny_marigold` writes a folder that ``MarigoldDepthPipeline.from_pretrained`` (and
so :class:`~depth_node.estimators.marigold.MarigoldEstimator`) loads like
``prs-eth/marigold-depth-v1-1``: ``model_index.json`` and the five components, weights in
safetensors. The components follow diffusers' own dummy recipe for its Marigold depth tests
(``tests/pipelines/marigold/test_marigold_depth.py``: a two-level ``UNet2DConditionModel`` with
8 input channels, an ``AutoencoderKL``, a DDIM or LCM scheduler with v-prediction, a
``CLIPTextModel``), made smaller still so that a CPU runs them in tens of milliseconds, with
two differences:

* the tokenizer is a ``CLIPTokenizer`` built here from a vocabulary of a few dozen entries
  (diffusers' tests download ``hf-internal-testing/tiny-random-clip``, which needs a network);
  Marigold only ever tokenises the empty prompt;
* the VAE has ``vae_levels`` levels (default 4, as Stable Diffusion's), so that the latent is
  1/8 of the processing resolution like the real model's, not 1/2.

Its predictions are meaningless but deterministic for a given seed and image dependent. Keep
the processing resolution small (<= 256): the random VAE and UNet cost grows with its square.
This module is a tool, not part of the node; the tests wrap it in ``test/tiny_models.py``.
"""

from __future__ import annotations

import os
import pathlib
import string
from typing import Union

__all__ = ['save_tiny_marigold']


def save_tiny_marigold(folder: Union[str, os.PathLike], seed: int = 0,
                       scheduler: str = 'ddim', denoising_steps: int = 2,
                       processing_resolution: int = 64, prediction_type: str = 'depth',
                       vae_levels: int = 4) -> pathlib.Path:
    """Save a tiny random ``MarigoldDepthPipeline`` as a diffusers folder.

    Parameters
    ----------
    folder : str or path-like
        Created if needed; receives ``model_index.json`` and ``unet/``, ``vae/``,
        ``scheduler/``, ``text_encoder/``, ``tokenizer/``.
    seed : int
        Seed of the random weights (the global torch RNG is left untouched).
    scheduler : str
        ``'ddim'`` (as Marigold v1-0/v1-1) or ``'lcm'`` (as the LCM variants).
    denoising_steps : int
        Stored as the checkpoint's ``default_denoising_steps``.
    processing_resolution : int
        Stored as the checkpoint's ``default_processing_resolution`` (pixels, a multiple of
        ``2 ** (vae_levels - 1)``).
    prediction_type : str
        Stored as the checkpoint's ``prediction_type`` (``'depth'`` or ``'disparity'``).
    vae_levels : int
        Levels of the VAE (>= 1); the latent is ``2 ** (vae_levels - 1)`` times smaller than
        the processed image.

    Returns
    -------
    pathlib.Path
        ``folder``.
    """
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, LCMScheduler, MarigoldDepthPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if scheduler not in ('ddim', 'lcm'):
        raise ValueError(f"scheduler must be 'ddim' or 'lcm', got {scheduler!r}")
    if vae_levels < 1:
        raise ValueError(f'vae_levels must be >= 1, got {vae_levels}')
    # The scheduler settings of the Marigold checkpoints (v-prediction, scaled-linear betas).
    sched_args = dict(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear',
                      prediction_type='v_prediction', set_alpha_to_one=False, steps_offset=1,
                      clip_sample=False, thresholding=False, timestep_spacing='trailing')
    sched = DDIMScheduler(**sched_args) if scheduler == 'ddim' else LCMScheduler(**sched_args)
    # Vocabulary: the CLIP special tokens (ids as in the text encoder config below) and single
    # characters, with and without CLIP's end-of-word suffix; no merges.
    vocab = {'<|startoftext|>': 0, '<|pad|>': 1, '<|endoftext|>': 2}
    for ch in string.ascii_lowercase + string.digits:
        vocab[ch] = len(vocab)
        vocab[ch + '</w>'] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], pad_token='<|endoftext|>',
                              model_max_length=77)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=32, in_channels=8, out_channels=4, layers_per_block=1,
            block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=8,
            down_block_types=('DownBlock2D', 'CrossAttnDownBlock2D'),
            up_block_types=('CrossAttnUpBlock2D', 'UpBlock2D'), cross_attention_dim=16)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
            block_out_channels=[8] * vae_levels, norm_num_groups=4,
            down_block_types=['DownEncoderBlock2D'] * vae_levels,
            up_block_types=['UpDecoderBlock2D'] * vae_levels)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=2, bos_token_id=0, pad_token_id=1, eos_token_id=2,
            max_position_embeddings=77))
    for module in (unet, vae, text_encoder):
        module.eval()
    pipe = MarigoldDepthPipeline(
        unet=unet, vae=vae, scheduler=sched, text_encoder=text_encoder, tokenizer=tokenizer,
        prediction_type=prediction_type, scale_invariant=True, shift_invariant=True,
        default_denoising_steps=denoising_steps,
        default_processing_resolution=processing_resolution)
    path = pathlib.Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(path, safe_serialization=True)
    return path
