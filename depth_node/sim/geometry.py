"""Geometry of the synthetic street: primitives, ray grids and the culled ray caster.

The world frame is an optical-style frame (x right, y down, z forward) with the ground plane at
``y = ground_y`` below the camera's starting position; the ego lane is centred on ``x = 0`` and
the road runs along +z. Every object is a primitive with an axis-aligned bounding box: boxes
and axis-aligned ellipsoids. Moving primitives have a velocity; ``time`` arguments (seconds of
drive time) place them.

Speed comes from culling, not from approximations: the sensors (:mod:`depth_node.sim.camera`,
:mod:`depth_node.sim.lidar`) map every primitive's bounding box to the window of rays that can
hit it, and :func:`trace` tests only those rays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, NamedTuple, Optional, Sequence

import numpy as np

# LiDAR body frame (x forward, y left, z up) -> camera optical frame (x right, y down, z fwd).
BODY_TO_OPTICAL = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])

SKY = -1  # hit label of rays that hit nothing
GROUND = 0  # hit label of the ground plane; primitive i has label 1 + i
FOG = -2  # label of a LiDAR return from fog backscatter

# Surface materials: albedo texture for the camera, reflectivity for the LiDAR.
MATERIALS = ('plain', 'facade', 'concrete', 'paint', 'glass', 'rubber', 'metal', 'bark',
             'foliage')
MATERIAL_ID = {name: i for i, name in enumerate(MATERIALS)}

# Road layout across x (metres): ego lane centred on 0, oncoming lane on the left, a parking
# strip on each side, then the curb and a raised sidewalk.
LANE_WIDTH = 3.5
CENTRE_LINE_X = -1.75
EDGE_LINES_X = (1.75, -5.25)
CURB_X = (4.0, -7.5)
SIDEWALK_X = ((4.0, 7.5), (-11.0, -7.5))
CURB_HEIGHT = 0.15
MARKING_HALF_WIDTH = 0.075

_EPS = 1e-4  # m: hits closer than this to the ray origin are ignored


def _vec3(v: Sequence[float], name: str) -> tuple[float, float, float]:
    t = tuple(float(x) for x in v)
    if len(t) != 3 or not all(np.isfinite(t)):
        raise ValueError(f'{name} must be 3 finite numbers, got {v!r}')
    return t  # type: ignore[return-value]


def _check_material(material: str) -> None:
    if material not in MATERIAL_ID:
        raise ValueError(f'material must be one of {MATERIALS}, got {material!r}')


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in the world frame (metres at time 0), base colour RGB in [0, 1].

    ``velocity`` (m/s, world frame) moves it: at drive time ``t`` it spans
    ``lo + velocity * t`` to ``hi + velocity * t``.
    """

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    color: tuple[float, float, float]
    material: str = 'plain'
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        lo, hi = _vec3(self.lo, 'Box.lo'), _vec3(self.hi, 'Box.hi')
        if not all(a < b for a, b in zip(lo, hi)):
            raise ValueError(f'Box needs lo < hi on every axis, got lo={lo} hi={hi}')
        _check_material(self.material)
        _vec3(self.velocity, 'Box.velocity')


@dataclass(frozen=True)
class Ellipsoid:
    """Axis-aligned ellipsoid (tree canopy, bush): centre and semi-axes in metres."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    color: tuple[float, float, float]
    material: str = 'foliage'
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        _vec3(self.center, 'Ellipsoid.center')
        if not all(r > 0 for r in _vec3(self.radii, 'Ellipsoid.radii')):
            raise ValueError(f'Ellipsoid radii must be > 0, got {self.radii}')
        _check_material(self.material)
        _vec3(self.velocity, 'Ellipsoid.velocity')


class Primitives(NamedTuple):
    """The scene's primitives at one instant, as arrays (boxes first, then ellipsoids)."""

    lo: np.ndarray  # [P, 3] float64, metres, bounding box
    hi: np.ndarray  # [P, 3] float64, metres
    ellipsoid: np.ndarray  # [P] bool, False for a box
    material: np.ndarray  # [P] int64, index into MATERIALS
    color: np.ndarray  # [P, 3] float64, RGB in [0, 1]

    @property
    def count(self) -> int:
        return int(self.lo.shape[0])


class Rays(NamedTuple):
    """A 2-D grid of rays: direction components broadcastable to ``shape``, and inverses."""

    d: tuple[np.ndarray, np.ndarray, np.ndarray]  # each [R or 1, C or 1] float32
    inv: tuple[np.ndarray, np.ndarray, np.ndarray]  # 1 / d, zeros replaced by tiny values
    shape: tuple[int, int]


