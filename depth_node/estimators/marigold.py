"""Marigold (diffusers ``MarigoldDepthPipeline``): the keyframe teacher, with uncertainty.

What ``predict`` computes
-------------------------
Exactly what ``MarigoldDepthPipeline.__call__`` computes for the RGB image (``uint8`` / 255):
resize so that the longer side is ``processing_resolution`` (bilinear, antialiased), encode
with the VAE, ``num_inference_steps`` denoising steps of the UNet from Gaussian noise for each
of ``ensemble_size`` members (in batches of ``batch_size``), decode, and - with more than one
member - the paper's test-time ensemble (diffusers' ``ensemble_depth``): a joint scale and
shift per member found by BFGS (scipy) so that the members agree, the per-pixel median (or
mean) of the aligned members, and their median absolute deviation (or standard deviation) as
the uncertainty; finally bilinear resize back to the input size.

The output is affine-invariant **depth** in [0, 1] (0 near, 1 far), declared as
``OutputSpec(OutputKind.DEPTH, metric=False)``, so that the LiDAR fit happens in depth space
(``z ≈ s·m + t``). A checkpoint whose ``prediction_type`` is ``'disparity'`` is declared as
disparity instead. The uncertainty is in the same relative units as the prediction (diffusers
divides it by the range it normalises the ensembled prediction with); multiplied by the fitted
scale it is metres.

Options (``estimator.options``), unset = the checkpoint's or diffusers' default
-------------------------------------------------------------------------------
``num_inference_steps``  denoising steps; default: the checkpoint's ``default_denoising_steps``
                         (v1-1: 4, LCM variants: 1 to 4)
``processing_resolution`` longer side processed, pixels, a multiple of the VAE's factor (8);
                         0 = the input size; default: ``default_processing_resolution`` (768)
``ensemble_size``        members (default 1: no uncertainty; the paper uses up to 10)
``batch_size``           members per UNet batch (default 1)
``seed``                 seed of the initial noise, for every call the same (default 0:
                         deterministic); ``null`` draws fresh noise each call
``ensembling_kwargs``    options of ``ensemble_depth``: ``reduction`` ('median' | 'mean'),
                         ``regularizer_strength`` (>= 0), ``max_iter`` (>= 1), ``tol`` (> 0),
                         ``max_res`` (pixels, or null: the processing resolution)
``resample_method_input`` / ``resample_method_output``  'bilinear' (default), 'bicubic',
                         'nearest', 'nearest-exact', 'area'
``variant``              weights variant (e.g. 'fp16'); default: 'fp16' when the folder holds
                         only ``*.fp16.safetensors`` weights, else none

Model files
-----------
``model_path`` is a local diffusers folder (a download of ``prs-eth/marigold-depth-v1-1`` or
any compatible checkpoint, LCM variants included), loaded with ``local_files_only=True`` and
``use_safetensors=True``: no network, no pickle. Its ``model_index.json`` must name
``MarigoldDepthPipeline`` and components from diffusers and transformers only, so that no code
from the folder is ever imported.

Costs to know
-------------
The ensemble's alignment runs hundreds of cost evaluations (each a median over the members at
``max_res``) in Python on the prediction's device; on a CPU it dominates small models, and it
holds the GIL for much of its time. ``ensembling_kwargs.max_res`` bounds it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
from typing import Any, Optional, TYPE_CHECKING, Union

import numpy as np

from depth_node.core.align import OutputKind, OutputSpec
from depth_node.core.errors import ConfigError
from depth_node.estimators.base import (check_input_image, check_prediction, EstimatorConfig,
                                        resolve_torch_device)

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ['MarigoldEstimator', 'build_marigold', 'ENSEMBLING_DEFAULTS', 'OPTIONS']

_LOG = logging.getLogger(__name__)

#: Options accepted by :class:`MarigoldEstimator` besides model_path, device and precision.
OPTIONS = ('num_inference_steps', 'processing_resolution', 'ensemble_size', 'batch_size',
           'seed', 'ensembling_kwargs', 'resample_method_input', 'resample_method_output',
           'variant')
#: diffusers' defaults of ``ensemble_depth`` (``MarigoldDepthPipeline.ensemble_depth``).
ENSEMBLING_DEFAULTS: dict[str, Any] = {'reduction': 'median', 'regularizer_strength': 0.02,
                                       'max_iter': 2, 'tol': 1e-3, 'max_res': 1024}
_RESAMPLE = ('nearest', 'nearest-exact', 'bilinear', 'bicubic', 'area')
_PRECISIONS = ('fp32', 'fp16', 'bf16')
_LIBRARIES = ('diffusers', 'transformers')
_COMPONENTS = ('unet', 'vae', 'scheduler', 'text_encoder', 'tokenizer')
_OPT = 'estimator.options.'


def _import_diffusers() -> tuple[Any, Any]:
    """``(torch, MarigoldDepthPipeline)``, or an ImportError that says what to install."""
    try:
        import torch
        from diffusers import MarigoldDepthPipeline
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            'the marigold estimator needs PyTorch, diffusers, transformers and scipy: '
            f'pip install torch==2.13.0 diffusers transformers scipy safetensors ({exc})'
        ) from exc
    return torch, MarigoldDepthPipeline


def _dtype_keyword() -> str:
    """``from_pretrained``'s dtype keyword: ``dtype`` (recent diffusers) or ``torch_dtype``."""
    try:  # present where ``torch_dtype`` is deprecated in favour of ``dtype``
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return 'torch_dtype'
    return 'dtype'


