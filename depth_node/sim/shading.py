"""Appearance of the synthetic street: procedural textures, surface normals, sky, reflectivity.

Everything is a deterministic function of the hit point and the primitive's index (value noise
over an integer-lattice hash), so a frame renders identically on every machine. The camera uses
albedo and normal (:meth:`depth_node.sim.street.Scene.shade`), the LiDAR reflectivity and
normal (intensity).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np

from depth_node.sim.geometry import (CENTRE_LINE_X, EDGE_LINES_X, GROUND, MARKING_HALF_WIDTH,
                                     MATERIAL_ID, Primitives)

_REFLECTIVITY = np.array([0.3, 0.3, 0.35, 0.4, 0.08, 0.05, 0.5, 0.2, 0.4])
_ASPHALT_REFLECTIVITY = 0.12
_MARKING_REFLECTIVITY = 0.7
SKY_HORIZON = np.array([0.78, 0.83, 0.9])
_SKY_ZENITH = np.array([0.33, 0.52, 0.85])
_FIELD = np.array([0.3, 0.42, 0.16], np.float32)
_FIELD_REFLECTIVITY = 0.45  # vegetation is bright in the near infrared
HAZE_DISTANCE = 450.0  # m: aerial perspective, colour -> horizon sky with distance


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


def _ground_albedo(x: np.ndarray, z: np.ndarray, crosswalks: Sequence[float],
                   verge: Optional[tuple[float, float]] = None) -> tuple[np.ndarray, np.ndarray]:
    base = (0.25 + 0.08 * _noise(x, z, 0.7, 11) + 0.06 * _noise(x, z, 5.0, 12))[:, None]
    rgb = base * np.array([1.0, 1.0, 1.03], np.float32)
    mark = road_marking(x, z, crosswalks)
    worn = 0.78 + 0.12 * _noise(x[mark], z[mark], 0.4, 13)
    rgb[mark] = worn[:, None]
    refl = np.where(mark, _MARKING_REFLECTIVITY, _ASPHALT_REFLECTIVITY)
    if verge is not None:  # fields beyond the shoulders
        f = (x < verge[0]) | (x > verge[1])
        if f.any():
            xf, zf = x[f], z[f]
            tex = 0.6 + 0.5 * _noise(xf, zf, 1.5, 14) + 0.25 * _noise(xf, zf, 12.0, 15)
            rgb[f] = _FIELD * tex[:, None]
            refl = np.where(f, _FIELD_REFLECTIVITY, refl)
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
    refl = np.where(win, _REFLECTIVITY[MATERIAL_ID['glass']], _REFLECTIVITY[1])
    return wall, refl


class Surface(NamedTuple):
    albedo: np.ndarray  # [N, 3] float32 in [0, 1]
    normal: np.ndarray  # [N, 3] float32, unit, world frame
    reflectivity: np.ndarray  # [N] float32 in [0, 1]


def surface_at(crosswalks: Sequence[float], prims: Primitives, points: np.ndarray,
               label: np.ndarray, verge: Optional[tuple[float, float]] = None) -> Surface:
    """Albedo, normal and LiDAR reflectivity at hit ``points`` [N, 3] with labels >= 0.

    ``crosswalks`` are the z (m) where the scene's zebra crossings start; ``verge`` the x
    range (m) outside which the ground is a field (None: asphalt everywhere).
    """
    n = label.shape[0]
    albedo = np.zeros((n, 3), np.float32)
    normal = np.zeros((n, 3), np.float32)
    refl = np.zeros(n, np.float32)
    x, z = points[:, 0], points[:, 2]

    g = label == GROUND
    if g.any():
        albedo[g], refl[g] = _ground_albedo(x[g], z[g], crosswalks, verge)
        normal[g] = (0.0, -1.0, 0.0)

    idx = label - 1
    obj = label > GROUND
    if not obj.any():
        return Surface(albedo, normal, refl)
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

    m = mat == MATERIAL_ID['facade']
    if m.any():
        alb[m], rf[m] = _facade_albedo(base[m], s[m], h[m], seed[m], vertical[m])
    m = mat == MATERIAL_ID['concrete']
    if m.any():
        tex = 0.9 + 0.12 * _noise(p[m, 0].astype(np.float32), p[m, 2].astype(np.float32), 0.9,
                                  seed[m])
        joint = (~vertical[m]) & (np.mod(p[m, 2], 1.8) < 0.06)
        alb[m] = base[m] * np.where(joint, 0.8, tex)[:, None]
    m = np.isin(mat, (MATERIAL_ID['plain'], MATERIAL_ID['metal']))
    if m.any():
        alb[m] = base[m] * (0.88 + 0.16 * _noise(s[m], h[m], 1.2, seed[m]))[:, None]
    m = mat == MATERIAL_ID['bark']
    if m.any():
        alb[m] = base[m] * (0.75 + 0.35 * _noise(s[m] * 4, h[m], 0.25, seed[m]))[:, None]
    m = mat == MATERIAL_ID['foliage']
    if m.any():
        q = p[m].astype(np.float32)
        tex = 0.6 * _noise(q[:, 0] + 0.7 * q[:, 1], q[:, 2] - 0.5 * q[:, 1], 0.35, seed[m]) \
            + 0.4 * _noise(q[:, 0] - q[:, 1], q[:, 2] + 0.3 * q[:, 1], 0.9, seed[m] + 7)
        alb[m] = base[m] * (0.5 + 0.9 * tex)[:, None]
    m = mat == MATERIAL_ID['glass']
    if m.any():
        # Glass reflects the sky a little: brighter towards the top of the pane.
        alb[m] = base[m] + (0.08 + 0.12 * _noise(s[m], h[m], 0.8, seed[m]))[:, None]

    albedo[obj] = np.clip(alb, 0, 1)
    normal[obj] = nrm
    refl[obj] = rf
    return Surface(albedo, normal, refl)


def sky_color(dirs: np.ndarray) -> np.ndarray:
    """Sky colour [N, 3] of world directions [N, 3] (brighter at the horizon)."""
    elev = np.clip(-dirs[:, 1] / np.linalg.norm(dirs, axis=1), 0, 1)
    w = (np.clip(elev * 2.5, 0, 1) ** 0.7)[:, None]
    return (SKY_HORIZON * (1 - w) + _SKY_ZENITH * w).astype(np.float32)
