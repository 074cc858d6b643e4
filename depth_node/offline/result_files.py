"""A bag's evaluation result on disk, losslessly: ``result.json`` and ``sample.npz``.

A fleet run keeps one per bag (:mod:`depth_node.offline.fleet_eval`): it is what a second run
over the same folder loads instead of evaluating the bag again, and what the merged report is
made of, so it must give back every number exactly. ``frames.csv`` does not (6 significant
digits); this does: floats are written by ``json`` with their shortest round-trip repr (NaN and
infinities as ``NaN`` / ``Infinity``), arrays of the sample figure in an ``.npz`` (no pickle).
The evaluation's options and the node's settings are not stored: the configuration hash says
they are the run's own, and :func:`load_result` takes them from the caller.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from depth_node.core.lidar import SparseDepth
from depth_node.core.metrics import DepthMetrics
from depth_node.core.temporal import FilterEvent
from depth_node.offline.records import BagIssue
from depth_node.offline.results import EvaluationResult, FrameRecord, SamplePanel
from depth_node.pipeline.frame import FitState

__all__ = ['FORMAT', 'load_result', 'save_result', 'stored_extra', 'stored_hash']

#: Version of the files' layout (part of the configuration hash).
FORMAT = 2
RESULT = 'result.json'
SAMPLE = 'sample.npz'

_SCALARS = ('bag', 'estimator', 'ground_truth', 'interrupted', 'damaged', 'images_declared',
            'images_skipped', 'frames_failed', 'wall_s', 'read_s', 'process_s', 'split_s',
            'metrics_s', 'output_s')
_CURVES = ('curve_edges', 'curve_abs', 'curve_signed', 'curve_count', 'rel_edges', 'rel_count',
           'rel_pred', 'rel_sq', 'within_sigma')


def _record(d: dict[str, Any]) -> FrameRecord:
    d = dict(d)
    d['fit_state'] = FitState(d['fit_state'])
    if d['filter_event']:
        d['filter_event'] = FilterEvent(d['filter_event'])
    d['metrics'] = None if d['metrics'] is None else DepthMetrics(**d['metrics'])
    d['bins'] = {k: DepthMetrics(**v) for k, v in d['bins'].items()}
    return FrameRecord(**d)


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + '.part')
    write(tmp)
    os.replace(tmp, path)


def save_result(result: EvaluationResult, folder: str | Path, config_hash: str,
                extra: Optional[dict[str, Any]] = None) -> None:
    """Write ``result.json`` (last, so that its presence means complete) and ``sample.npz``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    s = result.sample
    if s is not None:
        arrays = {'index': np.int64(s.index), 'rgb': s.rgb, 'abs_rel': np.float64(s.abs_rel)}
        if s.depth is not None:
            arrays['depth'] = s.depth
        if s.gt_dense is not None:
            arrays['gt_dense'] = s.gt_dense
        if s.sigma is not None:
            arrays['sigma'] = s.sigma
        if s.gt_sparse is not None:
            g = s.gt_sparse
            arrays.update(gt_u=g.u, gt_v=g.v, gt_z=g.z,
                          gt_size=np.array([g.width, g.height], np.int64))

        def save_npz(p: Path) -> None:
            with open(p, 'wb') as fh:
                np.savez(fh, **arrays)
        _atomic_write(out / SAMPLE, save_npz)
    elif (out / SAMPLE).exists():
        (out / SAMPLE).unlink()
    data = {'format': FORMAT, 'config_hash': config_hash, **(extra or {}),
            **{k: getattr(result, k) for k in _SCALARS},
            'issues': [dataclasses.asdict(i) for i in result.issues],
            'records': [dataclasses.asdict(r) for r in result.records],
            'sample': s is not None,
            **{k: np.asarray(getattr(result, k)).tolist() for k in _CURVES}}
    text = json.dumps(data, allow_nan=True)
    _atomic_write(out / RESULT, lambda p: p.write_text(text, encoding='utf-8'))


def stored_hash(folder: str | Path) -> Optional[str]:
    """The configuration hash of the result in ``folder`` (None: none, or unreadable)."""
    try:
        data = json.loads((Path(folder) / RESULT).read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        return None
    value = data.get('config_hash')
    return value if isinstance(value, str) else None


def stored_extra(folder: str | Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """Those of ``keys`` that :func:`save_result` stored from its ``extra``."""
    try:
        data = json.loads((Path(folder) / RESULT).read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return {}
    return {k: data[k] for k in keys if k in data}


def load_result(folder: str | Path, options: Any, settings: Any) -> EvaluationResult:
    """The result :func:`save_result` wrote, with the run's ``options`` and ``settings``."""
    folder = Path(folder)
    data = json.loads((folder / RESULT).read_text(encoding='utf-8'))
    result = EvaluationResult(data['bag'], data['estimator'], data['ground_truth'], options,
                              settings)
    for k in _SCALARS[3:]:
        setattr(result, k, data[k])
    result.issues = [BagIssue(**i) for i in data['issues']]
    result.records = [_record(r) for r in data['records']]
    for k in _CURVES:
        setattr(result, k, np.asarray(data[k], dtype=np.float64))
    if data['sample']:
        with np.load(folder / SAMPLE, allow_pickle=False) as z:
            sparse = None
            if 'gt_u' in z:
                w, h = (int(x) for x in z['gt_size'])
                sparse = SparseDepth(z['gt_u'], z['gt_v'], z['gt_z'], w, h)
            result.sample = SamplePanel(
                int(z['index']), z['rgb'], z['depth'] if 'depth' in z else None,
                z['gt_dense'] if 'gt_dense' in z else None, sparse, float(z['abs_rel']),
                z['sigma'] if 'sigma' in z else None)
    return result
