"""Latency of Depth Anything per backend, next to the official implementation, same weights.

One ViT-S model with random weights (they cost the same as trained ones) is built with the
official code (``depth_anything_v2`` from PyPI ``jkp-depth-anything-v2``), saved as an official
``.pth`` and loaded from it by every backend, so all rows run the same numbers:

================  ==============================================================
official          ``DepthAnythingV2.infer_image`` (BGR in), float32, torch
torch fp32        :class:`DepthAnythingEstimator` (transformers), float32
torch bf16        the same in bfloat16
onnxruntime       :class:`OnnxRuntimeEstimator` on the exported ONNX (opset 18, the export
                  default; dynamic H, W)
onnxruntime-opset23  the same exported at opset 23, where attention is one ``Attention``
                  op that ONNX Runtime runs fused (TensorRT and older ONNX Runtime builds,
                  e.g. JetPack's, do not take opset 23 yet)
onnxruntime-fixed opset 18, one ONNX file exported per image size (static shapes)
tensorrt          :class:`TensorRTEstimator` (``--device cuda``; skipped without it)
================  ==============================================================

Each timed call is the whole ``predict`` (pre-processing, network, resize back) on an RGB
image of the camera size; backends take turns frame by frame, so that a busy machine slows
them alike. The table gives the median per call, the speed-up over the official path (the
median over rounds of official / backend time in the same round, which a changing load on a
shared machine affects least), and the largest difference to the official output relative
to its maximum (a check that the rows compute the same thing).

Run ``benchmark backends --help``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from depth_node.bench import write_json
from depth_node.testing.official import import_official, random_official_vits, scene_image

#: Speed-up of the fastest backend over the official path that the benchmark aims at.
GOAL = 1.3
BACKENDS = ('official', 'torch-fp32', 'torch-bf16', 'onnxruntime', 'onnxruntime-opset23',
            'onnxruntime-fixed', 'tensorrt')
DEFAULT_BACKENDS = ('official', 'torch-fp32', 'torch-bf16', 'onnxruntime', 'onnxruntime-opset23',
                    'tensorrt')


@dataclass
class Row:
    """One backend: per image size, the timed calls (ms) and the difference to official."""

    name: str
    samples_ms: dict[str, list[float]] = field(default_factory=dict)
    max_rel: dict[str, float] = field(default_factory=dict)
    skipped: str = ''

    def median(self, size: str) -> float:
        return float(np.median(self.samples_ms[size]))

    def speedup(self, reference: 'Row', size: str) -> float:
        """Median over rounds of ``reference`` time / this row's time in the same round."""
        ratios = np.asarray(reference.samples_ms[size]) / np.asarray(self.samples_ms[size])
        return float(np.median(ratios))


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'must be WIDTHxHEIGHT, got {text!r}') from None
    return height, width


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='benchmark backends',
        description='Latency of Depth Anything V2 ViT-S (random weights) per backend - torch '
                    'fp32/bf16, ONNX Runtime, TensorRT - next to the official implementation '
                    'on the same weights.')
    parser.add_argument('--sizes', type=lambda s: [_size(v) for v in s.split(',')],
                        default=[(518, 518), (480, 640)],
                        help='image sizes WIDTHxHEIGHT, comma-separated (518x518,640x480)')
    parser.add_argument('--backends', type=lambda s: s.split(','),
                        default=list(DEFAULT_BACKENDS),
                        help='comma-separated, of ' + ', '.join(BACKENDS)
                             + ' (default: all but onnxruntime-fixed)')
    parser.add_argument('--frames', type=int, default=10, help='timed calls per size (10)')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed calls per size first (2)')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch and ONNX Runtime intra-op threads (0 = their default)')
    parser.add_argument('--ort-optimization', default='all',
                        choices=('disable', 'basic', 'extended', 'all'),
                        help='ONNX Runtime graph optimisation level (all)')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda[:N]' (cpu)")
    parser.add_argument('--json', metavar='PATH', help='also write every sample to this file')
    return parser


