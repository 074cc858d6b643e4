"""Reports of a bag evaluation: a CSV per frame, a JSON summary, PNG plots and one HTML page.

:func:`write_report` writes, into one folder,

* ``frames.csv``: one row per processed frame (fit, scale/shift, metrics, per-depth-bin
  AbsRel, per-stage latency);
* ``summary.json``: :meth:`EvaluationResult.summary` plus the list of files;
* ``error_vs_depth.png``, ``abs_rel_over_time.png``, ``scale_shift.png``, ``latency.png``,
  ``reliability.png`` (predicted sigma / z against the observed RMS relative error) and
  ``sample_frame.png`` (RGB | metric depth | relative error | uncertainty);
* ``index.html``: all of it on one self-contained page (the PNGs embedded as base64; the CSV
  and JSON linked relatively).

Plots use matplotlib's Agg canvas directly (no pyplot, no global backend change); matplotlib
is imported only here.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np

from depth_node.core.colormap import colorize_depth
from depth_node.core.metrics import METRIC_NAMES
from depth_node.offline.evaluate import bin_label, EvaluationResult

PLOTS = ('error_vs_depth.png', 'abs_rel_over_time.png', 'scale_shift.png', 'latency.png',
         'reliability.png', 'sample_frame.png')
_STATE_COLOURS = {'fresh': '#2a9d8f', 'held': '#e9c46a', 'none': '#e76f51', 'metric': '#264653'}
# Colour scale of the error panel: relative error 0 .. this.
_ERROR_SCALE = 0.1


def _num(v: float) -> str:
    return '' if not math.isfinite(v) else f'{v:.6g}'


def csv_columns(result: EvaluationResult) -> list[str]:
    """Header of ``frames.csv``."""
    stages = sorted({k for r in result.records for k in r.timings_ms})
    bins = [bin_label(lo, hi) for lo, hi in result.options.bins]
    return (['index', 'stamp', 'time', 'gt', 'fit_state', 'filter_event', 'fit_ok', 'fit_reason',
             'scale', 'shift', 'frame_scale', 'frame_shift', 'fit_points', 'fit_inliers',
             'fit_residual', 'lidar_points', 'lidar_pixels', 'eval_pixels', 'extrinsic']
            + list(METRIC_NAMES) + ['valid', 'gt_pixels', 'coverage']
            + [f'abs_rel_{b}' for b in bins] + [f'valid_{b}' for b in bins]
            + [f'ms_{s}' for s in stages])


def write_csv(result: EvaluationResult, path: Path) -> None:
    """One row per processed frame; empty cells for what a frame does not have."""
    cols = csv_columns(result)
    bins = [bin_label(lo, hi) for lo, hi in result.options.bins]
    with open(path, 'w', newline='') as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in result.records:
            row: dict[str, Any] = {
                'index': r.index, 'stamp': f'{r.stamp:.9f}', 'time': f'{r.time:.6f}',
                'gt': r.gt, 'fit_state': r.fit_state, 'filter_event': r.filter_event,
                'fit_ok': int(r.fit_ok), 'fit_reason': r.fit_reason, 'scale': _num(r.scale),
                'shift': _num(r.shift), 'frame_scale': _num(r.frame_scale),
                'frame_shift': _num(r.frame_shift), 'fit_points': r.fit_points,
                'fit_inliers': r.fit_inliers, 'fit_residual': _num(r.fit_residual),
                'lidar_points': r.lidar_points, 'lidar_pixels': r.lidar_pixels,
                'eval_pixels': r.eval_pixels, 'extrinsic': r.extrinsic,
                'valid': r.metrics.valid if r.metrics else 0, 'gt_pixels': r.gt_pixels,
                'coverage': _num(r.coverage)}
            for k in METRIC_NAMES:
                row[k] = _num(getattr(r.metrics, k)) if r.metrics else ''
            for b in bins:
                m = r.bins.get(b)
                row[f'abs_rel_{b}'] = _num(m.abs_rel) if m else ''
                row[f'valid_{b}'] = m.valid if m else 0
            for k, v in r.timings_ms.items():
                row[f'ms_{k}'] = f'{v:.3f}'
            w.writerow([row.get(c, '') for c in cols])


# ----------------------------------------------------------------------------- plots


def figure(width: float, height: float) -> Any:
    """A matplotlib Figure on its own Agg canvas (no pyplot state, no backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100, layout='constrained')
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, format='png')


