"""Choose how Depth Anything runs: TensorRT, ONNX Runtime or torch, by name or automatically.

=============  ==========================================  =============================
backend        model file                                  device
=============  ==========================================  =============================
tensorrt       ``.onnx`` from ``export_onnx`` (the engine  ``cuda[:N]``
               is built once and cached)
onnxruntime    ``.onnx`` from ``export_onnx``              ``cpu`` or ``cuda[:N]``
torch          Hugging Face folder or official ``.pth``    ``cpu`` or ``cuda[:N]``
=============  ==========================================  =============================

All three compute the same thing (same pre-processing, same network, same resize back; see
``test/test_backends.py``) and declare the same :class:`OutputSpec`.

``auto`` takes the first of **tensorrt, onnxruntime, torch** that can run here:

* tensorrt: an ONNX file, ``estimator.device`` is ``cuda[:N]``, torch sees CUDA, and
  ``import tensorrt`` works;
* onnxruntime: an ONNX file and ``import onnxruntime`` works;
* torch: a checkpoint (folder or ``.pth``) and ``import transformers`` works.

On a machine where TensorRT cannot run, ``auto`` with both an ONNX file and a checkpoint
measures instead (:mod:`depth_node.estimators.autotune`): torch (fp32, bf16, thread counts)
and ONNX Runtime (intra-op thread counts) are timed on a probe image and the fastest that
agrees with torch fp32 is kept (cached per machine, model and input size). ``onnxruntime``
with ``estimator.threads`` 0 and no ``threads`` option measures its intra-op threads alike.

A backend that is available but fails while starting (TensorRT cannot build the engine, a
provider library is missing) is skipped with a warning; a configuration error is raised. One
INFO line says what was chosen and why.

Model files: ``estimator.model_path`` is either kind; the other kind, for ``auto``'s other
candidates, goes in ``estimator.options`` as ``onnx`` or ``checkpoint``.

Options (``estimator.options``, all optional)
---------------------------------------------
===================  =================================================================
``onnx``             ONNX file when ``model_path`` is a checkpoint
``checkpoint``       checkpoint when ``model_path`` is an ONNX file (torch fallback)
``engine_cache``     folder of TensorRT engines (``~/.cache/depth_node/engines``); also
                     the ONNX Runtime TensorRT provider's cache
``image_sizes``      camera resolutions ``[[H, W], ...]`` the TensorRT engine is built for
                     (first = tuned); default: a range around ``input_size``
``max_batch``        TensorRT profile's largest batch (1)
``workspace_mb``     TensorRT builder workspace, MiB (1024)
``calibration_images``  folder of images for TensorRT INT8
``threads``          ONNX Runtime intra-op threads (0 = one per core; unset with
                     ``estimator.threads`` 0: measured)
``optimization``     ONNX Runtime graph optimisation: disable, basic, extended, all
``providers``        ONNX Runtime execution providers, best first
===================  =================================================================
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from depth_node.core.errors import ConfigError
from depth_node.estimators.base import Estimator, EstimatorConfig, model_input_size
from depth_node.estimators.onnx_model import is_onnx_path

__all__ = ['AUTO_ORDER', 'BACKENDS', 'Candidate', 'OPTION_KEYS', 'build_depth_anything',
           'build_measured', 'candidates']

_LOG = logging.getLogger(__name__)

#: Backends, in the order ``auto`` tries them.
AUTO_ORDER = ('tensorrt', 'onnxruntime', 'torch')
BACKENDS = AUTO_ORDER + ('auto',)
_NEEDS_ONNX = ('tensorrt', 'onnxruntime')
#: Options each backend's constructor takes (besides the model file).
OPTION_KEYS: dict[str, tuple[str, ...]] = {
    'tensorrt': ('engine_cache', 'image_sizes', 'max_batch', 'workspace_mb',
                 'calibration_images'),
    'onnxruntime': ('threads', 'optimization', 'providers', 'engine_cache'),
    'torch': (),
}
_FILE_KEYS = ('onnx', 'checkpoint')
# Errors while starting an available backend that make `auto` try the next one.
_FALLBACK_ERRORS = (RuntimeError, ImportError, OSError)


@dataclass(frozen=True)
class Candidate:
    """One backend for one configuration: the file it would run, or why it cannot run."""

    backend: str
    model_path: str  # '' when there is no file of the kind it needs
    reason: str = ''  # '' = available

    @property
    def available(self) -> bool:
        return not self.reason


def _importable(module: str) -> str:
    """'' when ``module`` imports (and is more than an empty namespace package), else why not."""
    try:
        found = importlib.import_module(module)
    except ImportError as exc:
        return f'{module} is not importable ({exc})'
    if getattr(found, '__file__', None) is None:  # e.g. tensorrt-stubs without TensorRT
        return f'{module} is only a namespace package here (type stubs without the library?)'
    return ''


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _model_files(config: EstimatorConfig) -> tuple[str, str]:
    """``(onnx, checkpoint)`` paths from ``model_path`` and the options ('' when none)."""
    path = os.fspath(config.model_path or '')
    onnx = str(config.options.get('onnx', '') or '')
    checkpoint = str(config.options.get('checkpoint', '') or '')
    if path:
        if is_onnx_path(path):
            onnx = path
        else:
            checkpoint = path
    return onnx, checkpoint


def candidates(config: EstimatorConfig, backends: tuple[str, ...] = AUTO_ORDER
               ) -> list[Candidate]:
    """Whether each backend can run ``config`` here (nothing is loaded or built)."""
    onnx, checkpoint = _model_files(config)
    found = []
    for backend in backends:
        path = onnx if backend in _NEEDS_ONNX else checkpoint
        if not path:
            kind = 'an .onnx file' if backend in _NEEDS_ONNX else 'a checkpoint (folder or .pth)'
            reason = f'needs {kind}'
        elif backend == 'tensorrt':
            if not config.device.startswith('cuda'):
                reason = f'estimator.device is {config.device!r}, not cuda'
            elif not _cuda_available():
                reason = 'torch sees no CUDA device'
            else:
                reason = _importable('tensorrt')
        elif backend == 'onnxruntime':
            reason = _importable('onnxruntime')
        else:
            reason = _importable('transformers')
        found.append(Candidate(backend, path, reason))
    return found


def _construct(backend: str, path: str, config: EstimatorConfig) -> Estimator:
    options = {k: v for k, v in config.options.items() if k in OPTION_KEYS[backend]}
    common: dict[str, Any] = dict(input_size=config.input_size or model_input_size(path),
                                  device=config.device, precision=config.fixed_precision)
    factory: Callable[..., Estimator]
    if backend == 'tensorrt':
        from depth_node.estimators.tensorrt_backend import TensorRTEstimator as factory
    elif backend == 'onnxruntime':
        from depth_node.estimators.onnxruntime_backend import OnnxRuntimeEstimator as factory
    else:
        from depth_node.estimators.depth_anything import DepthAnythingEstimator as factory
        common['encoder'] = config.encoder
    return factory(path, **common, **options)


def _check_options(config: EstimatorConfig) -> None:
    unknown = sorted(set(config.options) - set(_FILE_KEYS)
                     - {k for keys in OPTION_KEYS.values() for k in keys})
    if unknown:
        known = sorted(set(_FILE_KEYS).union(*OPTION_KEYS.values()))
        raise ConfigError('estimator.options', f'unknown option(s) {unknown} for Depth '
                          f'Anything backends (known: {", ".join(known)})', config.options)


def build_depth_anything(config: EstimatorConfig, backend: str = 'auto') -> Estimator:
    """Build Depth Anything on ``backend`` (``auto``, ``tensorrt``, ``onnxruntime``, ``torch``).

    Raises :class:`ConfigError` when the named backend, or for ``auto`` every backend, cannot
    run the configuration; the message gives each reason.
    """
    if backend not in BACKENDS:
        raise ConfigError('backend', 'must be one of ' + ', '.join(BACKENDS), backend)
    _check_options(config)
    order = AUTO_ORDER if backend == 'auto' else (backend,)
    skipped: list[str] = []
    for candidate in candidates(config, order):
        if not candidate.available:
            skipped.append(f'{candidate.backend}: {candidate.reason}')
            continue
        try:
            estimator = _construct(candidate.backend, candidate.model_path, config)
        except _FALLBACK_ERRORS as exc:
            if backend != 'auto':
                raise
            _LOG.warning('estimator backend %s is available but failed to start, trying the '
                         'next one: %s: %s', candidate.backend, type(exc).__name__, exc)
            skipped.append(f'{candidate.backend}: failed to start ({type(exc).__name__})')
            continue
        why = 'requested' if backend != 'auto' else (
            'auto, first available of ' + ' > '.join(AUTO_ORDER)
            + (f'; skipped {"; ".join(skipped)}' if skipped else ''))
        _LOG.info('estimator backend: %s (%s); model %s, device %s, precision %s',
                  candidate.backend, why, candidate.model_path, config.device,
                  config.precision)
        return estimator
    raise ConfigError('estimator.type', 'no Depth Anything backend can run here ('
                      + '; '.join(skipped) + ')', f'depth_anything_{backend}')


def build_measured(config: EstimatorConfig, backend: str) -> Optional[Estimator]:
    """Depth Anything on ``backend`` with what is open chosen by measurement, or None.

    None when nothing is left to measure (then :func:`build_depth_anything` decides): TensorRT
    can run (``auto`` takes it first), a single backend is available with everything pinned,
    or a measured backend failed to start (``auto`` then falls back by order, as without
    measurement). The estimator's ``autotune`` attribute holds the
    :class:`~depth_node.estimators.autotune.Choice`.
    """
    from depth_node.estimators import autotune

    if backend not in ('auto', 'onnxruntime'):
        return None
    _check_options(config)
    found = {c.backend: c for c in candidates(config)}
    if backend == 'auto' and found['tensorrt'].available:
        return None
    ort, torch_c = found['onnxruntime'], found['torch']
    use_ort = ort.available
    use_torch = backend == 'auto' and torch_c.available
    cpu = config.device == 'cpu'
    ort_threads: Optional[int] = None
    if 'threads' in config.options:
        ort_threads = config.options['threads']
        if isinstance(ort_threads, bool) or not isinstance(ort_threads, int) or ort_threads < 0:
            return None  # the backend itself refuses it, naming the option
    ort_open = use_ort and cpu and ort_threads is None and config.threads == 0
    torch_open = use_torch and (config.precision == 'auto' or (cpu and config.threads == 0))
    if not (use_ort and use_torch) and not ort_open and not torch_open:
        return None

    def build_torch(c: EstimatorConfig) -> Estimator:
        return _construct('torch', torch_c.model_path, c)

    def build_ort(c: EstimatorConfig) -> Estimator:
        return _construct('onnxruntime', ort.model_path,
                          replace(c, options={**c.options, 'threads': c.threads}))

    try:
        est, choice = autotune.choose(config, build_torch if use_torch else None,
                                      onnx=ort.model_path if use_ort else '',
                                      build_onnx=build_ort if use_ort else None,
                                      onnx_threads=ort_threads)
    except _FALLBACK_ERRORS as exc:
        if backend != 'auto':
            raise
        _LOG.warning('estimator autotune: a backend failed to start (%s: %s); choosing by '
                     'order instead', type(exc).__name__, exc)
        return None
    skipped = [f'{c.backend}: {c.reason}' for c in found.values() if not c.available]
    _LOG.info('estimator backend: %s (%s, by measurement%s); model %s, device %s, precision '
              '%s, %d thread(s)', choice.backend, backend,
              f'; skipped {"; ".join(skipped)}' if skipped else '',
              ort.model_path if choice.backend == 'onnxruntime' else torch_c.model_path,
              config.device, choice.precision, choice.threads)
    est.autotune = choice  # type: ignore[attr-defined]  # what was measured, for the log
    return est
