"""What an exported Depth Anything ONNX file says about itself: metadata, input shape, hash.

``export_onnx`` (:mod:`depth_node.estimators.onnx_export`) writes the model's semantics into
the ONNX ``metadata_props`` under the ``depth_node.`` prefix, so that a backend running the file
(ONNX Runtime, TensorRT) knows what it predicts without the checkpoint:

==================================  ==========================================================
``depth_node.schema``               ``1``
``depth_node.model``                ``depth_anything``
``depth_node.output_kind``          ``disparity`` (relative models) or ``depth`` (metric)
``depth_node.metric``               ``true`` / ``false``
``depth_node.max_depth``            maximum depth of a metric head, metres (metric only)
``depth_node.patch_size``           ``14``: network input sides are multiples of it
``depth_node.pos_embed_interpolation``  ``official`` (the estimator's default) or
                                    ``transformers``
``depth_node.source``               file name of the checkpoint it was exported from
``depth_node.exporter``             torch / transformers versions used
==================================  ==========================================================

Input and output shapes are read from the graph itself: ``pixel_values [B, 3, H, W]`` float32
(ImageNet-normalised, as :meth:`DepthAnythingEstimator.preprocess` makes it) and
``prediction [B, H, W]`` float32; each of ``B, H, W`` is a number (fixed) or a name (dynamic).

Only numpy here; :func:`read_onnx_info` and :func:`onnx_digest` import ``onnx`` lazily.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Union

from depth_node.core.align import OutputKind, OutputSpec
from depth_node.core.errors import ConfigError

__all__ = ['INPUT_NAME', 'META_PREFIX', 'OUTPUT_NAME', 'OnnxModelInfo', 'is_onnx_path',
           'onnx_digest', 'read_onnx_info']

_LOG = logging.getLogger(__name__)

#: Prefix of every metadata key this package writes.
META_PREFIX = 'depth_node.'
#: Version of the metadata layout.
SCHEMA = '1'
#: Names of the graph's input and output, as ``export_onnx`` writes them.
INPUT_NAME = 'pixel_values'
OUTPUT_NAME = 'prediction'

Dim = Union[int, str, None]  # a graph dimension: a number, or a name / None when dynamic


def is_onnx_path(path: Union[str, os.PathLike]) -> bool:
    """True when ``path`` names an ONNX file (by its extension)."""
    return os.fspath(path).lower().endswith('.onnx')


def _fixed(dim: Dim) -> Optional[int]:
    """A fixed dimension as an int, None when dynamic (a name, None, or <= 0)."""
    return dim if isinstance(dim, int) and dim > 0 else None


@dataclass(frozen=True)
class OnnxModelInfo:
    """Semantics and input geometry of an exported depth model.

    Attributes
    ----------
    output : OutputSpec
        What the prediction means (from the metadata; relative disparity when there is none).
    input_name, output_name : str
        Graph input ``[B, 3, H, W]`` and output ``[B, H, W]``.
    batch, height, width : int or None
        Fixed input dimensions (pixels for ``height, width``); None = dynamic.
    patch_size : int
        Network input sides must be multiples of it.
    metadata : dict
        Every ``depth_node.*`` entry of the file.
    """

    output: OutputSpec
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    batch: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None
    patch_size: int = 14
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_graph(cls, metadata: Mapping[str, str], input_name: str,
                   input_shape: Sequence[Dim], output_name: str,
                   source: str = '') -> 'OnnxModelInfo':
        """Build from a graph's metadata map, its one input (name, shape) and its output name.

        Raises :class:`ConfigError` (``estimator.model_path``) when the input is not
        ``[B, 3, H, W]`` or the metadata is inconsistent.
        """
        ours = {k: v for k, v in metadata.items() if k.startswith(META_PREFIX)}
        if len(input_shape) != 4 or input_shape[1] not in (3, '3'):
            raise ConfigError('estimator.model_path', 'the ONNX graph input must be '
                              f'[B, 3, H, W], {input_name!r} has shape {list(input_shape)}',
                              source)
        kind = ours.get(META_PREFIX + 'output_kind')
        if kind is None:
            _LOG.warning('%s has no depth_node metadata (not written by export_onnx): assuming '
                         'relative disparity, like Depth Anything V2', source or 'the ONNX file')
            output = OutputSpec(OutputKind.DISPARITY, metric=False)
        else:
            metric = ours.get(META_PREFIX + 'metric', 'false').lower()
            if metric not in ('true', 'false'):
                raise ConfigError('estimator.model_path', "metadata depth_node.metric must be "
                                  f"'true' or 'false', is {metric!r}", source)
            try:
                output = OutputSpec.parse(kind, metric == 'true')
            except ValueError as exc:
                raise ConfigError('estimator.model_path', f'bad metadata: {exc}',
                                  source) from None
        try:
            patch = int(ours.get(META_PREFIX + 'patch_size', '14'))
        except ValueError:
            raise ConfigError('estimator.model_path', 'metadata depth_node.patch_size must be '
                              'an integer', ours.get(META_PREFIX + 'patch_size')) from None
        return cls(output, input_name, output_name, _fixed(input_shape[0]),
                   _fixed(input_shape[2]), _fixed(input_shape[3]), patch, ours)

    @property
    def fixed_size(self) -> Optional[tuple[int, int]]:
        """``(H, W)`` of a graph exported for one network input size, None when dynamic."""
        if self.height is None or self.width is None:
            return None
        return self.height, self.width

    def describe(self) -> str:
        """``'[B, 3, 518, 686] -> disparity (relative)'`` style summary for logs."""
        def dim(value: Optional[int], name: str) -> str:
            return name if value is None else str(value)
        kind = self.output.kind.value + (' (metric)' if self.output.metric else ' (relative)')
        return (f'[{dim(self.batch, "B")}, 3, {dim(self.height, "H")}, '
                f'{dim(self.width, "W")}] -> {kind}')


def read_onnx_info(path: Union[str, os.PathLike]) -> OnnxModelInfo:
    """Read :class:`OnnxModelInfo` from an ONNX file (graph only: weights are not loaded)."""
    onnx = _import_onnx()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError('estimator.model_path', 'does not exist', path)
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends from protobuf
        raise ConfigError('estimator.model_path', f'is not a readable ONNX file ({exc})',
                          path) from exc
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or not model.graph.output:
        raise ConfigError('estimator.model_path', 'the ONNX graph must have one image input '
                          f'and an output, has inputs {[i.name for i in inputs]}', path)
    dims: list[Dim] = []
    for d in inputs[0].type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField('dim_value') else (d.dim_param or None))
    metadata = {p.key: p.value for p in model.metadata_props}
    return OnnxModelInfo.from_graph(metadata, inputs[0].name, dims, model.graph.output[0].name,
                                    path)


def onnx_digest(path: Union[str, os.PathLike], chunk: int = 1 << 22) -> str:
    """SHA-256 (hex) of an ONNX file and of every external-data file it references.

    Models over 2 GB keep their weights in separate files; a changed weight file must change
    the digest (it keys the TensorRT engine cache), so those files are hashed too, in sorted
    order of their names.
    """
    onnx = _import_onnx()
    path = os.fspath(path)
    model = onnx.load(path, load_external_data=False)
    external = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == 'location':
                    external.add(entry.value)
    digest = hashlib.sha256()
    folder = os.path.dirname(os.path.abspath(path))
    for name, file in [('', path)] + [(n, os.path.join(folder, n)) for n in sorted(external)]:
        digest.update(name.encode() + b'\0')
        with open(file, 'rb') as stream:
            for block in iter(lambda: stream.read(chunk), b''):
                digest.update(block)
    return digest.hexdigest()


def _import_onnx():  # noqa: ANN202 - the module
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(f'reading ONNX files needs the onnx package: pip install onnx ({exc})'
                          ) from exc
    return onnx
