"""The synthetic street and its sensors, in one import: ``from depth_node.sim.scene import ...``.

A ray-cast street (road, sidewalks, facades, parked and moving vehicles, poles, trees, sky) seen
by a rectified camera and a spinning LiDAR that cast into the same geometry, so camera depth and
LiDAR ranges agree exactly (up to the noise added on purpose), and a LiDAR mounted apart from
the camera sees past foreground edges as real rigs do. The parts:

* :mod:`depth_node.sim.geometry` - world frame, primitives (:class:`Box`,
  :class:`Ellipsoid`), road layout, the culled ray caster;
* :mod:`depth_node.sim.shading` - procedural textures, normals, sky, LiDAR reflectivity;
* :mod:`depth_node.sim.street` - :class:`Scene` and the seeded street layout;
* :mod:`depth_node.sim.camera` - :func:`render_camera`, :func:`default_camera`;
* :mod:`depth_node.sim.lidar` - :class:`LidarModel`, :func:`scan_lidar`,
  :func:`default_extrinsic`.
"""

from depth_node.sim.camera import (default_camera, KITTI_FOCAL, KITTI_SIZE, render_camera,
                                   RenderedFrame)
from depth_node.sim.geometry import (BODY_TO_OPTICAL, Box, CENTRE_LINE_X, CURB_HEIGHT, CURB_X,
                                     EDGE_LINES_X, Ellipsoid, FOG, GROUND, LANE_WIDTH,
                                     MARKING_HALF_WIDTH, MATERIALS, Primitives, SIDEWALK_X, SKY)
from depth_node.sim.lidar import default_extrinsic, lidar_sweep, LidarModel, LidarScan, scan_lidar
from depth_node.sim.shading import road_marking
from depth_node.sim.street import Scene, SCENE_KINDS

__all__ = [
    'BODY_TO_OPTICAL', 'Box', 'CENTRE_LINE_X', 'CURB_HEIGHT', 'CURB_X', 'EDGE_LINES_X',
    'Ellipsoid', 'FOG', 'GROUND', 'KITTI_FOCAL', 'KITTI_SIZE', 'LANE_WIDTH', 'LidarModel',
    'LidarScan', 'MARKING_HALF_WIDTH', 'MATERIALS', 'Primitives', 'RenderedFrame',
    'SCENE_KINDS', 'SIDEWALK_X', 'SKY', 'Scene', 'default_camera', 'default_extrinsic',
    'lidar_sweep', 'render_camera', 'road_marking', 'scan_lidar',
]
