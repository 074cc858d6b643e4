"""Depth Anything (V1/V2) through Hugging Face transformers, faithful to the official code.

What ``predict`` computes
-------------------------
The same numbers as the official ``DepthAnythingV2.infer_image`` (github.com/DepthAnything/
Depth-Anything-V2, ``depth_anything_v2/dpt.py``), for an RGB instead of a BGR input:

1. The official pre-processing (:mod:`~depth_node.estimators.preprocess`, shared with the ONNX
   Runtime and TensorRT backends): ``rgb / 255``, bicubic "lower_bound" resize to multiples of
   14 (:func:`network_input_size`), ImageNet mean/std, float32 ``[1, 3, h, w]``.
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
  ``torch.load(weights_only=True)`` and renamed onto the transformers model
  (:mod:`~depth_node.estimators.depth_anything_checkpoint`), then loaded strictly.

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
than 518 - by a per-cent-level amount (docs/benchmarks.md quotes what the tests measure with
random ViT-S weights). This module reproduces the official
behaviour by default (``pos_embed_interpolation='official'``) by swapping the class of the
backbone's embeddings module for a subclass whose ``interpolate_pos_encoding`` follows the
official formula; weights and every other layer are untouched. The official numbers are the
ones the published accuracy figures were measured with, and a model is then interchangeable
between the ``.pth`` and the Hugging Face folder. ``pos_embed_interpolation='transformers'``
keeps the transformers behaviour (what the transformers ``pipeline`` gives). At a 518 x 518
network input both paths use the embeddings unchanged and agree.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import warnings
from typing import Iterator, Union

from depth_node.core.align import OutputKind, OutputSpec
from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.estimators.base import EstimatorConfig, model_input_size, resolve_torch_device
from depth_node.estimators.preprocess import (check_input_size, DepthAnythingPredictor,
                                              interpolate_pos_embed_official,
                                              network_input_size, PATCH_SIZE)

try:
    import torch
    from transformers import DepthAnythingForDepthEstimation
    from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings
    from transformers.utils import logging as hf_logging
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        'the depth_anything estimator needs PyTorch and Hugging Face transformers: '
        f'pip install torch==2.13.0 transformers safetensors ({_exc})') from _exc

from depth_node.estimators.depth_anything_checkpoint import few_keys, load_official

# network_input_size and PATCH_SIZE are re-exported: callers that build the network input
# geometry without an estimator import them from here or from estimators.preprocess.
__all__ = ['DepthAnythingEstimator', 'PATCH_SIZE', 'load_model', 'network_input_size',
           'use_official_pos_embed_interpolation']

_LOG = logging.getLogger(__name__)

_PRECISIONS = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}
_INTERPOLATIONS = ('official', 'transformers')


# ------------------------------------------------------------------------------------------------
# Position-embedding interpolation


class _OfficialPosEmbeddings(Dinov2Embeddings):
    """DINOv2 embeddings whose position-embedding resampling follows the official DINOv2 code."""

    def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int,
                                 width: int) -> torch.Tensor:
        """Position embeddings ``[1, 1 + n_h * n_w, C]`` for an input ``height x width`` pixels.

        :func:`~depth_node.estimators.preprocess.interpolate_pos_embed_official`, except at the
        stored grid size, where the embeddings are used unchanged.
        """
        num_patches = embeddings.shape[1] - 1
        num_positions = self.position_embeddings.shape[1] - 1
        if num_patches == num_positions and height == width:
            return self.position_embeddings
        patch_h, patch_w = self.patch_embeddings.patch_size
        return interpolate_pos_embed_official(self.position_embeddings, height // patch_h,
                                              width // patch_w)


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
        with warnings.catch_warnings(), _no_progress_bar():
            warnings.filterwarnings('ignore', message='Detected pickle protocol')  # of a .bin
            model, info = DepthAnythingForDepthEstimation.from_pretrained(
                path, local_files_only=True, output_loading_info=True)
    except pickle.UnpicklingError as exc:  # torch's weights-only loader refused a pickle
        raise ConfigError('estimator.model_path', 'its weights file holds more than tensors: '
                          'refused by the weights-only loader, nothing of it was run (save '
                          'the weights as model.safetensors)', path) from exc
    except Exception as exc:  # noqa: BLE001 - safetensors' and torch's errors share no base
        raise ConfigError('estimator.model_path', 'cannot be loaded by transformers '
                          f'({type(exc).__name__}: {_first_line(exc)})', path) from exc
    missing = set(info.get('missing_keys') or ())
    mismatched = [k[0] if isinstance(k, tuple) else k for k in info.get('mismatched_keys') or ()]
    if missing or mismatched:
        raise ConfigError('estimator.model_path', f'{len(missing)} weights missing '
                          f'{few_keys(missing)}, {len(mismatched)} with the wrong shape '
                          f'{few_keys(mismatched)}', path)
    if info.get('unexpected_keys'):
        _LOG.warning('%s: ignoring %d unexpected weights %s', path,
                     len(info['unexpected_keys']), few_keys(info['unexpected_keys']))
    return model


@contextlib.contextmanager
def _no_progress_bar() -> Iterator[None]:
    """transformers' "Loading weights" bar off: redrawn with \\r, it is a blank line in the
    logs of ``ros2 launch`` (whose ``emulate_tty`` makes it think it writes to a terminal)."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's text (torch's run to a page of advice)."""
    return (str(exc).strip().splitlines() or [''])[0][:300]


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
    elif os.path.isfile(path) and path.lower().endswith(('.onnx', '.engine', '.plan')):
        raise ConfigError('estimator.model_path', 'is an ONNX model or TensorRT engine, which '
                          "the torch estimator cannot load: set estimator.type to "
                          "'depth_anything_onnxruntime', '_tensorrt' or '_auto'", path)
    elif os.path.isfile(path):
        model = load_official(path, encoder)
    else:
        raise ConfigError('estimator.model_path', 'does not exist', path)
    return model.eval()


# ------------------------------------------------------------------------------------------------
# The estimator


def _resolve_device(device: str) -> torch.device:
    return resolve_torch_device(device, 'estimator.device')


class DepthAnythingEstimator(DepthAnythingPredictor):
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

    Notes
    -----
    ``preprocess`` and ``predict`` are :class:`~depth_node.estimators.preprocess.
    DepthAnythingPredictor`'s, which the ONNX Runtime and TensorRT backends share.
    """

    def __init__(self, model_path: Union[str, os.PathLike], encoder: str = '',
                 input_size: int = 518, device: str = 'cpu', precision: str = 'fp32',
                 pos_embed_interpolation: str = 'official') -> None:
        input_size = check_input_size(input_size)
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
        """Build from the node's ``estimator.*`` parameters (``input_size`` 0: the model's)."""
        return cls(config.model_path, encoder=config.encoder,
                   input_size=config.input_size or model_input_size(config.model_path),
                   device=config.device, precision=config.fixed_precision)

    def infer(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Raw prediction ``[B, h, w]`` float32 on ``device`` for network input ``[B, 3, h, w]``.

        Disparity (relative models, ReLU'd, arbitrary scale) or depth in metres (metric).
        """
        with torch.inference_mode():
            pixels = pixel_values.to(device=self.device, dtype=self.dtype)
            return self.model(pixel_values=pixels).predicted_depth.float()  # [B, h, w]