def _check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        rule = f'must be an integer >= {minimum}' + (' or null' if allow_none else '')
        raise ConfigError(name, rule, value)
    return int(value)


def _check_ensembling(kwargs: Any) -> dict[str, Any]:
    """Validated ``ensembling_kwargs`` (a copy), keys among :data:`ENSEMBLING_DEFAULTS`."""
    name = _OPT + 'ensembling_kwargs'
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict):
        raise ConfigError(name, 'must be an object with keys among '
                          + ', '.join(ENSEMBLING_DEFAULTS), kwargs)
    out = dict(kwargs)
    for key, value in out.items():
        sub = f'{name}.{key}'
        if key == 'reduction':
            if value not in ('median', 'mean'):
                raise ConfigError(sub, "must be 'median' or 'mean'", value)
        elif key == 'regularizer_strength':
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not value >= 0 or not math.isfinite(value):
                raise ConfigError(sub, 'must be a number >= 0', value)
        elif key == 'max_iter':
            _check_int(sub, value, 1)
        elif key == 'tol':
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not value > 0 or not math.isfinite(value):
                raise ConfigError(sub, 'must be a number > 0', value)
        elif key == 'max_res':
            _check_int(sub, value, 1, allow_none=True)
        else:
            raise ConfigError(name, f'unknown key {key!r}; known: '
                              + ', '.join(ENSEMBLING_DEFAULTS), kwargs)
    return out


def _read_model_index(path: str) -> dict[str, Any]:
    """``model_index.json`` of a Marigold depth folder, checked so that no custom code loads."""
    index_file = os.path.join(path, 'model_index.json')
    if not os.path.isfile(index_file):
        raise ConfigError('estimator.model_path', 'a Marigold model must be a diffusers folder '
                          'with a model_index.json (e.g. a download of '
                          'prs-eth/marigold-depth-v1-1)', path)
    try:
        with open(index_file, encoding='utf-8') as stream:
            index = json.load(stream)
    except (OSError, ValueError) as exc:
        raise ConfigError('estimator.model_path', f'model_index.json is not readable JSON '
                          f'({exc})', path) from exc
    if not isinstance(index, dict) or index.get('_class_name') != 'MarigoldDepthPipeline':
        found = index.get('_class_name') if isinstance(index, dict) else None
        raise ConfigError('estimator.model_path', "model_index.json must name "
                          f"'MarigoldDepthPipeline', names {found!r}", path)
    for component in _COMPONENTS:
        entry = index.get(component)
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] in _LIBRARIES):
            raise ConfigError('estimator.model_path', f'model_index.json component '
                              f'{component!r} must come from ' + ' or '.join(_LIBRARIES)
                              + f', is {entry!r} (code from model folders is never loaded)',
                              path)
    return index


def _guess_variant(path: str) -> Optional[str]:
    """'fp16' when the UNet folder holds only ``*.fp16.safetensors`` weights, else None."""
    try:
        names = os.listdir(os.path.join(path, 'unet'))
    except OSError:
        return None
    weights = [n for n in names if n.endswith('.safetensors')]
    plain = [n for n in weights if '.fp16.' not in n]
    return 'fp16' if weights and not plain else None


def _resolve_device(torch: Any, device: str) -> 'torch.device':
    return resolve_torch_device(device, 'estimator.device')


