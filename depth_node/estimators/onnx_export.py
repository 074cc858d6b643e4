"""Export Depth Anything (V1/V2, any size) to ONNX with fixed or dynamic batch, height, width.

The exported graph computes what :meth:`DepthAnythingEstimator.infer` computes:
``pixel_values [B, 3, H, W]`` float32 (ImageNet-normalised, ``H, W`` multiples of 14) ->
``prediction [B, H, W]`` float32 (ReLU'd disparity, or metric depth), with the official
position-embedding interpolation. Pre-processing (resize, normalisation) and the resize back
to the image size stay outside the graph, in the backend, exactly as in the torch estimator.

Two traps of tracing transformers' model with ``torch.export`` (measured with transformers
5.23, torch 2.13), and what :class:`ExportableDepthAnything` does about them:

* The head resizes to ``(int(patch_height * 14), int(patch_width * 14))``: ``int()`` of a
  traced size turns it into a constant, so the output size of the example input is baked in
  even when the input is declared dynamic (the exporter does not complain; the graph fails or
  is wrong at any other size). The wrapper runs the head's layers itself with the size taken
  from the input tensor's shape.
* The position embeddings are resampled with ``interpolate(scale_factor=(n + 0.1) / 37)``
  (official) behind a Python ``if`` on the grid size: a square batch-1 example (518 x 518)
  makes the exporter take the "no resampling" branch and specialise the input to square, a
  scale factor computed from a traced size is baked in as a constant. The wrapper swaps the
  backbone's embeddings for :class:`TraceablePosEmbeddings`, which computes the same bicubic
  resampling as two small matrices built from tensor shapes (no Python branch, no float of a
  traced size), and exports from a non-square example with batch 2 when those are dynamic.

Both are checked by the tests at several shapes (``test/test_onnx_export.py``).

torch, transformers and onnxscript (the exporter) are needed; onnxruntime only for
:func:`compare_with_torch`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from depth_node.core.errors import ConfigError, DepthNodeError
from depth_node.estimators.depth_anything import load_model
from depth_node.estimators.onnx_model import INPUT_NAME, META_PREFIX, OUTPUT_NAME, SCHEMA

try:
    import torch
    import torch.nn.functional as F
    from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise ImportError('ONNX export needs PyTorch and transformers: pip install torch==2.13.0 '
                      f'transformers onnx onnxscript ({_exc})') from _exc

__all__ = ['ExportResult', 'ExportableDepthAnything', 'MIN_OPSET', 'ParityResult',
           'TraceablePosEmbeddings', 'compare_with_torch', 'export_onnx',
           'export_onnx_from_checkpoint']

_LOG = logging.getLogger(__name__)

#: Oldest opset accepted: 17 has LayerNormalization, which TensorRT runs as one fused layer
#: (a decomposed LayerNorm after attention overflows in FP16).
MIN_OPSET = 17
DEFAULT_OPSET = 18
#: Largest dynamic side, in patches (3584 px); the smallest is 2 patches.
MAX_PATCHES = 256
# Tracing example for a dynamic side: non-square, neither side the 37-patch grid of the stored
# embeddings, nor 0/1 (which torch.export specialises).
_EXAMPLE_PATCHES = (27, 36)
_CUBIC_A = -0.75  # torch's (and OpenCV's) bicubic kernel parameter


# ------------------------------------------------------------------------------------------------
# A traceable, numerically equivalent model


def _cubic_weights(t: torch.Tensor) -> list[torch.Tensor]:
    """Weights of the 4 taps at offsets -1, 0, 1, 2 for fractional positions ``t`` [n]."""
    a = _CUBIC_A

    def near(x: torch.Tensor) -> torch.Tensor:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: torch.Tensor) -> torch.Tensor:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def bicubic_matrix(size: Any, grid: int, inv_scale: torch.Tensor) -> torch.Tensor:
    """Matrix ``[size, grid]`` that resamples ``grid`` values to ``size`` like torch's bicubic.

    ``interpolate(mode='bicubic', align_corners=False, scale_factor=s)`` samples output ``i``
    at ``(i + 0.5) / s - 0.5`` (computed as ``inv_scale * (i + 0.5) - 0.5``, in float32, as
    torch does) with a 4-tap cubic kernel (a = -0.75), clamping taps at the border; row ``i``
    holds those 4 weights. ``size`` may be a traced size; ``inv_scale = 1 / s`` is a 0-d
    float32 tensor. At ``inv_scale == 1`` the matrix is the identity (the kernel is exactly 1
    at 0 and 0 at +-1, +-2).
    """
    dst = torch.arange(size, dtype=torch.float32)  # [size]
    src = inv_scale * (dst + 0.5) - 0.5
    first = torch.floor(src)
    t = src - first
    columns = torch.arange(grid, dtype=torch.float32)  # [grid]
    matrix = torch.zeros((size, grid), dtype=torch.float32)  # [size, grid]
    for offset, weight in zip((-1, 0, 1, 2), _cubic_weights(t)):
        tap = torch.clamp(first + offset, 0, grid - 1)  # [size]
        matrix = matrix + weight[:, None] * (tap[:, None] == columns[None, :]).to(torch.float32)
    return matrix


class TraceablePosEmbeddings(Dinov2Embeddings):
    """DINOv2 embeddings whose position-embedding resampling exports with dynamic shapes.

    Computes what the estimator's official resampling (or, with ``pos_embed_offset = 0``,
    transformers' own) computes - bicubic, scale ``(n + offset) / grid`` per side, nothing done
    when both sides have ``grid`` patches - as ``M_rows @ P @ M_cols^T`` with
    :func:`bicubic_matrix`, in float32, from tensor shapes only. Input sides must be multiples
    of the patch size (network inputs always are).
    """

    #: 0.1 for the official DINOv2 resampling, 0.0 for transformers'.
    pos_embed_offset: float = 0.1

    def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int,
                                 width: int) -> torch.Tensor:
        """Position embeddings ``[1, 1 + rows * cols, C]`` for ``height x width`` pixels."""
        num_positions = self.position_embeddings.shape[1] - 1
        grid = int(round(num_positions ** 0.5))
        patch_h, patch_w = self.patch_embeddings.patch_size
        rows, cols = height // patch_h, width // patch_w
        dim = embeddings.shape[-1]
        one = torch.ones((), dtype=torch.float32)
        n_rows, n_cols = one * rows, one * cols  # the traced sizes as 0-d tensors
        # The stored grid is used as is when both sides have `grid` patches (scale exactly 1).
        resample = 1.0 - ((n_rows == grid) & (n_cols == grid)).to(torch.float32)
        offset = self.pos_embed_offset * resample
        m_rows = bicubic_matrix(rows, grid, grid / (n_rows + offset))  # [rows, grid]
        m_cols = bicubic_matrix(cols, grid, grid / (n_cols + offset))  # [cols, grid]
        stored = self.position_embeddings[:, 1:].float()  # [1, grid * grid, C]
        stored = stored.reshape(grid, grid, dim).permute(2, 0, 1)  # [C, grid, grid]
        patch_pos = m_rows @ stored @ m_cols.transpose(0, 1)  # [C, rows, cols]
        patch_pos = patch_pos.permute(1, 2, 0).reshape(1, -1, dim)  # [1, rows * cols, C]
        patch_pos = patch_pos.to(self.position_embeddings.dtype)
        return torch.cat((self.position_embeddings[:, :1], patch_pos), dim=1)


class ExportableDepthAnything(torch.nn.Module):
    """``pixel_values [B, 3, H, W] -> prediction [B, H, W]``, traceable with dynamic B, H, W.

    Same layers and weights as ``model`` (no copy); the backbone's embeddings module is switched
    **in place** to :class:`TraceablePosEmbeddings` (numerically the chosen interpolation, so
    ``model`` keeps working). The head's layers run here, with the output size taken from the
    input's shape instead of transformers' ``int(...)``.

    Parameters
    ----------
    model : DepthAnythingForDepthEstimation
        A loaded model (:func:`~depth_node.estimators.depth_anything.load_model`).
    pos_embed_interpolation : str
        ``'official'`` (default, what the estimator computes) or ``'transformers'``.
    """

    def __init__(self, model: torch.nn.Module,
                 pos_embed_interpolation: str = 'official') -> None:
        super().__init__()
        if pos_embed_interpolation not in ('official', 'transformers'):
            raise ConfigError('pos_embed_interpolation', "must be 'official' or 'transformers'",
                              pos_embed_interpolation)
        embeddings = model.backbone.embeddings
        if not isinstance(embeddings, Dinov2Embeddings):
            raise DepthNodeError('the model backbone is not DINOv2 (embeddings of type '
                                 f'{type(embeddings).__name__}); cannot export it')
        embeddings.__class__ = TraceablePosEmbeddings
        embeddings.pos_embed_offset = 0.1 if pos_embed_interpolation == 'official' else 0.0
        self.model = model.eval()
        self.patch_size = int(model.config.patch_size)
        self.pos_embed_interpolation = pos_embed_interpolation

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Prediction ``[B, H, W]`` float32 for network input ``[B, 3, H, W]``."""
        height, width = pixel_values.shape[-2:]
        rows, cols = height // self.patch_size, width // self.patch_size
        features = self.model.backbone(pixel_values).feature_maps
        hidden = self.model.neck(features, rows, cols)
        # DepthAnythingDepthEstimationHead.forward, with a size that stays symbolic.
        head = self.model.head
        out = head.conv1(hidden[head.head_in_index])
        out = F.interpolate(out, (rows * self.patch_size, cols * self.patch_size),
                            mode='bilinear', align_corners=True)
        out = head.conv3(head.activation1(head.conv2(out)))
        out = head.activation2(out) * head.max_depth  # [B, 1, H, W]
        return out.squeeze(1).float()  # [B, H, W]


