"""The synthetic world in one import: rigs, conditions and their presets.

``SimRig.build(RigSpec(...), Conditions(...), seed)`` gives a rig whose ``frames()``,
``render()`` and ``sweep()`` honour every axis; the defaults reproduce ``SimRig.default``
bit for bit. The axes and their defaults:

* light (:class:`Conditions`): ``sun_elevation_deg`` (52.7), ``sun_azimuth_deg`` (-35, left
  of the driving direction), ``glare`` (1, veiling glare strength);
* sensor: ``exposure`` (1; 0.3 dusk, 0 blind), ``photon_noise`` / ``read_noise`` (0),
  ``mono`` (False);
* air: ``fog_visibility_m`` (inf), ``fog_color``, ``fog_backscatter`` (0);
* camera (:class:`RigSpec`): ``lens`` (``kitti``; :data:`LENSES`) or ``focal_px``,
  ``camera_height_m`` (1.65), ``camera_pitch_deg`` (0, + looks down);
* LiDAR: ``lidar`` (``hdl64``; :data:`LIDAR_MODELS` or a :class:`LidarModel`),
  ``lidar_offset_m`` ((0, -0.3, -0.3): above and behind the camera);
* calibration: ``extrinsic_error_deg`` / ``extrinsic_error_axis`` / ``extrinsic_error_m`` (0):
  ``SimRig.nominal`` is what a user would configure, ``SimRig.lidar_to_camera`` the truth;
* scene: ``scene`` (``street``; :data:`SCENE_KINDS`), ``length`` (250 m).

:data:`CONDITIONS` names conditions for scenario tables (``dusk``, ``fog``, ``backlight``...).
"""

from depth_node.sim.conditions import CONDITIONS, Conditions
from depth_node.sim.frames import load_frames, save_frames, SimFrame, SimRig
from depth_node.sim.lidar import LidarModel
from depth_node.sim.rigs import LENSES, LIDAR_MODELS, RigSpec, rotation_angle_deg
from depth_node.sim.street import SCENE_KINDS

__all__ = ['CONDITIONS', 'Conditions', 'LENSES', 'LIDAR_MODELS', 'LidarModel', 'RigSpec',
           'SCENE_KINDS', 'SimFrame', 'SimRig', 'load_frames', 'rotation_angle_deg',
           'save_frames']
