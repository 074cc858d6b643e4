"""Depth Anything as a TensorRT engine built from the exported ONNX file, with an engine cache.

What happens on construction
----------------------------
1. The ONNX file's metadata and input are read (:func:`read_onnx_info`).
2. An optimisation profile ``min/opt/max`` of the input ``[B, 3, H, W]`` is chosen from the
   camera resolutions the node will see (``image_sizes``, mapped to network sizes as the
   official pre-processing does), or from the graph's fixed size (:func:`input_profile`).
3. The engine is looked up in the cache under a key of everything that makes an engine
   different (:class:`EngineKey`: ONNX SHA-256 including external weights, TensorRT version,
   GPU name and compute capability, precision, profile, workspace, INT8 calibration set). A
   miss - or an entry TensorRT refuses to load - builds it (minutes on a Jetson) and stores it
   atomically, so a change of any part of the key rebuilds and a crash never leaves a torn file.
4. An execution context runs it on torch CUDA tensors (no copies to pinned host memory, no
   pycuda), on the current torch CUDA stream.

Profiles, keys and the cache are :mod:`~depth_node.estimators.tensorrt_engine`.
Pre-processing runs on the GPU (:func:`~depth_node.estimators.preprocess.preprocess_on_device`:
the uint8 image is uploaded, then scaled, bicubic-resized and normalised there); it matches
the official CPU pre-processing to about 1e-3 of the normalised range (torch's bicubic vs
OpenCV's), well under FP16 noise. The resize back to the image size and the checks are
:class:`~depth_node.estimators.preprocess.DepthAnythingPredictor`'s, as for the torch and ONNX
Runtime backends; none of it needs transformers. Precision: ``fp16`` (default), ``fp32``,
``bf16`` or ``int8`` (with FP16 fallback and an entropy calibrator over
``calibration_images``).

``tensorrt`` is imported lazily, inside functions: everything but building and running an engine
(profiles, keys, the cache, pre-processing) works and is tested without it. It is type-checked
against ``tensorrt-stubs`` (``test/test_backends.py`` runs mypy when both are installed).
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any, Optional, Sequence, TYPE_CHECKING, Union

import numpy as np

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.estimators.onnx_model import (is_onnx_path, onnx_digest, OnnxModelInfo,
                                              read_onnx_info)
from depth_node.estimators.preprocess import DepthAnythingPredictor, preprocess_on_device
from depth_node.estimators.tensorrt_engine import (DEFAULT_ENGINE_CACHE, EngineCache, EngineKey,
                                                   file_set_digest, input_profile, InputProfile,
                                                   load_or_build)

try:
    import torch
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise ImportError(f'the tensorrt backend needs torch with CUDA ({_exc})') from _exc

if TYPE_CHECKING:
    import tensorrt as trt

# DEFAULT_ENGINE_CACHE ... load_or_build: re-exported from tensorrt_engine for callers.
__all__ = ['DEFAULT_ENGINE_CACHE', 'EngineCache', 'EngineKey', 'InputProfile', 'PRECISIONS',
           'TensorRTEstimator', 'build_serialized_engine', 'calibration_files',
           'file_set_digest', 'gpu_description', 'input_profile', 'load_or_build',
           'preprocess_on_device', 'tensorrt_missing']

_LOG = logging.getLogger(__name__)

PRECISIONS = ('fp16', 'fp32', 'bf16', 'int8')
DEFAULT_WORKSPACE_MB = 1024
_IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp')


def tensorrt_missing() -> str:
    """Why the TensorRT Python API cannot be used here; '' when it can."""
    try:
        import tensorrt
    except ImportError as exc:
        return f'tensorrt is not importable ({exc})'
    # tensorrt-stubs installs a tensorrt/ folder of .pyi files: without the library it imports
    # as an empty namespace package.
    if getattr(tensorrt, '__file__', None) is None:
        return ('tensorrt is only a namespace package here (type stubs without NVIDIA TensorRT, '
                f'at {list(getattr(tensorrt, "__path__", []))})')
    return ''


def _require_tensorrt() -> None:
    """Raise an ImportError that says how to get TensorRT unless it can be used."""
    missing = tensorrt_missing()
    if missing:
        raise ImportError('the tensorrt backend needs NVIDIA TensorRT for Python (on Jetson: '
                          "JetPack's python3-libnvinfer; elsewhere: pip install tensorrt): "
                          + missing)


def gpu_description(device: torch.device) -> str:
    """``'<name> sm_<major><minor>'`` of a CUDA device (part of the engine key)."""
    major, minor = torch.cuda.get_device_capability(device)
    return f'{torch.cuda.get_device_name(device)} sm_{major}{minor}'


def calibration_files(folder: Union[str, os.PathLike[str]]) -> list[pathlib.Path]:
    """Image files (png, jpg, bmp) of a calibration folder, sorted by name."""
    root = pathlib.Path(os.path.expanduser(os.fspath(folder)))
    if not root.is_dir():
        raise ConfigError('estimator.options.calibration_images', 'must be a folder of images',
                          os.fspath(folder))
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in _IMAGE_EXTENSIONS)
    if not files:
        raise ConfigError('estimator.options.calibration_images', 'holds no png/jpg/bmp images',
                          os.fspath(folder))
    return files


# ------------------------------------------------------------------------------------------------
# TensorRT proper: build and run


def _make_calibrator(batches: list[torch.Tensor],
                     cache_file: pathlib.Path) -> 'trt.IInt8EntropyCalibrator2':
    """An INT8 entropy calibrator feeding ``batches`` (CUDA tensors ``[1, 3, h, w]``)."""
    import tensorrt as trt

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.pending = list(batches)
            self.current: Optional[torch.Tensor] = None

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int]:
            if not self.pending:
                return []  # no more batches
            self.current = self.pending.pop(0)
            return [int(self.current.data_ptr())]

        def read_calibration_cache(self) -> Optional[bytes]:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_bytes(bytes(cache))

    return Calibrator()


def build_serialized_engine(onnx_path: str, info: OnnxModelInfo, profile: InputProfile,
                            precision: str, workspace_mb: int,
                            calibrator: Optional['trt.IInt8Calibrator'] = None) -> bytes:
    """Parse ``onnx_path`` and build a serialised engine (TensorRT 10 API)."""
    _require_tensorrt()
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch: the only mode of TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f'TensorRT cannot parse {onnx_path}: {errors}')
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision in ('fp16', 'int8'):
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == 'bf16':
        config.set_flag(trt.BuilderFlag.BF16)
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(info.input_name, trt.Dims(list(profile.min)),
                          trt.Dims(list(profile.opt)), trt.Dims(list(profile.max)))
    config.add_optimization_profile(opt_profile)
    if precision == 'int8':
        if calibrator is None:
            raise ConfigError('estimator.options.calibration_images', 'INT8 needs a '
                              'calibration set', '')
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f'TensorRT could not build an engine from {onnx_path} (see its log '
                           'above)')
    return bytes(memoryview(serialized))


_TORCH_DTYPES = {'FLOAT': torch.float32, 'HALF': torch.float16, 'BF16': torch.bfloat16}


class TensorRTEstimator(DepthAnythingPredictor):
    """Depth Anything as a TensorRT engine (see the module docstring).

    Parameters
    ----------
    model_path : str or path-like
        ``.onnx`` file written by ``export_onnx``.
    input_size : int
        Lower bound of both network-input sides, pixels (as the torch estimator).
    device : str
        ``'cuda'`` or ``'cuda:N'``.
    precision : str
        ``fp16`` (default), ``fp32``, ``bf16`` or ``int8``.
    engine_cache : str
        Folder of cached engines (default ``~/.cache/depth_node/engines``).
    image_sizes : sequence of (H, W)
        Camera resolutions to expect; the first is the one the engine is tuned for. Empty =
        a range around ``input_size`` (slower than an engine for one size).
    max_batch : int
        Largest batch of the profile.
    workspace_mb : int
        Builder workspace limit, MiB.
    calibration_images : str
        Folder of images for INT8 calibration (resized to the tuned size).

    Attributes
    ----------
    output : OutputSpec
        From the ONNX metadata.
    profile : InputProfile
        Shapes the engine accepts.
    engine_path : pathlib.Path
        Its file in the cache.
    built : bool
        True when this construction built the engine (no cache hit).
    """

    def __init__(self, model_path: Union[str, os.PathLike[str]], input_size: int = 518,
                 device: str = 'cuda', precision: str = 'fp16',
                 engine_cache: str = DEFAULT_ENGINE_CACHE,
                 image_sizes: Sequence[Sequence[int]] = (), max_batch: int = 1,
                 workspace_mb: int = DEFAULT_WORKSPACE_MB, calibration_images: str = '') -> None:
        path = os.path.expanduser(os.fspath(model_path))
        if not is_onnx_path(path):
            raise ConfigError('estimator.model_path', 'the tensorrt backend needs an .onnx file '
                              '(export one with export_onnx)', path)
        if precision not in PRECISIONS:
            raise ConfigError('estimator.precision', 'must be one of ' + ', '.join(PRECISIONS)
                              + ' for the tensorrt backend', precision)
        if precision == 'int8' and not calibration_images:
            raise ConfigError('estimator.options.calibration_images', 'must name a folder of '
                              'images when estimator.precision is int8', calibration_images)
        if isinstance(workspace_mb, bool) or not isinstance(workspace_mb, int) \
                or workspace_mb < 1:
            raise ConfigError('estimator.options.workspace_mb', 'must be an integer >= 1 (MiB)',
                              workspace_mb)
        self.device = torch.device(device)
        if self.device.type != 'cuda':
            raise ConfigError('estimator.device', "the tensorrt backend runs on 'cuda[:N]'",
                              device)
        if not torch.cuda.is_available():
            raise ConfigError('estimator.device', 'torch.cuda is not available (torch '
                              f'{torch.__version__})', device)
        if self.device.index is None:
            self.device = torch.device('cuda', torch.cuda.current_device())
        _require_tensorrt()
        import tensorrt as trt

        self.input_size = int(input_size)
        self.info = read_onnx_info(path)
        self.output = self.info.output
        self.profile = input_profile(image_sizes, self.input_size, max_batch,
                                     self.info.fixed_size, self.info.patch_size)
        calib_files = calibration_files(calibration_images) if precision == 'int8' else []
        key = EngineKey(onnx_digest(path), str(trt.__version__), gpu_description(self.device),
                        precision, self.profile, workspace_mb,
                        file_set_digest(calib_files) if calib_files else '')
        stem = os.path.splitext(os.path.basename(path))[0]
        cache = EngineCache(engine_cache)
        self.engine_path = cache.path(key, stem)

        def build() -> bytes:
            calibrator = None
            if calib_files:
                size = self.profile.opt[2:]
                batches = [preprocess_on_device(_read_rgb(f), self.input_size, self.device,
                                                (size[0], size[1])) for f in calib_files]
                calibrator = _make_calibrator(batches,
                                              self.engine_path.with_suffix('.calibration'))
            with torch.cuda.device(self.device):
                return build_serialized_engine(path, self.info, self.profile, precision,
                                               workspace_mb, calibrator)

        # The runtime must outlive the engines it deserialises.
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        with torch.cuda.device(self.device):
            engine, self.built = load_or_build(cache, key, stem, build,
                                               self._runtime.deserialize_cuda_engine)
            self.engine: trt.ICudaEngine = engine
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not outputs:
            raise DepthNodeError(f'the engine must have one input and an output, has {names}')
        self._input_name, self._output_name = inputs[0], outputs[0]
        self._output_dtype = _TORCH_DTYPES.get(
            self.engine.get_tensor_dtype(self._output_name).name, torch.float32)
        self.name = (f'depth_anything_tensorrt({os.path.basename(path)}, {self.device}, '
                     f'{precision})')

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """Network input ``[1, 3, h, w]`` float32 on the GPU (:func:`preprocess_on_device`)."""
        return preprocess_on_device(rgb, self.input_size, self.device)

    def infer(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Raw prediction ``[B, h, w]`` float32 on the GPU for network input ``[B, 3, h, w]``.

        Runs on the current torch CUDA stream, so that what follows (the resize back) is
        ordered after it without a synchronisation.
        """
        pixels = pixel_values.to(self.device, torch.float32).contiguous()  # [B, 3, h, w]
        shape = tuple(int(s) for s in pixels.shape)
        if not self.profile.contains(shape):
            raise DepthNodeError(f'{self.name}: input {shape} is outside the engine profile '
                                 f'{self.profile.describe()}; add the camera resolution to '
                                 'estimator.options.image_sizes')
        if not self.context.set_input_shape(self._input_name, shape):
            raise DepthNodeError(f'{self.name}: TensorRT refused the input shape {shape}')
        dims = self.context.get_tensor_shape(self._output_name)
        out_shape = [dims[i] for i in range(len(dims))]  # [B, h, w]
        out = torch.empty(out_shape, dtype=self._output_dtype, device=self.device)
        self.context.set_tensor_address(self._input_name, pixels.data_ptr())
        self.context.set_tensor_address(self._output_name, out.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f'{self.name}: TensorRT execution failed')
        return out.float()  # [B, h, w]


def _read_rgb(path: pathlib.Path) -> np.ndarray:
    """An image file as RGB ``[H, W, 3]`` uint8."""
    import cv2

    bgr = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError('estimator.options.calibration_images', 'holds an unreadable image',
                          os.fspath(path))
    return np.ascontiguousarray(bgr[..., ::-1])