def plot_error_vs_depth(result: EvaluationResult, path: Path) -> None:
    """Pooled relative error (absolute and signed) per 2 m of ground-truth depth, with the
    per-bin AbsRel (mean over frames) as steps."""
    fig = figure(7.5, 4.0)
    ax = fig.add_subplot()
    edges, n = result.curve_edges, result.curve_count
    centres = 0.5 * (edges[:-1] + edges[1:]) if edges.size > 1 else np.zeros(0)
    ok = n > 0
    if ok.any():
        ax.plot(centres[ok], result.curve_abs[ok] / n[ok], 'o-', ms=3, label='|d - gt| / gt')
        ax.plot(centres[ok], result.curve_signed[ok] / n[ok], 's--', ms=3, alpha=0.8,
                label='(d - gt) / gt (bias)')
    for (lo, hi), m in zip(result.options.bins, result.overall_bins().values()):
        if m.valid:
            ax.hlines(m.abs_rel, lo, hi, colors='k', linewidth=2)
            ax.text(0.5 * (lo + hi), m.abs_rel, f'{m.abs_rel:.3f}', ha='center', va='bottom',
                    fontsize=8)
    ax.axhline(0.0, color='grey', linewidth=0.8)
    ax.set_xlabel('ground-truth depth (m)')
    ax.set_ylabel('relative error')
    ax.set_title(f'Error vs depth ({result.ground_truth} ground truth); black: AbsRel per bin')
    if ok.any():
        ax.legend(loc='best', fontsize=8)
    else:
        ax.text(0.5, 0.5, 'no frame with metric depth and ground truth', ha='center',
                transform=ax.transAxes)
    _save(fig, path)


def plot_abs_rel_over_time(result: EvaluationResult, path: Path) -> None:
    """Per-frame AbsRel over time, coloured by fit state; frames without depth marked below."""
    fig = figure(7.5, 3.6)
    ax = fig.add_subplot()
    t = np.array([r.time for r in result.records])
    a = np.array([r.metrics.abs_rel if r.metrics and r.metrics.valid else np.nan
                  for r in result.records])
    if t.size:
        ax.plot(t, a, '-', color='lightgrey', zorder=1)
    for state, colour in _STATE_COLOURS.items():
        sel = np.array([r.fit_state == state for r in result.records], dtype=bool)
        if sel.any():
            y = np.where(np.isfinite(a[sel]), a[sel], 0.0)
            ax.scatter(t[sel], y, s=14, color=colour, label=f'fit {state}', zorder=2,
                       marker='o' if state != 'none' else 'x')
    ax.set_xlabel('time since first frame (s)')
    ax.set_ylabel('AbsRel')
    ax.set_ylim(bottom=0)
    ax.set_title('AbsRel per frame (x at 0: no metric depth)')
    if t.size:
        ax.legend(loc='best', fontsize=8)
    _save(fig, path)


def plot_scale_shift(result: EvaluationResult, path: Path) -> None:
    """Applied scale and shift over time, and each frame's own fit."""
    fig = figure(7.5, 4.8)
    t = np.array([r.time for r in result.records])
    for i, (key, label) in enumerate((('scale', 'scale'), ('shift', 'shift'))):
        ax = fig.add_subplot(2, 1, i + 1)
        if t.size:
            ax.plot(t, [getattr(r, f'frame_{key}') for r in result.records], 'o', ms=3,
                    alpha=0.6, label='frame fit')
            ax.plot(t, [getattr(r, key) for r in result.records], '-', label='applied')
            ax.legend(loc='best', fontsize=8)
        ax.set_ylabel(label)
        if i == 1:
            ax.set_xlabel('time since first frame (s)')
    fig.suptitle('Scale and shift over time (fit space of the estimator: '
                 'disparity 1/m, or depth m)')
    _save(fig, path)


def plot_latency(result: EvaluationResult, path: Path) -> None:
    """Mean and p95 per node stage (ms)."""
    fig = figure(7.5, 3.6)
    ax = fig.add_subplot()
    lat = result.latency()
    names = sorted(lat, key=lambda k: -lat[k]['mean'])
    if names:
        y = np.arange(len(names))
        ax.barh(y, [lat[k]['mean'] for k in names], color='#457b9d', label='mean')
        ax.scatter([lat[k]['p95'] for k in names], y, color='k', marker='|', s=120,
                   label='p95', zorder=3)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.legend(loc='lower right', fontsize=8)
    ax.set_xlabel('ms per frame')
    ax.set_title('Per-stage latency of the pipeline')
    _save(fig, path)


