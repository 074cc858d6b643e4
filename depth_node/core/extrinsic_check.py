"""Does the LiDAR line up with the image? A targetless check of the LiDAR -> camera extrinsic.

A wrong extrinsic (a bumped mount, a stale calibration file) does not show in the LiDAR alone:
the fusion pins the returns where the configured extrinsic puts them, the held-out self-check
(:mod:`depth_node.pipeline.self_check`) predicts misplaced returns from misplaced returns, and
sigma stays as sharp as on a calibrated rig while the depth is off at every edge and along
the ground. The check follows the edge-alignment idea of targetless LiDAR-camera calibration
(Levinson and Thrun, RSS 2013): depth discontinuities of the sweep should fall on intensity
edges of the image, so the pixel shift that puts them on the strongest edges should be zero.

* **LiDAR edges.** The sweep is projected into a virtual camera at the LiDAR's origin with
  the camera's orientation and intrinsics (the rotation of the extrinsic, no translation):
  seen from its own origin a LiDAR has no parallax, so returns next to each other in a row of
  that view are neighbours along a beam. Where two neighbours (at most ``gap`` px apart)
  differ in depth by more than ``jump`` in log, the edge lies between them, on the near
  return's surface: that point, put through the full extrinsic into the real camera, is an
  edge sample, weighted by its log jump (at most 1).
* **Image edges.** The horizontal luminance gradient ``|I(u+1) - I(u-1)|`` at the sample's
  row over the 99th percentile of the samples' gradients (at most 1), summed under a
  triangle of ``+-2`` px (edges are a few pixels soft; a triangle, not a box or a maximum, so
  that a sharp edge gives one best shift, not a plateau).
* **The score** of a horizontal shift ``d`` (``-radius..radius`` px, ``radius`` the shift of
  ``max_angle`` at the camera's focal length: 16 px at 640 px and 81 deg) is the weighted mean
  edge strength at the samples moved by ``d``. Only horizontal shifts are scored: beams scan
  horizontally, so their jumps sit on vertical edges and fix a horizontal shift well, while
  the jumps between beams are a beam spacing coarse and fall among the horizontal texture
  edges of facades.

:class:`ExtrinsicCheck` adds the scores of the checked frames up (older ones fade with
``decay``; a new extrinsic or time going back starts again) and reports the best shift when it
is at least ``min_shift`` px and scores ``min_gain`` times the zero shift, on at least
``min_samples`` samples. Measured on the synthetic streets 900-905 and 700-702, 2 frames each
(the default 64-beam rig, 640x480): with the true extrinsic the best shift is 0 on all 18
frames; with the miscalibrated scenario's 1 deg + 5 cm error about a random axis, a shift is
reported on all 18, with the sign of the true median column change and within 2 px of it (2-9
px).

What the pipeline does with it: sigma / z gains, in quadrature, the depth change that such a
misalignment may make: half the range of log depth within ``|shift|`` px, across and along the
rows (:func:`misalignment_sigma`; along them for the vertical part, which is not measured), and
the diagnostics say ``extrinsic_shift_px`` and warn.

Cost: a second z-buffered projection of the sweep (the compiled one), a sort of its returns
and a few hundred gathers of the image: ~2-4 ms at 640x480 with a 110k-point sweep, run once
per ``extrinsic_check.period`` s of image time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.errors import ConfigError
from depth_node.core.lidar import project_points
from depth_node.core.transforms import RigidTransform

#: Half-width (px) of the triangle an edge's strength is summed under.
EDGE_HALF_WIDTH = 2
#: Rec. 601 luminance weights of R, G, B.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class ExtrinsicCheckConfig:
    """The node's ``extrinsic_check.*`` parameters."""

    enable: bool = True
    period: float = 1.0  # s of image time between checks (0: every frame)
    max_angle: float = 2.5  # deg, the largest misalignment scored (as a shift at the focal length)
    gap: int = 4  # px, neighbours along a beam in the LiDAR's view
    jump: float = 0.3  # log depth step of a LiDAR edge
    min_shift: int = 2  # px, a smaller best shift is "aligned"
    min_gain: float = 1.1  # best score / zero-shift score to report a shift
    min_samples: int = 40  # edge samples needed (summed over the checks held)
    decay: float = 0.5  # weight of the earlier checks' scores at each new check

    def radius(self, camera: PinholeCamera) -> int:
        """The largest shift scored, px: ``max_angle`` at the camera's focal length (at least
        one more than ``min_shift``, at most 64). In degrees, not pixels, so that a small image
        is not searched over a wider field than a large one (where other edges line up)."""
        px = int(round(camera.fx * math.tan(math.radians(self.max_angle))))
        return max(self.min_shift + 1, min(64, px))

    def validate(self) -> None:
        for name, ok, rule in (
                ('period', math.isfinite(self.period) and self.period >= 0, '>= 0 s'),
                ('max_angle', math.isfinite(self.max_angle) and 0 < self.max_angle <= 10,
                 'in (0, 10] deg'),
                ('gap', 1 <= self.gap <= 16, 'in 1..16 px'),
                ('jump', math.isfinite(self.jump) and self.jump > 0, '> 0'),
                ('min_shift', 1 <= self.min_shift <= 16, 'in 1..16 px'),
                ('min_gain', math.isfinite(self.min_gain) and self.min_gain >= 1, '>= 1'),
                ('min_samples', self.min_samples >= 1, '>= 1'),
                ('decay', 0 <= self.decay < 1, 'in [0, 1)')):
            if not ok:
                raise ConfigError(f'extrinsic_check.{name}', f'must be {rule}',
                                  getattr(self, name))


