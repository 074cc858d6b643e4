"""Depth Anything exported to ONNX, run by ONNX Runtime (CPU; CUDA / TensorRT providers too).

Same numbers as :class:`~depth_node.estimators.depth_anything.DepthAnythingEstimator` on the
same weights (to float32 rounding, ``test/test_backends.py``): the pre-processing and the
resize back to the image size are the same functions
(:class:`~depth_node.estimators.preprocess.DepthAnythingPredictor`), not copies; only
:meth:`infer` differs. Neither needs transformers: an ONNX deployment installs onnxruntime,
torch and OpenCV only. The graph comes from
``export_onnx`` (:mod:`depth_node.estimators.onnx_export`), whose metadata says whether the
model predicts relative disparity or metric depth.

Execution providers, in order of preference, among those the installed onnxruntime has:

* ``device='cpu'``: ``CPUExecutionProvider``;
* ``device='cuda[:N]'``: ``TensorrtExecutionProvider`` (engine cache in ``engine_cache``, FP16
  when ``precision='fp16'``), ``CUDAExecutionProvider``, then the CPU.

``providers`` overrides the list. The model itself runs in float32 on the CPU and CUDA
providers (``precision`` other than fp32 applies only to the TensorRT provider).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional, Sequence, Union

import numpy as np

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.estimators.onnx_model import is_onnx_path, OnnxModelInfo
from depth_node.estimators.preprocess import check_input_size, DepthAnythingPredictor

try:
    import onnxruntime as ort
    import torch
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise ImportError('the onnxruntime backend needs onnxruntime (pip install onnxruntime, or '
                      f'onnxruntime-gpu for CUDA) and torch ({_exc})') from _exc

__all__ = ['OPTIMIZATION_LEVELS', 'OnnxRuntimeEstimator', 'default_providers']

_LOG = logging.getLogger(__name__)

#: ``optimization`` option -> ONNX Runtime graph optimisation level.
OPTIMIZATION_LEVELS = {
    'disable': ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    'basic': ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    'extended': ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    'all': ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_PRECISIONS = ('fp32', 'fp16', 'bf16', 'int8')


def default_providers(device: str, precision: str = 'fp32', engine_cache: str = '',
                      available: Optional[Sequence[str]] = None) -> list[Any]:
    """Execution providers (names, or ``(name, options)``) for ``device``, best first.

    Only providers in ``available`` (default: ``onnxruntime.get_available_providers()``) are
    listed; the CPU provider always closes the list.
    """
    have = set(ort.get_available_providers() if available is None else available)
    if not device.startswith('cuda'):
        return ['CPUExecutionProvider']
    index = int(device.partition(':')[2] or 0)
    providers: list[Any] = []
    if 'TensorrtExecutionProvider' in have:
        trt_options: dict[str, Any] = {'device_id': index, 'trt_fp16_enable': precision == 'fp16'}
        if engine_cache:
            trt_options.update(trt_engine_cache_enable=True,
                               trt_engine_cache_path=os.path.expanduser(engine_cache))
        providers.append(('TensorrtExecutionProvider', trt_options))
    if 'CUDAExecutionProvider' in have:
        providers.append(('CUDAExecutionProvider', {'device_id': index}))
    return providers + ['CPUExecutionProvider']


class OnnxRuntimeEstimator(DepthAnythingPredictor):
    """Depth Anything from an exported ONNX file, on ONNX Runtime.

    Parameters
    ----------
    model_path : str or path-like
        ``.onnx`` file written by ``export_onnx``.
    input_size : int
        Lower bound of both network-input sides, pixels (as the torch estimator). With a graph
        exported for one fixed size, images must map to that size.
    device : str
        ``'cpu'`` or ``'cuda[:N]'`` (picks the providers, see the module docstring).
    precision : str
        ``fp32``; ``fp16`` enables FP16 in the TensorRT provider only.
    providers : sequence, optional
        Explicit ONNX Runtime providers (names or ``(name, options)``), best first.
    threads : int
        Intra-op threads; 0 = ONNX Runtime's default (one per physical core).
    optimization : str
        Graph optimisation level: ``disable``, ``basic``, ``extended`` or ``all`` (default).
    engine_cache : str
        Folder for the TensorRT provider's engines ('' = no cache).

    Attributes
    ----------
    output : OutputSpec
        From the file's metadata.
    info : OnnxModelInfo
        Input/output names and fixed dimensions of the graph.
    providers : list of str
        Providers the session really uses.
    name : str
        Short description for logs.
    """

    def __init__(self, model_path: Union[str, os.PathLike], input_size: int = 518,
                 device: str = 'cpu', precision: str = 'fp32',
                 providers: Optional[Sequence[Any]] = None, threads: int = 0,
                 optimization: str = 'all', engine_cache: str = '') -> None:
        path = os.path.expanduser(os.fspath(model_path))
        if not is_onnx_path(path):
            raise ConfigError('estimator.model_path', 'the onnxruntime backend needs an .onnx '
                              'file (export one with export_onnx)', path)
        if not os.path.isfile(path):
            raise ConfigError('estimator.model_path', 'does not exist', path)
        input_size = check_input_size(input_size)
        if precision not in _PRECISIONS:
            raise ConfigError('estimator.precision', 'must be one of ' + ', '.join(_PRECISIONS),
                              precision)
        if optimization not in OPTIMIZATION_LEVELS:
            raise ConfigError('estimator.options.optimization', 'must be one of '
                              + ', '.join(OPTIMIZATION_LEVELS), optimization)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ConfigError('estimator.options.threads', 'must be an integer >= 0', threads)
        if not (device == 'cpu' or device == 'cuda' or device.startswith('cuda:')
                and device[5:].isdigit()):
            raise ConfigError('estimator.device', "must be 'cpu' or 'cuda[:N]'", device)
        self.input_size = int(input_size)
        options = ort.SessionOptions()
        options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: the CPU provider warns about Memcpy nodes
        wanted = list(providers) if providers is not None else \
            default_providers(device, precision, engine_cache)
        try:
            self.session = ort.InferenceSession(path, sess_options=options, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
            raise ConfigError('estimator.model_path', f'ONNX Runtime cannot load it ({exc})',
                              path) from exc
        self.providers = list(self.session.get_providers())
        if device != 'cpu' and self.providers == ['CPUExecutionProvider']:
            _LOG.warning('estimator.device is %s but this onnxruntime has no CUDA or TensorRT '
                         'provider (available: %s): running on the CPU (pip install '
                         'onnxruntime-gpu)', device, ort.get_available_providers())
        if precision != 'fp32' and 'TensorrtExecutionProvider' not in self.providers:
            _LOG.warning('estimator.precision %s is not applied by ONNX Runtime providers %s: '
                         'the model runs in float32', precision, self.providers)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ConfigError('estimator.model_path', 'the ONNX graph must have one input, has '
                              f'{[i.name for i in inputs]}', path)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = OnnxModelInfo.from_graph(meta, inputs[0].name, inputs[0].shape,
                                             outputs[0].name, path)
        self.output = self.info.output
        self.name = (f'depth_anything_onnxruntime({os.path.basename(path)}, '
                     f'{self.providers[0]})')

    def infer(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Raw prediction ``[B, h, w]`` float32 (CPU) for network input ``[B, 3, h, w]``."""
        batch, _, height, width = pixel_values.shape
        if self.info.fixed_size is not None and (height, width) != self.info.fixed_size:
            fixed = self.info.fixed_size
            raise DepthNodeError(
                f'{self.name}: the graph was exported for a network input of {fixed[1]}x'
                f'{fixed[0]} (WxH), this image needs {width}x{height} (input_size '
                f'{self.input_size}); export with --network-size {width}x{height} or with '
                'dynamic shapes')
        if self.info.batch is not None and batch != self.info.batch:
            raise DepthNodeError(f'{self.name}: batch {batch} differs from the fixed graph '
                                 f'batch {self.info.batch}')
        pixels = pixel_values.detach().to('cpu', torch.float32).contiguous().numpy()
        out = self.session.run([self.info.output_name], {self.info.input_name: pixels})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))  # [B, h, w]