def make_rays(dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> Rays:
    comps = tuple(np.atleast_2d(np.asarray(c, dtype=np.float32)) for c in (dx, dy, dz))
    shape = np.broadcast_shapes(*(c.shape for c in comps))
    # A zero component would give 0 * inf = NaN in the slab test; 1e-30 gives 1e30 instead.
    inv = tuple((np.float32(1.0) / np.where(c == 0, np.float32(1e-30), c)).astype(np.float32)
                for c in comps)
    return Rays(comps, inv, (int(shape[0]), int(shape[1])))  # type: ignore[arg-type]


def _cut(a: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Window of a broadcastable component (size-1 axes are kept whole)."""
    return a[slice(r0, r1) if a.shape[0] > 1 else slice(None),
             slice(c0, c1) if a.shape[1] > 1 else slice(None)]


Origin = tuple  # 3 floats, or 3 arrays [1, window columns] (one origin per column)


def _offset(bound: float, o) -> np.ndarray:
    """``bound - o`` in float32, like a Python float times a float32 array (``o`` may be an
    array of per-column origins)."""
    if isinstance(o, np.ndarray):
        return (bound - o).astype(np.float32)
    return float(bound - o)  # type: ignore[return-value]


def _box_t(lo: np.ndarray, hi: np.ndarray, o: Origin, rays: Rays,
           win: tuple[int, int, int, int]) -> np.ndarray:
    """Entry distance of the rays of a window into a box, ``inf`` where they miss (slab test)."""
    tmin = tmax = None
    for k in range(3):
        ik = _cut(rays.inv[k], *win)
        a = _offset(lo[k], o[k]) * ik
        b = _offset(hi[k], o[k]) * ik
        near, far = np.minimum(a, b), np.maximum(a, b)
        tmin = near if tmin is None else np.maximum(tmin, near)
        tmax = far if tmax is None else np.minimum(tmax, far)
    return np.where((tmax >= tmin) & (tmin > _EPS), tmin, np.float32(np.inf))


def _ellipsoid_t(lo: np.ndarray, hi: np.ndarray, o: Origin, rays: Rays,
                 win: tuple[int, int, int, int]) -> np.ndarray:
    """Entry distance into the ellipsoid inscribed in ``lo``-``hi``, ``inf`` where they miss."""
    c = (lo + hi) / 2.0
    r = (hi - lo) / 2.0
    # Scale space so the ellipsoid is the unit sphere; float64: the quadratic cancels badly.
    d = [_cut(rays.d[k], *win).astype(np.float64) / r[k] for k in range(3)]
    oc = [(o[k] - c[k]) / r[k] for k in range(3)]
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    b = oc[0] * d[0] + oc[1] * d[1] + oc[2] * d[2]
    cc = oc[0] ** 2 + oc[1] ** 2 + oc[2] ** 2 - 1.0
    disc = b * b - a * cc
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    return np.where((disc >= 0) & (t > _EPS), t, np.inf).astype(np.float32)


Window = tuple[int, int, int, int, int]  # primitive, row0, row1, col0, col1


def trace(prims: Primitives, origin: np.ndarray, rays: Rays, windows: Iterable[Window],
          t: np.ndarray, label: np.ndarray,
          drift: Optional[tuple[np.ndarray, np.ndarray]] = None) -> None:
    """Z-buffer the primitives into ``t`` [R, C] float32 and ``label`` [R, C] int32 in place.

    ``origin`` is one ray origin [3] or one per column [3, 1, C] (a rotating LiDAR that moves
    during its sweep). ``drift`` = (velocities [P, 3] m/s, dt [1, C] s): the primitives are
    where they are ``dt`` after ``prims`` when column ``c`` is cast (per-column origins only).
    """
    per_column = np.ndim(origin) > 1
    o: Origin = () if per_column else tuple(float(v) for v in origin)
    for p, r0, r1, c0, c1 in windows:
        win = (r0, r1, c0, c1)
        if per_column:
            o = _column_origin(origin, p, c0, c1, drift)
        cast = _ellipsoid_t if prims.ellipsoid[p] else _box_t
        hit = cast(prims.lo[p], prims.hi[p], o, rays, win)
        tw = t[r0:r1, c0:c1]
        closer = hit < tw
        if closer.shape != tw.shape:
            closer = np.broadcast_to(closer, tw.shape)
            hit = np.broadcast_to(hit, tw.shape)
        np.copyto(tw, hit, where=closer)
        label[r0:r1, c0:c1][closer] = p + 1


def _column_origin(origin: np.ndarray, p: int, c0: int, c1: int,
                   drift: Optional[tuple[np.ndarray, np.ndarray]]) -> Origin:
    """Origins [1, c1 - c0] of columns ``c0:c1`` relative to primitive ``p`` when each is cast:
    a primitive moving by ``v dt`` is the origin moving by ``-v dt``."""
    out = []
    for k in range(3):
        ok = origin[k][:, c0:c1]
        if drift is not None and drift[0][p, k] != 0:
            ok = ok - drift[0][p, k] * drift[1][:, c0:c1]
        out.append(ok)
    return tuple(out)


def ground_distance(ground_y: float, origin: np.ndarray, rays: Rays) -> np.ndarray:
    """Distance along the rays to the ground plane (``inf`` where they do not reach it);
    ``origin`` [3] or one per column [3, 1, C]."""
    dy, iy = rays.d[1], rays.inv[1]
    return np.where(dy > 1e-9, _offset(ground_y, origin[1]) * iy, np.float32(np.inf))
