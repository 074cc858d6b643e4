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

Pre-processing runs on the GPU (:func:`preprocess_on_device`: the uint8 image is uploaded, then
scaled, bicubic-resized and normalised there); it matches the official CPU pre-processing to
about 1e-3 of the normalised range (torch's bicubic vs OpenCV's), well under FP16 noise. The
resize back to the image size and the checks are :meth:`DepthAnythingEstimator.predict`
itself. Precision: ``fp16`` (default), ``fp32``, ``bf16`` or ``int8`` (with FP16 fallback and
an entropy calibrator over ``calibration_images``).

``tensorrt`` is imported lazily, inside functions: everything but building and running an engine
(profiles, keys, the cache, pre-processing) works and is tested without it. It is type-checked
against ``tensorrt-stubs`` (``test/test_backends.py`` runs mypy when both are installed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, TYPE_CHECKING, Union

import numpy as np

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.estimators.base import check_input_image
# _MEAN/_STD: the official ImageNet statistics the CPU pre-processing uses.
from depth_node.estimators.depth_anything import (_MEAN, _STD, DepthAnythingEstimator,
                                                  network_input_size, PATCH_SIZE)
from depth_node.estimators.onnx_model import (is_onnx_path, onnx_digest, OnnxModelInfo,
                                              read_onnx_info)

try:
    import torch
    import torch.nn.functional as F
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise ImportError(f'the tensorrt backend needs torch with CUDA ({_exc})') from _exc

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = ['DEFAULT_ENGINE_CACHE', 'EngineCache', 'EngineKey', 'InputProfile', 'PRECISIONS',
           'TensorRTEstimator', 'input_profile', 'load_or_build', 'preprocess_on_device',
           'tensorrt_missing']

_LOG = logging.getLogger(__name__)

Shape = tuple[int, int, int, int]  # [B, 3, H, W]

#: Where engines are cached unless ``engine_cache`` says otherwise.
DEFAULT_ENGINE_CACHE = os.path.join(os.environ.get('XDG_CACHE_HOME', '~/.cache'),
                                    'depth_node', 'engines')
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


# ------------------------------------------------------------------------------------------------
# Shapes


@dataclass(frozen=True)
class InputProfile:
    """TensorRT optimisation profile of the input ``[B, 3, H, W]``: smallest, tuned, largest."""

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        for low, mid, high in zip(self.min, self.opt, self.max):
            if not 0 < low <= mid <= high:
                raise DepthNodeError(f'optimisation profile needs 0 < min <= opt <= max per '
                                     f'dimension, got {self.min}, {self.opt}, {self.max}')

    def contains(self, shape: Sequence[int]) -> bool:
        """True when an input of ``shape`` fits the profile."""
        return len(shape) == 4 and all(lo <= s <= hi for lo, s, hi
                                       in zip(self.min, shape, self.max))

    def describe(self) -> str:
        """``'1x3x518x518 .. 1x3x518x686 .. 1x3x1036x1036'`` (min .. opt .. max)."""
        return ' .. '.join('x'.join(map(str, s)) for s in (self.min, self.opt, self.max))


def input_profile(image_sizes: Sequence[Sequence[int]], input_size: int = 518,
                  max_batch: int = 1, fixed: Optional[tuple[int, int]] = None,
                  patch: int = PATCH_SIZE) -> InputProfile:
    """Profile for the camera resolutions ``image_sizes`` (``[(H, W), ...]``, first = tuned).

    Each image size maps to a network size as the official pre-processing picks it
    (:func:`network_input_size`); the profile spans them, tuned for the first. Without image
    sizes it spans square to 2:1 either way (``input_size`` to twice that per side), tuned for
    4:3 landscape. A graph with a fixed size (``fixed``) allows only that size, and image sizes
    must map to it.
    """
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ConfigError('estimator.options.max_batch', 'must be an integer >= 1', max_batch)
    sizes = []
    for size in image_sizes:
        if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                     and v > 0 for v in size):
            raise ConfigError('estimator.options.image_sizes', 'must be a list of [height, width] '
                              'pairs of positive integers', list(image_sizes))
        sizes.append(network_input_size(int(size[0]), int(size[1]), input_size, patch))
    if fixed is not None:
        wrong = [s for s in sizes if s != fixed]
        if wrong:
            raise ConfigError('estimator.options.image_sizes', f'the ONNX graph has a fixed '
                              f'input size {fixed[0]}x{fixed[1]}, these image sizes need '
                              f'{wrong} (re-export with dynamic shapes)', list(image_sizes))
        sizes = [fixed]
    elif not sizes:
        side = network_input_size(input_size, input_size, input_size, patch)[0]
        wide = network_input_size(input_size, 2 * input_size, input_size, patch)[1]
        opt = network_input_size(480, 640, input_size, patch)
        sizes = [opt, (side, side), (wide, wide)]
    heights, widths = [s[0] for s in sizes], [s[1] for s in sizes]
    return InputProfile((1, 3, min(heights), min(widths)), (1, 3) + sizes[0],
                        (max_batch, 3, max(heights), max(widths)))


