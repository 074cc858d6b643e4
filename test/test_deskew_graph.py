"""The real node deskews rotating sweeps with per-point time to the image stamp, with the
vehicle's motion from a ``nav_msgs/Odometry`` topic (tf2_ros is not installable from PyPI:
the odometry topic is the motion source here).

Ouster-style clouds (``t`` UINT32 ns since the sweep stamp, the sweep starting 60 ms before
the image) of a vehicle at 20 m/s turning at 0.4 rad/s: the first frames come without
odometry (not deskewed: said once, ``deskew`` diagnostics value ``no motion``), then 50 Hz
odometry arrives and every return is moved to the image stamp (said once, ``per-point``); the
metric depth of the deskewed frames is closer to the exact depth.
"""

import time

import numpy as np
import pytest
from nav_msgs.msg import Odometry
from sensor_msgs.msg import PointCloud2, PointField

from graph import ReliableFeeder, RELIABLE_INPUTS, start_node

from depth_node.core.transforms import matrix_to_quaternion
from depth_node.ros.messages import array_to_image
from depth_node.ros.player import camera_info_msg, extrinsic_parameters, make_header, wait_until
from depth_node.sim.frames import save_frames, SimRig

from test_deskew_runner import base_pose, BASE_TO_LIDAR, skew  # noqa: I100

CAMERA_FRAME = 'camera_optical'
FRAMES, WITHOUT_ODOMETRY = 4, 2
START = 1_700_000_000.0
SWEEP_BEFORE_IMAGE = 0.06  # s
SWEEP_S = 0.1


def ouster_cloud(xyz, t_ns, header):
    """x, y, z FLOAT32 and t UINT32 (ns since the header stamp), point_step 16."""
    data = np.zeros(len(xyz), dtype=np.dtype({'names': ['x', 'y', 'z', 't'],
                                              'formats': ['<f4', '<f4', '<f4', '<u4'],
                                              'offsets': [0, 4, 8, 12], 'itemsize': 16}))
    data['x'], data['y'], data['z'] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    data['t'] = t_ns
    msg = PointCloud2(header=header, height=1, width=len(xyz), is_bigendian=False,
                      point_step=16, row_step=16 * len(xyz), is_dense=True)
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate('xyz')]
    msg.fields.append(PointField(name='t', offset=12, datatype=PointField.UINT32, count=1))
    msg.data = data.tobytes()
    return msg


def odometry(stamp, relative_s):
    """The base in odom, ``relative_s`` from a frame's image stamp (each frame's own arc)."""
    pose = base_pose(relative_s)
    msg = Odometry(header=make_header(stamp, 'odom'), child_frame_id='base_link')
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    p.x, p.y, p.z = (float(v) for v in pose.translation)
    q.x, q.y, q.z, q.w = matrix_to_quaternion(pose.rotation)
    return msg


@pytest.fixture(scope='module')
def drive(tmp_path_factory):
    rig = SimRig.default(320, 240)
    frames = list(rig.frames(FRAMES, rate=5.0))
    return rig, frames, save_frames(tmp_path_factory.mktemp('deskew'), frames)


