"""The synthetic world in one import: rigs, conditions, their presets and named scenarios.

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
* scene: ``scene`` (``street``; :data:`SCENE_KINDS`), ``length`` (250 m);
* motion: ``speed_mps`` (8), ``yaw_rate_deg_s`` (0, + left); the LiDAR's ``sweep``
  (``instant``; ``rotating``: per-point times across ``1 / rate_hz``).

:data:`CONDITIONS` names conditions (``dusk``, ``fog``, ``backlight``...); :data:`SCENARIOS`
names one change of one axis each, for scenario tables (:func:`scenario` builds one), and
:data:`COMBINED_SCENARIOS` two at once.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

from depth_node.sim.conditions import CONDITIONS, Conditions
from depth_node.sim.frames import load_frames, save_frames, SimFrame, SimRig
from depth_node.sim.lidar import LidarModel
from depth_node.sim.rigs import LENSES, LIDAR_MODELS, RigSpec, rotation_angle_deg
from depth_node.sim.street import SCENE_KINDS


class Scenario(NamedTuple):
    """One point of the world: changes to :class:`RigSpec` and the conditions."""

    rig: dict[str, Any]
    conditions: Conditions


_CLEAR = CONDITIONS['clear']
#: Named scenarios, each one axis away from the default rig in clear daylight.
SCENARIOS: dict[str, Scenario] = {
    'default': Scenario({}, _CLEAR),
    **{f'lidar_{name}': Scenario({'lidar': name}, _CLEAR)
       for name in LIDAR_MODELS if name != 'hdl64'},
    'lidar_front_120': Scenario({'lidar': replace(LIDAR_MODELS['hdl64'], fov_deg=120.0)},
                                _CLEAR),
    'lidar_mount_high': Scenario({'lidar_offset_m': (0.0, -0.8, -1.0)}, _CLEAR),
    'lens_wide': Scenario({'lens': 'wide'}, _CLEAR),
    'lens_tele': Scenario({'lens': 'tele'}, _CLEAR),
    'camera_high': Scenario({'camera_height_m': 2.6}, _CLEAR),
    'camera_pitched': Scenario({'camera_pitch_deg': 5.0}, _CLEAR),
    'miscalibrated': Scenario({'extrinsic_error_deg': 1.0, 'extrinsic_error_m': 0.05},
                              _CLEAR),
    'open_road': Scenario({'scene': 'open_road'}, _CLEAR),
    'dense_trees': Scenario({'scene': 'dense_trees'}, _CLEAR),
    **{name: Scenario({}, c) for name, c in CONDITIONS.items() if name != 'clear'},
}


#: Two axes at once (issue 12's scenarios you have not seen): each pairs a light or weather
#: condition, or a second rig change, with a rig of :data:`SCENARIOS`, plus two points past
#: that table's (night; a 2 deg / 10 cm extrinsic error; fog at 40 m). Not in
#: :data:`SCENARIOS`: the uncertainty is calibrated on those rows, and these measure what it
#: does off them (``benchmark accuracy --combined``).
COMBINED_SCENARIOS: dict[str, Scenario] = {
    'night': Scenario({}, Conditions(exposure=0.12, photon_noise=0.05, read_noise=0.01)),
    'dusk_vlp16': Scenario({'lidar': 'vlp16'}, CONDITIONS['dusk']),
    'dusk_tele': Scenario({'lens': 'tele'}, CONDITIONS['dusk']),
    'dusk_open_road': Scenario({'scene': 'open_road'}, CONDITIONS['dusk']),
    'fog_wide': Scenario({'lens': 'wide'}, CONDITIONS['fog']),
    'fog_dense_trees': Scenario({'scene': 'dense_trees'}, CONDITIONS['fog']),
    'dense_fog': Scenario({}, Conditions(fog_visibility_m=40.0, fog_backscatter=0.05)),
    'mono_low_sun': Scenario({}, replace(CONDITIONS['mono'], sun_elevation_deg=8.0)),
    'tele_camera_high': Scenario({'lens': 'tele', 'camera_height_m': 2.6}, _CLEAR),
    'os1_128_looking_up': Scenario({'lidar': 'os1_128', 'camera_pitch_deg': -4.0}, _CLEAR),
    'hdl32_mount_high': Scenario({'lidar': 'hdl32', 'lidar_offset_m': (0.0, -0.8, -1.0)},
                                 _CLEAR),
    'miscalibrated_2deg': Scenario({'extrinsic_error_deg': 2.0, 'extrinsic_error_m': 0.1},
                                   _CLEAR),
}


_ROTATING = replace(LIDAR_MODELS['hdl64'], sweep='rotating')
#: A moving vehicle (issue 15): a rotating sweep at 20 m/s turning at 10 deg/s (a 115 m radius:
#: 2 m and 1 deg within one 100 ms sweep), and the same motion with an instantaneous sweep as
#: its reference. Not in :data:`SCENARIOS` (whose rows every table runs): the deskew's table
#: adds them.
MOTION_SCENARIOS: dict[str, Scenario] = {
    'rotating_20mps_turning': Scenario({'lidar': _ROTATING, 'speed_mps': 20.0,
                                        'yaw_rate_deg_s': 10.0}, _CLEAR),
    'instant_20mps_turning': Scenario({'speed_mps': 20.0, 'yaw_rate_deg_s': 10.0}, _CLEAR),
    'rotating_20mps_straight': Scenario({'lidar': _ROTATING, 'speed_mps': 20.0}, _CLEAR),
}


def scenario(name: str, width: int = 640, height: int = 480, seed: int = 0,
             **rig: Any) -> SimRig:
    """The rig of scenario ``name`` (:data:`SCENARIOS`, :data:`MOTION_SCENARIOS` or
    :data:`COMBINED_SCENARIOS`) at ``width`` x ``height``; ``rig`` changes more of it."""
    known = {**SCENARIOS, **MOTION_SCENARIOS, **COMBINED_SCENARIOS}
    if name not in known:
        raise ValueError(f'scenario must be one of {tuple(known)}, got {name!r}')
    s = known[name]
    spec = RigSpec(width=width, height=height, **{**s.rig, **rig})
    return SimRig.build(spec, s.conditions, seed)


__all__ = ['COMBINED_SCENARIOS', 'CONDITIONS', 'Conditions', 'LENSES', 'LIDAR_MODELS',
           'LidarModel', 'MOTION_SCENARIOS', 'RigSpec', 'SCENARIOS', 'SCENE_KINDS', 'Scenario',
           'SimFrame', 'SimRig', 'load_frames', 'rotation_angle_deg', 'save_frames', 'scenario']
