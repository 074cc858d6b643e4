"""How a spinning LiDAR's beams are cast: culling windows, instantaneous and rotating sweeps.

:func:`lidar_windows` bounds the beam x azimuth block that can hit each primitive, so the caster
(:func:`depth_node.sim.geometry.trace`) tests only those rays. :func:`cast_instant` casts a
whole sweep from one pose; :func:`cast_rotating` casts each azimuth column from the LiDAR's pose
at its own time (:meth:`depth_node.sim.lidar.LidarModel.column_times`), the moving primitives
where they are then, culling chunk by chunk with windows widened by the motion within a chunk.
Both return the beams in firing order; :func:`depth_node.sim.lidar.scan_lidar` turns them into
returns (noise, dropouts, intensity, fog).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence, TYPE_CHECKING

import numpy as np

from depth_node.core.transforms import RigidTransform
from depth_node.sim.geometry import (GROUND, ground_distance, make_rays, Primitives, SKY, trace,
                                     Window)
from depth_node.sim.street import Scene

if TYPE_CHECKING:  # the model's module imports this one
    from depth_node.sim.lidar import LidarModel

#: Camera poses at drive times [K] (s): rotations [K, 3, 3] (optical -> world), centres [K, 3].
CameraPath = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def lidar_windows(prims: Primitives, origin: np.ndarray, rotation: np.ndarray,
                  model: 'LidarModel', margin: float = 1e-4,
                  columns: Optional[tuple[int, int]] = None) -> list[Window]:
    """Beam x azimuth blocks that can hit each primitive (conservative bounds, widened by
    ``margin`` rad in elevation and azimuth), clipped to the azimuth ``columns`` [c0, c1)
    (None: all)."""
    if prims.count == 0:
        return []
    el = np.deg2rad(np.asarray(model.elevations_deg, dtype=np.float64))
    az = model.azimuths_deg
    step = np.deg2rad(model.azimuth_step_deg)
    a0 = np.deg2rad(az[0])  # azimuth j is a0 + j * step
    n_az = az.size
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
    c0, c1 = (0, n_az) if columns is None else columns
    turns = (-2 * np.pi, 0.0, 2 * np.pi)  # the arc and its copies a turn away
    if columns is not None:  # skip the primitives outside the columns before the loop
        lo_arc = arc_start - margin
        seen = full.copy()
        for turn in turns:
            j0 = np.ceil((lo_arc + turn - a0) / step)
            j1 = np.floor((lo_arc + arc + 2 * margin + turn - a0) / step) + 1
            seen |= (np.minimum(j1, c1) > np.maximum(j0, c0))
        keep &= seen
    out: list[Window] = []
    for p in np.flatnonzero(keep):
        beams = np.flatnonzero((el >= emin[p]) & (el <= emax[p]))
        if beams.size == 0:
            continue
        b0, b1 = int(beams[0]), int(beams[-1]) + 1
        if full[p]:
            out.append((int(p), b0, b1, c0, c1))
            continue
        a_lo = arc_start[p] - margin
        a_hi = a_lo + arc[p] + 2 * margin
        for turn in turns:
            j0 = max(int(np.ceil((a_lo + turn - a0) / step)), c0)
            j1 = min(int(np.floor((a_hi + turn - a0) / step)) + 1, c1)
            if j1 > j0:
                out.append((int(p), b0, b1, j0, j1))
    return out


class Beams(NamedTuple):
    """The beams of one sweep in firing order (azimuth-major), before noise and dropouts."""

    t: np.ndarray  # [n] float32, range to the first hit, inf = none
    label: np.ndarray  # [n] int32
    dirs_body: np.ndarray  # [n, 3] float64, unit, LiDAR body frame
    ring: np.ndarray  # [n] uint16
    world: Optional[np.ndarray] = None  # [n, 3] float64, world directions (rotating sweeps)
    origins: Optional[np.ndarray] = None  # [n, 3] float64, world origins (rotating sweeps)
    times: Optional[np.ndarray] = None  # [n] float64, s since the sweep start


def cast_instant(scene: Scene, model: 'LidarModel', origin: np.ndarray, rot: np.ndarray,
                 time: float) -> Beams:
    """The whole sweep cast from one pose (``origin`` [3], LiDAR -> world ``rot`` [3, 3])."""
    body = model._grid()  # [B, A, 3]
    world = body @ rot.T
    rays = make_rays(world[..., 0], world[..., 1], world[..., 2])
    t = ground_distance(scene.ground_y, origin, rays).copy()
    label = np.where(np.isfinite(t), GROUND, SKY).astype(np.int32)
    prims = scene.primitives(time)
    trace(prims, origin, rays, lidar_windows(prims, origin, rot, model), t, label)
    # Azimuth-major, as the sensor fires: all beams at one azimuth, then the next azimuth.
    t, label = t.T.reshape(-1), label.T.reshape(-1)
    dirs_body = body.transpose(1, 0, 2).reshape(-1, 3)
    ring = np.broadcast_to(np.arange(body.shape[0], dtype=np.uint16)[None, :],
                           body.shape[1::-1]).reshape(-1)
    return Beams(t, label, dirs_body, ring)


def still_path(position: Sequence[float], rotation: Optional[np.ndarray]) -> CameraPath:
    """The camera path of a camera that does not move."""
    pos = np.asarray(position, dtype=np.float64)
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)

    def path(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = np.size(times)
        return np.broadcast_to(rot, (k, 3, 3)), np.broadcast_to(pos, (k, 3))
    return path


# Columns cast with one culling pose (10 deg of an HDL-64's 0.2 deg steps): the culling
# windows are widened by the motion within a chunk, so shorter chunks trace fewer rays.
_CHUNK_COLUMNS = 50


def cast_rotating(scene: Scene, model: 'LidarModel', lidar_in_camera: RigidTransform,
                  time: float, camera_path: CameraPath) -> Beams:
    """Each column cast from the LiDAR's pose at its own time, columns in firing order."""
    body = model._grid()  # [B, A, 3]
    n_beams, n_az = body.shape[:2]
    times = model.column_times()  # [A] s since the sweep start
    cam_rot, cam_pos = camera_path(time + times)
    rot = np.asarray(cam_rot, np.float64) @ lidar_in_camera.rotation  # [A, 3, 3]
    origin = np.asarray(cam_pos, np.float64) + np.asarray(cam_rot) @ lidar_in_camera.translation
    world = np.einsum('aij,baj->bai', rot, body)  # [B, A, 3]
    rays = make_rays(world[..., 0], world[..., 1], world[..., 2])
    o = origin.T[:, None, :]  # [3, 1, A]
    t = ground_distance(scene.ground_y, o, rays).copy()
    label = np.where(np.isfinite(t), GROUND, SKY).astype(np.int32)
    prims = scene.primitives(time)
    vel = scene.velocities()
    speed = np.linalg.norm(vel, axis=1)
    max_el = math.radians(float(np.max(np.abs(model.elevations_deg))))
    windows = []
    # Chunks of adjacent columns, split where the sweep starts (there adjacent columns are a
    # whole period apart), so that each chunk's columns are close in time.
    wrap = np.flatnonzero(np.abs(np.diff(times)) > 0.5 / model.rate_hz) + 1
    edges = sorted(set(range(0, n_az, _CHUNK_COLUMNS)) | set(wrap.tolist()) | {n_az})
    for c0, c1 in zip(edges[:-1], edges[1:]):
        m = (c0 + c1 - 1) // 2
        # Conservative culling for the whole chunk from its middle column's pose: boxes grown
        # by how far the origin and the primitives move within it (a ray from a shifted
        # origin hits the box iff the same ray from the middle origin hits the box shifted
        # back), angles widened by how far the LiDAR turns.
        shift = float(np.max(np.linalg.norm(origin[c0:c1] - origin[m], axis=1)))
        dt = float(np.max(np.abs(times[c0:c1] - times[m])))
        grow = (shift + speed * dt + 1e-6)[:, None]
        moved = vel * times[m]
        cos = (np.einsum('cij,ij->c', rot[c0:c1], rot[m]) - 1.0) / 2.0  # trace(R_c R_m^T)
        turn = float(np.arccos(np.clip(cos, -1.0, 1.0)).max())
        margin = 1e-4 + turn / max(math.cos(min(max_el + turn, 1.5)), 0.05)
        grown = prims._replace(lo=prims.lo + moved - grow, hi=prims.hi + moved + grow)
        windows += lidar_windows(grown, origin[m], rot[m], model, margin, (c0, c1))
    trace(prims, o, rays, windows, t, label, (vel, times[None, :]))
    order = np.argsort(times, kind='stable')  # columns in firing order
    t, label = t.T[order].reshape(-1), label.T[order].reshape(-1)
    world_am = world.transpose(1, 0, 2)[order].reshape(-1, 3)
    dirs_body = body.transpose(1, 0, 2)[order].reshape(-1, 3)
    ring = np.broadcast_to(np.arange(n_beams, dtype=np.uint16)[None, :],
                           (n_az, n_beams)).reshape(-1)
    origins = np.repeat(origin[order], n_beams, axis=0)
    return Beams(t, label, dirs_body, ring, world_am, origins,
                 np.repeat(times[order], n_beams))


__all__ = ['Beams', 'CameraPath', 'cast_instant', 'cast_rotating', 'lidar_windows',
           'still_path']