def plot_reliability(result: EvaluationResult, path: Path) -> None:
    """Reliability diagram: per bin of predicted sigma / z, the observed RMS of (d - gt) / d.

    A calibrated uncertainty lies on the diagonal; above it, sigma is too small.
    """
    fig = figure(6.0, 4.6)
    ax = fig.add_subplot()
    n = result.rel_count
    ok = n >= 20
    if ok.any():
        pred = result.rel_pred[ok] / n[ok]
        obs = np.sqrt(result.rel_sq[ok] / n[ok])
        ax.loglog(pred, obs, 'o-', ms=4, label='observed RMS relative error')
        lo, hi = float(min(pred.min(), obs.min())), float(max(pred.max(), obs.max()))
        ax.loglog([lo, hi], [lo, hi], 'k--', lw=0.8, label='calibrated (y = x)')
        u = result.uncertainty_summary()
        ax.set_title(f'within 1 sigma {u["within_1sigma"]:.1%}, 2 sigma '
                     f'{u["within_2sigma"]:.1%} ({u["pixels"]} pixels)')
        ax.legend(loc='upper left')
    else:
        ax.text(0.5, 0.5, 'no published uncertainty with ground truth', ha='center',
                va='center', transform=ax.transAxes)
    ax.set_xlabel('predicted sigma / z')
    ax.set_ylabel('observed RMS (d - gt) / d')
    _save(fig, path)


def plot_sample(result: EvaluationResult, path: Path) -> None:
    """RGB | metric depth | relative error | uncertainty of the sample frame."""
    fig = figure(18.0, 3.9)
    s = result.sample
    if s is None:
        ax = fig.add_subplot()
        ax.axis('off')
        ax.text(0.5, 0.5, 'no frame had metric depth', ha='center', va='center')
        _save(fig, path)
        return
    lo, hi = result.settings.publish.colormap_range
    axes = fig.subplots(1, 4)
    axes[0].imshow(s.rgb)
    axes[0].set_title(f'frame {s.index}: RGB')
    axes[1].imshow(colorize_depth(s.depth, lo, hi))
    axes[1].set_title(f'metric depth (turbo on 1/z, {lo:g}-{hi:g} m)')
    from matplotlib import colormaps
    cmap = colormaps['magma']
    if s.gt_dense is not None:
        with np.errstate(divide='ignore', invalid='ignore'):
            err = np.abs(s.depth - s.gt_dense) / s.gt_dense
        im = axes[2].imshow(np.ma.masked_invalid(err), cmap=cmap, vmin=0, vmax=_ERROR_SCALE)
    else:
        axes[2].imshow((s.rgb.mean(axis=2) * 0.5).astype(np.uint8), cmap='gray', vmin=0,
                       vmax=255)
        g = s.gt_sparse
        pred = s.depth[g.v, g.u] if g is not None and g.count else np.zeros(0)
        z = g.z if g is not None else np.zeros(0)
        err = np.abs(pred - z) / np.where(z > 0, z, np.nan)
        im = axes[2].scatter(g.u if g is not None else [], g.v if g is not None else [], c=err,
                             s=2, cmap=cmap, vmin=0, vmax=_ERROR_SCALE)
        axes[2].set_xlim(0, s.rgb.shape[1])
        axes[2].set_ylim(s.rgb.shape[0], 0)
    axes[2].set_title(f'|d - gt| / gt (AbsRel {s.abs_rel:.4f})')
    fig.colorbar(im, ax=axes[2], fraction=0.035, pad=0.01)
    if s.sigma is not None:
        with np.errstate(divide='ignore', invalid='ignore'):
            rel = s.sigma / s.depth
        im = axes[3].imshow(np.ma.masked_invalid(rel), cmap=cmap, vmin=0,
                            vmax=_ERROR_SCALE)
        fig.colorbar(im, ax=axes[3], fraction=0.035, pad=0.01)
        axes[3].set_title('uncertainty sigma / z (NaN: refused)')
    else:
        axes[3].axis('off')
        axes[3].set_title('no uncertainty (uncertainty.enable false)')
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    _save(fig, path)