def test_node_deskews_rotating_sweeps_with_odometry(drive, tmp_path):
    rig, frames, folder = drive
    q = matrix_to_quaternion(BASE_TO_LIDAR.rotation)
    params = {'estimator.type': 'depth_node.testing.oracle:DisparityOracle',
              'estimator.options': f'{{"frames_dir": "{folder}"}}', 'lidar.wait': 0.5,
              'lidar.max_age': 0.1, 'diagnostics.period': 0.2, 'cloud.enable': False,
              'output.colored': False, 'motion.odometry_topic': '/odom',
              'motion.lidar_translation': [float(v) for v in BASE_TO_LIDAR.translation],
              'motion.lidar_rotation': [float(v) for v in q],
              **RELIABLE_INPUTS, **extrinsic_parameters(rig.lidar_to_camera)}
    proc = start_node(tmp_path, params)
    feed = ReliableFeeder('feeder_deskew')
    odom = feed.node.create_publisher(Odometry, '/odom', 100)
    stamps, states = [], []
    try:
        assert wait_until(lambda: feed.connected() and odom.get_subscription_count() > 0, 60,
                          proc.alive), proc.output()
        time.sleep(0.3)
        for k, f in enumerate(frames):
            stamp = START + 0.2 * k
            sweep_stamp = stamp - SWEEP_BEFORE_IMAGE
            truth = np.asarray(f.lidar, np.float32)  # the sweep as seen at the image stamp
            t = np.linspace(0.0, SWEEP_S, len(truth))  # each column's time
            skewed = skew(truth, t - SWEEP_BEFORE_IMAGE)
            if k >= WITHOUT_ODOMETRY:  # 50 Hz odometry around this frame, as a bag has it
                for rel in np.arange(-0.3, 0.12, 0.02):
                    odom.publish(odometry(stamp + rel, rel))
                time.sleep(0.2)
            feed.pubs['points'].publish(ouster_cloud(skewed, np.round(t * 1e9),
                                                     make_header(sweep_stamp, 'lidar')))
            header = make_header(stamp, CAMERA_FRAME)
            feed.pubs['camera_info'].publish(camera_info_msg(rig.camera, header))
            feed.pubs['image'].publish(array_to_image(f.rgb, 'rgb8', header))
            stamp_ns = header.stamp.sec * 10**9 + header.stamp.nanosec
            assert wait_until(lambda: feed.has('depth', stamp_ns), 60, proc.alive), \
                (k, sorted(feed.latest_diagnostics().items()), proc.output())
            time.sleep(0.3)  # diagnostics periods after the frame
            stamps.append(stamp_ns)
            states.append(feed.latest_diagnostics().get('deskew', ''))
    finally:
        code = proc.stop()
        feed.close()
    assert code == 0, proc.output()
    assert all(s.startswith('no motion') for s in states[:WITHOUT_ODOMETRY]), states
    assert all(s.startswith('per-point') and '/odom (odom -> base_link)' in s
               for s in states[WITHOUT_ODOMETRY:]), states
    log = proc.output()
    assert log.count('LiDAR deskew: no motion') == 1, log  # once per change, not per frame
    assert log.count('LiDAR deskew: per-point') == 1, log
    from depth_node.messages.readers import depth_image_to_metres
    errors = []
    for f, s in zip(frames, stamps):
        depth = depth_image_to_metres(feed.got['depth'][s])
        ok = np.isfinite(depth) & np.isfinite(f.depth)
        errors.append(float(np.mean(np.abs(depth[ok] - f.depth[ok]) / f.depth[ok])))
    skewed_err = np.mean(errors[:WITHOUT_ODOMETRY])
    deskewed_err = np.mean(errors[WITHOUT_ODOMETRY:])
    assert deskewed_err < 0.8 * skewed_err, errors


def test_vehicle_motion_sources_without_tf2():
    from depth_node.ros.motion import VehicleMotion
    from depth_node.ros.params import build_config
    none = build_config({}).motion
    with pytest.raises(LookupError, match='no motion source'):
        VehicleMotion(lambda: none, None).lookup('lidar', 0, 10, 5)
    settings = build_config({'motion.odometry_topic': '/odom'}).motion
    motion = VehicleMotion(lambda: settings, None)
    assert motion.lookup('lidar', 0, 10, 5).track is None  # no message yet
    for k in range(5):
        motion.on_odometry(odometry(START + 0.02 * k, 0.02 * k))
    start = int(round(START * 1e9))
    got = motion.lookup('lidar', start + 10_000_000, start + 50_000_000, start + 40_000_000)
    np.testing.assert_allclose(got.track.times, [-0.04, -0.02, 0.0, 0.02], atol=1e-6)
    assert got.source == '/odom (odom -> base_link)'
    np.testing.assert_allclose(got.track.translations[-1], base_pose(0.06).translation,
                               atol=1e-9)