# ------------------------------------------------------------------------------------------------
# Export


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote.

    ``height``/``width``/``batch`` are None where the dimension is dynamic; ``metadata`` is what
    went into the file's ``metadata_props``.
    """

    path: str
    opset: int
    height: Optional[int]
    width: Optional[int]
    batch: Optional[int]
    metadata: dict[str, str]

    def describe(self) -> str:
        def dim(value: Optional[int], name: str) -> str:
            return name if value is None else str(value)
        return (f'{self.path}: opset {self.opset}, pixel_values [{dim(self.batch, "B")}, 3, '
                f'{dim(self.height, "H")}, {dim(self.width, "W")}] -> prediction '
                f'({self.metadata[META_PREFIX + "output_kind"]})')


def _check_side(name: str, value: Optional[int], patch: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < 2 * patch or value % patch:
        raise ConfigError(name, f'must be a multiple of {patch} pixels, at least {2 * patch}',
                          value)


def _metadata(model: torch.nn.Module, interpolation: str, source: str) -> dict[str, str]:
    import transformers

    config = model.config
    metric = config.depth_estimation_type == 'metric'
    meta = {
        'schema': SCHEMA, 'model': 'depth_anything',
        'output_kind': 'depth' if metric else 'disparity', 'metric': str(metric).lower(),
        'patch_size': str(int(config.patch_size)), 'pos_embed_interpolation': interpolation,
        'source': source,
        'exporter': f'torch {torch.__version__}, transformers {transformers.__version__}',
    }
    if metric:
        meta['max_depth'] = str(config.max_depth)
    return {META_PREFIX + k: v for k, v in meta.items()}


def export_onnx(model: torch.nn.Module, path: Union[str, os.PathLike], *,
                height: Optional[int] = None, width: Optional[int] = None,
                batch: Optional[int] = 1, opset: int = DEFAULT_OPSET,
                pos_embed_interpolation: str = 'official',
                source: str = '') -> ExportResult:
    """Export a Depth Anything model to ONNX.

    Parameters
    ----------
    model : DepthAnythingForDepthEstimation
        On the CPU, float32 (e.g. from :func:`load_model`). Its embeddings module is switched
        to :class:`TraceablePosEmbeddings` (see :class:`ExportableDepthAnything`).
    path : str or path-like
        The ``.onnx`` file. Weights are stored inside it (in a ``.data`` file next to it when
        the model is over 2 GB, e.g. ViT-G).
    height, width : int or None
        Fixed network input size in pixels (multiples of 14), or None for a dynamic side. Both
        or neither.
    batch : int or None
        Fixed batch size, or None for a dynamic one.
    opset : int
        ONNX opset, at least :data:`MIN_OPSET`.
    pos_embed_interpolation : str
        ``'official'`` (default, as the estimator) or ``'transformers'``.
    source : str
        Recorded as ``depth_node.source`` (the checkpoint's file name).

    Returns
    -------
    ExportResult
    """
    from torch.export import Dim

    if (height is None) != (width is None):
        raise ConfigError('height/width', 'give both (a fixed network input size) or neither '
                          '(dynamic)', (height, width))
    patch = int(model.config.patch_size)
    _check_side('height', height, patch)
    _check_side('width', width, patch)
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, (int, np.integer))
                              or batch < 1):
        raise ConfigError('batch', 'must be a positive integer or None (dynamic)', batch)
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ConfigError('opset', f'must be an integer >= {MIN_OPSET}', opset)
    wrapper = ExportableDepthAnything(model.float().cpu(), pos_embed_interpolation).eval()

    # The tracing example: batch 2 and a non-square size off the stored grid for whatever is
    # dynamic, so that no branch or size is specialised on it.
    shape = [batch or 2, 3, height or _EXAMPLE_PATCHES[0] * patch,
             width or _EXAMPLE_PATCHES[1] * patch]
    dims: dict[int, Any] = {}
    if batch is None:
        dims[0] = Dim('batch', min=1, max=256)
    if height is None:
        dims[2] = patch * Dim('rows', min=2, max=MAX_PATCHES)
        dims[3] = patch * Dim('cols', min=2, max=MAX_PATCHES)
    example = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    program = torch.onnx.export(
        wrapper, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        opset_version=opset, dynamo=True, dynamic_shapes={'pixel_values': dims} if dims else None,
        verbose=False)
    if program is None:  # pragma: no cover - the dynamo exporter always returns a program
        raise DepthNodeError('torch.onnx.export returned no program')
    metadata = _metadata(model, pos_embed_interpolation, source)
    program.model.metadata_props.update(metadata)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    program.save(path)  # weights inside the file, or beside it over 2 GB
    result = ExportResult(path, opset, height, width, batch, metadata)
    _LOG.info('exported %s', result.describe())
    return result


def export_onnx_from_checkpoint(model_path: Union[str, os.PathLike], path: Union[str, os.PathLike],
                                encoder: str = '', **kwargs: Any) -> ExportResult:
    """:func:`export_onnx` of a Hugging Face folder or official ``.pth`` (:func:`load_model`)."""
    model = load_model(model_path, encoder)
    source = os.path.basename(os.path.normpath(os.fspath(model_path)))
    return export_onnx(model, path, source=source, **kwargs)


# ------------------------------------------------------------------------------------------------
# Parity


@dataclass(frozen=True)
class ParityResult:
    """ONNX Runtime vs torch on one input shape ``[B, 3, H, W]``.

    ``max_rel`` is ``max |onnx - torch| / max |torch|`` over the whole batch.
    """

    shape: tuple[int, int, int, int]
    max_rel: float
    max_abs: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def compare_with_torch(onnx_path: Union[str, os.PathLike], estimator: Any,
                       shapes: Sequence[Sequence[int]], seed: int = 0) -> list[ParityResult]:
    """Run the ONNX file (ONNX Runtime, CPU) and ``estimator.infer`` on the same random inputs.

    ``estimator`` is a :class:`~depth_node.estimators.depth_anything.DepthAnythingEstimator`
    of the same weights (float32); ``shapes`` are ``[B, 3, H, W]`` network inputs.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(onnx_path), providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    gen = torch.Generator().manual_seed(seed)
    results = []
    for shape in shapes:
        pixels = torch.randn(tuple(shape), generator=gen)  # [B, 3, H, W]
        expected = estimator.infer(pixels).cpu().numpy()  # [B, H, W]
        got = session.run(None, {name: pixels.numpy()})[0]
        if got.shape != expected.shape:
            raise DepthNodeError(f'ONNX output shape {got.shape} != torch {expected.shape} for '
                                 f'input {tuple(shape)}')
        diff = np.abs(got.astype(np.float64) - expected)
        results.append(ParityResult(tuple(int(s) for s in shape),
                                    float(diff.max() / np.abs(expected).max()),
                                    float(diff.max())))
    return results
