"""A ray-cast street: road, sidewalks, facades, parked and moving vehicles, poles, trees, sky.

The world frame is an optical-style frame (x right, y down, z forward) with the ground plane at
``y = ground_y`` below the camera's starting position; the ego lane is centred on ``x = 0`` and
the road runs along +z. Every object is a primitive with an axis-aligned bounding box: boxes
and axis-aligned ellipsoids. Moving primitives have a velocity; ``time`` arguments (seconds of
drive time) place them.

Cameras and LiDARs are ray casters over the same geometry, so camera depth and LiDAR ranges
agree exactly (up to the noise added on purpose), and a LiDAR mounted apart from the camera sees
past foreground edges as real rigs do. Sweeps are instantaneous (as if motion-compensated to the
sweep stamp).

Speed comes from culling, not from approximations: for each frame every primitive's bounding
box is mapped to the window of rays that can hit it (a pixel rectangle for the camera, a
beam x azimuth block for the LiDAR), and only those rays are tested. Camera rays are separable
(``x/z`` depends on the column, ``y/z`` on the row), so a camera window costs a few broadcast
operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, NamedTuple, Optional, Sequence

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.transforms import RigidTransform

# LiDAR body frame (x forward, y left, z up) -> camera optical frame (x right, y down, z fwd).
BODY_TO_OPTICAL = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])

SKY = -1  # hit label of rays that hit nothing
GROUND = 0  # hit label of the ground plane; primitive i has label 1 + i

# Surface materials: albedo texture for the camera, reflectivity for the LiDAR.
MATERIALS = ('plain', 'facade', 'concrete', 'paint', 'glass', 'rubber', 'metal', 'bark',
             'foliage')
_MATERIAL_ID = {name: i for i, name in enumerate(MATERIALS)}
_REFLECTIVITY = np.array([0.3, 0.3, 0.35, 0.4, 0.08, 0.05, 0.5, 0.2, 0.4])
_ASPHALT_REFLECTIVITY = 0.12
_MARKING_REFLECTIVITY = 0.7

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
_BIG = np.float32(1e30)
_SKY_HORIZON = np.array([0.78, 0.83, 0.9])
_SKY_ZENITH = np.array([0.33, 0.52, 0.85])
_HAZE_DISTANCE = 450.0  # m: aerial perspective, colour -> horizon sky with distance


def _vec3(v: Sequence[float], name: str) -> tuple[float, float, float]:
    t = tuple(float(x) for x in v)
    if len(t) != 3 or not all(np.isfinite(t)):
        raise ValueError(f'{name} must be 3 finite numbers, got {v!r}')
    return t  # type: ignore[return-value]


def _check_material(material: str) -> None:
    if material not in _MATERIAL_ID:
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


class _Rays(NamedTuple):
    """A 2-D grid of rays: direction components broadcastable to ``shape``, and inverses."""

    d: tuple[np.ndarray, np.ndarray, np.ndarray]  # each [R or 1, C or 1] float32
    inv: tuple[np.ndarray, np.ndarray, np.ndarray]  # 1 / d, zeros replaced by tiny values
    shape: tuple[int, int]


def _make_rays(dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> _Rays:
    comps = tuple(np.atleast_2d(np.asarray(c, dtype=np.float32)) for c in (dx, dy, dz))
    shape = np.broadcast_shapes(*(c.shape for c in comps))
    # A zero component would give 0 * inf = NaN in the slab test; 1e-30 gives 1e30 instead.
    inv = tuple((np.float32(1.0) / np.where(c == 0, np.float32(1e-30), c)).astype(np.float32)
                for c in comps)
    return _Rays(comps, inv, (int(shape[0]), int(shape[1])))  # type: ignore[arg-type]


def _cut(a: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Window of a broadcastable component (size-1 axes are kept whole)."""
    return a[slice(r0, r1) if a.shape[0] > 1 else slice(None),
             slice(c0, c1) if a.shape[1] > 1 else slice(None)]


def _box_t(lo: np.ndarray, hi: np.ndarray, o: tuple[float, float, float], rays: _Rays,
           win: tuple[int, int, int, int]) -> np.ndarray:
    """Entry distance of the rays of a window into a box, ``inf`` where they miss (slab test)."""
    tmin = tmax = None
    for k in range(3):
        ik = _cut(rays.inv[k], *win)
        a = float(lo[k] - o[k]) * ik
        b = float(hi[k] - o[k]) * ik
        near, far = np.minimum(a, b), np.maximum(a, b)
        tmin = near if tmin is None else np.maximum(tmin, near)
        tmax = far if tmax is None else np.minimum(tmax, far)
    return np.where((tmax >= tmin) & (tmin > _EPS), tmin, np.float32(np.inf))


