"""``student_report``: a student on held-out synthetic frames vs random weights and LiDAR-only.

Prints a Markdown table (AbsRel, δ1, RMSE, coverage after LiDAR alignment) and writes it with
the per-method numbers as JSON. Default model: the shipped student.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.training.recipe import parse_seeds, parse_size


def main(argv: Optional[Sequence[str]] = None) -> int:
    from depth_node.estimators.base import SHIPPED_STUDENT

    p = argparse.ArgumentParser(prog='student_report', description=__doc__.split('\n\n')[0])
    p.add_argument('--model', default=str(SHIPPED_STUDENT),
                   help='student folder (default: the shipped one)')
    p.add_argument('--frames', type=int, default=8,
                   help='frames per held-out street (default %(default)s)')
    p.add_argument('--seeds', default='500-505',
                   help='held-out street seeds (default %(default)s; the shipped student '
                        'trained on 1-24)')
    p.add_argument('--size', type=parse_size, default=(640, 480), metavar='WxH')
    p.add_argument('--max-depth', type=float, default=80.0, help='metrics cap, m')
    p.add_argument('--input-size', type=int, default=0, help="0: the model's own")
    p.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    p.add_argument('--json', default='', help='also write the report here')
    args = p.parse_args(argv)
    try:
        import torch

        from depth_node.training.report import student_report
        if args.threads:
            torch.set_num_threads(args.threads)
        report = student_report(args.model, args.frames, parse_seeds(args.seeds), args.size,
                                args.max_depth, args.input_size)
    except (ConfigError, DepthNodeError, OSError, ValueError) as exc:
        print(f'student_report: error: {exc}', file=sys.stderr)
        return 2
    print(f'{report.frames} frames on each of the held-out streets {args.seeds}, '
          f'{report.size[0]}x{report.size[1]}, depth <= {report.max_depth:g} m, model '
          f'{report.model}\n')
    print(report.table())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + '\n',
                                   encoding='utf-8')
    return 0


if __name__ == '__main__':
    sys.exit(main())
