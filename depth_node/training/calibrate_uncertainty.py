"""Calibrate the per-pixel uncertainty model on synthetic drives (held-out streets).

``python -m depth_node.training.calibrate_uncertainty [--out PATH] [--frames N]`` renders
:data:`~depth_node.offline.scenarios.SCENARIOS` on the calibration streets
(:data:`~depth_node.offline.scenarios.CALIBRATION_SEEDS`, apart from training and from the
accuracy table's), runs the shipped student and the node's global fit and fusion, and fits the
weights of :class:`~depth_node.core.uncertainty.UncertaintyModel` by maximum likelihood: the
log-depth error ``e = log(z / z_true)`` of a pixel is modelled as Laplace with scale
``exp(w . phi)``. The held-out check of :mod:`depth_node.pipeline.self_check` is measured on
every frame; its median is the model's ``heldout_reference``, and each frame's ratio to it
scales that frame's supported sigma as it will in the node. The bias of the fused weights is
then chosen so that every scenario's share of published pixels within 2 sigma lies in the
90-98 % band as well as one bias allows (minimax; scenarios below 85 % at the pooled bias,
which no single scale can bring into the band, are reported and left out of that choice).
The global-only weights (frames without a sweep, nothing to check against) keep the pooled
rule: 95 % of their pixels within 2 sigma. The fused weights are fitted with the carried
correction (:func:`~depth_node.core.uncertainty.carried_correction`, weight
:data:`CARRIED_CORRECTION`) in quadrature, as the node applies it, and both sets of weights
with the per-pixel edge term (:mod:`depth_node.core.edge_sigma`, weight :data:`EDGE_WEIGHT`
from steps of :data:`EDGE_MIN_STEP` within :data:`EDGE_RADIUS` px). Blind and saturated
frames are refused before any fit, so they carry no pixels.

The result is written as JSON (default: the shipped ``depth_node/calibration/uncertainty.json``)
with its provenance (scenarios, streets, frames, pixels, the coverage reached).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from typing import Optional, Sequence

import numpy as np
from scipy.optimize import minimize

from depth_node.core.edge_sigma import edge_steps
from depth_node.core.fusion import fuse
from depth_node.core.uncertainty import (carried_correction, DEFAULT_CALIBRATION, FEATURES,
                                         features, UncertaintyModel)
from depth_node.estimators.base import Estimator
from depth_node.offline.scenarios import CALIBRATION_SEEDS, Scenario, SCENARIOS, scenario_frames
from depth_node.pipeline.frame import DepthPipeline, FrameInput, PipelineConfig
from depth_node.pipeline.self_check import heldout_samples, raw_scale_of, SCALE_RANGE
from depth_node.pipeline.trust import empty_support, fit_residual

#: Pixels drawn from each frame (the fit needs variety, not every pixel).
PIXELS_PER_FRAME = 3000
#: Share of calibration pixels within 2 sigma after the bias shift (global-only weights).
TARGET_2SIGMA = 0.95
#: The band every scenario's share within 2 sigma should lie in (fused weights).
BAND = (0.90, 0.98)
#: Scenarios below this share at the pooled bias are left out of the band's bias choice.
CALIBRATABLE = 0.85
#: Weight of the carried correction in quadrature: its 2-sigma interval reaches the global fit
#: (:mod:`depth_node.core.uncertainty`). A rule, not fitted.
CARRIED_CORRECTION = 0.5
#: The edge term (:mod:`depth_node.core.edge_sigma`): weight 0.5, so that the 2-sigma interval
#: of a pixel next to a depth edge reaches across the step; within 2 px (half the fusion's
#: 4-px cell either side of the edge); from a step of 0.1 in log depth between neighbouring
#: pixels (the fusion's ``edge_step``: what its edge fill takes for an edge). Rules, not fitted.
EDGE_WEIGHT, EDGE_RADIUS, EDGE_MIN_STEP = 0.5, 2, 0.1


def collect(estimator: Estimator, scenarios: Sequence[Scenario], seeds: Sequence[int],
            frames: int, width: int, height: int, config: Optional[PipelineConfig] = None,
            max_depth: float = 80.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Features and log errors of sampled pixels: ``phi`` [N, F], ``carried`` [N] (the carried
    correction), ``edge_fused`` / ``edge_global`` [N] (the edge steps of the fused / global
    depth, :func:`~depth_node.core.edge_sigma.edge_steps`, not yet weighted), ``e_fused``
    [N], ``e_global`` [N], their ``scenario`` [N] (index into
    ``scenarios``) and ``frame`` [N] (index into ``heldout``: per frame, the held-out samples
    ``(phi_B, e_B)`` of :func:`~depth_node.pipeline.self_check.heldout_samples`)."""
    # The global fit alone: the fusion is run here on its depth, as the trust step runs it.
    cfg = replace(config or PipelineConfig(), temporal=False, max_depth=max_depth,
                  uncertainty=False, fusion=False)
    rng = np.random.default_rng(seed)
    phis, carried, e_f, e_g, scen, frame_ids, heldout = [], [], [], [], [], [], []
    edge_f, edge_g = [], []
    for k, sc in enumerate(scenarios):
        for _, rig, f in scenario_frames(sc, seeds, frames, width, height):
            res = DepthPipeline(estimator, cfg).process(
                FrameInput(f.rgb, rig.camera, f.stamp, f.lidar, rig.nominal), want_points=False)
            glob = res.depth
            if glob is None:
                continue
            used = empty_support(*glob.shape) if res.sparse is None else \
                (res.sparse if res.kept is None else res.sparse.subset(res.kept))
            fusion = fuse(glob, used, cfg.fusion_options())
            phi = features(fusion, fit_residual(res.applied))  # [F, gh, gw]
            extra = carried_correction(fusion.support, fusion.rho)  # [gh, gw]
            held = heldout_samples(glob, used, fit_residual(res.applied), cfg.fusion_options()) \
                if used.count else (np.zeros((0, phi.shape[0])), np.zeros(0))
            truth = f.depth
            ok = np.isfinite(truth) & (truth > 1e-3) & (truth <= max_depth) \
                & np.isfinite(glob) & np.isfinite(fusion.depth)
            rows, cols = np.nonzero(ok)
            if rows.size == 0:
                continue
            pick = rng.choice(rows.size, size=min(PIXELS_PER_FRAME, rows.size), replace=False)
            r, c = rows[pick], cols[pick]
            phis.append(phi[:, r // fusion.cell, c // fusion.cell].T)
            carried.append(extra[r // fusion.cell, c // fusion.cell])
            edge_f.append(edge_steps(fusion.depth, EDGE_RADIUS, EDGE_MIN_STEP)[r, c])
            edge_g.append(edge_steps(glob, EDGE_RADIUS, EDGE_MIN_STEP)[r, c])
            e_f.append(np.log(fusion.depth[r, c] / truth[r, c]))
            e_g.append(np.log(glob[r, c] / truth[r, c]))
            scen.append(np.full(r.size, k, np.int32))
            frame_ids.append(np.full(r.size, len(heldout), np.int32))
            heldout.append(held)
    if not phis:
        raise RuntimeError('no calibration pixels: every frame was refused')
    return {'phi': np.concatenate(phis), 'carried': np.concatenate(carried),
            'edge_fused': np.concatenate(edge_f), 'edge_global': np.concatenate(edge_g),
            'e_fused': np.concatenate(e_f),
            'e_global': np.concatenate(e_g), 'scenario': np.concatenate(scen),
            'frame': np.concatenate(frame_ids), 'heldout': heldout}


def fit_weights(phi: np.ndarray, err: np.ndarray,
                carried: Optional[np.ndarray] = None) -> tuple[np.ndarray, float]:
    """Maximum-likelihood weights (Laplace), then the bias shift to :data:`TARGET_2SIGMA`.

    The log-depth error is modelled as Laplace with scale ``hypot(exp(w . phi), q)``, ``q``
    [N] the terms in quadrature already weighted and combined (the carried correction, the
    edge term; None: 0): its tails are heavier than a
    Gaussian's, as those of depth errors are (a Gaussian fit spends its weights on the few
    large errors and over-covers everywhere else). The bias is then shifted so that this
    sigma holds :data:`TARGET_2SIGMA` of the errors within 2 sigma. Returns the weights [F]
    and the share within 2 sigma reached.
    """
    x = np.asarray(phi, np.float64)
    a = np.abs(np.asarray(err, np.float64))
    q2 = np.zeros_like(a) if carried is None else np.asarray(carried, np.float64) ** 2

    def nll(w: np.ndarray) -> tuple[float, np.ndarray]:
        base = np.exp(2.0 * (x @ w))
        total = base + q2
        s = 0.5 * np.log(total)  # log scale
        inv = np.exp(-s)
        value = float(np.mean(s + a * inv))
        grad = x.T @ ((1.0 - a * inv) * (base / total)) / x.shape[0]
        return value, grad

    w0 = np.zeros(x.shape[1])
    w0[0] = np.log(np.mean(a) + 1e-12)
    w = minimize(nll, w0, jac=True, method='L-BFGS-B').x

    def within(shift: float) -> float:
        return float(np.mean(a <= 2.0 * np.sqrt(np.exp(2.0 * (x @ w + shift)) + q2)))

    if carried is None:  # sigma scales with the bias: the shift is exact
        shift = float(np.log(np.quantile(a / np.exp(x @ w), TARGET_2SIGMA) / 2.0))
    else:  # the carried part does not scale with it: the nearest on a fine grid
        grid = np.arange(-2.0, 2.0001, 0.01)
        shift = float(grid[np.argmin([abs(within(d) - TARGET_2SIGMA) for d in grid])])
    w[0] += shift
    return w, within(0.0)


def heldout_scales(heldout: Sequence[tuple[np.ndarray, np.ndarray]], weights: np.ndarray,
                   threshold: float) -> np.ndarray:
    """Raw held-out scale [frames] of each frame under ``weights`` (NaN: no check)."""
    return np.array([raw_scale_of(p, e, weights, threshold=threshold) if e.size else np.nan
                     for p, e in heldout])


def band_bias(log_rel: np.ndarray, err: np.ndarray, scenario: np.ndarray, threshold: float,
              band: tuple[float, float] = BAND,
              grid: np.ndarray = np.arange(-1.0, 1.0001, 0.01),
              carried: Optional[np.ndarray] = None,
              log_gain: Optional[np.ndarray] = None,
              edge: Optional[np.ndarray] = None) -> tuple[float, dict]:
    """The bias shift that puts every scenario's within-2-sigma share of its published pixels
    (sigma / z <= ``threshold``) into ``band`` as well as one shift can (minimax violation;
    ties: nearest the band's middle by the median scenario).

    ``log_rel`` [N] log sigma / z before the shift, ``err`` [N] log errors, ``scenario`` [N]
    ids; sigma / z is ``hypot(exp(log_rel + shift), carried) * exp(log_gain)`` (the weighted
    carried correction and the self-check's gain, as the node applies them; None: 0), with
    the weighted edge term ``edge`` [N] then added in quadrature (None: 0).
    Scenarios below :data:`CALIBRATABLE` at shift 0 are left out. Returns the shift and
    ``{'within': {id: share at the shift}, 'left_out': [ids]}``.
    """
    a = np.abs(err)
    ids = np.unique(scenario)

    def shares(delta: float) -> dict[int, float]:
        rel = np.exp(log_rel + delta)
        if carried is not None:
            rel = np.hypot(rel, carried)
        if log_gain is not None:
            rel = rel * np.exp(log_gain)
        if edge is not None:
            rel = np.hypot(rel, edge)
        out = {}
        for k in ids:
            m = (scenario == k) & (rel <= threshold)
            out[int(k)] = float(np.mean(a[m] <= 2.0 * rel[m])) if m.any() else float('nan')
        return out

    at0 = shares(0.0)
    left_out = [k for k, v in at0.items() if not v >= CALIBRATABLE]
    lo, hi = band
    best, best_cost = 0.0, np.inf
    for delta in grid:
        got = {k: v for k, v in shares(float(delta)).items() if k not in left_out
               and np.isfinite(v)}
        if not got:
            continue
        vals = np.array(list(got.values()))
        cost = float(np.max(np.maximum(lo - vals, 0.0) + np.maximum(vals - hi, 0.0))) \
            + 0.01 * abs(float(np.median(vals)) - 0.5 * (lo + hi))
        if cost < best_cost - 1e-12:
            best, best_cost = float(delta), cost
    return best, {'within': shares(best), 'left_out': left_out}


def calibrate_fused(data: dict, threshold: float) -> tuple[np.ndarray, float, dict]:
    """Fused weights with the held-out reference and the band's bias (module docstring)."""
    q = CARRIED_CORRECTION * data['carried']
    edge = EDGE_WEIGHT * data['edge_fused']
    w, _ = fit_weights(data['phi'], data['e_fused'], np.hypot(q, edge))
    raw = heldout_scales(data['heldout'], w, threshold)
    reference = float(np.nanmedian(raw)) if np.isfinite(raw).any() else float('nan')
    lo, hi = SCALE_RANGE
    ratio = np.where(np.isfinite(raw), np.clip(raw / reference, lo, hi), 1.0) \
        if np.isfinite(reference) else np.ones_like(raw)
    gate = data['phi'][:, list(FEATURES).index('unsupported')]
    delta, report = band_bias(data['phi'] @ w, data['e_fused'], data['scenario'], threshold,
                              carried=q, log_gain=(1.0 - gate) * np.log(ratio[data['frame']]),
                              edge=edge)
    w = w.copy()
    w[0] += delta
    # The raw scale is inversely proportional to sigma: measured again with the final weights.
    raw = heldout_scales(data['heldout'], w, threshold)
    reference = float(np.nanmedian(raw)) if np.isfinite(raw).any() else float('nan')
    report.update({'bias_shift': delta, 'checked_frames': int(np.isfinite(raw).sum())})
    return w, reference, report


def calibrate(estimator: Estimator, scenarios: Sequence[Scenario] = SCENARIOS,
              seeds: Sequence[int] = CALIBRATION_SEEDS, frames: int = 2, width: int = 640,
              height: int = 480, config: Optional[PipelineConfig] = None) -> UncertaintyModel:
    """Collect pixels and fit the fused and the global-only weights."""
    data = collect(estimator, scenarios, seeds, frames, width, height, config)
    threshold = (config or PipelineConfig()).max_relative_uncertainty
    w_f, reference, report = calibrate_fused(data, threshold)
    reached_f = float(np.mean(np.abs(data['e_fused']) <= 2.0 * np.hypot(np.hypot(
        np.exp(data['phi'] @ w_f), CARRIED_CORRECTION * data['carried']),
        EDGE_WEIGHT * data['edge_fused'])))
    w_g, reached_g = fit_weights(data['phi'], data['e_global'],
                                 EDGE_WEIGHT * data['edge_global'])
    names = [s.name for s in scenarios]
    provenance = {
        'method': 'Laplace maximum likelihood on log-depth error; fused: held-out reference '
                  f'and the bias that puts each scenario in {BAND[0]:.0%}-{BAND[1]:.0%} within '
                  f'2 sigma (minimax); global only: bias shifted to {TARGET_2SIGMA:.0%} within '
                  '2 sigma',
        'scenario_within_2sigma': {names[k]: round(v, 4)
                                   for k, v in report['within'].items()},
        'left_out_of_band': [names[k] for k in report['left_out']],
        'bias_shift': report['bias_shift'], 'checked_frames': report['checked_frames'],
        'threshold': threshold, 'carried_correction': CARRIED_CORRECTION,
        'edge': {'weight': EDGE_WEIGHT, 'radius': EDGE_RADIUS, 'min_step': EDGE_MIN_STEP},
        'estimator': getattr(estimator, 'name', type(estimator).__name__),
        'scenarios': [s.name for s in scenarios], 'streets': [int(s) for s in seeds],
        'frames_per_street': frames, 'size': [width, height],
        'pixels': int(data['phi'].shape[0]),
        'within_2sigma': {'fused': reached_f, 'global_only': reached_g},
        'command': 'python -m depth_node.training.calibrate_uncertainty',
    }
    return UncertaintyModel(tuple(float(v) for v in w_f), tuple(float(v) for v in w_g),
                            provenance=provenance,
                            heldout_reference=reference if np.isfinite(reference) else None,
                            carried=CARRIED_CORRECTION, edge_weight=EDGE_WEIGHT,
                            edge_radius=EDGE_RADIUS, edge_min_step=EDGE_MIN_STEP)


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point; 0 on success."""
    p = argparse.ArgumentParser(prog='calibrate_uncertainty',
                                description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default=str(DEFAULT_CALIBRATION), help='JSON (default: shipped)')
    p.add_argument('--model', default='', help='student folder (default: the shipped one)')
    p.add_argument('--frames', type=int, default=2, help='frames per street (default 2)')
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    args = p.parse_args(argv)
    import torch

    from depth_node.estimators.base import model_input_size, SHIPPED_STUDENT
    from depth_node.estimators.depth_anything import DepthAnythingEstimator

    torch.set_num_threads(args.threads)
    model = args.model or str(SHIPPED_STUDENT)
    est = DepthAnythingEstimator(model, input_size=model_input_size(model))
    t0 = time.time()
    result = calibrate(est, frames=args.frames, width=args.width, height=args.height)
    with open(args.out, 'w') as f:
        f.write(result.to_json() + '\n')
    print(f'{result.provenance["pixels"]} pixels, within 2 sigma: '
          f'{result.provenance["within_2sigma"]}; weights ({", ".join(FEATURES)}):')
    print('  fused      ', ' '.join(f'{w:+.3f}' for w in result.fused))
    print('  global only', ' '.join(f'{w:+.3f}' for w in result.global_only))
    print(f'held-out reference {result.heldout_reference}; within 2 sigma per scenario '
          f'(published pixels): {result.provenance["scenario_within_2sigma"]}; left out of '
          f'the band: {result.provenance["left_out_of_band"]}')
    print(f'wrote {args.out} ({time.time() - t0:.0f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
