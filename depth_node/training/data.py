"""Training data for students: labelled images from synthetic drives or from bags.

A :class:`Sample` is an RGB image with a target in **inverse depth** (1/m; 0 = infinitely far,
e.g. the synthetic sky; NaN = no label) and an optional per-pixel weight. Sources:

* :func:`synthetic_samples` - frames of seeded synthetic streets (:mod:`depth_node.sim`) at
  random places along the drive, labelled with their exact depth;
* :func:`shard_samples` - the keyframes of a pseudo-labelled dataset (``pseudo_label --out``:
  Parquet shards of image, LiDAR-aligned teacher depth and uncertainty), weighted by the
  uncertainty as below;
* :func:`bag_samples` - camera images of a rosbag2 bag with a depth image matched by header
  stamp: ground truth (``/camera/depth_gt`` of the sample bag), or the keyframe teacher's
  LiDAR-aligned depth that the node publishes on ``keyframe/depth``, weighted by its
  ``keyframe/uncertainty`` (metres): ``w = 1 / (1 + (u / (rel * z))**2)``, so a pixel whose
  uncertainty is ``rel`` (5 %) of its depth counts half.

:func:`make_batch` turns samples into network inputs the way the estimator pre-processes
images (RGB/255, bicubic resize, ImageNet mean/std), with training augmentation: a random
scale above the network's lower-bound size, a random crop to the training size, horizontal
flip, and photometric jitter. Targets and weights are resized with nearest-neighbour, so no
label is ever invented across a depth edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np

from depth_node.core.errors import DepthNodeError
from depth_node.core.stamped import StampedCache
from depth_node.messages.encodings import MessageError
from depth_node.messages.readers import depth_image_to_metres, image_to_rgb8, stamp_ns
from depth_node.offline.reader import DriveReader
from depth_node.sim.frames import SimRig

__all__ = ['Batch', 'Sample', 'TeacherTopics', 'bag_samples', 'inverse_depth', 'make_batch',
           'shard_samples', 'synthetic_samples', 'uncertainty_weight']

_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True)
class Sample:
    """One labelled image."""

    rgb: np.ndarray  # [H, W, 3] uint8
    target: np.ndarray  # [H, W] float32, inverse depth 1/m, 0 = infinitely far, NaN = no label
    weight: Optional[np.ndarray] = None  # [H, W] float32 >= 0; None: 1 where labelled
    source: str = ''

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise DepthNodeError(f'{self.source}: rgb must be [H, W, 3] uint8, got '
                                 f'{self.rgb.shape} {self.rgb.dtype}')
        if self.target.shape != self.rgb.shape[:2]:
            raise DepthNodeError(f'{self.source}: target {self.target.shape} does not match the '
                                 f'image {self.rgb.shape[:2]}')
        if self.weight is not None and self.weight.shape != self.target.shape:
            raise DepthNodeError(f'{self.source}: weight {self.weight.shape} does not match the '
                                 f'target {self.target.shape}')

    @property
    def labelled(self) -> float:
        """Fraction of pixels with a label (and non-zero weight)."""
        ok = np.isfinite(self.target)
        if self.weight is not None:
            ok &= self.weight > 0
        return float(ok.mean())


def inverse_depth(depth: np.ndarray, sky_is_far: bool = False) -> np.ndarray:
    """``1 / depth`` as float32; NaN/non-positive depth -> NaN; +inf -> 0 if ``sky_is_far``."""
    z = np.asarray(depth, dtype=np.float32)
    out = np.full(z.shape, np.nan, dtype=np.float32)
    ok = np.isfinite(z) & (z > 0)
    out[ok] = 1.0 / z[ok]
    if sky_is_far:
        out[np.isposinf(z)] = 0.0
    return out


def uncertainty_weight(depth: np.ndarray, uncertainty: np.ndarray,
                       relative: float = 0.05) -> np.ndarray:
    """Per-pixel weight ``1 / (1 + (u / (relative * z))**2)``; 0 where either is not finite."""
    if not relative > 0:
        raise ValueError(f'relative uncertainty scale must be > 0, got {relative}')
    z = np.asarray(depth, dtype=np.float32)
    u = np.asarray(uncertainty, dtype=np.float32)
    ok = np.isfinite(z) & (z > 0) & np.isfinite(u) & (u >= 0)
    w = np.zeros(z.shape, dtype=np.float32)
    w[ok] = 1.0 / (1.0 + (u[ok] / (relative * z[ok])) ** 2)
    return w


def synthetic_samples(seeds: Sequence[int], per_seed: int, width: int = 320, height: int = 240,
                      speed: float = 8.0, span: tuple[float, float] = (0.0, 150.0),
                      shuffle_seed: int = 0) -> Iterator[Sample]:
    """Frames of synthetic streets, ``per_seed`` from each seeded street, exact labels.

    Each street (:meth:`SimRig.default`, KITTI-like camera at ``width x height``) is sampled at
    ``per_seed`` places drawn uniformly over ``span`` metres of drive (seeded by ``shuffle_seed``
    and the street's seed). The sky is labelled infinitely far (inverse depth 0).
    """
    if per_seed < 1:
        raise ValueError(f'per_seed must be >= 1, got {per_seed}')
    for seed in seeds:
        rig = SimRig.default(width, height, seed=int(seed), length=span[1] + 120.0)
        rng = np.random.default_rng([int(shuffle_seed), int(seed)])
        for z in np.sort(rng.uniform(span[0], span[1], per_seed)):
            cam = rig.render(float(z) / speed, speed)
            yield Sample(cam.rgb, inverse_depth(cam.depth, sky_is_far=True), None,
                         f'synthetic seed {seed} z={z:.1f} m')


@dataclass(frozen=True)
class TeacherTopics:
    """Topics of a bag to train from (the node's topics, recorded under its namespace)."""

    image: str = '/camera/image_rect'
    depth: str = '/keyframe/depth'  # or ground truth, e.g. /camera/depth_gt
    uncertainty: str = '/keyframe/uncertainty'  # '' = no weights


def bag_samples(path: str | Path, topics: TeacherTopics = TeacherTopics(),
                relative: float = 0.05, tolerance: float = 1e-3,
                issues: Optional[list[str]] = None) -> Iterator[Sample]:
    """Camera images of a bag that have a depth label (matched by header stamp).

    Two passes: the first reads only the header stamps of the label topics; the second streams
    images and labels in bag order and keeps an image (or a label) only until the rest of its
    pair arrives. A teacher that publishes its labels seconds after the image (a real Marigold
    keyframe does) is matched all the same, and memory stays bounded by the labels in flight,
    not by the bag.

    Parameters
    ----------
    path : str or Path
        rosbag2 folder or ``.mcap`` file.
    topics : TeacherTopics
        Image (Image or CompressedImage), depth (32FC1/64FC1 metres or 16UC1 mm) and,
        optionally, uncertainty (32FC1 metres, the keyframe teacher's) topics.
    relative : float
        Relative uncertainty at which a pixel's weight is one half (:func:`uncertainty_weight`).
    tolerance : float
        Seconds between an image's stamp and its label's (the node stamps keyframe outputs with
        the image's own stamp).
    issues : list of str, optional
        Receives what was skipped and why (unreadable or mis-sized messages, labels whose
        image is not in the bag).
    """
    notes: list[str] = issues if issues is not None else []
    tol_ns = int(round(tolerance * 1e9))
    label_topics = [topics.depth] + ([topics.uncertainty] if topics.uncertainty else [])
    reader = DriveReader(path)
    stamps: dict[str, list[int]] = {t: [] for t in label_topics}
    for m in reader.messages(set(label_topics)):
        msg = reader.decode(m)
        if msg is not None:
            stamps[m.topic].append(stamp_ns(msg))
    # A sample per depth label (with an uncertainty label when weights are asked for): the
    # same nearest-within-tolerance rule as the node's LiDAR buffer and the bag reader.
    depths = sorted(set(stamps[topics.depth]))
    keys: StampedCache[None] = StampedCache(max(1, len(depths)))
    if topics.uncertainty:
        have: StampedCache[None] = StampedCache(max(1, len(stamps[topics.uncertainty])))
        for k in stamps[topics.uncertainty]:
            have.add(k, None)
        depths = [k for k in depths if have.nearest(k, tol_ns) is not None]
    for k in depths:
        keys.add(k, None)
    first_pass = [str(i) for i in reader.issues]
    notes.extend(first_pass)
    if not len(keys):
        return
    pending: dict[int, dict[str, np.ndarray]] = {}
    done: set[int] = set()
    need = 1 + len(label_topics)
    reader = DriveReader(path)
    for m in reader.messages({topics.image, *label_topics}):
        msg = reader.decode(m)
        if msg is None:
            continue  # an issue of the reader (labels: of the first pass too)
        stamp = stamp_ns(msg)
        got = keys.nearest(stamp, tol_ns)
        if got is None or got[0] in done:
            continue
        key = got[0]
        try:
            if m.topic == topics.image:
                value = image_to_rgb8(msg, m.msgtype)
            else:
                value = depth_image_to_metres(msg)
        except MessageError as exc:
            notes.append(f'{m.topic} at {stamp * 1e-9:.3f} s: {exc}; skipped')
            continue
        parts = pending.setdefault(key, {})
        parts.setdefault(m.topic, value)
        if len(parts) < need:
            continue
        del pending[key]
        done.add(key)
        sample = _labelled(parts, topics, relative, key, path, notes)
        if sample is not None:
            yield sample
    for key, parts in pending.items():
        missing = [t for t in (topics.image, *label_topics) if t not in parts]
        notes.append(f'label at {key * 1e-9:.3f} s: no {", ".join(missing)} in the bag; skipped')
    notes.extend(i for i in map(str, reader.issues) if i not in first_pass)


def shard_samples(folder: str | Path, relative: float = 0.05,
                  weighted: bool = True) -> Iterator[Sample]:
    """The labelled keyframes of a ``pseudo_label`` dataset folder, shard after shard.

    The target is the inverse of the teacher's aligned depth; with ``weighted`` and an
    uncertainty stored, the weight is :func:`uncertainty_weight` of it (as for the teacher's
    topics of a bag), else every labelled pixel counts fully. Raises :class:`DepthNodeError`
    for a folder without shards or a damaged one.
    """
    from depth_node.offline.shards import read_rows

    for row in read_rows(folder):
        weight = None
        if weighted and row.uncertainty is not None:
            weight = uncertainty_weight(row.depth, row.uncertainty, relative)
        yield Sample(row.rgb, inverse_depth(row.depth), weight,
                     f'{Path(row.bag).name} {row.stamp_ns * 1e-9:.3f} s ({row.teacher})')


def _labelled(parts: dict[str, np.ndarray], topics: TeacherTopics, relative: float, key: int,
              path: str | Path, notes: list[str]) -> Optional[Sample]:
    """The sample of a complete image + label(s) set, or None (with a note) when mis-sized."""
    rgb, depth = parts[topics.image], parts[topics.depth]
    when = f'{key * 1e-9:.3f} s'
    if depth.shape != rgb.shape[:2]:
        notes.append(f'{topics.depth} at {when} is {depth.shape}, the image '
                     f'{rgb.shape[:2]}; skipped')
        return None
    weight = None
    if topics.uncertainty:
        unc = parts[topics.uncertainty]
        if unc.shape != depth.shape:
            notes.append(f'{topics.uncertainty} at {when} is {unc.shape}, the depth '
                         f'{depth.shape}; skipped')
            return None
        weight = uncertainty_weight(depth, unc, relative)
    return Sample(rgb, inverse_depth(depth), weight, f'{Path(path).name} {when}')


@dataclass(frozen=True)
class Batch:
    """Network inputs and labels of a batch (numpy, ready for ``torch.from_numpy``)."""

    pixels: np.ndarray  # [B, 3, h, w] float32, ImageNet-normalised
    target: np.ndarray  # [B, h, w] float32, inverse depth, 0 where unlabelled
    weight: np.ndarray  # [B, h, w] float32, 0 = unlabelled


def _lower_bound(height: int, width: int, size: int) -> tuple[int, int]:
    scale = max(size / height, size / width)
    return max(size, int(round(height * scale))), max(size, int(round(width * scale)))


def _prepare(sample: Sample, size: tuple[int, int], rng: Optional[np.random.Generator],
             max_scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sample resized (and, with ``rng``, augmented) to ``size`` = (h, w)."""
    h, w = size
    rgb = sample.rgb
    target = sample.target
    weight = np.isfinite(target).astype(np.float32)
    if sample.weight is not None:
        weight *= np.nan_to_num(sample.weight, nan=0.0)
    scale = 1.0 if rng is None else float(rng.uniform(1.0, max_scale))
    rh, rw = _lower_bound(rgb.shape[0], rgb.shape[1], int(np.ceil(max(h, w) * scale)))
    if rh < h or rw < w:
        rh, rw = max(rh, h), max(rw, w)
    rgb = cv2.resize(rgb, (rw, rh), interpolation=cv2.INTER_AREA
                     if rw < sample.rgb.shape[1] else cv2.INTER_CUBIC)
    target = cv2.resize(np.nan_to_num(target, nan=0.0), (rw, rh),
                        interpolation=cv2.INTER_NEAREST)
    weight = cv2.resize(weight, (rw, rh), interpolation=cv2.INTER_NEAREST)
    if rng is None:  # centre crop
        top, left = (rh - h) // 2, (rw - w) // 2
    else:
        top, left = int(rng.integers(0, rh - h + 1)), int(rng.integers(0, rw - w + 1))
    rgb = rgb[top:top + h, left:left + w].astype(np.float32) / 255.0
    target = target[top:top + h, left:left + w]
    weight = weight[top:top + h, left:left + w]
    if rng is not None:
        if rng.random() < 0.5:
            rgb, target, weight = rgb[:, ::-1], target[:, ::-1], weight[:, ::-1]
        # photometric jitter: brightness, contrast, saturation, gamma, sometimes a slight blur
        gray = rgb.mean(axis=2, keepdims=True)
        rgb = gray + (rgb - gray) * rng.uniform(0.6, 1.4)
        rgb = (rgb - rgb.mean()) * rng.uniform(0.7, 1.3) + rgb.mean() * rng.uniform(0.7, 1.3)
        rgb = np.clip(rgb, 0.0, 1.0) ** rng.uniform(0.8, 1.25)
        if rng.random() < 0.3:
            rgb = cv2.GaussianBlur(np.ascontiguousarray(rgb), (0, 0), rng.uniform(0.3, 1.0))
    rgb = (rgb - _MEAN) / _STD
    return (np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32),
            np.ascontiguousarray(target, dtype=np.float32),
            np.ascontiguousarray(weight, dtype=np.float32))


def make_batch(samples: Sequence[Sample], size: tuple[int, int],
               rng: Optional[np.random.Generator] = None, max_scale: float = 1.3) -> Batch:
    """Batch of ``samples`` at network size ``size`` = (h, w), multiples of 14.

    With ``rng`` each sample is augmented (random scale up to ``max_scale`` above the lower
    bound, crop, flip, photometric jitter); without, it is resized and centre-cropped only.
    """
    if not samples:
        raise ValueError('a batch needs at least one sample')
    parts = [_prepare(s, size, rng, max_scale) for s in samples]
    return Batch(np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]),
                 np.stack([p[2] for p in parts]))
