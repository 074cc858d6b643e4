"""The synthetic street scene: a ground plane plus primitives, built from a seed.

:meth:`Scene.street` lays out a two-lane street (sidewalks, facades, parked and moving
vehicles, street lights, trees); :meth:`Scene.raycast` is the unculled reference ray caster
that the fast sensor casters are tested against; :meth:`Scene.shade` lights hit points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from depth_node.sim.geometry import (Box, CURB_HEIGHT, CURB_X, CENTRE_LINE_X, EDGE_LINES_X,
                                     Ellipsoid, GROUND, ground_distance, make_rays,
                                     MATERIAL_ID, Primitives, SIDEWALK_X, SKY, trace)
from depth_node.sim.shading import HAZE_DISTANCE, SKY_HORIZON, sky_color, surface_at


@dataclass
class Scene:
    """Ground plane plus primitives; everything else is sky (no return, infinite depth)."""

    ground_y: float = 1.65
    boxes: list[Box] = field(default_factory=list)
    ellipsoids: list[Ellipsoid] = field(default_factory=list)
    crosswalks: tuple[float, ...] = ()  # z (m) where a zebra crossing starts
    sun: tuple[float, float, float] = (-0.35, -0.8, 0.5)  # towards the sun, world frame
    sun_color: tuple[float, float, float] = (1.0, 1.0, 1.0)  # direct light, relative
    verge: Optional[tuple[float, float]] = None  # x (m) outside which the ground is a field

    @classmethod
    def street(cls, seed: int = 0, length: float = 250.0, start: float = -40.0,
               parked: tuple[float, float] = (0.75, 0.3), ground_y: float = 1.65,
               buildings: float = 1.0, setback: tuple[float, ...] = (0.0, 0.0, 0.6, 1.5),
               sidewalks: bool = True, lights: bool = True,
               trees: tuple[float, float] = (11.0, 19.0), canopy: float = 1.0,
               verge: Optional[tuple[float, float]] = None, lot: float = 0.0) -> 'Scene':
        """A straight two-lane street along +z from ``start`` for ``length`` metres.

        Asphalt with lane markings and zebra crossings, curbs and raised sidewalks, building
        facades with windows (alleys between some), cars parked along both curbs, a lead car
        in the ego lane and oncoming traffic (moving), street lights, trees and bushes.
        ``parked`` is the occupancy of the parking strips (left, right): sparse on the ego's
        side, where a car parked beside the camera shows the LiDAR (mounted higher) much of
        what its roof hides from the camera. Deterministic by ``seed``; each kind of object
        on each side has its own random stream, so a longer street extends the same one.

        The other arguments make the other scene kinds (:data:`SCENE_KINDS`); their defaults
        give today's street. ``ground_y`` is the camera's height above the ground (m);
        ``buildings`` the share of plots that have a building, at a setback drawn from
        ``setback`` (m); ``trees`` the range of spacing between trees (m) and ``canopy`` the
        scale of their crowns (> 1 reaches over the road); ``verge`` the x range (m) outside
        which the ground is a field; ``lot`` the occupancy of a parking lot's stalls beyond
        both curbs (0: none): two rows of cars parked across the road on each side, nose to
        the road and back to back across an aisle.
        """
        if not length > 0:
            raise ValueError(f'street length must be > 0 m, got {length}')

        def stream(kind: int, side: int = 0) -> np.random.Generator:
            return np.random.default_rng([seed, kind, side + 1])

        if not ground_y > 0:
            raise ValueError(f'ground_y (camera height) must be > 0 m, got {ground_y}')
        if not 0 <= lot <= 1:
            raise ValueError(f'lot (stall occupancy) must be in [0, 1], got {lot}')
        g = float(ground_y)
        setback_choices = list(setback)
        end = start + length
        boxes: list[Box] = []
        ells: list[Ellipsoid] = []
        top = g - CURB_HEIGHT if sidewalks else g  # sidewalk surface or ground (y down)
        concrete = (0.62, 0.61, 0.58)
        for x0, x1 in (SIDEWALK_X if sidewalks else ()):  # 20 m slabs: small culling windows
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
                setback = float(rng.choice(setback_choices))
                color = tuple(np.clip(palette[rng.integers(len(palette))]
                                      * rng.uniform(0.85, 1.1), 0, 1))
                if side > 0:
                    xf = SIDEWALK_X[0][1] + setback
                    lo, hi = (xf, g - h, z), (xf + depth, g, z + w)
                else:
                    xf = SIDEWALK_X[1][0] - setback
                    lo, hi = (xf - depth, g - h, z), (xf, g, z + w)
                empty = buildings < 1.0 and rng.random() >= buildings
                if not empty:
                    boxes.append(Box(lo, hi, color, 'facade'))
                if not empty and rng.random() < 0.4:  # a hedge in front of it
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
        if lot > 0:
            boxes += _parking_lot(start, end, g, lot, stream)
        for side in (1, -1):  # street lights and trees on the sidewalks
            curb = CURB_X[0] if side > 0 else CURB_X[1]
            rng = stream(3, side)
            z = start + rng.uniform(0, 10)
            while lights and z < end:
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
                tx = curb + side * (1.9 if canopy <= 1 else 1.0)
                trunk = rng.uniform(2.2, 3.2) * max(1.0, 0.8 * canopy)
                boxes.append(Box((tx - 0.15, top - trunk, z - 0.15), (tx + 0.15, top, z + 0.15),
                                 (0.36, 0.26, 0.17), 'bark'))
                rx, ry = rng.uniform(1.3, 2.1) * canopy, rng.uniform(1.2, 2.0)
                green = (rng.uniform(0.15, 0.25), rng.uniform(0.32, 0.45), rng.uniform(0.1, 0.16))
                ells.append(Ellipsoid((tx, top - trunk - 0.7 * ry, z), (rx, ry, rx), green))
                z += rng.uniform(*trees)
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
        return cls(ground_y=g, boxes=boxes, ellipsoids=ells, crosswalks=crosswalks,
                   verge=verge)

    @classmethod
    def of_kind(cls, kind: str = 'street', seed: int = 0, length: float = 250.0,
                ground_y: float = 1.65) -> 'Scene':
        """A scene of a named kind (:data:`SCENE_KINDS`); ``ground_y``: camera height (m)."""
        if kind not in SCENE_KINDS:
            raise ValueError(f'scene kind must be one of {tuple(SCENE_KINDS)}, got {kind!r}')
        return cls.street(seed, length=length, ground_y=ground_y, **SCENE_KINDS[kind])

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
                          np.array([MATERIAL_ID[b.material] for b in items], np.int64),
                          np.array([b.color for b in items], dtype=np.float64))

    def velocities(self) -> np.ndarray:
        """Velocities [P, 3] float64 (m/s, world frame) in the order of :meth:`primitives`."""
        items: list = list(self.boxes) + list(self.ellipsoids)
        return np.array([b.velocity for b in items], dtype=np.float64).reshape(-1, 3)

    def raycast(self, origin: np.ndarray, dirs: np.ndarray,
                time: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Distance along arbitrary ``dirs`` [N, 3] (world) to the first hit, and its label.

        Returns ``t`` [N] float32 (``inf`` for sky; in units of ``|dir|``) and ``hit`` [N]
        int32 (``SKY`` -1, ``GROUND`` 0, 1 + i primitive i: boxes, then ellipsoids). Tests
        every primitive against every ray (no culling): the reference for the fast casters of
        :func:`depth_node.sim.camera.render_camera` and
        :func:`depth_node.sim.lidar.scan_lidar`.
        """
        o = np.asarray(origin, dtype=np.float64)
        d = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
        prims = self.primitives(time)
        t_all = np.empty(d.shape[0], np.float32)
        hit_all = np.empty(d.shape[0], np.int32)
        chunk = 1 << 16
        for s in range(0, d.shape[0], chunk):
            rays = make_rays(*(d[s:s + chunk, k:k + 1] for k in range(3)))
            t = ground_distance(self.ground_y, o, rays).copy()
            hit = np.where(np.isfinite(t), GROUND, SKY).astype(np.int32)
            n = rays.shape[0]
            trace(prims, o, rays, ((p, 0, n, 0, 1) for p in range(prims.count)), t, hit)
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
        rgb[sky] = sky_color(d[sky])
        if (~sky).any():
            surf = surface_at(self.crosswalks, self.primitives(time),
                              np.asarray(points, np.float64)[~sky], hit[~sky], self.verge)
            sun = np.asarray(self.sun, np.float32)
            sun /= np.linalg.norm(sun)
            lambert = np.clip(surf.normal @ sun, 0, 1)
            skylight = 0.5 + 0.25 * np.clip(-surf.normal[:, 1], -1, 1)
            if self.sun_color == (1.0, 1.0, 1.0):
                lit = surf.albedo * (0.95 * lambert + 0.55 * skylight)[:, None]
            else:  # a low sun: reddened, dimmer direct light
                sun_rgb = np.asarray(self.sun_color, np.float32)
                lit = surf.albedo * (0.95 * lambert[:, None] * sun_rgb
                                     + 0.55 * skylight[:, None])
            if distance is not None:
                fog = np.exp(-np.asarray(distance, np.float32)[~sky] / HAZE_DISTANCE)[:, None]
                lit = lit * fog + SKY_HORIZON.astype(np.float32) * (1 - fog)
            rgb[~sky] = lit
        return np.clip(rgb, 0, 1)


