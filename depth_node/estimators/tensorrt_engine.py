"""TensorRT engines without TensorRT: input profiles, the cache key and the engine cache.

:class:`InputProfile` / :func:`input_profile` choose the optimisation profile of the input
``[B, 3, H, W]`` from the camera resolutions the node will see (mapped to network sizes as the
official pre-processing does, :func:`~depth_node.estimators.preprocess.network_input_size`).
:class:`EngineKey` is everything that makes one engine differ from another; :class:`EngineCache`
stores engines under its digest atomically; :func:`load_or_build` loads or (re)builds one.
Everything here works and is tested without TensorRT; building and running an engine is
:mod:`~depth_node.estimators.tensorrt_backend`.
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
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.estimators.preprocess import network_input_size, PATCH_SIZE

__all__ = ['DEFAULT_ENGINE_CACHE', 'EngineCache', 'EngineKey', 'InputProfile', 'file_set_digest',
           'input_profile', 'load_or_build']

_LOG = logging.getLogger(__name__)

Shape = tuple[int, int, int, int]  # [B, 3, H, W]

#: Where engines are cached unless ``engine_cache`` says otherwise.
DEFAULT_ENGINE_CACHE = os.path.join(os.environ.get('XDG_CACHE_HOME', '~/.cache'),
                                    'depth_node', 'engines')


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


def file_set_digest(paths: Sequence[Union[str, os.PathLike[str]]]) -> str:
    """SHA-256 (hex) of files' names and contents, in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.path.basename(os.fspath(path)).encode() + b'\0')
        digest.update(pathlib.Path(path).read_bytes())
    return digest.hexdigest()