Predict = Callable[[np.ndarray], np.ndarray]  # RGB [H, W, 3] uint8 -> [H, W] float32


def _build(name: str, pth: str, folder: str, args: argparse.Namespace,
           sizes: Sequence[tuple[int, int]], official_model: Any) -> Predict:
    """A ``predict(rgb)`` callable for backend ``name`` (may raise ImportError/RuntimeError)."""
    from depth_node.estimators.depth_anything import DepthAnythingEstimator

    if name == 'official':
        model = official_model.to(args.device)
        return lambda rgb: model.infer_image(np.ascontiguousarray(rgb[..., ::-1]), 518)
    if name.startswith('torch-'):
        est = DepthAnythingEstimator(pth, device=args.device, precision=name[6:])
        return est.predict
    from depth_node.estimators.onnx_export import export_onnx_from_checkpoint
    if name in ('onnxruntime', 'onnxruntime-opset23', 'tensorrt'):
        opset = 23 if name.endswith('opset23') else 18
        onnx = os.path.join(folder, f'vits_dynamic_opset{opset}.onnx')
        if not os.path.exists(onnx):
            export_onnx_from_checkpoint(pth, onnx, opset=opset)
        if name == 'tensorrt':
            from depth_node.estimators.tensorrt_backend import TensorRTEstimator
            return TensorRTEstimator(onnx, device=args.device, image_sizes=sizes,
                                     engine_cache=os.path.join(folder, 'engines')).predict
        from depth_node.estimators.onnxruntime_backend import OnnxRuntimeEstimator
        return OnnxRuntimeEstimator(onnx, device=args.device, threads=args.threads,
                                    optimization=args.ort_optimization).predict
    if name == 'onnxruntime-fixed':
        from depth_node.estimators.preprocess import network_input_size
        from depth_node.estimators.onnxruntime_backend import OnnxRuntimeEstimator
        per_size = {}
        for height, width in sizes:
            net = network_input_size(height, width)
            onnx = os.path.join(folder, f'vits_{net[0]}x{net[1]}.onnx')
            if not os.path.exists(onnx):
                export_onnx_from_checkpoint(pth, onnx, height=net[0], width=net[1])
            per_size[(height, width)] = OnnxRuntimeEstimator(
                onnx, device=args.device, threads=args.threads,
                optimization=args.ort_optimization).predict
        return lambda rgb: per_size[rgb.shape[:2]](rgb)
    raise ValueError(f'unknown backend {name!r} (one of {", ".join(BACKENDS)})')


