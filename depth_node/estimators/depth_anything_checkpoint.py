"""Official Depth Anything V2 checkpoints (``.pth``) loaded onto the transformers model.

:func:`load_official` reads ``depth_anything_v2_{vits,vitb,vitl,vitg}.pth`` (also the metric
``depth_anything_v2_metric_{hypersim,vkitti}_<encoder>.pth``) with
``torch.load(weights_only=True)`` - no code from the file is executed -, renames its tensors
onto ``DepthAnythingForDepthEstimation`` (:func:`convert_official_state_dict`) and loads them
strictly into the architecture :func:`~depth_node.estimators.depth_anything_config.
depth_anything_config` builds for the encoder. The encoder comes from the file name
(:func:`infer_encoder`) unless given, and must match the checkpoint's embedding width.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any, Optional, Union

import torch
from transformers import DepthAnythingForDepthEstimation

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.estimators.depth_anything_config import depth_anything_config, ENCODERS

__all__ = ['convert_official_state_dict', 'few_keys', 'infer_encoder', 'load_official']

# Metric checkpoints: training set named in the file -> maximum depth of the sigmoid head [m].
_METRIC_MAX_DEPTH = {'hypersim': 20, 'vkitti': 80}


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
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError,
            IndexError, TypeError, AttributeError, UnicodeError) as exc:
        # UnpicklingError: the file holds more than tensors (the weights-only loader refused
        # it, without running any of it); the others: not a (complete) PyTorch file (bytes
        # that are no pickle reach the unpickler's opcodes, e.g. a memo fetch: KeyError).
        raise ConfigError('estimator.model_path', 'cannot be read as a weights-only PyTorch '
                          f'checkpoint ({type(exc).__name__}: {exc})', path) from exc
    for wrapper in ('state_dict', 'model'):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ConfigError('estimator.model_path', 'must hold a state dict (names -> tensors)',
                          path)
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in obj.items()}


def load_official(path: str, encoder: str) -> DepthAnythingForDepthEstimation:
    """Build the transformers model for ``encoder`` and load an official checkpoint strictly."""
    given = encoder
    if encoder and encoder not in ENCODERS:
        raise ConfigError('estimator.encoder', 'must be one of ' + ', '.join(ENCODERS), encoder)
    max_depth = _metric_max_depth(path)
    state = _read_official_checkpoint(path)  # first: a file that is no checkpoint is named
    if not encoder:
        encoder = infer_encoder(path)
        if not encoder:
            raise ConfigError('estimator.encoder', 'must be set (one of ' + ', '.join(ENCODERS)
                              + ') when the checkpoint file name does not name the encoder',
                              encoder)
    pos = state.get('pretrained.pos_embed')
    if pos is not None and pos.shape[-1] != ENCODERS[encoder]['hidden']:
        width = int(pos.shape[-1])
        match = [name for name, spec in ENCODERS.items() if spec['hidden'] == width]
        origin = '' if given else ' (taken from the file name)'
        raise ConfigError('estimator.encoder', f'{encoder}{origin} does not match the checkpoint '
                          f'{path!r}, whose embedding width {width} is that of '
                          f'{match or "no known encoder"}', given)
    config = depth_anything_config(encoder, metric=max_depth is not None,
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
            f'{len(result.missing_keys)} weights missing {few_keys(result.missing_keys)}, '
            f'{len(result.unexpected_keys)} unexpected {few_keys(result.unexpected_keys)} '
            '(after renaming to transformers names)', path)
    return model


def few_keys(keys: Any, n: int = 5) -> str:
    """The first ``n`` of ``keys`` (sorted) as ``'[a, b, ...]'``, for error messages."""
    keys = sorted(keys)
    return '[' + ', '.join(keys[:n]) + (', ...]' if len(keys) > n else ']')
