"""``benchmark <name> [options]``: one entry point for every benchmark of the package.

Each name runs one benchmark with its own options (``benchmark pipeline --frames 50``,
``benchmark backends --help``, ...); the module behind a name is imported only when it runs, so
``benchmark accuracy`` needs neither torch nor rclpy. Without a name (``benchmark`` or
``benchmark --frames 50``) the pipeline benchmark runs. ``benchmark --help`` lists the names.
Measured figures and the commands that produced them: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import importlib
import sys
from typing import NamedTuple, Optional, Sequence


class Benchmark(NamedTuple):
    """A name of ``benchmark <name>``: the module whose ``main(argv)`` runs it, one line."""

    module: str
    summary: str


BENCHMARKS: dict[str, Benchmark] = {
    'pipeline': Benchmark('depth_node.bench.pipeline',
                          'per-stage latency of the non-model path (the default)'),
    'backends': Benchmark('depth_node.bench.backends',
                          'Depth Anything latency per backend next to the official code'),
    'keyframes': Benchmark('depth_node.bench.keyframes',
                           'real-time latency with the keyframe teacher off and on'),
    'transport': Benchmark('depth_node.ros.transport_check',
                           'large best-effort images and clouds between processes, Fast DDS '
                           'profiles'),
    'accuracy': Benchmark('depth_node.bench.accuracy_table',
                          'ground-truth accuracy of the metric path, with targets'),
    'fleet': Benchmark('depth_node.bench.fleet',
                       'bags/min of evaluate over many bags for 1, 2, ... Ray workers'),
    'motion': Benchmark('depth_node.bench.motion',
                        'a turning vehicle with a spinning LiDAR: deskew on and off'),
    'overload': Benchmark('depth_node.bench.overload',
                          'output latency of the real node with images at 3x the model rate'),
    'overlap': Benchmark('depth_node.bench.overlap',
                         "a frame's wall time with the LiDAR side beside the model, and after "
                         'it'),
    'extrinsic': Benchmark('depth_node.bench.extrinsic',
                           'the LiDAR -> camera alignment check on every scenario: false '
                           'alarms and misalignments found'),
}
DEFAULT = 'pipeline'


def usage() -> str:
    """The text of ``benchmark --help``."""
    width = max(len(name) for name in BENCHMARKS)
    lines = ['usage: benchmark [NAME] [OPTIONS]', '',
             'Run one benchmark of depth_node; without NAME, the pipeline benchmark.', '',
             'names:']
    lines += [f'  {name:<{width}}  {b.summary}' for name, b in BENCHMARKS.items()]
    lines += ['', "'benchmark NAME --help' shows the options of NAME."]
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console-script entry point; the exit status of the benchmark that ran (2: bad name)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ('-h', '--help'):
        print(usage())
        return 0
    name = DEFAULT
    if args and not args[0].startswith('-'):
        name = args.pop(0)
        if name not in BENCHMARKS:
            print(f"benchmark: error: unknown benchmark {name!r} (one of "
                  f"{', '.join(BENCHMARKS)})", file=sys.stderr)
            return 2
    module = importlib.import_module(BENCHMARKS[name].module)
    return int(module.main(args) or 0)


if __name__ == '__main__':
    sys.exit(main())
