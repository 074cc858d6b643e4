"""The scenario table of ``benchmark accuracy``: fusion, uncertainty and refusal across the axes.

For each scenario of :data:`depth_node.offline.scenarios.SCENARIOS` (LiDAR models and mount,
lenses, camera pose, calibration error, scene kinds, light and weather) on held-out streets,
with the shipped student (or ``--model``), one row: AbsRel / delta1 of the global fit, of the
fusion (before refusal) and the dense-GT bound on all ground-truth pixels; LiDAR-only and the
fusion on the pixels the LiDAR's triangulation covers; the published AbsRel and coverage; the
uncertainty's calibration (share of published pixels within 1 and 2 sigma); the share of
wrong (> 20 %) pixels that were refused (NaN), and that were refused or flagged (published with
``|err| <= 2 sigma``: their sigma says how far off they may be); and whether the goals hold:

* ``fuse``: fused <= 0.9 x min(LiDAR-only, global) on the same pixels, and never more than 1 %
  above the global fit;
* ``cal``: 90 % <= within 2 sigma <= 98 %;
* ``ref``: >= 80 % of the wrong pixels refused or flagged (the dusk / blind / fog rows),
  coverage >= 85 % (the default row).

With ``--combined`` the rows are :data:`depth_node.offline.scenarios.COMBINED` instead: two
axes at once, off the list the uncertainty is calibrated on. The same goals hold there; the
refusal goal in the rows whose light is dimmed or whose air is foggy
(:data:`COMBINED_REFUSAL`).
"""

from __future__ import annotations

import math
import time
from typing import Optional, Sequence

import numpy as np

from depth_node.estimators.base import Estimator
from depth_node.offline.scenarios import (COMBINED, EVALUATION_SEEDS, run_scenario, Scenario,
                                          SCENARIOS, ScenarioScore, score_frames,
                                          threshold_sweep)
from depth_node.pipeline.frame import PipelineConfig

#: Scenarios whose point is refusal: the goal there is refused wrong pixels, not accuracy.
REFUSAL_SCENARIOS = ('dusk', 'blind', 'fog')
#: The rows of :data:`~depth_node.offline.scenarios.COMBINED` that the refusal goal applies to:
#: light below full exposure (dusk, night) or fog.
COMBINED_REFUSAL = tuple(s.name for s in COMBINED
                         if s.conditions.exposure < 1.0 or s.conditions.foggy)


#: Thresholds of the sweep (``output.max_relative_uncertainty`` candidates).
THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3)


def measure(estimator: Estimator, scenarios: Sequence[Scenario] = SCENARIOS,
            seeds: Sequence[int] = EVALUATION_SEEDS, frames: int = 2, width: int = 640,
            height: int = 480, config: Optional[PipelineConfig] = None,
            progress: bool = False,
            sweep: Optional[dict[str, list[tuple[float, float, float]]]] = None,
            teacher_bound: bool = False) -> list[ScenarioScore]:
    """Score every scenario (see the module docstring).

    ``sweep``, when given, receives per scenario the coverage and the refused share of wrong
    pixels at each of :data:`THRESHOLDS` (:func:`depth_node.offline.scenarios.threshold_sweep`).
    ``teacher_bound``: with a perfect keyframe teacher's check of sigma on every frame
    (:func:`~depth_node.offline.scenarios.run_scenario`).
    """
    out = []
    for sc in scenarios:
        t0 = time.time()
        evals = list(run_scenario(estimator, sc, seeds, frames, width, height, config,
                                  teacher_bound=teacher_bound))
        out.append(score_frames(sc.name, sc.axis, evals))
        if sweep is not None:
            sweep[sc.name] = threshold_sweep(evals, THRESHOLDS)
        if progress:
            print(f'  {sc.name}: {len(evals)} frames, {time.time() - t0:.0f} s', flush=True)
    return out


def format_sweep(sweep: dict[str, list[tuple[float, float, float]]]) -> str:
    """Coverage / refused wrong pixels per threshold, a row per scenario."""
    head = f'{"scenario":<22}' + ''.join(f' | {t:>4g}: cover refuse' for t in THRESHOLDS)
    lines = ['output.max_relative_uncertainty sweep (coverage of ground-truth pixels, share of '
             'wrong pixels refused):', head, '-' * len(head)]
    for name, rows in sweep.items():
        lines.append(f'{name[:22]:<22}' + ''.join(f' | {t:>4g}: {c:5.2f} {_f(r, 2):>6}'
                                                  for t, c, r in rows))
    return '\n'.join(lines)


