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

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
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
    model_path: str = ''  # '' = the shipped synthetic student (SHIPPED_STUDENT)
    encoder: str = ''
    input_size: int = 0  # 0 = the model's own (model_input_size), as the node's parameter
    device: str = 'cpu'
    precision: str = 'auto'  # 'auto': measured at start-up (estimators.autotune)
    options: dict[str, Any] = field(default_factory=dict)
    threads: int = 0  # torch CPU threads of the process; 0 = measured (estimators.autotune)
    max_threads: int = 0  # most threads a measurement tries; 0 = the cores (the node: cores-1)

    @property
    def fixed_precision(self) -> str:
        """``precision`` for a backend that does not measure: 'auto' is fp32."""
        return 'fp32' if self.precision == 'auto' else self.precision


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


#: The student that ships with the package (Depth Anything V2 architecture, trained on synthetic
#: streets only by ``depth_node.cli.train``): the model when ``estimator.model_path`` is ''.
SHIPPED_STUDENT = Path(__file__).resolve().parent.parent / 'models' / 'student'

#: Network input lower bound of Depth Anything V2 (its official transform).
DEFAULT_INPUT_SIZE = 518


def model_input_size(model_path: str | os.PathLike) -> int:
    """Network input lower bound a model states, :data:`DEFAULT_INPUT_SIZE` if it states none.

    A Hugging Face folder states it in ``preprocessor_config.json`` (``size``: an integer,
    ``{"height": h, "width": w}`` - the smaller side counts - or ``{"shortest_edge": n}``).
    """
    path = Path(os.fspath(model_path)).expanduser() / 'preprocessor_config.json'
    if not path.is_file():
        return DEFAULT_INPUT_SIZE
    try:
        size = json.loads(path.read_text(encoding='utf-8')).get('size')
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError('estimator.model_path', f'{path.name} is not readable JSON ({exc})',
                          str(model_path)) from exc
    if isinstance(size, dict):
        sides = [size[k] for k in ('height', 'width', 'shortest_edge') if k in size]
        size = min(sides) if sides else None
    if isinstance(size, bool) or not isinstance(size, int) or size < 14:
        raise ConfigError('estimator.model_path', f'{path.name} must state "size" as an '
                          'integer >= 14 or {"height": h, "width": w}', str(model_path))
    return size
