"""Build an estimator from configuration: a registered name or ``package.module:factory``."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

from depth_node.core.align import OutputSpec
from depth_node.core.errors import ConfigError
from depth_node.estimators.base import (Estimator, EstimatorConfig, model_input_size,
                                        SHIPPED_STUDENT)


def _depth_anything(config: EstimatorConfig) -> Estimator:
    if config.options:  # a typo or a backend's option would be ignored without a word
        raise ConfigError('estimator.options', f"must be {{}} for estimator.type "
                          f"'depth_anything' (torch takes no options; got "
                          f"{', '.join(sorted(map(str, config.options)))}); backend options "
                          "go with 'depth_anything_onnxruntime', '_tensorrt' or '_auto'",
                          config.options)
    from depth_node.estimators.depth_anything import DepthAnythingEstimator
    return DepthAnythingEstimator.from_config(config)


def _depth_anything_on(backend: str) -> Callable[[EstimatorConfig], Estimator]:
    """Depth Anything on a deployment backend (see :mod:`depth_node.estimators.backends`)."""
    def build(config: EstimatorConfig) -> Estimator:
        from depth_node.estimators.backends import build_depth_anything
        return build_depth_anything(config, backend)
    return build


def _marigold(config: EstimatorConfig) -> Estimator:
    from depth_node.estimators.marigold import build_marigold
    return build_marigold(config)


_REGISTRY: dict[str, Callable[[EstimatorConfig], Estimator]] = {
    'depth_anything': _depth_anything,  # torch (transformers)
    'depth_anything_onnxruntime': _depth_anything_on('onnxruntime'),
    'depth_anything_tensorrt': _depth_anything_on('tensorrt'),
    # tensorrt > onnxruntime > torch, the first that can run here
    'depth_anything_auto': _depth_anything_on('auto'),
    'marigold': _marigold,  # diffusers Marigold: affine-invariant depth (keyframe teacher)
}


def registered() -> list[str]:
    """Names accepted by ``estimator.type`` besides import paths."""
    return sorted(_REGISTRY)


def _load_factory(path: str) -> Callable[..., object]:
    module_name, _, attr = path.partition(':')
    if not module_name or not attr:
        raise ConfigError('estimator.type', "must be one of " + ', '.join(registered())
                          + " or an import path 'package.module:factory'", path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError('estimator.type', f'module {module_name!r} cannot be imported: {exc}',
                          path) from exc
    factory = module
    for part in attr.split('.'):
        if not hasattr(factory, part):
            raise ConfigError('estimator.type', f'{module_name!r} has no attribute {attr!r}', path)
        factory = getattr(factory, part)
    if not callable(factory):
        raise ConfigError('estimator.type', f'{path!r} is not callable', path)
    return factory


def resolve_defaults(config: EstimatorConfig) -> EstimatorConfig:
    """Fill in what a Depth Anything configuration leaves to the model.

    ``model_path`` '' is the shipped synthetic student (:data:`SHIPPED_STUDENT`);
    ``input_size`` 0 is the model's own (:func:`model_input_size`: its
    ``preprocessor_config.json``, else 518). Other estimator types are returned unchanged.
    """
    if config.type not in _REGISTRY or not config.type.startswith('depth_anything'):
        return config
    path = config.model_path
    if not path:
        if not (SHIPPED_STUDENT / 'model.safetensors').is_file():
            raise ConfigError('estimator.model_path', 'is empty and the shipped student is '
                              f'missing from {SHIPPED_STUDENT}; name a Depth Anything V2 '
                              'folder or .pth', '')
        path = str(SHIPPED_STUDENT)
    size = config.input_size if config.input_size else model_input_size(path)
    return dataclasses.replace(config, model_path=path, input_size=size)


def build_estimator(config: EstimatorConfig) -> Estimator:
    """Build the estimator that ``config`` names and check that it honours the contract.

    Depth Anything types get their defaults first (:func:`resolve_defaults`). ``threads`` > 0
    sets torch's CPU threads for the whole process first (on a loaded 2-core machine one thread
    can be several times faster than two); for the torch Depth Anything estimator ``threads`` 0
    and ``precision`` 'auto' are chosen by measurement (:mod:`depth_node.estimators.autotune`,
    the choice on the estimator's ``autotune`` attribute); for ``depth_anything_auto`` without
    TensorRT the backend too, and ONNX Runtime's threads
    (:func:`~depth_node.estimators.backends.build_measured`).
    """
    config = resolve_defaults(config)
    if isinstance(config.threads, bool) or not isinstance(config.threads, int) \
            or config.threads < 0:
        raise ConfigError('estimator.threads', 'must be an integer >= 0', config.threads)
    if config.type == 'depth_anything' and (config.precision == 'auto' or
                                            (config.threads == 0 and config.device == 'cpu')):
        from depth_node.estimators.autotune import choose
        est, choice = choose(config, _REGISTRY['depth_anything'])
        est.autotune = choice  # what was measured, for the caller's log
        return _checked(est, config)
    if config.type in ('depth_anything_auto', 'depth_anything_onnxruntime'):
        from depth_node.estimators.backends import build_measured
        measured = build_measured(config, config.type.rpartition('_')[2])
        if measured is not None:
            return _checked(measured, config)
    if config.precision == 'auto':  # the deployment backends and custom types: fp32
        config = dataclasses.replace(config, precision='fp32')
    if config.threads:
        import torch
        torch.set_num_threads(config.threads)
    if config.type in _REGISTRY:
        est = _REGISTRY[config.type](config)
    else:
        factory = _load_factory(config.type)
        try:
            est = factory(**config.options)
        except TypeError as exc:
            raise ConfigError('estimator.options', f'rejected by {config.type}: {exc}',
                              config.options) from exc
    return _checked(est, config)


def _checked(est: Estimator, config: EstimatorConfig) -> Estimator:
    """``est`` if it honours the estimator contract, else :class:`ConfigError`."""
    if not isinstance(getattr(est, 'output', None), OutputSpec):
        raise ConfigError('estimator.type', 'the estimator must have an attribute `output` of '
                          'type depth_node.core.align.OutputSpec', config.type)
    if not callable(getattr(est, 'predict', None)):
        raise ConfigError('estimator.type', 'the estimator must have a method predict(rgb)',
                          config.type)
    return est