def goals(score: ScenarioScore) -> dict[str, Optional[bool]]:
    """Which goals a row meets (None: not applicable to the row)."""
    v = score.values
    refusal = score.name in (COMBINED_REFUSAL if score.axis == 'combined'
                             else REFUSAL_SCENARIOS)
    fuse: Optional[bool] = None
    if not refusal and math.isfinite(v['fused']) and math.isfinite(v['global']):
        fuse = v['fused'] <= 0.9 * v['global'] and v['fused'] <= 1.01 * v['global']
        if math.isfinite(v['lidar_hull']):
            fuse = fuse and v['fused_hull'] <= 0.9 * v['lidar_hull']
    cal = None if not math.isfinite(v['within_2s']) else 0.90 <= v['within_2s'] <= 0.98
    ref: Optional[bool] = None
    if refusal:
        ref = (not math.isfinite(v['flagged_wrong'])) or v['flagged_wrong'] >= 0.8
    elif score.axis == 'default':
        ref = v['coverage'] >= 0.85
    return {'fuse': fuse, 'cal': cal, 'ref': ref}


def _f(x: float, digits: int = 3) -> str:
    return '-' if not math.isfinite(x) else f'{x:.{digits}f}'


def format_table(scores: Sequence[ScenarioScore]) -> str:
    """The table as text (see the module docstring for the columns)."""
    head = (f'{"scenario":<34} {"global":>6} {"fused":>6} {"bound":>6} | {"L-only":>6} '
            f'{"fused":>6} {"hull":>5} | {"publ":>6} {"cover":>5} | {"<=1s":>5} {"<=2s":>5} | '
            f'{"refuse":>6} {"+flag":>5} | {"d1 gl":>5} {"d1 fu":>5} | goals')
    lines = [head, '-' * len(head)]
    for s in scores:
        v = s.values
        g = goals(s)
        marks = ' '.join(f'{k}:{"-" if ok is None else ("ok" if ok else "NO")}'
                         for k, ok in g.items())
        lines.append(
            f'{s.name[:34]:<34} {_f(v["global"]):>6} {_f(v["fused"]):>6} {_f(v["bound"]):>6} | '
            f'{_f(v["lidar_hull"]):>6} {_f(v["fused_hull"]):>6} {_f(v["hull_share"], 2):>5} | '
            f'{_f(v["published"]):>6} {_f(v["coverage"], 2):>5} | {_f(v["within_1s"], 2):>5} '
            f'{_f(v["within_2s"], 2):>5} | {_f(v["refused_wrong"], 2):>6} '
            f'{_f(v["flagged_wrong"], 2):>5} | '
            f'{_f(v["global_d1"], 2):>5} {_f(v["fused_d1"], 2):>5} | {marks}')
    met = [ok for s in scores for ok in goals(s).values() if ok is not None]
    lines.append(f'goals met: {sum(met)}/{len(met)}')
    return '\n'.join(lines)


def select(names: str, combined: bool = False) -> list[Scenario]:
    """Scenarios by comma-separated substrings of their names ('' or 'all': every one), from
    :data:`~depth_node.offline.scenarios.SCENARIOS` or, ``combined``, from
    :data:`~depth_node.offline.scenarios.COMBINED`."""
    pool = COMBINED if combined else SCENARIOS
    if not names or names == 'all':
        return list(pool)
    wanted = [n.strip() for n in names.split(',') if n.strip()]
    picked = [s for s in pool if any(w in s.name for w in wanted)]
    if not picked:
        raise ValueError(f'no scenario matches {names!r}; scenarios: '
                         + ', '.join(s.name for s in pool))
    return picked


def as_rows(scores: Sequence[ScenarioScore]) -> dict[str, dict[str, float]]:
    """JSON-ready rows: {scenario: {column: value}}."""
    return {s.name: {k: (None if not np.isfinite(x) else x) for k, x in s.values.items()}
            for s in scores}


__all__ = ['as_rows', 'COMBINED_REFUSAL', 'format_sweep', 'format_table', 'goals', 'measure',
           'REFUSAL_SCENARIOS', 'select', 'THRESHOLDS']