def _ellipsoid_t(lo: np.ndarray, hi: np.ndarray, o: tuple[float, float, float], rays: _Rays,
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


def _trace(prims: Primitives, origin: np.ndarray, rays: _Rays, windows: Iterable[Window],
           t: np.ndarray, label: np.ndarray) -> None:
    """Z-buffer the primitives into ``t`` [R, C] float32 and ``label`` [R, C] int32 in place."""
    o = tuple(float(v) for v in origin)
    for p, r0, r1, c0, c1 in windows:
        win = (r0, r1, c0, c1)
        cast = _ellipsoid_t if prims.ellipsoid[p] else _box_t
        hit = cast(prims.lo[p], prims.hi[p], o, rays, win)
        tw = t[r0:r1, c0:c1]
        closer = hit < tw
        if closer.shape != tw.shape:
            closer = np.broadcast_to(closer, tw.shape)
            hit = np.broadcast_to(hit, tw.shape)
        np.copyto(tw, hit, where=closer)
        label[r0:r1, c0:c1][closer] = p + 1


def _ground_t(ground_y: float, origin: np.ndarray, rays: _Rays) -> np.ndarray:
    dy, iy = rays.d[1], rays.inv[1]
    return np.where(dy > 1e-9, float(ground_y - origin[1]) * iy, np.float32(np.inf))


# ----------------------------------------------------------------------------- textures


def _hash(i: np.ndarray, j: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) of integer lattice points."""
    h = (np.asarray(i, np.int64).view(np.uint64) * np.uint64(0x9E3779B1)
         ^ np.asarray(j, np.int64).view(np.uint64) * np.uint64(0x85EBCA77)
         ^ (np.asarray(seed, np.int64).view(np.uint64) + np.uint64(1)) * np.uint64(0xC2B2AE3D))
    h &= np.uint64(0xFFFFFFFF)
    h = ((h >> np.uint64(16)) ^ h) * np.uint64(0x45D9F3B) & np.uint64(0xFFFFFFFF)
    h = ((h >> np.uint64(16)) ^ h) * np.uint64(0x45D9F3B) & np.uint64(0xFFFFFFFF)
    h = (h >> np.uint64(16)) ^ h
    return (h & np.uint64(0xFFFFFF)).astype(np.float32) / np.float32(0x1000000)


def _noise(u: np.ndarray, v: np.ndarray, scale: float, seed: np.ndarray | int = 0) -> np.ndarray:
    """Smooth value noise in [0, 1] with features of about ``scale`` metres."""
    fu, fv = u / scale, v / scale
    iu, iv = np.floor(fu), np.floor(fv)
    tu, tv = fu - iu, fv - iv
    tu, tv = tu * tu * (3 - 2 * tu), tv * tv * (3 - 2 * tv)
    iu, iv = iu.astype(np.int64), iv.astype(np.int64)
    a = _hash(iu, iv, seed)
    b = _hash(iu + 1, iv, seed)
    c = _hash(iu, iv + 1, seed)
    d = _hash(iu + 1, iv + 1, seed)
    return ((a * (1 - tu) + b * tu) * (1 - tv) + (c * (1 - tu) + d * tu) * tv).astype(np.float32)


def road_marking(x: np.ndarray, z: np.ndarray, crosswalks: Sequence[float] = ()) -> np.ndarray:
    """Mask of painted road markings at ground points (x, z): lane lines and zebra crossings."""
    mark = (np.abs(x - CENTRE_LINE_X) < MARKING_HALF_WIDTH) & (np.mod(z, 9.0) < 3.0)
    for ex in EDGE_LINES_X:
        mark |= np.abs(x - ex) < MARKING_HALF_WIDTH
    for zc in crosswalks:
        mark |= ((z >= zc) & (z < zc + 4.0) & (x > EDGE_LINES_X[1] + 0.3)
                 & (x < EDGE_LINES_X[0] - 0.3) & (np.mod(x - CENTRE_LINE_X, 1.1) < 0.55))
    return mark


def _ground_albedo(x: np.ndarray, z: np.ndarray,
                   crosswalks: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    base = (0.25 + 0.08 * _noise(x, z, 0.7, 11) + 0.06 * _noise(x, z, 5.0, 12))[:, None]
    rgb = base * np.array([1.0, 1.0, 1.03], np.float32)
    mark = road_marking(x, z, crosswalks)
    worn = 0.78 + 0.12 * _noise(x[mark], z[mark], 0.4, 13)
    rgb[mark] = worn[:, None]
    refl = np.where(mark, _MARKING_REFLECTIVITY, _ASPHALT_REFLECTIVITY)
    return rgb, refl


def _facade_albedo(color: np.ndarray, s: np.ndarray, h: np.ndarray, seed: np.ndarray,
                   vertical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wall with floors of windows on vertical faces; ``s`` along the wall, ``h`` height."""
    wall = color * (0.82 + 0.22 * _noise(s, h, 1.7, seed))[:, None]
    floor = np.floor(h / 3.2)
    fh = h - floor * 3.2
    band = vertical & (fh < 0.18) & (floor > 0)
    wall[band] *= 1.15
    col = np.floor(s / 2.8)
    fs = s - col * 2.8
    ground_floor = floor == 0
    half = np.where(ground_floor, 1.0, 0.6)
    win = vertical & (np.abs(fs - 1.4) < half) & np.where(ground_floor, (fh > 0.4) & (fh < 2.6),
                                                          (fh > 0.9) & (fh < 2.4))
    shade = _hash(col[win].astype(np.int64), floor[win].astype(np.int64), seed[win])
    glass = np.array([0.1, 0.13, 0.18], np.float32) + 0.12 * shade[:, None]
    lit = shade > 0.9
    glass[lit] = np.array([0.75, 0.68, 0.45], np.float32)
    wall[win] = glass
    refl = np.where(win, _REFLECTIVITY[_MATERIAL_ID['glass']], _REFLECTIVITY[1])
    return wall, refl


class _Surface(NamedTuple):
    albedo: np.ndarray  # [N, 3] float32 in [0, 1]
    normal: np.ndarray  # [N, 3] float32, unit, world frame
    reflectivity: np.ndarray  # [N] float32 in [0, 1]


def _surface(scene: 'Scene', prims: Primitives, points: np.ndarray,
             label: np.ndarray) -> _Surface:
    """Albedo, normal and LiDAR reflectivity at hit ``points`` [N, 3] with labels >= 0."""
    n = label.shape[0]
    albedo = np.zeros((n, 3), np.float32)
    normal = np.zeros((n, 3), np.float32)
    refl = np.zeros(n, np.float32)
    x, z = points[:, 0], points[:, 2]

    g = label == GROUND
    if g.any():
        albedo[g], refl[g] = _ground_albedo(x[g], z[g], scene.crosswalks)
        normal[g] = (0.0, -1.0, 0.0)

    idx = label - 1
    obj = label > GROUND
    if not obj.any():
        return _Surface(albedo, normal, refl)
    i = idx[obj]
    p = points[obj]
    lo, hi = prims.lo[i], prims.hi[i]
    is_ell = prims.ellipsoid[i]
    nrm = np.zeros(p.shape, np.float64)
    # Boxes: the face nearest to the hit point.
    dist = np.concatenate([np.abs(p - lo), np.abs(p - hi)], axis=1)  # [M, 6]
    face = np.argmin(dist, axis=1)
    nrm[np.arange(face.size), face % 3] = np.where(face < 3, -1.0, 1.0)
    # Ellipsoids: gradient of the implicit function.
    if is_ell.any():
        c = (lo[is_ell] + hi[is_ell]) / 2
        r = (hi[is_ell] - lo[is_ell]) / 2
        grad = (p[is_ell] - c) / r ** 2
        nrm[is_ell] = grad / np.linalg.norm(grad, axis=1, keepdims=True)
    # Face coordinates: s along the face, h height above the primitive's base.
    axis = np.where(is_ell, 1, face % 3)
    h = (hi[:, 1] - p[:, 1]).astype(np.float32)
    s = np.where(axis == 0, p[:, 2] - lo[:, 2], p[:, 0] - lo[:, 0]).astype(np.float32)
    s = np.where(axis == 1, p[:, 2], s).astype(np.float32)
    h = np.where(axis == 1, p[:, 0], h).astype(np.float32)
    seed = i.astype(np.int64)
    mat = prims.material[i]
    base = prims.color[i].astype(np.float32)
    alb = base.copy()
    rf = _REFLECTIVITY[mat].astype(np.float32)
    vertical = axis != 1

    m = mat == _MATERIAL_ID['facade']
    if m.any():
        alb[m], rf[m] = _facade_albedo(base[m], s[m], h[m], seed[m], vertical[m])
    m = mat == _MATERIAL_ID['concrete']
    if m.any():
        tex = 0.9 + 0.12 * _noise(p[m, 0].astype(np.float32), p[m, 2].astype(np.float32), 0.9,
                                  seed[m])
        joint = (~vertical[m]) & (np.mod(p[m, 2], 1.8) < 0.06)
        alb[m] = base[m] * np.where(joint, 0.8, tex)[:, None]
    m = np.isin(mat, (_MATERIAL_ID['plain'], _MATERIAL_ID['metal']))
    if m.any():
        alb[m] = base[m] * (0.88 + 0.16 * _noise(s[m], h[m], 1.2, seed[m]))[:, None]
    m = mat == _MATERIAL_ID['bark']
    if m.any():
        alb[m] = base[m] * (0.75 + 0.35 * _noise(s[m] * 4, h[m], 0.25, seed[m]))[:, None]
    m = mat == _MATERIAL_ID['foliage']
    if m.any():
        q = p[m].astype(np.float32)
        tex = 0.6 * _noise(q[:, 0] + 0.7 * q[:, 1], q[:, 2] - 0.5 * q[:, 1], 0.35, seed[m]) \
            + 0.4 * _noise(q[:, 0] - q[:, 1], q[:, 2] + 0.3 * q[:, 1], 0.9, seed[m] + 7)
        alb[m] = base[m] * (0.5 + 0.9 * tex)[:, None]
    m = mat == _MATERIAL_ID['glass']
    if m.any():
        # Glass reflects the sky a little: brighter towards the top of the pane.
        alb[m] = base[m] + (0.08 + 0.12 * _noise(s[m], h[m], 0.8, seed[m]))[:, None]

    albedo[obj] = np.clip(alb, 0, 1)
    normal[obj] = nrm
    refl[obj] = rf
    return _Surface(albedo, normal, refl)


def _sky(dirs: np.ndarray) -> np.ndarray:
    """Sky colour [N, 3] of world directions [N, 3] (brighter at the horizon)."""
    elev = np.clip(-dirs[:, 1] / np.linalg.norm(dirs, axis=1), 0, 1)
    w = (np.clip(elev * 2.5, 0, 1) ** 0.7)[:, None]
    return (_SKY_HORIZON * (1 - w) + _SKY_ZENITH * w).astype(np.float32)


# ----------------------------------------------------------------------------- scene


@dataclass
class Scene:
    """Ground plane plus primitives; everything else is sky (no return, infinite depth)."""

    ground_y: float = 1.65
    boxes: list[Box] = field(default_factory=list)
    ellipsoids: list[Ellipsoid] = field(default_factory=list)
    crosswalks: tuple[float, ...] = ()  # z (m) where a zebra crossing starts
    sun: tuple[float, float, float] = (-0.35, -0.8, 0.5)  # towards the sun, world frame

    @classmethod
    def street(cls, seed: int = 0, length: float = 250.0, start: float = -40.0,
               parked: tuple[float, float] = (0.75, 0.3)) -> 'Scene':
        """A straight two-lane street along +z from ``start`` for ``length`` metres.

        Asphalt with lane markings and zebra crossings, curbs and raised sidewalks, building
        facades with windows (alleys between some), cars parked along both curbs, a lead car
        in the ego lane and oncoming traffic (moving), street lights, trees and bushes.
        ``parked`` is the occupancy of the parking strips (left, right): sparse on the ego's
        side, where a car parked beside the camera shows the LiDAR (mounted higher) much of
        what its roof hides from the camera. Deterministic by ``seed``; each kind of object
        on each side has its own random stream, so a longer street extends the same one.
        """
        if not length > 0:
            raise ValueError(f'street length must be > 0 m, got {length}')

        def stream(kind: int, side: int = 0) -> np.random.Generator:
            return np.random.default_rng([seed, kind, side + 1])

        g = 1.65
        end = start + length
        boxes: list[Box] = []
        ells: list[Ellipsoid] = []
        top = g - CURB_HEIGHT  # sidewalk surface (y down)
        concrete = (0.62, 0.61, 0.58)
        for x0, x1 in SIDEWALK_X:  # sidewalks in 20 m slabs: small culling windows
            z = start
            while z < end:
                boxes.append(Box((x0, top, z), (x1, g, min(z + 20.0, end)), concrete,
                                 'concrete'))
                z += 20.0
        palette = np.array([[0.62, 0.33, 0.25], [0.78, 0.7, 0.56], [0.6, 0.6, 0.62],
                            [0.85, 0.82, 0.74], [0.52, 0.42, 0.36], [0.72, 0.55, 0.4]])
        for side in (1, -1):  # buildings
            rng = stream(1, side)
            z = start
            while z < end:
                w, h, depth = rng.uniform(8, 22), rng.uniform(6, 24), rng.uniform(8, 14)
                setback = float(rng.choice([0.0, 0.0, 0.6, 1.5]))
                color = tuple(np.clip(palette[rng.integers(len(palette))]
                                      * rng.uniform(0.85, 1.1), 0, 1))
                if side > 0:
                    xf = SIDEWALK_X[0][1] + setback
                    lo, hi = (xf, g - h, z), (xf + depth, g, z + w)
                else:
                    xf = SIDEWALK_X[1][0] - setback
                    lo, hi = (xf - depth, g - h, z), (xf, g, z + w)
                boxes.append(Box(lo, hi, color, 'facade'))
                if rng.random() < 0.4:  # a hedge in front of it
                    bz = z + rng.uniform(1, max(1.5, w - 3))
                    ells.append(Ellipsoid((xf - side * 0.55, top - 0.45, bz + 1.0),
                                          (0.5, 0.5, rng.uniform(0.8, 1.6)),
                                          (0.2, 0.36, 0.14)))
                z += w + (rng.uniform(2.5, 5.0) if rng.random() < 0.25 else 0.0)
        for side in (1, -1):  # parked cars
            rng = stream(2, side)
            xc = (EDGE_LINES_X[0] + CURB_X[0]) / 2 if side > 0 else \
                (EDGE_LINES_X[1] + CURB_X[1]) / 2
            z = start + rng.uniform(0, 4)
            while z < end:
                van = rng.random() < 0.2
                if rng.random() < parked[0 if side < 0 else 1]:
                    boxes += _vehicle(xc, z, g, rng, van=van)
                z += (5.4 if van else 4.4) + rng.uniform(1.0, 6.0)
        for side in (1, -1):  # street lights and trees on the sidewalks
            curb = CURB_X[0] if side > 0 else CURB_X[1]
            rng = stream(3, side)
            z = start + rng.uniform(0, 10)
            while z < end:
                px = curb + side * 0.45
                boxes.append(Box((px - 0.09, top - 7.0, z - 0.09), (px + 0.09, top, z + 0.09),
                                 (0.45, 0.46, 0.48), 'metal'))
                boxes.append(Box((px - side * 2.2 if side > 0 else px, top - 7.1, z - 0.06),
                                 (px if side > 0 else px - side * 2.2, top - 6.95, z + 0.06),
                                 (0.45, 0.46, 0.48), 'metal'))
                z += rng.uniform(24, 34)
            rng = stream(4, side)
            z = start + rng.uniform(5, 15)
            while z < end:
                tx = curb + side * 1.9
                trunk = rng.uniform(2.2, 3.2)
                boxes.append(Box((tx - 0.15, top - trunk, z - 0.15), (tx + 0.15, top, z + 0.15),
                                 (0.36, 0.26, 0.17), 'bark'))
                rx, ry = rng.uniform(1.3, 2.1), rng.uniform(1.2, 2.0)
                green = (rng.uniform(0.15, 0.25), rng.uniform(0.32, 0.45), rng.uniform(0.1, 0.16))
                ells.append(Ellipsoid((tx, top - trunk - 0.7 * ry, z), (rx, ry, rx), green))
                z += rng.uniform(11, 19)
        # Moving traffic: a lead car in the ego lane, another further on, oncoming cars.
        rng = stream(5)
        boxes += _vehicle(0.0, rng.uniform(16, 22), g, rng, velocity=rng.uniform(9.0, 11.0))
        boxes += _vehicle(0.0, rng.uniform(55, 75), g, rng, velocity=rng.uniform(9.0, 12.0))
        rng = stream(6)
        z = start + rng.uniform(20, 40)
        while z < end + 100:
            oncoming = (CENTRE_LINE_X + EDGE_LINES_X[1]) / 2
            boxes += _vehicle(oncoming, z, g, rng, velocity=-rng.uniform(8.0, 13.0),
                              van=rng.random() < 0.2)
            z += rng.uniform(25, 50)
        crosswalks = (float(stream(7).uniform(28, 40)),) + tuple(
            float(v) for v in np.arange(start + 140, end - 10, 110.0))
        return cls(ground_y=g, boxes=boxes, ellipsoids=ells, crosswalks=crosswalks)

    def primitives(self, time: float = 0.0) -> Primitives:
        """All primitives as arrays, moved to drive ``time`` (s)."""
        items: list = list(self.boxes) + list(self.ellipsoids)
        if not items:
            z3 = np.zeros((0, 3))
            return Primitives(z3, z3, np.zeros(0, bool), np.zeros(0, np.int64), z3)
        lo = np.array([b.lo if isinstance(b, Box) else
                       np.subtract(b.center, b.radii) for b in items], dtype=np.float64)
        hi = np.array([b.hi if isinstance(b, Box) else
                       np.add(b.center, b.radii) for b in items], dtype=np.float64)
        vel = np.array([b.velocity for b in items], dtype=np.float64)
        if time:
            lo, hi = lo + vel * time, hi + vel * time
        return Primitives(lo, hi, np.array([isinstance(b, Ellipsoid) for b in items]),
                          np.array([_MATERIAL_ID[b.material] for b in items], np.int64),
                          np.array([b.color for b in items], dtype=np.float64))

    def raycast(self, origin: np.ndarray, dirs: np.ndarray,
                time: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Distance along arbitrary ``dirs`` [N, 3] (world) to the first hit, and its label.

        Returns ``t`` [N] float32 (``inf`` for sky; in units of ``|dir|``) and ``hit`` [N]
        int32 (``SKY`` -1, ``GROUND`` 0, 1 + i primitive i: boxes, then ellipsoids). Tests
        every primitive against every ray (no culling): the reference for the fast casters of
        :func:`render_camera` and :func:`scan_lidar`.
        """
        o = np.asarray(origin, dtype=np.float64)
        d = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
        prims = self.primitives(time)
        t_all = np.empty(d.shape[0], np.float32)
        hit_all = np.empty(d.shape[0], np.int32)
        chunk = 1 << 16
        for s in range(0, d.shape[0], chunk):
            rays = _make_rays(*(d[s:s + chunk, k:k + 1] for k in range(3)))
            t = _ground_t(self.ground_y, o, rays).copy()
            hit = np.where(np.isfinite(t), GROUND, SKY).astype(np.int32)
            n = rays.shape[0]
            _trace(prims, o, rays, ((p, 0, n, 0, 1) for p in range(prims.count)), t, hit)
            t_all[s:s + chunk] = t[:, 0]
            hit_all[s:s + chunk] = hit[:, 0]
        return t_all, hit_all

    def shade(self, points: np.ndarray, hit: np.ndarray, dirs: np.ndarray,
              time: float = 0.0, distance: Optional[np.ndarray] = None) -> np.ndarray:
        """RGB float32 [N, 3] in [0, 1] seen along ``dirs`` at world ``points`` [N, 3].

        Lambertian shading under a sun and sky light, plus haze with ``distance`` (m; defaults
        to none). Sky where ``hit < 0``.
        """
        n = hit.shape[0]
        rgb = np.empty((n, 3), np.float32)
        sky = hit < 0
        d = np.asarray(dirs, np.float32)
        rgb[sky] = _sky(d[sky])
        if (~sky).any():
            surf = _surface(self, self.primitives(time), np.asarray(points, np.float64)[~sky],
                            hit[~sky])
            sun = np.asarray(self.sun, np.float32)
            sun /= np.linalg.norm(sun)
            lambert = np.clip(surf.normal @ sun, 0, 1)
            skylight = 0.5 + 0.25 * np.clip(-surf.normal[:, 1], -1, 1)
            lit = surf.albedo * (0.95 * lambert + 0.55 * skylight)[:, None]
            if distance is not None:
                fog = np.exp(-np.asarray(distance, np.float32)[~sky] / _HAZE_DISTANCE)[:, None]
                lit = lit * fog + _SKY_HORIZON.astype(np.float32) * (1 - fog)
            rgb[~sky] = lit
        return np.clip(rgb, 0, 1)


def _vehicle(x: float, z0: float, g: float, rng: np.random.Generator, van: bool = False,
             velocity: float = 0.0) -> list[Box]:
    """Boxes of a car or van centred on ``x``, rear at ``z0``, moving along z at ``velocity``."""
    length, width = (5.2, 2.0) if van else (4.3, 1.8)
    paints = np.array([[0.75, 0.1, 0.08], [0.12, 0.2, 0.5], [0.85, 0.85, 0.86], [0.1, 0.1, 0.11],
                       [0.55, 0.56, 0.58], [0.2, 0.35, 0.25], [0.85, 0.7, 0.2]])
    paint = tuple(np.clip(paints[rng.integers(len(paints))] * rng.uniform(0.85, 1.1), 0, 1))
    v = (0.0, 0.0, float(velocity))
    hw = width / 2
    glass = (0.07, 0.08, 0.1)
    tyre = (0.05, 0.05, 0.05)
    body_top = g - (2.3 if van else 1.05)
    boxes = [Box((x - hw, body_top, z0), (x + hw, g - 0.3, z0 + length), paint, 'paint', v)]
    if van:
        boxes.append(Box((x - hw + 0.05, g - 2.1, z0 + length - 0.9),
                         (x + hw - 0.05, g - 1.3, z0 + length - 0.2), glass, 'glass', v))
    else:
        boxes.append(Box((x - hw + 0.1, g - 1.5, z0 + 1.0), (x + hw - 0.1, body_top,
                                                             z0 + length - 1.3),
                         glass, 'glass', v))
    for zc in (z0 + 0.8, z0 + length - 0.9):  # wheel pairs
        boxes.append(Box((x - hw + 0.02, g - 0.66, zc - 0.33), (x + hw - 0.02, g, zc + 0.33),
                         tyre, 'rubber', v))
    return boxes


# ----------------------------------------------------------------------------- camera


@dataclass(frozen=True)
class RenderedFrame:
    """One camera frame: image and exact depth."""

    rgb: np.ndarray  # [H, W, 3] uint8
    depth: np.ndarray  # [H, W] float32, metres along optical Z; inf = sky
    position: np.ndarray  # [3] float64, camera centre in the world
    labels: Optional[np.ndarray] = None  # [H, W] int32: SKY, GROUND or 1 + primitive index


def _camera_windows(prims: Primitives, origin: np.ndarray,
                    camera: PinholeCamera) -> list[Window]:
    """Pixel rectangles that can see each primitive (world-aligned camera at ``origin``)."""
    near = 1e-3
    lo, hi = prims.lo - origin, prims.hi - origin
    zlo = np.maximum(lo[:, 2], near)  # clip to the half-space in front of the camera
    zhi = hi[:, 2]
    vis = zhi > near
    zhi = np.maximum(zhi, 2 * near)
    out: list[Window] = []
    # x/z and y/z over a box in front of the camera are extreme at its corners.
    rx = np.stack([a / b for a in (lo[:, 0], hi[:, 0]) for b in (zlo, zhi)])
    ry = np.stack([a / b for a in (lo[:, 1], hi[:, 1]) for b in (zlo, zhi)])
    c0 = np.clip(np.floor(camera.fx * rx.min(0) + camera.cx) - 1, 0, camera.width)
    c1 = np.clip(np.ceil(camera.fx * rx.max(0) + camera.cx) + 2, 0, camera.width)
    r0 = np.clip(np.floor(camera.fy * ry.min(0) + camera.cy) - 1, 0, camera.height)
    r1 = np.clip(np.ceil(camera.fy * ry.max(0) + camera.cy) + 2, 0, camera.height)
    keep = vis & (c1 > c0) & (r1 > r0)
    for p in np.flatnonzero(keep):
        out.append((int(p), int(r0[p]), int(r1[p]), int(c0[p]), int(c1[p])))
    return out


def render_camera(scene: Scene, camera: PinholeCamera,
                  position: Sequence[float] = (0.0, 0.0, 0.0),
                  time: float = 0.0) -> RenderedFrame:
    """Render image and exact depth for a camera at ``position`` looking along +z.

    ``time`` (s of drive time) places the moving primitives.
    """
    origin = np.asarray(position, dtype=np.float64)
    h, w = camera.height, camera.width
    xr = ((np.arange(w) - camera.cx) / camera.fx).astype(np.float32)[None, :]  # [1, W]
    yr = ((np.arange(h) - camera.cy) / camera.fy).astype(np.float32)[:, None]  # [H, 1]
    rays = _make_rays(xr, yr, np.ones((1, 1), np.float32))
    t = np.ascontiguousarray(np.broadcast_to(_ground_t(scene.ground_y, origin, rays), (h, w)))
    label = np.where(np.isfinite(t), GROUND, SKY).astype(np.int32)
    prims = scene.primitives(time)
    _trace(prims, origin, rays, _camera_windows(prims, origin, camera), t, label)
    # Shade: directions have z = 1, so t is the depth along the optical axis.
    dirs = np.empty((h, w, 3), np.float32)
    dirs[..., 0], dirs[..., 1], dirs[..., 2] = xr, yr, 1.0
    dirs = dirs.reshape(-1, 3)
    tf = np.where(np.isfinite(t), t, 0).reshape(-1, 1)
    pts = origin + dirs.astype(np.float64) * tf
    dist = tf[:, 0] * np.linalg.norm(dirs, axis=1)
    rgb = scene.shade(pts, label.reshape(-1), dirs, time, dist)
    img = (rgb.reshape(h, w, 3) * 255 + 0.5).astype(np.uint8)
    return RenderedFrame(img, t, origin, label)


# ----------------------------------------------------------------------------- LiDAR


@dataclass(frozen=True)
class LidarModel:
    """Spinning multi-beam LiDAR (HDL-64E-like defaults).

    Beam elevations (deg, +up), azimuth step (deg), sweep rate (Hz), maximum range (m), range
    noise (1-sigma, m, Gaussian along the beam), the fraction of returns randomly dropped, the
    horizontal field of view published (deg, centred on forward; less than 360 crops the sweep
    to a sector as velodyne_pointcloud's ``view_width`` does) and the grid (m) the point
    coordinates are rounded to (1/512 m, about 2 mm like a sensor's range resolution: exact
    in float32 and much more compressible; 0 keeps them unrounded).
    ``exact()`` is the same sensor without noise, dropouts and rounding.
    """

    elevations_deg: tuple[float, ...] = tuple(np.linspace(2.0, -24.8, 64).tolist())
    azimuth_step_deg: float = 0.2
    max_range: float = 120.0
    range_noise: float = 0.02
    dropout: float = 0.03
    rate_hz: float = 10.0
    fov_deg: float = 360.0
    resolution: float = 2.0 ** -9

    def __post_init__(self) -> None:
        if len(self.elevations_deg) == 0:
            raise ValueError('LidarModel.elevations_deg must name at least one beam')
        if not 0 < self.azimuth_step_deg <= 90:
            raise ValueError(f'LidarModel.azimuth_step_deg must be in (0, 90], got '
                             f'{self.azimuth_step_deg}')
        if not self.max_range > 0:
            raise ValueError(f'LidarModel.max_range must be > 0 m, got {self.max_range}')
        if not self.range_noise >= 0:
            raise ValueError(f'LidarModel.range_noise must be >= 0 m, got {self.range_noise}')
        if not 0 <= self.dropout < 1:
            raise ValueError(f'LidarModel.dropout must be in [0, 1), got {self.dropout}')
        if not self.rate_hz > 0:
            raise ValueError(f'LidarModel.rate_hz must be > 0, got {self.rate_hz}')
        if not 0 < self.fov_deg <= 360:
            raise ValueError(f'LidarModel.fov_deg must be in (0, 360], got {self.fov_deg}')
        if not self.resolution >= 0:
            raise ValueError(f'LidarModel.resolution must be >= 0 m, got {self.resolution}')

    def exact(self) -> 'LidarModel':
        """The same LiDAR with exact returns: no range noise, no dropouts, no rounding."""
        return replace(self, range_noise=0.0, dropout=0.0, resolution=0.0)

    @property
    def azimuths_deg(self) -> np.ndarray:
        """Azimuths [A] float64 (deg, counter-clockwise from forward), ascending from -180."""
        az = np.arange(-180.0, 180.0, self.azimuth_step_deg)
        if self.fov_deg < 360:
            az = az[np.abs(az) <= self.fov_deg / 2 + 1e-9]
        return az

    def directions(self) -> np.ndarray:
        """Unit beam directions [B * A, 3] in the LiDAR body frame (x fwd, y left, z up).

        Beam-major: index ``b * A + a`` is beam ``b`` at azimuth ``a``.
        """
        return self._grid().reshape(-1, 3)

    def _grid(self) -> np.ndarray:
        el = np.deg2rad(np.asarray(self.elevations_deg, dtype=np.float64))
        az = np.deg2rad(self.azimuths_deg)
        e, a = np.meshgrid(el, az, indexing='ij')
        return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=-1)


@dataclass(frozen=True)
class LidarScan:
    """One sweep's returns, azimuth-major (as a spinning sensor fires), LiDAR body frame."""

    points: np.ndarray  # [N, 3] float32, metres, LiDAR body frame (x fwd, y left, z up)
    intensity: np.ndarray  # [N] float32, 0..255 (reflectivity x incidence), integral values
    ring: np.ndarray  # [N] uint16, beam index (order of elevations_deg)
    labels: np.ndarray  # [N] int32, GROUND or 1 + primitive index that was hit


def _lidar_windows(prims: Primitives, origin: np.ndarray, rotation: np.ndarray,
                   model: LidarModel) -> list[Window]:
    """Beam x azimuth blocks that can hit each primitive (conservative bounds)."""
    if prims.count == 0:
        return []
    el = np.deg2rad(np.asarray(model.elevations_deg, dtype=np.float64))
    az = model.azimuths_deg
    step = np.deg2rad(model.azimuth_step_deg)
    a0 = np.deg2rad(az[0])  # azimuth j is a0 + j * step
    n_az = az.size
    margin = 1e-4  # rad
    lo, hi = prims.lo - origin, prims.hi - origin
    corners = np.stack([np.stack([(lo, hi)[i][:, 0], (lo, hi)[j][:, 1], (lo, hi)[k][:, 2]], 1)
                        for i in (0, 1) for j in (0, 1) for k in (0, 1)], axis=1)  # [P, 8, 3]
    body = corners @ rotation  # rows: R^T p
    nearest = np.clip(0.0, lo, hi)  # the box point nearest to the LiDAR
    dmin = np.linalg.norm(nearest, axis=1)
    dmax = np.linalg.norm(corners, axis=2).max(1)
    inside = dmin < 1e-6
    zmin, zmax = body[..., 2].min(1), body[..., 2].max(1)
    dsafe = np.maximum(dmin, 1e-9)
    smax = np.where(zmax >= 0, zmax / dsafe, zmax / dmax)
    smin = np.where(zmin >= 0, zmin / dmax, zmin / dsafe)
    emax = np.arcsin(np.clip(smax, -1, 1)) + margin
    emin = np.arcsin(np.clip(smin, -1, 1)) - margin
    rho = np.hypot(body[..., 0], body[..., 1])
    ang = np.sort(np.arctan2(body[..., 1], body[..., 0]), axis=1)
    gaps = np.diff(ang, axis=1, append=ang[:, :1] + 2 * np.pi)
    k = np.argmax(gaps, axis=1)
    rows = np.arange(prims.count)
    arc_start = ang[rows, (k + 1) % 8]
    arc = 2 * np.pi - gaps[rows, k]
    # An arc of half a turn or more: the LiDAR is above/below the footprint; all azimuths.
    full = inside | (arc >= np.pi - 1e-9) | (rho.min(1) < 1e-6)
    keep = (dmin <= model.max_range) & (emax >= el.min()) & (emin <= el.max())
    out: list[Window] = []
    for p in np.flatnonzero(keep):
        beams = np.flatnonzero((el >= emin[p]) & (el <= emax[p]))
        if beams.size == 0:
            continue
        b0, b1 = int(beams[0]), int(beams[-1]) + 1
        if full[p]:
            out.append((int(p), b0, b1, 0, n_az))
            continue
        a_lo = arc_start[p] - margin
        a_hi = a_lo + arc[p] + 2 * margin
        for turn in (-2 * np.pi, 0.0, 2 * np.pi):  # the arc and its copies a turn away
            j0 = max(int(np.ceil((a_lo + turn - a0) / step)), 0)
            j1 = min(int(np.floor((a_hi + turn - a0) / step)) + 1, n_az)
            if j1 > j0:
                out.append((int(p), b0, b1, j0, j1))
    return out


def scan_lidar(scene: Scene, model: LidarModel, lidar_in_camera: RigidTransform,
               camera_position: Sequence[float] = (0.0, 0.0, 0.0), seed: int = 0,
               time: float = 0.0) -> LidarScan:
    """One sweep: returns within max range, with intensity, ring and labels.

    ``lidar_in_camera`` is the LiDAR's pose in the camera optical frame (the extrinsic the node
    is configured with); the camera's axes are aligned with the world's. ``seed`` draws the
    dropouts and the range noise; ``time`` (s of drive time) places the moving primitives.
    """
    rng = np.random.default_rng(seed)
    rot = np.asarray(lidar_in_camera.rotation, dtype=np.float64)
    origin = np.asarray(camera_position, dtype=np.float64) + lidar_in_camera.translation
    body = model._grid()  # [B, A, 3]
    world = body @ rot.T
    rays = _make_rays(world[..., 0], world[..., 1], world[..., 2])
    t = _ground_t(scene.ground_y, origin, rays).copy()
    label = np.where(np.isfinite(t), GROUND, SKY).astype(np.int32)
    prims = scene.primitives(time)
    _trace(prims, origin, rays, _lidar_windows(prims, origin, rot, model), t, label)
    # Azimuth-major, as the sensor fires: all beams at one azimuth, then the next azimuth.
    t, label = t.T.reshape(-1), label.T.reshape(-1)
    dirs_body = body.transpose(1, 0, 2).reshape(-1, 3)
    ring = np.broadcast_to(np.arange(body.shape[0], dtype=np.uint16)[None, :],
                           body.shape[1::-1]).reshape(-1)
    keep = np.isfinite(t) & (t <= model.max_range)
    if model.dropout > 0:
        keep &= rng.random(t.shape) >= model.dropout
    r = t[keep].astype(np.float64)
    label = label[keep]
    d_world = dirs_body[keep] @ rot.T
    pts_world = origin + d_world * r[:, None]
    surf = _surface(scene, prims, pts_world, label)
    cos = np.abs(np.einsum('ij,ij->i', surf.normal, d_world))
    intensity = np.rint(255.0 * surf.reflectivity * cos).astype(np.float32)
    if model.range_noise > 0:
        r = r + rng.normal(0.0, model.range_noise, r.shape)
    points = dirs_body[keep] * r[:, None]
    if model.resolution > 0:
        points = np.round(points / model.resolution) * model.resolution
    points = points.astype(np.float32)
    return LidarScan(points, intensity, ring[keep].copy(), label)


def lidar_sweep(scene: Scene, model: LidarModel, lidar_in_camera: RigidTransform,
                camera_position: Sequence[float] = (0.0, 0.0, 0.0), seed: int = 0,
                time: float = 0.0) -> np.ndarray:
    """One sweep's points [N, 3] float32 in the LiDAR body frame (see :func:`scan_lidar`)."""
    return scan_lidar(scene, model, lidar_in_camera, camera_position, seed, time).points


def default_extrinsic() -> RigidTransform:
    """LiDAR 0.3 m above and 0.3 m behind the camera, axes as a vehicle body frame."""
    return RigidTransform(BODY_TO_OPTICAL.copy(), np.array([0.0, -0.3, -0.3]))


# KITTI's rectified left colour camera (P_rect_02 of the raw calibration): 1242 x 375.
KITTI_SIZE = (1242, 375)
KITTI_FOCAL = 721.5377


def default_camera(width: int = 640, height: int = 480) -> PinholeCamera:
    """A KITTI-like rectified camera for a ``width`` x ``height`` image.

    KITTI's focal length scaled with the width (fx = fy = 721.54 at 1242 px: about 81 degrees
    wide, whatever the size), square pixels, principal point at the image centre.
    """
    f = KITTI_FOCAL * width / KITTI_SIZE[0]
    return PinholeCamera(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0)