@dataclass(frozen=True)
class EdgeSamples:
    """Where the sweep's depth edges land in the camera image."""

    u: np.ndarray  # [n] int64 column
    v: np.ndarray  # [n] int64 row
    weight: np.ndarray  # [n] float64, the log jump (at most 1)

    @property
    def count(self) -> int:
        return int(self.u.size)


def lidar_edges(points: np.ndarray, camera: PinholeCamera, lidar_to_camera: RigidTransform,
                min_depth: float = 0.5, max_depth: float = 120.0, gap: int = 4,
                jump: float = 0.3) -> EdgeSamples:
    """The depth edges of a sweep [N, 3] (LiDAR frame) as camera pixels (module docstring)."""
    rotation_only = RigidTransform(np.asarray(lidar_to_camera.rotation, np.float64),
                                   np.zeros(3))
    view = project_points(points, camera, rotation_only, min_depth, max_depth)
    none = EdgeSamples(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    if view.count < 2:
        return none
    order = np.lexsort((view.u, view.v))
    u = view.u[order].astype(np.float64)
    v = view.v[order]
    z = view.z[order].astype(np.float64)
    step = np.log(z[1:] / z[:-1])
    at = np.flatnonzero((v[1:] == v[:-1]) & (u[1:] - u[:-1] <= gap) & (np.abs(step) > jump))
    if at.size == 0:
        return none
    near = np.where(step[at] > 0, z[at], z[at + 1])
    u_mid = 0.5 * (u[at] + u[at + 1])
    row = v[at].astype(np.float64)
    # Back to a ray of the virtual camera at the near depth, then into the real camera.
    x = ((u_mid - camera.cx) * near - camera.tx) / camera.fx
    y = ((row - camera.cy) * near - camera.ty) / camera.fy
    p = np.stack([x, y, near], axis=1) + np.asarray(lidar_to_camera.translation, np.float64)
    ok = p[:, 2] > 1e-3
    cu, cv = camera.project(p[ok])
    cu, cv = np.rint(cu).astype(np.int64), np.rint(cv).astype(np.int64)
    inside = (cu >= 0) & (cu < camera.width) & (cv >= 0) & (cv < camera.height)
    weight = np.minimum(np.abs(step[at][ok][inside]), 1.0)
    return EdgeSamples(cu[inside], cv[inside], weight)


def shift_scores(rgb: np.ndarray, edges: EdgeSamples, radius: int) -> np.ndarray:
    """Weighted mean edge strength [2 radius + 1] at the samples moved by -radius..radius px.

    ``rgb`` [H, W, 3] uint8 (or [H, W] luminance). Columns beyond the image count as flat.
    """
    scores = np.zeros(2 * radius + 1)
    if edges.count == 0 or not edges.weight.sum() > 0:
        return scores
    reach = radius + EDGE_HALF_WIDTH + 1
    cols = edges.u[:, None] + np.arange(-reach, reach + 1)[None, :]  # [n, 2 reach + 1]
    inside = (cols >= 0) & (cols < rgb.shape[1])
    rows = np.broadcast_to(edges.v[:, None], cols.shape)
    pix = rgb[rows, np.clip(cols, 0, rgb.shape[1] - 1)].astype(np.float32)
    luma = pix @ _LUMA if pix.ndim == 3 else pix
    luma = np.where(inside, luma, np.nan)
    grad = np.abs(luma[:, 2:] - luma[:, :-2])  # centred at columns -reach+1 .. reach-1
    grad = np.where(np.isfinite(grad), grad, 0.0)
    top = float(np.percentile(grad, 99))
    if not top > 0:
        return scores
    grad = np.minimum(grad / top, 1.0)
    # a triangle over +-EDGE_HALF_WIDTH around each shift (index 0 of grad is -reach + 1)
    tent = EDGE_HALF_WIDTH + 1 - np.abs(np.arange(-EDGE_HALF_WIDTH, EDGE_HALF_WIDTH + 1))
    windows = np.lib.stride_tricks.sliding_window_view(grad, tent.size, axis=1)
    strength = windows @ (tent / tent.max())  # [n, 2 radius + 1]: shifts -radius .. radius
    w = edges.weight
    return (w @ strength) / w.sum()


@dataclass(frozen=True)
class Alignment:
    """What the check concludes: ``shift`` px (0: aligned or not known) and its evidence."""

    shift: int  # px, best horizontal shift of the LiDAR onto the image (0: aligned / unknown)
    gain: float  # best score / zero-shift score (NaN: no check yet)
    samples: float  # edge samples behind it (decayed sum)
    checked: bool  # whether any check has run

    @property
    def message(self) -> str:
        return shift_message(self.shift)


def shift_message(shift: int) -> str:
    """What a user is told of a misalignment of ``shift`` px ('' for 0)."""
    if not shift:
        return ''
    side = 'left' if shift > 0 else 'right'  # the LiDAR lines up when moved by +shift
    return (f'LiDAR depth edges fall {abs(shift)} px {side} of the image edges: check the '
            'LiDAR -> camera extrinsic (sigma widened where depth changes fast)')


ALIGNED = Alignment(0, float('nan'), 0.0, False)


class ExtrinsicCheck:
    """Scores of the checked frames, faded by ``decay``; :meth:`alignment` reads them."""

    def __init__(self, config: ExtrinsicCheckConfig = ExtrinsicCheckConfig()) -> None:
        config.validate()
        self.config = config
        self.reset()

    def reset(self) -> None:
        self._scores: Optional[np.ndarray] = None
        self._samples = 0.0
        self._last_stamp = -math.inf
        self._alignment = ALIGNED
        self._extrinsic: Optional[RigidTransform] = None

    def due(self, stamp: float) -> bool:
        """Whether a frame stamped ``stamp`` should be checked (time going back: yes)."""
        cfg = self.config
        return cfg.enable and (stamp - self._last_stamp >= cfg.period
                               or stamp < self._last_stamp)

    def update(self, rgb: np.ndarray, points: np.ndarray, camera: PinholeCamera,
               lidar_to_camera: RigidTransform, stamp: float, min_depth: float = 0.5,
               max_depth: float = 120.0) -> Alignment:
        """Check one frame and return the alignment of all the checks held."""
        cfg = self.config
        if stamp < self._last_stamp or not _same(lidar_to_camera, self._extrinsic):
            # time went back (a replay restarted) or the extrinsic changed (a new calibration,
            # another tf): the scores held were for another alignment, start again
            self.reset()
        self._last_stamp = stamp
        self._extrinsic = lidar_to_camera
        edges = lidar_edges(points, camera, lidar_to_camera, min_depth, max_depth, cfg.gap,
                            cfg.jump)
        scores = shift_scores(rgb, edges, cfg.radius(camera)) * edges.count
        if self._scores is None or self._scores.shape != scores.shape:
            self._scores, self._samples = scores, float(edges.count)
        else:
            self._scores = cfg.decay * self._scores + scores
            self._samples = cfg.decay * self._samples + edges.count
        self._alignment = judge(self._scores, self._samples, cfg)
        return self._alignment

    @property
    def alignment(self) -> Alignment:
        return self._alignment


def _same(a: RigidTransform, b: Optional[RigidTransform]) -> bool:
    """Whether two extrinsics are the same (None, no earlier one: yes)."""
    return b is None or (np.allclose(a.rotation, b.rotation, atol=1e-9)
                         and np.allclose(a.translation, b.translation, atol=1e-9))


def judge(scores: np.ndarray, samples: float, config: ExtrinsicCheckConfig) -> Alignment:
    """The best shift of a score curve [2 radius + 1] if it passes the config's tests."""
    radius = (scores.size - 1) // 2
    zero = float(scores[radius])
    best = int(np.argmax(scores))
    if zero > 0:
        gain = float(scores[best] / zero)
    else:  # no edge at the zero shift: any edge elsewhere is infinitely better
        gain = math.inf if scores[best] > 0 else float('nan')
    shift = best - radius
    if samples < config.min_samples or abs(shift) < config.min_shift \
            or not gain >= config.min_gain:
        shift = 0
    return Alignment(shift, gain, float(samples), True)


def misalignment_sigma(depth: np.ndarray, cell: int, shift: int) -> np.ndarray:
    """The relative depth error [gh, gw] a LiDAR misplaced by up to ``shift`` px may make
    at each cell of ``depth`` [gh, gw] (m, its cells' depth): half the range of log depth
    over the cells within ``ceil(|shift| / cell)`` of it, across and along the rows (the
    vertical part of the misalignment is not measured: it is allowed for as large as the
    horizontal). Where depth changes smoothly by ``g`` per pixel that is about
    ``g * |shift|``; next to an edge, half its step. Cells without depth (sky, beyond
    ``max_depth``) neither widen their neighbours nor are widened (0)."""
    z = np.asarray(depth, np.float64)
    good = np.isfinite(z) & (z > 0)
    if not shift or not good.any():
        return np.zeros(z.shape)
    log_z = np.log(np.where(good, z, 1.0))
    r = int(math.ceil(abs(shift) / float(cell)))
    window = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    high = cv2.dilate(np.where(good, log_z, -np.inf).astype(np.float32), window,
                      borderType=cv2.BORDER_REPLICATE)
    low = cv2.erode(np.where(good, log_z, np.inf).astype(np.float32), window,
                    borderType=cv2.BORDER_REPLICATE)
    return np.where(good, 0.5 * (high.astype(np.float64) - low), 0.0)


__all__ = ['ALIGNED', 'Alignment', 'EdgeSamples', 'ExtrinsicCheck', 'ExtrinsicCheckConfig',
           'judge', 'lidar_edges', 'misalignment_sigma',
           'shift_message', 'shift_scores']