# ----------------------------------------------------------------------------- HTML


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return '-'
    if isinstance(v, float):
        return '-' if not math.isfinite(v) else f'{v:.{digits}f}'
    return str(v)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = ''.join(f'<th>{html.escape(h)}</th>' for h in headers)
    body = ''.join('<tr>' + ''.join(f'<td>{html.escape(_fmt(c))}</td>' for c in row) + '</tr>'
                   for row in rows)
    return f'<table><tr>{head}</tr>{body}</table>'


def write_html(result: EvaluationResult, out: Path, summary: dict[str, Any],
               plots: list[str], extra_html: str = '') -> None:
    """``index.html``: the summary, tables, embedded plots and the issues (``extra_html``
    after the first paragraph: a fleet run's table of bags)."""
    m = summary['metrics']
    f = summary['frames']
    th = summary['throughput']
    parts = [f'<h1>Depth evaluation: {html.escape(result.bag)}</h1>',
             f'<p>estimator <b>{html.escape(result.estimator)}</b>; ground truth '
             f'<b>{html.escape(result.ground_truth)}</b>'
             + (f' (held-out LiDAR, {result.options.holdout:.0%} of the pixels of each sweep, '
                f'seed {result.options.seed})' if result.ground_truth == 'lidar' else '')
             + f'; {f["processed"]} frames processed, <b>{f["with_metric_depth"]}</b> with '
             f'metric depth, {f["evaluated"]} scored'
             + (f', {f["skipped_unreadable"]} unreadable' if f['skipped_unreadable'] else '')
             + (f', {f["failed"]} failed' if f['failed'] else '') + '.</p>']
    if extra_html:
        parts.append(extra_html)
    if result.interrupted:
        parts.append('<p class="warn">Interrupted (Ctrl-C): these are the frames done so '
                     'far.</p>')
    if result.issues:
        items = ''.join(f'<li>{html.escape(str(i))}</li>' for i in result.issues)
        parts.append(f'<h2 class="warn">Problems with the bag ({len(result.issues)})</h2>'
                     f'<ul>{items}</ul>')
    parts.append('<h2>Metrics (mean over frames)</h2>')
    rows = [['all'] + [m[k] for k in METRIC_NAMES] + [m['valid']]]
    for label, mb in summary['metrics_by_depth'].items():
        rows.append([f'{label} m'] + [mb[k] for k in METRIC_NAMES] + [mb['valid']])
    parts.append(_table(['depth'] + list(METRIC_NAMES) + ['valid px'], rows))
    unc = summary['uncertainty']
    parts.append('<h2>Uncertainty (published sigma against the ground truth)</h2>')
    parts.append(_table(['pixels', 'within 1 sigma', 'within 2 sigma'],
                        [[unc['pixels'], unc['within_1sigma'], unc['within_2sigma']]]))
    parts.append('<h2>Throughput</h2>')
    parts.append(_table(['frames/s', 'wall s', 'model share', 'outside model', 'read s',
                         'pipeline s', 'metrics s', 'output bag s'],
                        [[th['frames_per_s'], th['wall_s'], th['model_share'],
                          th['outside_model_share'], th['read_s'], th['process_s'],
                          th['metrics_s'], th['output_bag_s']]]))
    lat = summary['latency_ms']
    parts.append('<h2>Per-stage latency (ms)</h2>')
    parts.append(_table(['stage', 'mean', 'p50', 'p95', 'max'],
                        [[k, v['mean'], v['p50'], v['p95'], v['max']]
                         for k, v in sorted(lat.items(), key=lambda kv: -kv[1]['mean'])]))
    for name in plots:
        data = base64.b64encode((out / name).read_bytes()).decode('ascii')
        parts.append(f'<h2>{html.escape(name[:-4].replace("_", " "))}</h2>'
                     f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
    parts.append('<h2>Frames</h2><p>Full table: <a href="frames.csv">frames.csv</a>; '
                 'everything above: <a href="summary.json">summary.json</a>.</p>')
    parts.append(_table(['frame', 't (s)', 'fit', 'scale', 'shift', 'AbsRel', 'delta1',
                         'valid', 'total ms'],
                        [[r.index, r.time, r.fit_state, r.scale, r.shift,
                          r.metrics.abs_rel if r.metrics else None,
                          r.metrics.delta1 if r.metrics else None,
                          r.metrics.valid if r.metrics else 0,
                          sum(v for k, v in r.timings_ms.items())] for r in result.records]))
    style = ('body{font-family:sans-serif;max-width:1400px;margin:1em auto;padding:0 1em}'
             'table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;'
             'padding:2px 6px;text-align:right}th{background:#eee}img{max-width:100%}'
             '.warn{color:#b00}')
    page = ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>depth_node evaluation'
            f'</title><style>{style}</style></head><body>' + '\n'.join(parts)
            + '</body></html>\n')
    (out / 'index.html').write_text(page, encoding='utf-8')


