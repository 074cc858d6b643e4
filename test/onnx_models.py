"""ONNX exports of the tiny test models, made once per test session and shared by test files.

An export takes seconds (the dynamic-shape one about ten), so the export and backend tests ask
for them here instead of exporting the same model twice.
"""

from __future__ import annotations

import pathlib
from typing import Any

from tiny_models import save_tiny_depth_anything

_FOLDERS: dict[str, pathlib.Path] = {}
_EXPORTS: dict[tuple[Any, ...], pathlib.Path] = {}


def tiny_folder(factory: Any, depth_estimation_type: str = 'relative') -> pathlib.Path:
    """The tiny Depth Anything HF folder (seed 0) of that type; ``factory`` = tmp_path_factory."""
    if depth_estimation_type not in _FOLDERS:
        _FOLDERS[depth_estimation_type] = save_tiny_depth_anything(
            factory.mktemp('tiny') / f'tiny-da-{depth_estimation_type}',
            depth_estimation_type=depth_estimation_type)
    return _FOLDERS[depth_estimation_type]


def tiny_onnx(factory: Any, depth_estimation_type: str = 'relative',
              **export: Any) -> pathlib.Path:
    """ONNX export of :func:`tiny_folder` with ``export_onnx`` keyword arguments ``export``."""
    from depth_node.estimators.onnx_export import export_onnx_from_checkpoint

    key = (depth_estimation_type,) + tuple(sorted(export.items()))
    if key not in _EXPORTS:
        folder = tiny_folder(factory, depth_estimation_type)
        path = factory.mktemp('onnx') / 'tiny.onnx'
        export_onnx_from_checkpoint(folder, path, **export)
        _EXPORTS[key] = path
    return _EXPORTS[key]
