"""The estimator contract shared by every backend and by user-supplied models.

An estimator is any object with

* ``output``: an :class:`~depth_node.core.align.OutputSpec` saying whether ``predict`` returns
  disparity or depth, relative (affine-invariant) or metric;
* ``predict(rgb)``: takes an RGB image ``[H, W, 3] uint8`` and returns ``[H, W] float32`` at the
  same resolution, larger = nearer for disparity, larger = farther for depth; NaN marks pixels
  without a prediction.

``name`` (a short string for logs and diagnostics) is optional.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from depth_node.core.align import OutputSpec
from depth_node.core.errors import ConfigError, DepthNodeError


@runtime_checkable
class Estimator(Protocol):
    """What the pipeline needs from a depth model."""

    output: OutputSpec

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """RGB ``[H, W, 3] uint8`` -> prediction ``[H, W] float32``."""
        ...


@dataclass
class EstimatorConfig:
    """Configuration of the estimator, as the node's ``estimator.*`` parameters give it.

    ``type`` is a registered name (``depth_anything``) or an import path
    ``package.module:factory``; ``options`` are passed to a custom factory as keyword arguments.
    """

    type: str = 'depth_anything'
    model_path: str = ''
    encoder: str = ''
    input_size: int = 518
    device: str = 'cpu'
    precision: str = 'fp32'
    options: dict[str, Any] = field(default_factory=dict)


def check_input_image(rgb: np.ndarray) -> None:
    """Raise :class:`DepthNodeError` unless ``rgb`` is ``[H, W, 3] uint8``."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 \
            or rgb.dtype != np.uint8:
        shape = getattr(rgb, 'shape', None)
        dtype = getattr(rgb, 'dtype', type(rgb).__name__)
        raise DepthNodeError(f'estimator input must be an RGB image [H, W, 3] uint8, got shape '
                             f'{shape} dtype {dtype}')


def check_prediction(pred: Any, height: int, width: int, who: str) -> np.ndarray:
    """Validate an estimator's output and return it as ``[H, W] float32``."""
    arr = np.asarray(pred)
    if arr.shape != (height, width):
        raise DepthNodeError(f'estimator {who} returned shape {arr.shape}, expected '
                             f'{(height, width)} (the input image size)')
    return arr.astype(np.float32, copy=False)


def resolve_torch_device(device: str, parameter: str = 'estimator.device') -> Any:
    """``torch.device`` for ``device`` ('cpu', 'cuda', 'cuda:N'), checked against this machine.

    Raises :class:`ConfigError` naming ``parameter`` when the string is not a device, CUDA is
    not available, or the index is out of range. torch is imported here, lazily.
    """
    import torch
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(parameter, "must be 'cpu' or 'cuda[:N]'", device) from exc
    if dev.type == 'cuda':
        if not torch.cuda.is_available():
            raise ConfigError(parameter, 'CUDA was requested but torch.cuda is not '
                              f'available (torch {torch.__version__})', device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(parameter, f'only {torch.cuda.device_count()} CUDA '
                              'devices are visible', device)
    elif dev.type != 'cpu':
        raise ConfigError(parameter, "must be 'cpu' or 'cuda[:N]'", device)
    return dev
