"""The LiDAR-only baseline: dense depth interpolated from the sweep alone, no network.

What a stack without a depth network would publish, and the yardstick of the fusion: where the
LiDAR is dense, interpolating it is hard to beat. Linear in inverse depth over the Delaunay
triangulation of the hit pixels (a plane's inverse depth is linear in pixel coordinates, so
planes come out exact); outside the triangulation's hull either the nearest return (a dense
map) or NaN (``hull_only``: the pixels the LiDAR covers).
"""

from __future__ import annotations

import numpy as np

from depth_node.core.camera import PinholeCamera
from depth_node.core.lidar import SparseDepth
from depth_node.core.transforms import RigidTransform
from depth_node.pipeline.alignment import project_lidar
from depth_node.pipeline.config import PipelineConfig


def lidar_only_depth(sparse: SparseDepth, hull_only: bool = False) -> np.ndarray:
    """Dense depth [H, W] float32 (metres) interpolated from sparse LiDAR depth alone.

    Linear in inverse depth over the Delaunay triangulation of the hit pixels (a plane's
    inverse depth is linear in pixel coordinates, so planes come out exact), nearest return
    outside their convex hull (NaN there with ``hull_only``). NaN everywhere when there are
    fewer than 3 returns. Points are located with matplotlib's trapezoid map: scipy's
    ``find_simplex`` walks, and on the near-degenerate triangles of pixel-grid points it takes
    minutes per image.
    """
    import matplotlib.tri as mtri
    from scipy.interpolate import NearestNDInterpolator
    from scipy.spatial import Delaunay, QhullError

    h, w = sparse.height, sparse.width
    if sparse.count < 3:
        return np.full((h, w), np.nan, np.float32)
    pts = np.stack([sparse.u, sparse.v], axis=1).astype(np.float64)  # [M, 2] (x, y)
    inv = 1.0 / sparse.z.astype(np.float64)
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    try:
        tri = mtri.Triangulation(pts[:, 0], pts[:, 1], Delaunay(pts).simplices)
        dense = np.ma.filled(mtri.LinearTriInterpolator(tri, inv)(uu, vv), np.nan)
    except (QhullError, ValueError, RuntimeError):  # all points on a line
        dense = np.full((h, w), np.nan)
    outside = ~np.isfinite(dense)
    if outside.any() and not hull_only:
        dense[outside] = NearestNDInterpolator(pts, inv)(uu[outside], vv[outside])
    with np.errstate(divide='ignore'):
        depth = np.where(dense > 0, 1.0 / dense, np.nan)
    return depth.astype(np.float32)


def lidar_only_from_sweep(points: np.ndarray, camera: PinholeCamera,
                          lidar_to_camera: RigidTransform,
                          config: PipelineConfig = PipelineConfig(),
                          hull_only: bool = False) -> np.ndarray:
    """Dense depth [H, W] float32 (metres) from a sweep alone, as the pipeline would see it.

    The sweep [N, 3] (LiDAR frame) is projected with the pipeline's depth limits, see-through
    returns are dropped as the pipeline drops them (``config.see_through``), and the rest is
    interpolated by :func:`lidar_only_depth`.
    """
    return lidar_only_depth(project_lidar(points, camera, lidar_to_camera, config).used,
                            hull_only)


__all__ = ['lidar_only_depth', 'lidar_only_from_sweep']
