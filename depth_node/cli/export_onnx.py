"""Export Depth Anything (HF folder or official ``.pth``) to ONNX for ONNX Runtime / TensorRT.

Examples::

    export_onnx depth_anything_v2_vits.pth da2_vits.onnx               # dynamic H, W; batch 1
    export_onnx Depth-Anything-V2-Small-hf/ da2_vits.onnx --dynamic-batch
    export_onnx depth_anything_v2_vits.pth da2_vits_640x480.onnx --image-size 640x480
    export_onnx depth_anything_v2_vits.pth da2_vits.onnx --verify       # + ONNX Runtime parity

``--image-size WxH`` fixes the network input to what a camera of that resolution needs
(686x518 for 640x480 at ``--input-size 518``); ``--network-size WxH`` fixes it directly. Sizes
are written width x height, as camera resolutions are. Without
either, height and width are dynamic (multiples of 14). ``--verify`` runs the file with ONNX
Runtime and the torch estimator on the same random inputs at several shapes and fails when the
largest relative difference exceeds ``--tolerance``.

See :mod:`depth_node.estimators.onnx_export` for what the graph computes and the metadata.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Optional, Sequence

from depth_node.core.errors import DepthNodeError

#: Largest relative difference ONNX Runtime vs torch that ``--verify`` accepts.
TOLERANCE = 1e-3


def _size(text: str) -> tuple[int, int]:
    """``'640x480'`` (width x height, as camera resolutions are written) -> ``(480, 640)``."""
    match = re.fullmatch(r'(\d+)x(\d+)', text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f'must be WIDTHxHEIGHT, e.g. 640x480, got {text!r}')
    return int(match.group(2)), int(match.group(1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='export_onnx',
        description='Export Depth Anything V1/V2 to ONNX (opset >= 17) with fixed or dynamic '
                    'height/width and batch; the graph maps normalised pixels [B, 3, H, W] to '
                    'the prediction [B, H, W], with the official position-embedding '
                    'interpolation.')
    parser.add_argument('model', help='Hugging Face model folder or official .pth checkpoint')
    parser.add_argument('output', help='ONNX file to write')
    parser.add_argument('--encoder', default='',
                        help="vits/vitb/vitl/vitg for a .pth whose name does not say it")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument('--image-size', type=_size, metavar='WxH',
                       help='fixed network input for camera images of this size')
    shape.add_argument('--network-size', type=_size, metavar='WxH',
                       help='fixed network input size (multiples of 14)')
    parser.add_argument('--input-size', type=int, default=518,
                        help='lower bound of the network input sides, for --image-size (518)')
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument('--batch', type=int, default=1, help='fixed batch size (1)')
    batch.add_argument('--dynamic-batch', action='store_true', help='dynamic batch size')
    parser.add_argument('--opset', type=int, default=18, help='ONNX opset, >= 17 (18)')
    parser.add_argument('--pos-embed-interpolation', choices=('official', 'transformers'),
                        default='official',
                        help='position-embedding resampling (official, as the estimator)')
    parser.add_argument('--verify', action='store_true',
                        help='compare ONNX Runtime with the torch estimator at several shapes')
    parser.add_argument('--tolerance', type=float, default=TOLERANCE,
                        help=f'largest relative difference --verify accepts ({TOLERANCE:g})')
    return parser


def verify_shapes(height: Optional[int], width: Optional[int],
                  batch: Optional[int]) -> list[tuple[int, int, int, int]]:
    """Input shapes ``[B, 3, H, W]`` that ``--verify`` runs for an export's fixed/dynamic dims.

    A fixed size is checked as is; dynamic sides at square, landscape and portrait sizes. A
    dynamic batch is checked at 1 and, for the last size, at 2.
    """
    sizes = [(height, width)] if height and width else [(518, 518), (518, 686), (686, 518)]
    shapes = [(batch or 1, 3, h, w) for h, w in sizes]
    if batch is None:
        shapes.append((2, 3) + shapes[-1][2:])
    return shapes


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console-script entry point; 0 on success, 1 when --verify fails, 2 on bad input."""
    args = build_parser().parse_args(argv)
    from depth_node.estimators.depth_anything import network_input_size
    from depth_node.estimators.onnx_export import export_onnx_from_checkpoint

    height = width = None
    if args.image_size:
        height, width = network_input_size(*args.image_size, args.input_size)
    elif args.network_size:
        height, width = args.network_size
    batch = None if args.dynamic_batch else args.batch
    try:
        result = export_onnx_from_checkpoint(
            args.model, args.output, encoder=args.encoder, height=height, width=width,
            batch=batch, opset=args.opset, pos_embed_interpolation=args.pos_embed_interpolation)
    except DepthNodeError as exc:
        print(f'export_onnx: error: {exc}', file=sys.stderr)
        return 2
    print(f'wrote {result.describe()}')
    if not args.verify:
        return 0
    from depth_node.estimators.depth_anything import DepthAnythingEstimator
    from depth_node.estimators.onnx_export import compare_with_torch

    torch_estimator = DepthAnythingEstimator(args.model, encoder=args.encoder,
                                             pos_embed_interpolation=args.pos_embed_interpolation)
    worst = 0.0
    for parity in compare_with_torch(result.path, torch_estimator,
                                     verify_shapes(height, width, batch)):
        worst = max(worst, parity.max_rel)
        print(f'  ONNX Runtime vs torch at {"x".join(map(str, parity.shape))}: '
              f'max relative difference {parity.max_rel:.2e}')
    ok = worst <= args.tolerance
    print(f'verify: {"ok" if ok else "FAILED"} (worst {worst:.2e}, tolerance '
          f'{args.tolerance:g})')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
