"""The pseudo-labelled dataset on disk: Parquet shards of keyframes and their teacher labels.

One row per keyframe (:class:`LabelRow`): the camera image (PNG bytes), the teacher's depth
aligned to the LiDAR (float32 metres, NaN = no label), its uncertainty (float32 metres: the
ensemble's spread times the fitted scale; null without an ensemble), and where it came from
(bag, topic, stamp, frame index, camera model, teacher, keyframe reason, fit). Arrays are
stored as little-endian float32 bytes of ``height x width`` values; the columns are compressed
(zstd) by Parquet. A dataset is a folder of ``*.parquet`` shards (:func:`read_rows` reads
them all, in name order) and ``dataset.json`` (what :mod:`depth_node.offline.pseudo_label`
wrote: teacher, bags, shards). pyarrow is imported only here, when a shard is read or
written.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import cv2
import numpy as np

from depth_node.core.errors import DepthNodeError

__all__ = ['FORMAT', 'LabelRow', 'decode_png', 'encode_png', 'encode_shard', 'read_rows',
           'remove_shards', 'shard_files', 'shard_metadata', 'write_shard']

#: Version of the row layout (file metadata ``depth_node.format``).
FORMAT = '1'


@dataclass(frozen=True)
class LabelRow:
    """One pseudo-labelled keyframe."""

    bag: str  # the bag's path as given
    topic: str  # camera topic
    stamp_ns: int  # image header stamp
    frame_index: int  # camera frame of the bag (0-based)
    frame_id: str
    rgb: np.ndarray  # [H, W, 3] uint8
    depth: np.ndarray  # [H, W] float32, metres, NaN = no label
    uncertainty: Optional[np.ndarray]  # [H, W] float32, metres, NaN where depth is; None: none
    camera: tuple[float, float, float, float]  # fx, fy, cx, cy of the image, px
    teacher: str  # model path (or name) of the teacher
    reason: str  # why the policy chose it ('first', 'every_n', ...)
    fit_space: str  # 'depth' or 'disparity'
    fit_scale: float
    fit_shift: float
    fit_residual: float  # log-depth sigma of the robust fit
    fit_points: int  # LiDAR pixels the fit used
    fit_inliers: int
    lidar_pixels: int  # projected LiDAR pixels of the sweep


def _pa() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DepthNodeError(f'pseudo-label shards need pyarrow: pip install pyarrow ({exc})') \
            from None
    return pa, pq


def _schema(pa: Any) -> Any:
    return pa.schema([
        ('bag', pa.string()), ('topic', pa.string()), ('stamp_ns', pa.int64()),
        ('frame_index', pa.int32()), ('frame_id', pa.string()),
        ('height', pa.int32()), ('width', pa.int32()),
        ('image_png', pa.binary()), ('depth', pa.binary()), ('uncertainty', pa.binary()),
        ('camera', pa.list_(pa.float64(), 4)), ('teacher', pa.string()),
        ('reason', pa.string()), ('fit_space', pa.string()), ('fit_scale', pa.float64()),
        ('fit_shift', pa.float64()), ('fit_residual', pa.float64()),
        ('fit_points', pa.int32()), ('fit_inliers', pa.int32()),
        ('lidar_pixels', pa.int32())])


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an ``[H, W, 3]`` uint8 RGB image (lossless)."""
    ok, buf = cv2.imencode('.png', np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise DepthNodeError(f'cannot encode an image of shape {rgb.shape} as PNG')
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB of PNG bytes."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DepthNodeError('image_png: not a PNG image')
    return np.ascontiguousarray(bgr[..., ::-1])


def _floats(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype='<f4').tobytes()


def encode_shard(rows: Sequence[LabelRow], metadata: Optional[dict[str, str]] = None) -> bytes:
    """One Parquet file of ``rows`` (bytes; ``metadata`` goes into its key-value metadata)."""
    pa, pq = _pa()
    columns: dict[str, list[Any]] = {name: [] for name in _schema(pa).names}
    for r in rows:
        h, w = r.depth.shape
        if r.rgb.shape != (h, w, 3) or (r.uncertainty is not None
                                        and r.uncertainty.shape != (h, w)):
            raise DepthNodeError(f'{r.bag} frame {r.frame_index}: image {r.rgb.shape}, depth '
                                 f'{r.depth.shape} and uncertainty sizes differ')
        values = dict(bag=r.bag, topic=r.topic, stamp_ns=int(r.stamp_ns),
                      frame_index=int(r.frame_index), frame_id=r.frame_id, height=h, width=w,
                      image_png=encode_png(r.rgb), depth=_floats(r.depth),
                      uncertainty=None if r.uncertainty is None else _floats(r.uncertainty),
                      camera=[float(c) for c in r.camera], teacher=r.teacher,
                      reason=r.reason, fit_space=r.fit_space, fit_scale=float(r.fit_scale),
                      fit_shift=float(r.fit_shift), fit_residual=float(r.fit_residual),
                      fit_points=int(r.fit_points), fit_inliers=int(r.fit_inliers),
                      lidar_pixels=int(r.lidar_pixels))
        for k, v in values.items():
            columns[k].append(v)
    meta = {'depth_node.format': FORMAT, **(metadata or {})}
    table = pa.Table.from_pydict(columns, schema=_schema(pa).with_metadata(meta))
    sink = io.BytesIO()
    pq.write_table(table, sink, compression='zstd', row_group_size=64)
    return sink.getvalue()


def write_shard(folder: str | Path, key: str, number: int, data: bytes) -> str:
    """Write shard ``number`` of bag ``key`` (atomically); its file name."""
    name = f'{key}-{number:05d}.parquet'
    path = Path(folder) / name
    tmp = path.with_name(name + '.part')
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return name


def remove_shards(folder: str | Path, key: str) -> None:
    """Delete the shards of bag ``key`` (before it is labelled again)."""
    for path in Path(folder).glob(f'{key}-[0-9][0-9][0-9][0-9][0-9].parquet*'):
        path.unlink(missing_ok=True)


def shard_files(folder: str | Path) -> list[Path]:
    """The ``*.parquet`` shards of a dataset folder, in name order."""
    return sorted(Path(folder).glob('*.parquet'))


def shard_metadata(path: str | Path) -> dict[str, str]:
    """The key-value metadata of a shard (``{}`` when unreadable)."""
    _, pq = _pa()
    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception:  # a partial or foreign file: not one of ours
        return {}
    return {k.decode(): v.decode() for k, v in meta.items()}


def read_rows(folder: str | Path) -> Iterator[LabelRow]:
    """Every row of every shard of a dataset folder, one row group in memory at a time."""
    _, pq = _pa()
    files = shard_files(folder)
    if not files:
        raise DepthNodeError(f'{folder}: no *.parquet shards (a pseudo_label --out folder)')
    for path in files:
        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:  # ArrowInvalid and friends
            raise DepthNodeError(f'{path}: not a readable Parquet shard ({exc})') from None
        for g in range(parquet.num_row_groups):
            for d in parquet.read_row_group(g).to_pylist():
                yield _row(d, path)


def _row(d: dict[str, Any], path: Path) -> LabelRow:
    h, w = int(d['height']), int(d['width'])

    def arr(name: str) -> np.ndarray:
        a = np.frombuffer(d[name], dtype='<f4')
        if a.size != h * w:
            raise DepthNodeError(f'{path}: {name} of {d["bag"]} frame {d["frame_index"]} has '
                                 f'{a.size} values, not {h}x{w}')
        return a.reshape(h, w).astype(np.float32)

    rgb = decode_png(d['image_png'])
    if rgb.shape[:2] != (h, w):
        raise DepthNodeError(f'{path}: image of {d["bag"]} frame {d["frame_index"]} is '
                             f'{rgb.shape[:2]}, not {h}x{w}')
    return LabelRow(
        bag=d['bag'], topic=d['topic'], stamp_ns=int(d['stamp_ns']),
        frame_index=int(d['frame_index']), frame_id=d['frame_id'], rgb=rgb, depth=arr('depth'),
        uncertainty=None if d['uncertainty'] is None else arr('uncertainty'),
        camera=tuple(d['camera']), teacher=d['teacher'], reason=d['reason'],
        fit_space=d['fit_space'], fit_scale=d['fit_scale'], fit_shift=d['fit_shift'],
        fit_residual=d['fit_residual'], fit_points=int(d['fit_points']),
        fit_inliers=int(d['fit_inliers']), lidar_pixels=int(d['lidar_pixels']))
