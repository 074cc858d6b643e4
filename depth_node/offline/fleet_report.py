"""The merged report of a fleet evaluation: all bags as one, and a row per bag.

:func:`merge_results` makes one :class:`~depth_node.offline.results.EvaluationResult` of many
bags' (their per-frame records one bag after the other, so the overall metrics are the mean
over every frame, as for one bag); :func:`write_fleet_report` writes it with
:func:`~depth_node.offline.report.write_report` - the same CSV, JSON, plots and HTML as one
bag - plus ``bags.csv`` (a row per bag: status, frames, metrics, error), a ``bag`` column in
``frames.csv``, a ``fleet`` section in ``summary.json`` and a table of the bags, linking their
own reports, in ``index.html``.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from depth_node.core.errors import DepthNodeError
from depth_node.offline.results import EvaluationResult

__all__ = ['ACCUMULATORS', 'bag_rows', 'merge_results', 'sum_accumulators',
           'write_fleet_report']

FAILED = 'failed'


def merge_results(results: Sequence[EvaluationResult], label: str) -> EvaluationResult:
    """One result of many bags: their records (and issues) one bag after the other."""
    if not results:
        raise DepthNodeError('no bag result to merge')
    first = results[0]
    truths = sorted({r.ground_truth for r in results})
    merged = EvaluationResult(label, first.estimator, '+'.join(truths), first.options,
                              first.settings)
    for r in results:
        merged.records.extend(r.records)
        merged.issues.extend(r.issues)
        merged.interrupted |= r.interrupted
        merged.damaged |= r.damaged
        for k in ('images_declared', 'images_skipped', 'frames_failed', 'wall_s', 'read_s',
                  'process_s', 'split_s', 'metrics_s', 'output_s'):
            setattr(merged, k, getattr(merged, k) + getattr(r, k))
        if merged.sample is None:
            merged.sample = r.sample
    sum_accumulators(merged, results)
    return merged


#: Per-frame sums of a result (error-versus-depth curve, reliability of sigma) and their bins.
ACCUMULATORS = {'curve_edges': ('curve_abs', 'curve_signed', 'curve_count'),
                'rel_edges': ('rel_count', 'rel_pred', 'rel_sq', 'within_sigma')}


def sum_accumulators(out: EvaluationResult, parts: Sequence[EvaluationResult]) -> None:
    """``out``'s accumulators: those of ``parts`` added in order (the bins of the first)."""
    for edges, sums in ACCUMULATORS.items():
        have = [p for p in parts if getattr(p, edges).size]
        if not have:
            continue
        setattr(out, edges, getattr(have[0], edges))
        for k in sums:
            total = np.zeros_like(getattr(have[0], k))
            for p in have:
                total = total + getattr(p, k)
            setattr(out, k, total)


def bag_rows(outcomes: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per bag outcome (:class:`~depth_node.offline.fleet_eval.BagOutcome`)."""
    rows = []
    for o in outcomes:
        r = o.result
        m = r.overall() if r is not None else None
        rows.append({
            'bag': o.bag, 'key': o.key, 'status': o.status,
            'frames': r.frames if r else 0,
            'with_metric_depth': r.frames_with_depth if r else 0,
            'evaluated': r.frames_evaluated if r else 0,
            'abs_rel': m.abs_rel if m else None, 'delta1': m.delta1 if m else None,
            'rmse': m.rmse if m else None, 'valid': m.valid if m else 0,
            'damaged': bool(r.damaged) if r else False,
            'issues': len(r.issues) if r else 0, 'error': o.error,
            'worker': o.worker, 'seconds': o.seconds, 'cpu_s': o.cpu_s})
    return rows


def write_fleet_report(out: Path, outcomes: Sequence[Any], merged: Optional[EvaluationResult],
                       info: dict[str, Any], plots: bool = True) -> dict[str, Path]:
    """Write the merged report into ``out``; ``info`` goes into ``summary.json`` ``fleet``."""
    from depth_node.offline.report import write_report
    out.mkdir(parents=True, exist_ok=True)
    rows = bag_rows(outcomes)
    with open(out / 'bags.csv', 'w', newline='') as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ['bag'])
        w.writeheader()
        w.writerows(rows)
    failed = [o for o in outcomes if o.status == FAILED]
    extra = {'fleet': {
        'bags': rows, 'failed': [{'bag': o.bag, 'error': o.error} for o in failed],
        'damaged': [o.bag for o in outcomes if o.result is not None and o.result.damaged],
        **info}}
    if merged is None:
        (out / 'summary.json').write_text(json.dumps(extra, indent=2, default=str))
        return {'summary.json': out / 'summary.json', 'bags.csv': out / 'bags.csv'}
    files = write_report(merged, out, plots=plots, extra=extra, extra_html=_bags_html(rows))
    _add_bag_column(out / 'frames.csv', [o.key for o in outcomes
                                         if o.result is not None and o.status != FAILED
                                         for _ in o.result.records])
    files['bags.csv'] = out / 'bags.csv'
    return files


def _add_bag_column(path: Path, keys: list[str]) -> None:
    """frames.csv of the merged report: which bag each row is from."""
    with open(path, newline='') as fh:
        rows = list(csv.reader(fh))
    with open(path, 'w', newline='') as fh:
        w = csv.writer(fh)
        w.writerow(['bag'] + rows[0])
        for key, row in zip(keys, rows[1:]):
            w.writerow([key] + row)


def _bags_html(rows: list[dict[str, Any]]) -> str:
    def num(v: Any) -> str:
        return '-' if v is None or (isinstance(v, float) and not np.isfinite(v)) \
            else f'{v:.4f}' if isinstance(v, float) else str(v)

    body = []
    for r in rows:
        link = (f'<a href="bags/{html.escape(r["key"])}/index.html">{html.escape(r["key"])}</a>'
                if r['status'] != FAILED else html.escape(r['key']))
        status = r['status'] + (' (damaged)' if r['damaged'] else '')
        body.append(f'<tr><td>{link}</td><td>{html.escape(status)}</td><td>{r["frames"]}</td>'
                    f'<td>{r["with_metric_depth"]}</td><td>{num(r["abs_rel"])}</td>'
                    f'<td>{num(r["delta1"])}</td><td>{num(r["rmse"])}</td>'
                    f'<td style="text-align:left">{html.escape(r["error"])}</td></tr>')
    failed = [r for r in rows if r['status'] == FAILED]
    warn = (f'<p class="warn">{len(failed)} bag(s) could not be evaluated: '
            + '; '.join(html.escape(r['bag']) for r in failed) + '</p>') if failed else ''
    return (f'<h2>Bags ({len(rows)})</h2>{warn}<table><tr><th>bag</th><th>status</th>'
            '<th>frames</th><th>with depth</th><th>AbsRel</th><th>delta1</th><th>RMSE</th>'
            '<th>error</th></tr>' + ''.join(body) + '</table>'
            '<p>One row per bag: <a href="bags.csv">bags.csv</a>.</p>')