# ------------------------------------------------------------------------------------------------
# Engine cache


@dataclass(frozen=True)
class EngineKey:
    """Everything that makes one engine differ from another; its digest names the cache file."""

    onnx_sha256: str
    tensorrt_version: str
    gpu: str  # device name and compute capability
    precision: str
    profile: InputProfile
    workspace_mb: int
    calibration_sha256: str = ''  # INT8 only

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """SHA-256 (hex) of the key's canonical JSON."""
        text = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def file_name(self, stem: str) -> str:
        """``<stem>.<precision>.<16 hex digits>.engine``."""
        return f'{stem}.{self.precision}.{self.digest()[:16]}.engine'


class EngineCache:
    """A folder of serialised engines, each next to a JSON file with its key."""

    def __init__(self, folder: Union[str, os.PathLike[str]]) -> None:
        self.folder = pathlib.Path(os.path.expanduser(os.fspath(folder)))

    def path(self, key: EngineKey, stem: str) -> pathlib.Path:
        return self.folder / key.file_name(stem)

    def load(self, key: EngineKey, stem: str) -> Optional[bytes]:
        """The serialised engine for ``key``, or None."""
        try:
            return self.path(key, stem).read_bytes()
        except FileNotFoundError:
            return None

    def store(self, key: EngineKey, stem: str, blob: bytes) -> pathlib.Path:
        """Write the engine (and its key as JSON) atomically; return the engine's path."""
        path = self.path(key, stem)
        self.folder.mkdir(parents=True, exist_ok=True)
        for target, data in ((path.with_suffix('.json'),
                              json.dumps(key.as_dict(), indent=2, sort_keys=True).encode()),
                             (path, blob)):
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=target.name + '.', suffix='.tmp')
            try:
                with os.fdopen(fd, 'wb') as stream:
                    stream.write(data)
                os.replace(tmp, target)
            except BaseException:
                os.unlink(tmp)
                raise
        return path


def load_or_build(cache: EngineCache, key: EngineKey, stem: str, build: Callable[[], bytes],
                  deserialize: Callable[[bytes], Optional[Any]]) -> tuple[Any, bool]:
    """The engine for ``key``: from the cache, or built, stored and loaded.

    A cached file that ``deserialize`` refuses (None: written by another TensorRT build, or
    truncated) is rebuilt and overwritten. Returns ``(engine, built)``.
    """
    blob = cache.load(key, stem)
    if blob is not None:
        engine = deserialize(blob)
        if engine is not None:
            _LOG.info('TensorRT engine from the cache: %s', cache.path(key, stem))
            return engine, False
        _LOG.warning('cached TensorRT engine %s cannot be loaded: rebuilding it',
                     cache.path(key, stem))
    _LOG.info('building TensorRT engine %s (%s, profile %s); this can take minutes',
              cache.path(key, stem), key.precision, key.profile.describe())
    blob = build()
    path = cache.store(key, stem, blob)
    engine = deserialize(blob)
    if engine is None:
        raise RuntimeError(f'TensorRT cannot load the engine it has just built ({path})')
    return engine, True


def gpu_description(device: torch.device) -> str:
    """``'<name> sm_<major><minor>'`` of a CUDA device (part of the engine key)."""
    major, minor = torch.cuda.get_device_capability(device)
    return f'{torch.cuda.get_device_name(device)} sm_{major}{minor}'


def file_set_digest(paths: Sequence[Union[str, os.PathLike[str]]]) -> str:
    """SHA-256 (hex) of files' names and contents, in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.path.basename(os.fspath(path)).encode() + b'\0')
        digest.update(pathlib.Path(path).read_bytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------
# Pre-processing on the GPU


def preprocess_on_device(rgb: np.ndarray, input_size: int, device: Union[str, torch.device],
                         size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """Network input ``[1, 3, h, w]`` float32 on ``device`` from an RGB ``[H, W, 3]`` uint8.

    The official pre-processing (``/255``, bicubic resize to :func:`network_input_size`,
    ImageNet mean/std) with torch ops where the image lives, instead of OpenCV in float64 on
    the CPU. ``size`` forces the network size ``(h, w)`` (calibration images).
    """
    check_input_image(rgb)
    height, width = rgb.shape[:2]
    net_h, net_w = size or network_input_size(height, width, input_size)
    image = torch.from_numpy(np.ascontiguousarray(rgb)).to(device, non_blocking=True)
    image = image.permute(2, 0, 1)[None].float() / 255.0  # [1, 3, H, W]
    image = F.interpolate(image, (net_h, net_w), mode='bicubic', align_corners=False)
    mean = torch.tensor(_MEAN, dtype=torch.float32, device=image.device).view(1, 3, 1, 1)
    std = torch.tensor(_STD, dtype=torch.float32, device=image.device).view(1, 3, 1, 1)
    return ((image - mean) / std).contiguous()  # [1, 3, h, w]


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


class TensorRTEstimator:
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

    # DepthAnythingEstimator's own predict (preprocess -> infer -> resize back -> check); it
    # uses `preprocess`, `infer` and `name`, defined here.
    predict = DepthAnythingEstimator.predict

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