def write_report(result: EvaluationResult, out: str | Path, plots: bool = True,
                 extra: Optional[dict[str, Any]] = None,
                 extra_html: str = '') -> dict[str, Path]:
    """Write the report files into ``out`` (created); returns name -> path.

    ``extra`` is added to ``summary.json``, ``extra_html`` to ``index.html`` (a fleet run's
    bags, :mod:`depth_node.offline.fleet_eval`).
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    write_csv(result, folder / 'frames.csv')
    files['frames.csv'] = folder / 'frames.csv'
    made: list[str] = []
    if plots:
        for name, fn in zip(PLOTS, (plot_error_vs_depth, plot_abs_rel_over_time,
                                    plot_scale_shift, plot_latency, plot_reliability,
                                    plot_sample)):
            fn(result, folder / name)
            files[name] = folder / name
            made.append(name)
    summary = result.summary()
    summary.update(extra or {})
    summary['files'] = sorted([*files, 'summary.json', 'index.html'])
    with open(folder / 'summary.json', 'w') as fh:
        json.dump(_clean(summary), fh, indent=2, allow_nan=False)
    files['summary.json'] = folder / 'summary.json'
    write_html(result, folder, summary, made, extra_html)
    files['index.html'] = folder / 'index.html'
    return files


def _clean(v: Any) -> Any:
    """JSON-able copy: NaN/inf -> None, numpy scalars and arrays -> Python."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    if v is None or isinstance(v, str):
        return v
    return str(v)


def load_summary(out: str | Path) -> Optional[dict[str, Any]]:
    """``summary.json`` of a report folder, or None."""
    p = Path(out) / 'summary.json'
    return json.loads(p.read_text()) if p.is_file() else None


def summary_lines(result: EvaluationResult, summary: dict[str, Any], out: str | Path) -> list[str]:
    """The short text summary ``evaluate`` prints: overall, per depth bin, throughput."""
    f, m, th = summary['frames'], summary['metrics'], summary['throughput']

    def num(v: Any, fmt: str = '.4f') -> str:
        return '-' if v is None else format(v, fmt)

    lines = [f"{result.bag}: {f['processed']} frames, {f['with_metric_depth']} with metric "
             f"depth, {f['evaluated']} scored against {result.ground_truth} ground truth "
             f'(estimator {result.estimator})',
             f"  AbsRel {num(m['abs_rel'])}  SqRel {num(m['sq_rel'])}  RMSE "
             f"{num(m['rmse'], '.3f')} m  RMSE log {num(m['rmse_log'])}  d1 {num(m['delta1'])}  "
             f"d2 {num(m['delta2'])}  d3 {num(m['delta3'])}  ({m['valid']} px)"]
    for label, mb in summary['metrics_by_depth'].items():
        lines.append(f"  {label:>7} m: AbsRel {num(mb['abs_rel'])}  RMSE {num(mb['rmse'], '.3f')}"
                     f" m  d1 {num(mb['delta1'])}  ({mb['valid']} px)")
    u = summary['uncertainty']
    if u['pixels']:
        lines.append(f"  uncertainty: {num(u['within_1sigma'], '.1%')} of the pixels within "
                     f"1 sigma, {num(u['within_2sigma'], '.1%')} within 2 sigma")
    lines.append(f"  {th['frames_per_s']:.2f} frames/s; model {th['model_share']:.0%} of the "
                 f"time, outside it {th['outside_model_share']:.0%}")
    if result.output_bag:
        lines.append(f'  output bag: {result.output_bag}')
    lines.append(f'  report: {Path(out) / "index.html"}')
    return lines
