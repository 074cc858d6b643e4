"""Depth Anything (V1/V2) through Hugging Face transformers, faithful to the official code.

What ``predict`` computes
-------------------------
The same numbers as the official ``DepthAnythingV2.infer_image`` (github.com/DepthAnything/
Depth-Anything-V2, ``depth_anything_v2/dpt.py``), for an RGB instead of a BGR input:

1. ``rgb / 255`` in float64; resize (``cv2.INTER_CUBIC``) keeping the aspect ratio so that both
   sides are at least ``input_size`` ("lower_bound") and multiples of 14, with the official
   rounding (:func:`network_input_size`); ImageNet mean/std; float32 ``[1, 3, h, w]``.
2. The network; its prediction is ReLU'd (relative models) or sigmoid x ``max_depth`` (metric).
3. Bilinear resize (``align_corners=True``) back to the input ``H, W``.

Relative models predict affine-invariant **disparity** (larger = nearer); metric models
(``depth_estimation_type == 'metric'`` in the transformers config) predict **depth** in metres.

Model files
-----------
``model_path`` is either

* a local Hugging Face folder (``config.json`` + weights, e.g. a download of
  ``depth-anything/Depth-Anything-V2-Small-hf``), loaded with
  ``DepthAnythingForDepthEstimation.from_pretrained(path, local_files_only=True)``; missing or
  mis-shaped weights are an error (transformers would silently initialise them at random);
* an official checkpoint ``depth_anything_v2_{vits,vitb,vitl,vitg}.pth`` (also the metric
  ``depth_anything_v2_metric_{hypersim,vkitti}_<encoder>.pth``), loaded with
  ``torch.load(weights_only=True)`` and renamed onto the transformers model by
  :func:`convert_official_state_dict`, then loaded strictly.

No code from a model file is ever executed.

Position embeddings at sizes other than 518 x 518
-------------------------------------------------
DINOv2 stores 37 x 37 position embeddings (518 / 14). At any other token grid they are
resampled bicubically, and the two implementations do it differently:

* official: ``interpolate(scale_factor=((h // 14 + 0.1) / 37, (w // 14 + 0.1) / 37))`` - the
  0.1 offset (a DINO work-around for float rounding of the output size) makes the *sampling
  positions* follow the scale ``(n + 0.1) / 37`` rather than ``n / 37``, and even a side of
  exactly 37 patches is resampled when the other side is not;
* transformers 5: ``interpolate(size=(h // 14, w // 14))``.

The predictions then differ - for every non-square camera image and every ``input_size`` other
than 518 - by a per-cent-level amount (with the random ViT-S weights of the tests: 2-3.5 % of
the maximum at worst, 0.4-0.9 % on average). This module reproduces the official
behaviour by default (``pos_embed_interpolation='official'``) by swapping the class of the
backbone's embeddings module for a subclass whose ``interpolate_pos_encoding`` follows the
official formula; weights and every other layer are untouched. The official numbers are the
ones the published accuracy figures were measured with, and a model is then interchangeable
between the ``.pth`` and the Hugging Face folder. ``pos_embed_interpolation='transformers'``
keeps the transformers behaviour (what the transformers ``pipeline`` gives). At a 518 x 518
network input both paths use the embeddings unchanged and agree.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import re
from typing import Any, Optional, Union

import cv2
import numpy as np

from depth_node.core.align import OutputKind, OutputSpec
from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.estimators.base import (check_input_image, check_prediction, EstimatorConfig,
                                        resolve_torch_device)

try:
    import torch
    import torch.nn.functional as F
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        'the depth_anything estimator needs PyTorch and Hugging Face transformers: '
        f'pip install torch==2.13.0 transformers safetensors ({_exc})') from _exc

__all__ = [
    'DepthAnythingEstimator', 'ENCODERS', 'PATCH_SIZE', 'convert_official_state_dict',
    'infer_encoder', 'load_model', 'network_input_size', 'official_config',
    'use_official_pos_embed_interpolation',
]

_LOG = logging.getLogger(__name__)

#: Side of a ViT patch in pixels; network inputs are multiples of it.
PATCH_SIZE = 14
# ImageNet statistics, as the official transform uses them (RGB order).
_MEAN = np.array([0.485, 0.456, 0.406])
_STD = np.array([0.229, 0.224, 0.225])

#: Official encoders: DINOv2 width/depth/heads, the DPT head's ``features`` and
#: ``out_channels``, and the (0-based) blocks whose outputs feed the head.
ENCODERS: dict[str, dict[str, Any]] = {
    'vits': {'hidden': 384, 'layers': 12, 'heads': 6, 'features': 64,
             'out_channels': (48, 96, 192, 384), 'taps': (2, 5, 8, 11)},
    'vitb': {'hidden': 768, 'layers': 12, 'heads': 12, 'features': 128,
             'out_channels': (96, 192, 384, 768), 'taps': (2, 5, 8, 11)},
    'vitl': {'hidden': 1024, 'layers': 24, 'heads': 16, 'features': 256,
             'out_channels': (256, 512, 1024, 1024), 'taps': (4, 11, 17, 23)},
    'vitg': {'hidden': 1536, 'layers': 40, 'heads': 24, 'features': 384,
             'out_channels': (1536, 1536, 1536, 1536), 'taps': (9, 19, 29, 39)},
}
# Metric checkpoints: training set named in the file -> maximum depth of the sigmoid head [m].
_METRIC_MAX_DEPTH = {'hypersim': 20, 'vkitti': 80}

_PRECISIONS = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}
_INTERPOLATIONS = ('official', 'transformers')


# ------------------------------------------------------------------------------------------------
# Geometry of the network input


def network_input_size(height: int, width: int, input_size: int = 518,
                       multiple: int = PATCH_SIZE) -> tuple[int, int]:
    """Network input ``(h, w)`` for an image ``height x width``, as the official transform picks.

    Keeps the aspect ratio with the larger of the two scales (both sides end up
    ``>= input_size``), rounds each side to the nearest multiple of ``multiple`` with numpy's
    round-half-to-even, and rounds up instead when that would fall below ``input_size``.

    Parameters
    ----------
    height, width : int
        Image size in pixels.
    input_size : int
        Lower bound for both sides of the network input, pixels.
    multiple : int
        Both sides are multiples of this (the ViT patch size).

    Returns
    -------
    tuple of int
        ``(h, w)`` in pixels.
    """
    scale = max(input_size / height, input_size / width)

    def constrain(x: float) -> int:
        y = int(np.round(x / multiple) * multiple)
        if y < input_size:
            y = int(np.ceil(x / multiple) * multiple)
        return y

    return constrain(scale * height), constrain(scale * width)


# ------------------------------------------------------------------------------------------------
# Position-embedding interpolation


class _OfficialPosEmbeddings(Dinov2Embeddings):
    """DINOv2 embeddings whose position-embedding resampling follows the official DINOv2 code."""

    def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int,
                                 width: int) -> torch.Tensor:
        """Position embeddings ``[1, 1 + n_h * n_w, C]`` for an input ``height x width`` pixels.

        Resamples the stored grid bicubically with the official scale factor
        ``(n + 0.1) / grid`` per side (``n`` = patches on that side), in float32.
        """
        num_patches = embeddings.shape[1] - 1
        num_positions = self.position_embeddings.shape[1] - 1
        if num_patches == num_positions and height == width:
            return self.position_embeddings
        grid = math.sqrt(num_positions)
        patch_h, patch_w = self.patch_embeddings.patch_size
        rows, cols = height // patch_h, width // patch_w
        dim = embeddings.shape[-1]
        class_pos = self.position_embeddings[:, :1]
        patch_pos = self.position_embeddings[:, 1:].float()
        patch_pos = patch_pos.reshape(1, int(grid), int(grid), dim).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, scale_factor=((rows + 0.1) / grid,
                                                           (cols + 0.1) / grid),
                                  mode='bicubic', antialias=False)  # [1, C, rows, cols]
        if tuple(patch_pos.shape[-2:]) != (rows, cols):
            raise DepthNodeError('position-embedding interpolation gave a grid of '
                                 f'{tuple(patch_pos.shape[-2:])} for {rows} x {cols} patches')
        patch_pos = patch_pos.to(self.position_embeddings.dtype)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)
        return torch.cat((class_pos, patch_pos), dim=1)


def use_official_pos_embed_interpolation(model: DepthAnythingForDepthEstimation,
                                         official: bool = True) -> None:
    """Make ``model`` resample its position embeddings like the official code (or like HF).

    Swaps the class of ``model.backbone.embeddings`` between transformers' ``Dinov2Embeddings``
    and a subclass that only overrides ``interpolate_pos_encoding``; no weight changes.
    """
    embeddings = model.backbone.embeddings
    if not isinstance(embeddings, Dinov2Embeddings):
        raise DepthNodeError('the model backbone is not DINOv2 (embeddings of type '
                             f'{type(embeddings).__name__}); cannot set its interpolation')
    embeddings.__class__ = _OfficialPosEmbeddings if official else Dinov2Embeddings


# ------------------------------------------------------------------------------------------------
# Official checkpoints


def infer_encoder(path: Union[str, os.PathLike]) -> str:
    """Return the encoder (``vits``, ``vitb``, ``vitl``, ``vitg``) a file name states, or ''.

    The name must contain the encoder as a separate word, e.g. ``depth_anything_v2_vitl.pth``.
    """
    found = set(re.findall(r'(?<![a-z0-9])(vit[sblg])(?![a-z0-9])',
                           os.path.basename(os.fspath(path)).lower()))
    return found.pop() if len(found) == 1 else ''


def _metric_max_depth(path: Union[str, os.PathLike]) -> Optional[int]:
    """``max_depth`` [m] of an official metric checkpoint named in its file, None if relative."""
    name = os.path.basename(os.fspath(path)).lower()
    if 'metric' not in name:
        return None
    for dataset, max_depth in _METRIC_MAX_DEPTH.items():
        if dataset in name:
            return max_depth
    raise ConfigError('estimator.model_path', 'an official metric checkpoint must name its '
                      'training set (' + ' or '.join(_METRIC_MAX_DEPTH) + ') in the file name, '
                      'which sets its maximum depth', os.fspath(path))


def official_config(encoder: str, metric: bool = False,
                    max_depth: int = 1) -> DepthAnythingConfig:
    """Build the transformers configuration equivalent to the official ``DepthAnythingV2``.

    Parameters
    ----------
    encoder : str
        One of :data:`ENCODERS`.
    metric : bool
        Sigmoid head scaled by ``max_depth`` (official metric models) instead of ReLU.
    max_depth : int
        Maximum depth of a metric head, metres (20 indoor / Hypersim, 80 outdoor / VKITTI);
        transformers' configuration only accepts an integer.
    """
    if encoder not in ENCODERS:
        raise ConfigError('estimator.encoder', 'must be one of ' + ', '.join(ENCODERS), encoder)
    spec = ENCODERS[encoder]
    backbone = Dinov2Config(
        image_size=518, patch_size=PATCH_SIZE, hidden_size=spec['hidden'],
        num_hidden_layers=spec['layers'], num_attention_heads=spec['heads'], mlp_ratio=4,
        qkv_bias=True, layerscale_value=1.0, layer_norm_eps=1e-6, hidden_act='gelu',
        use_swiglu_ffn=encoder == 'vitg', apply_layernorm=True, reshape_hidden_states=False,
        # hidden_states[0] is the embedding output, so block i is hidden state i + 1.
        out_indices=[i + 1 for i in spec['taps']])
    return DepthAnythingConfig(
        backbone_config=backbone, patch_size=PATCH_SIZE, reassemble_hidden_size=spec['hidden'],
        reassemble_factors=[4, 2, 1, 0.5], neck_hidden_sizes=list(spec['out_channels']),
        fusion_hidden_size=spec['features'], head_in_index=-1, head_hidden_size=32,
        depth_estimation_type='metric' if metric else 'relative',
        max_depth=max_depth if metric else 1)


# Official name -> transformers name, applied in order with re.sub (first match wins). The
# fused tensors (attn.qkv, SwiGLU mlp.w12) are split separately in convert_official_state_dict.
_BLOCK = r'^pretrained\.blocks\.(\d+)\.'  # official transformer block i ...
_LAYER = r'backbone.encoder.layer.\1.'  # ... is transformers' encoder layer i
_RENAMES: tuple[tuple[str, str], ...] = (
    # DINOv2 backbone
    (r'^pretrained\.cls_token$', 'backbone.embeddings.cls_token'),
    (r'^pretrained\.mask_token$', 'backbone.embeddings.mask_token'),
    (r'^pretrained\.pos_embed$', 'backbone.embeddings.position_embeddings'),
    (r'^pretrained\.patch_embed\.proj\.', 'backbone.embeddings.patch_embeddings.projection.'),
    (r'^pretrained\.norm\.', 'backbone.layernorm.'),
    (_BLOCK + r'norm([12])\.', _LAYER + r'norm\2.'),
    (_BLOCK + r'attn\.proj\.', _LAYER + 'attention.o_proj.'),
    (_BLOCK + r'ls([12])\.gamma$', _LAYER + r'layer_scale\2.lambda1'),
    (_BLOCK + r'mlp\.(fc[12])\.', _LAYER + r'mlp.\2.'),
    (_BLOCK + r'mlp\.w3\.', _LAYER + 'mlp.down_proj.'),
    # DPT neck: reassemble (1x1 projection + resampling), then 3x3 convs into the fusion width
    (r'^depth_head\.projects\.(\d)\.', r'neck.reassemble_stage.layers.\1.projection.'),
    (r'^depth_head\.resize_layers\.(\d)\.', r'neck.reassemble_stage.layers.\1.resize.'),
    (r'^depth_head\.scratch\.layer1_rn\.', 'neck.convs.0.'),
    (r'^depth_head\.scratch\.layer2_rn\.', 'neck.convs.1.'),
    (r'^depth_head\.scratch\.layer3_rn\.', 'neck.convs.2.'),
    (r'^depth_head\.scratch\.layer4_rn\.', 'neck.convs.3.'),
    # Fusion: official refinenet4 (deepest) is transformers' fusion layer 0, refinenet1 layer 3.
    (r'^depth_head\.scratch\.refinenet4\.', 'neck.fusion_stage.layers.0.'),
    (r'^depth_head\.scratch\.refinenet3\.', 'neck.fusion_stage.layers.1.'),
    (r'^depth_head\.scratch\.refinenet2\.', 'neck.fusion_stage.layers.2.'),
    (r'^depth_head\.scratch\.refinenet1\.', 'neck.fusion_stage.layers.3.'),
    # Head
    (r'^depth_head\.scratch\.output_conv1\.', 'head.conv1.'),
    (r'^depth_head\.scratch\.output_conv2\.0\.', 'head.conv2.'),
    (r'^depth_head\.scratch\.output_conv2\.2\.', 'head.conv3.'),
)
# Inside a fusion layer (applied after the prefix above has been renamed).
_FUSION_RENAMES: tuple[tuple[str, str], ...] = (
    (r'\.out_conv\.', '.projection.'),
    (r'\.resConfUnit([12])\.conv([12])\.', r'.residual_layer\1.convolution\2.'),
)
_FUSED = re.compile(r'^pretrained\.blocks\.(\d+)\.(attn\.qkv|mlp\.w12)\.(weight|bias)$')


def convert_official_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official Depth Anything V2 state dict onto ``DepthAnythingForDepthEstimation``.

    The fused attention projection ``attn.qkv`` ``[3C, C]`` is split into ``q_proj``,
    ``k_proj``, ``v_proj`` ``[C, C]`` each (in that order); the fused SwiGLU input ``mlp.w12``
    ``[2F, C]`` of ViT-g into ``gate_proj`` (first half, the SiLU branch) and ``up_proj``.
    A key that no rule knows is kept unchanged, so that a strict load reports it.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        fused = _FUSED.match(key)
        if fused:
            block, which, kind = fused.groups()
            prefix = f'backbone.encoder.layer.{block}.'
            if which == 'attn.qkv':
                names = ('attention.q_proj', 'attention.k_proj', 'attention.v_proj')
            else:
                names = ('mlp.gate_proj', 'mlp.up_proj')
            if value.shape[0] % len(names):
                raise DepthNodeError(f'checkpoint tensor {key} has shape {tuple(value.shape)}, '
                                     f'not divisible into {len(names)} parts')
            for name, part in zip(names, torch.chunk(value, len(names), dim=0)):
                converted[f'{prefix}{name}.{kind}'] = part.contiguous()
            continue
        new = key
        for pattern, replacement in _RENAMES:
            new, count = re.subn(pattern, replacement, new)
            if count:
                break
        if new.startswith('neck.fusion_stage.'):
            for pattern, replacement in _FUSION_RENAMES:
                new = re.sub(pattern, replacement, new)
        converted[new] = value
    return converted


def _read_official_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """Tensors of an official ``.pth`` (a plain state dict, possibly wrapped), without code."""
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        # UnpicklingError: the file holds more than tensors (the weights-only loader refused
        # it, without running any of it); the others: not a (complete) PyTorch file.
        raise ConfigError('estimator.model_path', 'cannot be read as a weights-only PyTorch '
                          f'checkpoint ({type(exc).__name__}: {exc})', path) from exc
    for wrapper in ('state_dict', 'model'):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ConfigError('estimator.model_path', 'must hold a state dict (names -> tensors)',
                          path)
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in obj.items()}


def _load_official(path: str, encoder: str) -> DepthAnythingForDepthEstimation:
    """Build the transformers model for ``encoder`` and load an official checkpoint strictly."""
    given = encoder
    if not encoder:
        encoder = infer_encoder(path)
        if not encoder:
            raise ConfigError('estimator.encoder', 'must be set (one of ' + ', '.join(ENCODERS)
                              + ') when the checkpoint file name does not name the encoder',
                              encoder)
    elif encoder not in ENCODERS:
        raise ConfigError('estimator.encoder', 'must be one of ' + ', '.join(ENCODERS), encoder)
    max_depth = _metric_max_depth(path)
    state = _read_official_checkpoint(path)
    pos = state.get('pretrained.pos_embed')
    if pos is not None and pos.shape[-1] != ENCODERS[encoder]['hidden']:
        width = int(pos.shape[-1])
        match = [name for name, spec in ENCODERS.items() if spec['hidden'] == width]
        origin = '' if given else ' (taken from the file name)'
        raise ConfigError('estimator.encoder', f'{encoder}{origin} does not match the checkpoint '
                          f'{path!r}, whose embedding width {width} is that of '
                          f'{match or "no known encoder"}', given)
    config = official_config(encoder, metric=max_depth is not None,
                             max_depth=max_depth if max_depth is not None else 1)
    model = DepthAnythingForDepthEstimation(config)
    what = f'an official Depth Anything V2 {encoder} checkpoint'
    try:
        # strict=False only to report missing and unexpected names together, below.
        result = model.load_state_dict(convert_official_state_dict(state), strict=False)
    except RuntimeError as exc:  # tensors of the wrong shape
        raise ConfigError('estimator.model_path', f'is not {what}: {exc}', path) from exc
    if result.missing_keys or result.unexpected_keys:
        raise ConfigError(
            'estimator.model_path', f'is not {what}: '
            f'{len(result.missing_keys)} weights missing {_some(result.missing_keys)}, '
            f'{len(result.unexpected_keys)} unexpected {_some(result.unexpected_keys)} '
            '(after renaming to transformers names)', path)
    return model


def _some(keys: Any, n: int = 5) -> str:
    keys = sorted(keys)
    return '[' + ', '.join(keys[:n]) + (', ...]' if len(keys) > n else ']')


# ------------------------------------------------------------------------------------------------
# Hugging Face folders


def _load_hf_folder(path: str) -> DepthAnythingForDepthEstimation:
    """Load a local Hugging Face Depth Anything folder; fail on missing or mis-shaped weights."""
    config_file = os.path.join(path, 'config.json')
    if not os.path.isfile(config_file):
        raise ConfigError('estimator.model_path', 'a folder must be a Hugging Face model folder '
                          'with a config.json', path)
    try:
        with open(config_file, encoding='utf-8') as stream:
            model_type = json.load(stream).get('model_type')
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError('estimator.model_path', f'config.json is not readable JSON ({exc})',
                          path) from exc
    if model_type != 'depth_anything':
        raise ConfigError('estimator.model_path', 'config.json must have model_type '
                          f"'depth_anything', has {model_type!r}", path)
    try:
        model, info = DepthAnythingForDepthEstimation.from_pretrained(
            path, local_files_only=True, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigError('estimator.model_path', f'cannot be loaded by transformers ({exc})',
                          path) from exc
    missing = set(info.get('missing_keys') or ())
    mismatched = [k[0] if isinstance(k, tuple) else k for k in info.get('mismatched_keys') or ()]
    if missing or mismatched:
        raise ConfigError('estimator.model_path', f'{len(missing)} weights missing '
                          f'{_some(missing)}, {len(mismatched)} with the wrong shape '
                          f'{_some(mismatched)}', path)
    if info.get('unexpected_keys'):
        _LOG.warning('%s: ignoring %d unexpected weights %s', path,
                     len(info['unexpected_keys']), _some(info['unexpected_keys']))
    return model


def load_model(model_path: Union[str, os.PathLike],
               encoder: str = '') -> DepthAnythingForDepthEstimation:
    """Load a Depth Anything model from a Hugging Face folder or an official ``.pth``.

    Parameters
    ----------
    model_path : str or path-like
        Folder with ``config.json`` and weights, or an official checkpoint file.
    encoder : str
        ``vits``/``vitb``/``vitl``/``vitg`` for an official checkpoint whose file name does not
        say it; ignored for folders.

    Returns
    -------
    DepthAnythingForDepthEstimation
        On the CPU, float32, in eval mode, with the transformers position-embedding
        interpolation (see :func:`use_official_pos_embed_interpolation`).
    """
    path = os.fspath(model_path) if model_path is not None else ''
    if not path:
        raise ConfigError('estimator.model_path', 'must name a Hugging Face model folder or an '
                          'official Depth Anything V2 .pth checkpoint', path)
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        model = _load_hf_folder(path)
    elif os.path.isfile(path):
        model = _load_official(path, encoder)
    else:
        raise ConfigError('estimator.model_path', 'does not exist', path)
    return model.eval()


# ------------------------------------------------------------------------------------------------
# The estimator


def _resolve_device(device: str) -> torch.device:
    return resolve_torch_device(device, 'estimator.device')


class DepthAnythingEstimator:
    """Depth Anything V1/V2 (transformers) with the official pre- and post-processing.

    Parameters
    ----------
    model_path : str or path-like
        Hugging Face model folder or official ``.pth`` checkpoint (see the module docstring).
    encoder : str
        Encoder of an official checkpoint (``vits``, ``vitb``, ``vitl``, ``vitg``); '' = from
        the file name.
    input_size : int
        Lower bound of both network-input sides, pixels (official default 518).
    device : str
        ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
    precision : str
        Weights and activations in ``'fp32'``, ``'fp16'`` or ``'bf16'``; output is float32.
    pos_embed_interpolation : str
        ``'official'`` (default) or ``'transformers'``: how position embeddings are resampled
        for network inputs other than 518 x 518 (see the module docstring).

    Attributes
    ----------
    output : OutputSpec
        Relative disparity, or metric depth in metres (``depth_estimation_type == 'metric'``).
    name : str
        Short description for logs.
    model : DepthAnythingForDepthEstimation
        The network, in eval mode on ``device`` in ``precision``.
    """

    def __init__(self, model_path: Union[str, os.PathLike], encoder: str = '',
                 input_size: int = 518, device: str = 'cpu', precision: str = 'fp32',
                 pos_embed_interpolation: str = 'official') -> None:
        if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) \
                or input_size < PATCH_SIZE:
            raise ConfigError('estimator.input_size', f'must be an integer >= {PATCH_SIZE} '
                              'pixels', input_size)
        if precision not in _PRECISIONS:
            raise ConfigError('estimator.precision', 'must be one of ' + ', '.join(_PRECISIONS),
                              precision)
        if pos_embed_interpolation not in _INTERPOLATIONS:
            raise ConfigError('pos_embed_interpolation', 'must be one of '
                              + ', '.join(_INTERPOLATIONS), pos_embed_interpolation)
        self.input_size = int(input_size)
        self.device = _resolve_device(device)
        self.dtype = _PRECISIONS[precision]
        if self.dtype == torch.float16 and self.device.type == 'cpu':
            _LOG.warning('estimator.precision fp16 on the CPU is slow; fp32 or bf16 is faster')
        model = load_model(model_path, encoder)
        use_official_pos_embed_interpolation(model, pos_embed_interpolation == 'official')
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        config = model.config
        if config.depth_estimation_type == 'metric':
            self.output = OutputSpec(OutputKind.DEPTH, metric=True)
        else:
            self.output = OutputSpec(OutputKind.DISPARITY, metric=False)
        self.name = (f'depth_anything({os.path.basename(os.path.normpath(os.fspath(model_path)))}'
                     f', {self.device}, {precision})')

    @classmethod
    def from_config(cls, config: EstimatorConfig) -> 'DepthAnythingEstimator':
        """Build from the node's ``estimator.*`` parameters."""
        return cls(config.model_path, encoder=config.encoder, input_size=config.input_size,
                   device=config.device, precision=config.precision)

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """Network input ``[1, 3, h, w]`` float32 (CPU) from an RGB image ``[H, W, 3]`` uint8.

        ``h, w`` are given by :func:`network_input_size`; values are ImageNet-normalised.
        Float64 up to the final cast, as the official transform.
        """
        check_input_image(rgb)
        height, width = rgb.shape[:2]
        net_h, net_w = network_input_size(height, width, self.input_size)
        image = rgb / 255.0  # [H, W, 3] float64
        image = cv2.resize(image, (net_w, net_h), interpolation=cv2.INTER_CUBIC)
        image = (image - _MEAN) / _STD  # [h, w, 3] float64
        chw = np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32)  # [3, h, w]
        return torch.from_numpy(chw).unsqueeze(0)  # [1, 3, h, w]

    def infer(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Raw prediction ``[B, h, w]`` float32 on ``device`` for network input ``[B, 3, h, w]``.

        Disparity (relative models, ReLU'd, arbitrary scale) or depth in metres (metric).
        """
        with torch.inference_mode():
            pixels = pixel_values.to(device=self.device, dtype=self.dtype)
            return self.model(pixel_values=pixels).predicted_depth.float()  # [B, h, w]

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """Prediction ``[H, W]`` float32 for an RGB image ``[H, W, 3]`` uint8.

        Disparity (relative, non-negative, larger = nearer) or metric depth in metres, see
        :attr:`output`.
        """
        pixel_values = self.preprocess(rgb)  # [1, 3, h, w]
        height, width = rgb.shape[:2]
        with torch.inference_mode():
            pred = self.infer(pixel_values)  # [1, h, w]
            pred = F.interpolate(pred[:, None], (height, width), mode='bilinear',
                                 align_corners=True)[0, 0]  # [H, W]
            out = pred.cpu().numpy()
        return check_prediction(out, height, width, self.name)