#: Scene kinds as arguments of :meth:`Scene.street`: today's street; an open road (a plot in
#: eight has a farm building set well back, no sidewalks, few parked cars, sparse trees, fields
#: beyond the shoulders, a far horizon); a street under a dense canopy (close trees whose
#: crowns reach over the road); a parking lot (both parking strips full, and beyond the curbs
#: no sidewalks but two double rows of cars parked across, buildings set back behind them).
SCENE_KINDS: dict[str, dict] = {
    'street': {},
    'open_road': dict(parked=(0.05, 0.05), buildings=0.12, setback=(25.0, 40.0, 60.0),
                      sidewalks=False, lights=False, trees=(35.0, 70.0),
                      verge=(SIDEWALK_X[1][0] + 2.0, SIDEWALK_X[0][0] + 0.5)),
    'dense_trees': dict(trees=(5.0, 8.0), canopy=2.6),
    'parking_lot': dict(parked=(0.9, 0.9), buildings=0.5, setback=(24.0, 30.0),
                        sidewalks=False, trees=(30.0, 50.0), lot=0.85),
}

#: Parking lot stalls: width along the road, the rows' distances from the curb (m).
_STALL_WIDTH = 2.6
_LOT_ROWS = (0.6, 5.1, 11.1, 15.6)  # near edge of each row: two rows, an aisle, two rows


def _parking_lot(start: float, end: float, g: float, occupancy: float,
                 stream) -> list[Box]:
    """Cars parked across the road in the stalls of a lot beyond both curbs."""
    boxes: list[Box] = []
    for side in (1, -1):
        curb = CURB_X[0] if side > 0 else CURB_X[1]
        for row, offset in enumerate(_LOT_ROWS):
            rng = stream(8 + row, side)
            z = start + rng.uniform(0.0, _STALL_WIDTH)
            while z < end:
                van = rng.random() < 0.15
                car = _vehicle(0.0, 0.0, g, rng, van=van)  # draws the paint either way
                if rng.random() < occupancy:
                    length = 5.2 if van else 4.3
                    x0 = curb + side * offset + (0.0 if side > 0 else -length)
                    boxes += [_across(b, x0, z + _STALL_WIDTH / 2) for b in car]
                z += _STALL_WIDTH
    return boxes


def _across(box: Box, x0: float, zc: float) -> Box:
    """A box of a car built along z at x = 0 from z = 0, turned to lie along x from ``x0``."""
    (lx, ly, lz), (hx, hy, hz) = box.lo, box.hi
    return Box((x0 + lz, ly, zc + lx), (x0 + hz, hy, zc + hx), box.color, box.material)


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