def run(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    """Build every backend, time them frame by frame, return the rows and the settings."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    official = import_official()
    model = random_official_vits(official)
    sizes = [tuple(s) for s in args.sizes]
    labels = [f'{w}x{h}' for h, w in sizes]
    rows: list[Row] = []
    calls: dict[str, Predict] = {}
    with tempfile.TemporaryDirectory(prefix='depth_node_backends_') as folder:
        pth = os.path.join(folder, 'depth_anything_v2_vits.pth')
        torch.save(model.state_dict(), pth)
        for name in args.backends:
            row = Row(name)
            rows.append(row)
            try:
                calls[name] = _build(name, pth, folder, args, sizes, model)
            except (ImportError, RuntimeError, ValueError) as exc:
                row.skipped = f'{type(exc).__name__}: {exc}'.splitlines()[0][:120]
        if 'official' not in calls:
            raise RuntimeError('the official backend is needed as the reference')
        for (height, width), label in zip(sizes, labels):
            rgb = scene_image(height, width)
            reference = calls['official'](rgb)
            for name, predict in calls.items():
                row = next(r for r in rows if r.name == name)
                row.samples_ms[label] = []
                out = predict(rgb)
                row.max_rel[label] = float(np.abs(out - reference).max()
                                           / np.abs(reference).max())
            for i in range(args.warmup + args.frames):
                for name, predict in calls.items():
                    start = time.perf_counter()
                    predict(rgb)
                    elapsed = (time.perf_counter() - start) * 1e3
                    if i >= args.warmup:
                        next(r for r in rows if r.name == name).samples_ms[label].append(elapsed)
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as stream:
            cpu = next((line.split(':', 1)[1].strip() for line in stream
                        if line.startswith('model name')), cpu)
    except OSError:
        pass
    import onnxruntime

    settings = {'sizes': labels, 'frames': args.frames, 'warmup': args.warmup,
                'device': args.device, 'torch_threads': torch.get_num_threads(),
                'ort_threads': args.threads or 'default',
                'ort_optimization': args.ort_optimization,
                'cpu': cpu, 'cores': os.cpu_count(), 'torch': torch.__version__,
                'onnxruntime': onnxruntime.__version__}
    return rows, settings


def format_table(rows: Sequence[Row], settings: dict[str, Any], command: str) -> str:
    """The header, the table (median ms, speed-up over official, max rel. diff) and a verdict."""
    from depth_node.estimators.preprocess import network_input_size

    labels = settings['sizes']
    lines = [
        'Depth Anything V2 ViT-S (random weights), predict(rgb) per backend, same weights',
        f'command:  {command}',
        f"machine:  {settings['cpu']}, {settings['cores']} cores; torch {settings['torch']} "
        f"({settings['torch_threads']} threads), onnxruntime {settings['onnxruntime']} "
        f"(threads {settings['ort_threads']}, optimisation {settings['ort_optimization']})",
        f"frames:   {settings['frames']} timed after {settings['warmup']} warm-up per size, "
        'backends interleaved; median ms; speed-up = official / backend',
        '',
    ]
    heads = []
    for label in labels:
        w, h = (int(v) for v in label.split('x'))
        net = network_input_size(h, w)
        heads.append(f'{label} (net {net[1]}x{net[0]})')
    col, name_w = 30, max(len('backend'), *(len(r.name) for r in rows)) + 2
    lines.append(f"{'backend':<{name_w}}" + ''.join(f'{head:>{col}}' for head in heads))
    lines.append(' ' * name_w + ''.join(f"{'ms   speed-up   max rel':>{col}}" for _ in labels))
    lines.append('-' * (name_w + col * len(labels)))
    official = next(r for r in rows if r.name == 'official')
    best: dict[str, tuple[float, str]] = {}
    for row in rows:
        if row.skipped:
            lines.append(f'{row.name:<{name_w}}skipped: {row.skipped}')
            continue
        cells = []
        for label in labels:
            ms = row.median(label)
            speed = row.speedup(official, label)
            cells.append(f'{ms:8.1f} {speed:8.2f}x {row.max_rel[label]:9.1e}')
            if row.name != 'official' and speed > best.get(label, (0.0, ''))[0]:
                best[label] = (speed, row.name)
        lines.append(f'{row.name:<{name_w}}' + ''.join(f'{c:>{col}}' for c in cells))
    lines.append('')
    for label in labels:
        if label not in best:
            continue
        speed, name = best[label]
        verdict = 'met' if speed >= GOAL else f'NOT met (short by {GOAL - speed:.2f}x)'
        lines.append(f'{label}: fastest {name}, {speed:.2f}x the official path; goal '
                     f'{GOAL:.1f}x {verdict}')
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console-script entry point; 0 on success, 1 when the benchmark cannot run."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(args_list)
    unknown = [b for b in args.backends if b not in BACKENDS]
    if unknown or 'official' not in args.backends:
        print(f'benchmark backends: error: --backends must include official and only name '
              f'{", ".join(BACKENDS)} (got {unknown or args.backends})', file=sys.stderr)
        return 1
    command = shlex.join(['benchmark', 'backends'] + args_list)
    try:
        rows, settings = run(args)
    except RuntimeError as exc:
        print(f'benchmark backends: error: {exc}', file=sys.stderr)
        return 1
    print(format_table(rows, settings, command), flush=True)
    if args.json:
        write_json(args.json, {'command': command, 'settings': settings, 'goal': GOAL,
                               'rows': [vars(r) for r in rows]})
    return 0


if __name__ == '__main__':
    sys.exit(main())