class MarigoldEstimator:
    """Marigold depth through diffusers, with the test-time ensemble and its uncertainty.

    Parameters
    ----------
    model_path : str or path-like
        Local diffusers folder of a Marigold depth checkpoint (see the module docstring).
    device : str
        ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
    precision : str
        ``'fp32'``, ``'fp16'`` or ``'bf16'`` weights and activations; half precisions need
        CUDA (diffusers' antialiased resize has no CPU kernels for them). Outputs are float32.
    num_inference_steps, processing_resolution, ensemble_size, batch_size, seed,
    ensembling_kwargs, resample_method_input, resample_method_output, variant
        See the module docstring; ``None`` = the checkpoint's default.

    Attributes
    ----------
    output : OutputSpec
        Affine-invariant depth (``prediction_type`` 'depth', Marigold's) or disparity.
    name : str
        Short description for logs.
    pipeline : diffusers.MarigoldDepthPipeline
        On ``device`` in ``precision``, every module in eval mode, progress bars off.
    num_inference_steps, processing_resolution : int
        The values in use (resolved from the checkpoint when not given).

    Notes
    -----
    Not thread-safe (the pipeline keeps state between calls): one caller at a time, e.g. the
    keyframe worker.
    """

    def __init__(self, model_path: Union[str, os.PathLike], device: str = 'cpu',
                 precision: str = 'fp32', num_inference_steps: Optional[int] = None,
                 processing_resolution: Optional[int] = None, ensemble_size: int = 1,
                 batch_size: int = 1, seed: Optional[int] = 0,
                 ensembling_kwargs: Optional[dict[str, Any]] = None,
                 resample_method_input: str = 'bilinear',
                 resample_method_output: str = 'bilinear',
                 variant: Optional[str] = None) -> None:
        # Every option is checked before anything heavy is imported or loaded.
        if precision not in _PRECISIONS:
            raise ConfigError('estimator.precision', 'must be one of ' + ', '.join(_PRECISIONS),
                              precision)
        steps = _check_int(_OPT + 'num_inference_steps', num_inference_steps, 1, True)
        resolution = _check_int(_OPT + 'processing_resolution', processing_resolution, 0, True)
        self.ensemble_size = _check_int(_OPT + 'ensemble_size', ensemble_size, 1)
        self.batch_size = _check_int(_OPT + 'batch_size', batch_size, 1)
        self.seed = _check_int(_OPT + 'seed', seed, 0, allow_none=True)
        self.ensembling_kwargs = _check_ensembling(ensembling_kwargs)
        for key, value in (('resample_method_input', resample_method_input),
                           ('resample_method_output', resample_method_output)):
            if value not in _RESAMPLE:
                raise ConfigError(_OPT + key, 'must be one of ' + ', '.join(_RESAMPLE), value)
        self.resample_method_input = resample_method_input
        self.resample_method_output = resample_method_output
        if variant is not None and not (isinstance(variant, str) and variant):
            raise ConfigError(_OPT + 'variant', "must be a non-empty string (e.g. 'fp16') or "
                              'null', variant)
        if self.ensemble_size == 2:
            _LOG.warning('estimator.options.ensemble_size 2 is about as good as 1; use >= 3 '
                         'for a useful uncertainty')

        path = os.path.expanduser(os.fspath(model_path)) if model_path is not None else ''
        if not path:
            raise ConfigError('estimator.model_path', 'must name a local Marigold depth '
                              'folder (diffusers format)', path)
        if not os.path.isdir(path):
            raise ConfigError('estimator.model_path', 'does not exist or is not a folder', path)
        index = _read_model_index(path)
        kind = index.get('prediction_type') or 'depth'
        if kind not in ('depth', 'disparity'):
            raise ConfigError('estimator.model_path', "model_index.json prediction_type must be "
                              f"'depth' or 'disparity', is {kind!r}", path)

        torch, pipeline_class = _import_diffusers()
        self._torch = torch
        self.device = _resolve_device(torch, device)
        self.dtype = {'fp32': torch.float32, 'fp16': torch.float16,
                      'bf16': torch.bfloat16}[precision]
        if precision != 'fp32' and self.device.type != 'cuda':
            # The pipeline's antialiased resize has no CPU kernels for half types.
            raise ConfigError('estimator.precision', f'{precision} needs estimator.device cuda; '
                              'on the CPU use fp32', precision)
        variant = variant if variant is not None else _guess_variant(path)
        kwargs: dict[str, Any] = {_dtype_keyword(): self.dtype}
        if importlib.util.find_spec('accelerate') is None:
            kwargs['low_cpu_mem_usage'] = False  # what diffusers falls back to, minus a warning
        try:
            pipe = pipeline_class.from_pretrained(
                path, local_files_only=True, use_safetensors=True, variant=variant, **kwargs)
        except (OSError, ValueError, RuntimeError, TypeError, KeyError) as exc:
            raise ConfigError('estimator.model_path', f'cannot be loaded as a '
                              f'MarigoldDepthPipeline ({type(exc).__name__}: {exc})',
                              path) from exc
        pipe = pipe.to(self.device)
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                component.eval()
        pipe.set_progress_bar_config(disable=True)
        self.pipeline = pipe

        self.num_inference_steps = steps if steps is not None else pipe.default_denoising_steps
        if self.num_inference_steps is None:
            raise ConfigError(_OPT + 'num_inference_steps', 'must be set: the checkpoint has no '
                              'default_denoising_steps', None)
        self.processing_resolution = (resolution if resolution is not None
                                      else pipe.default_processing_resolution)
        if self.processing_resolution is None:
            raise ConfigError(_OPT + 'processing_resolution', 'must be set: the checkpoint has '
                              'no default_processing_resolution', None)
        factor = int(pipe.vae_scale_factor)
        if self.processing_resolution % factor:
            raise ConfigError(_OPT + 'processing_resolution', f'must be a multiple of the VAE '
                              f'factor {factor} (or 0: the input size)',
                              self.processing_resolution)
        self.output = OutputSpec(OutputKind(kind), metric=False)
        self.name = (f'marigold({os.path.basename(os.path.normpath(path))}, {self.device}, '
                     f'{precision}, steps={self.num_inference_steps}, '
                     f'ensemble={self.ensemble_size}, res={self.processing_resolution})')

    @classmethod
    def from_config(cls, config: EstimatorConfig) -> 'MarigoldEstimator':
        """Build from the node's ``estimator.*`` parameters (``encoder``/``input_size`` unused).

        Unknown ``options`` keys are a :class:`ConfigError` naming them.
        """
        options = dict(config.options or {})
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ConfigError('estimator.options', f'unknown option(s) {", ".join(unknown)} for '
                              'marigold; known: ' + ', '.join(OPTIONS), config.options)
        return cls(config.model_path, device=config.device, precision=config.fixed_precision,
                   **options)

    def _generator(self) -> Optional['torch.Generator']:
        # A CPU generator: the same noise on every device (diffusers moves it).
        if self.seed is None:
            return None
        return self._torch.Generator(device='cpu').manual_seed(self.seed)

    def _run(self, rgb: np.ndarray, uncertainty: bool) -> tuple[np.ndarray, Optional[np.ndarray]]:
        check_input_image(rgb)
        height, width = rgb.shape[:2]
        out = self.pipeline(
            rgb, num_inference_steps=self.num_inference_steps,
            ensemble_size=self.ensemble_size, processing_resolution=self.processing_resolution,
            match_input_resolution=True, resample_method_input=self.resample_method_input,
            resample_method_output=self.resample_method_output, batch_size=self.batch_size,
            ensembling_kwargs=self.ensembling_kwargs or None, generator=self._generator(),
            output_type='pt', output_uncertainty=uncertainty)
        depth = out.prediction[0, 0].float().cpu().numpy()  # [H, W], [0, 1]
        depth = check_prediction(depth, height, width, self.name)
        unc = None
        if uncertainty and out.uncertainty is not None:
            unc = out.uncertainty[0, 0].float().cpu().numpy()  # [H, W], relative units
            unc = check_prediction(unc, height, width, self.name)
        return depth, unc

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """Affine-invariant depth ``[H, W]`` float32 in [0, 1] for RGB ``[H, W, 3]`` uint8."""
        return self._run(rgb, uncertainty=False)[0]

    def predict_with_uncertainty(
            self, rgb: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Prediction and uncertainty for an RGB image ``[H, W, 3]`` uint8.

        Returns
        -------
        depth : numpy.ndarray
            ``[H, W]`` float32, affine-invariant depth in [0, 1] (as :meth:`predict`).
        uncertainty : numpy.ndarray or None
            ``[H, W]`` float32 >= 0, in the prediction's relative units: the median absolute
            deviation of the aligned ensemble members (standard deviation with
            ``reduction='mean'``); None when ``ensemble_size == 1``.
        """
        return self._run(rgb, uncertainty=self.ensemble_size > 1)


def build_marigold(config: EstimatorConfig) -> MarigoldEstimator:
    """Registry entry: ``estimator.type: marigold`` (see :meth:`MarigoldEstimator.from_config`)."""
    return MarigoldEstimator.from_config(config)
