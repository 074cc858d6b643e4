"""``benchmark extrinsic``: the LiDAR -> camera alignment check on every scenario's frames.

For each scenario of the accuracy table (:data:`depth_node.offline.scenarios.SCENARIOS`: light,
weather, LiDAR model and mount, lens, camera pose, calibration error), the frames of the given
streets are rendered and :class:`~depth_node.core.extrinsic_check.ExtrinsicCheck` runs on each
one alone (a fresh check per frame: what the first frame of a drive sees) with the rig's
*nominal* extrinsic, as a user would configure it. Printed per scenario: the shift it reports
on each frame, how many frames report one, and, where the rig's extrinsic is wrong, the true
median column change of the sweep's points between the nominal and the true extrinsic. No
network runs; the cost is the rendering.

Goals: no shift on a rig whose extrinsic is right (false alarms widen sigma for nothing); a
shift with the true sign on a miscalibrated one.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

import numpy as np

from depth_node.bench import write_json


def true_shift(points: np.ndarray, rig: object) -> float:
    """Median column change of the points from the nominal to the true extrinsic (px)."""
    from depth_node.core.lidar import point_pixels
    camera = rig.camera  # type: ignore[attr-defined]
    a, _ = point_pixels(points, camera, rig.nominal, 0.5, 120.0)  # type: ignore[attr-defined]
    b, _ = point_pixels(points, camera, rig.lidar_to_camera, 0.5,  # type: ignore[attr-defined]
                        120.0)
    ok = (a >= 0) & (b >= 0)
    if not ok.any():
        return float('nan')
    return float(np.median(b[ok] % camera.width - a[ok] % camera.width))


def run(names: Sequence[str], seeds: Sequence[int], frames: int, width: int,
        height: int) -> dict[str, dict]:
    """Per scenario: the shifts, the true shifts (miscalibrated rigs) and the check's time."""
    from depth_node.core.extrinsic_check import ExtrinsicCheck
    from depth_node.offline.scenarios import SCENARIOS, scenario_frames
    out: dict[str, dict] = {}
    for sc in SCENARIOS:
        if names and sc.name not in names:
            continue
        shifts, truth, ms = [], [], []
        for _, rig, f in scenario_frames(sc, seeds, frames, width, height):
            t0 = time.perf_counter()
            got = ExtrinsicCheck().update(f.rgb, f.lidar, rig.camera, rig.nominal, f.stamp)
            ms.append((time.perf_counter() - t0) * 1e3)
            shifts.append(int(got.shift))
            truth.append(true_shift(f.lidar, rig) if rig.nominal_lidar_to_camera is not None
                         else 0.0)
        out[sc.name] = {'shifts': shifts, 'true_shifts': truth, 'ms': ms,
                        'calibrated': all(t == 0.0 for t in truth)}
    return out


def format_table(rows: dict[str, dict]) -> str:
    """The table: per scenario, frames with a shift, the shifts, the truth where wrong."""
    lines = [f'{"scenario":<18} {"shifted":>8}  {"ms p50":>6}  shifts (true column change '
             'where the extrinsic is wrong)', '-' * 100]
    for name, r in rows.items():
        n = sum(1 for s in r['shifts'] if s)
        shifts = ' '.join(f'{s:+d}' for s in r['shifts'])
        truth = '' if r['calibrated'] else \
            '  (true ' + ' '.join(f'{t:+.0f}' for t in r['true_shifts']) + ')'
        lines.append(f'{name:<18} {n:>3}/{len(r["shifts"]):<4}  {np.median(r["ms"]):6.2f}  '
                     f'{shifts}{truth}')
    calibrated = [r for r in rows.values() if r['calibrated']]
    wrong = [r for r in rows.values() if not r['calibrated']]
    false = sum(1 for r in calibrated for s in r['shifts'] if s)
    total = sum(len(r['shifts']) for r in calibrated)
    lines.append(f'false alarms: {false} of {total} frames of calibrated rigs')
    if wrong:
        hit = sum(1 for r in wrong for s, t in zip(r['shifts'], r['true_shifts'])
                  if s and np.sign(s) == np.sign(t))
        frames = sum(len(r['shifts']) for r in wrong)
        lines.append(f'found with the true sign: {hit} of {frames} frames of miscalibrated rigs')
    return '\n'.join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='benchmark extrinsic', description=__doc__.split('\n\n')[0])
    p.add_argument('--scenarios', default='', help='comma-separated names (default: all)')
    p.add_argument('--streets', default='700,701,702,900,901,902',
                   help='street seeds (default 700-702, 900-902)')
    p.add_argument('--frames', type=int, default=2, help='frames per street (2)')
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--json', default='', help='also write the figures here')
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    names = [n for n in args.scenarios.split(',') if n]
    from depth_node.offline.scenarios import SCENARIOS
    unknown = sorted(set(names) - {s.name for s in SCENARIOS})
    if unknown:
        print(f'benchmark extrinsic: error: unknown scenarios {unknown} (known: '
              f'{", ".join(s.name for s in SCENARIOS)})', file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.streets.split(',') if s]
    t0 = time.time()
    rows = run(names, seeds, args.frames, args.width, args.height)
    print(f'benchmark extrinsic: the alignment check alone, {args.width}x{args.height}, streets '
          f'{seeds}, {args.frames} frames each, a fresh check per frame, nominal extrinsic')
    print(format_table(rows))
    print(f'({time.time() - t0:.1f} s)')
    if args.json:
        write_json(args.json, {'settings': vars(args), 'scenarios': rows})
    return 0


__all__ = ['format_table', 'main', 'run', 'true_shift']
