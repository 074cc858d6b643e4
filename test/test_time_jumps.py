"""The node under replays that jump in time: ``ros2 bag play --loop`` and far-future stamps.

A bag played three times over (stamps start again each pass, as ``--loop`` replays them), with
ten sweeps stamped an hour ahead (a LiDAR driver on another clock) in the second pass: every
pass keeps metric depth on its frames, the far-future sweeps are counted as discarded (apart
from ``sweeps_in``) and each restart is counted as a time jump.
"""

import threading
import time

import pytest

from graph import ReliableFeeder, start_node

from depth_node.ros.messages import array_to_image, xyz_to_pointcloud2
from depth_node.ros.player import (camera_info_msg, extrinsic_parameters, make_header, stamp_of,
                                   wait_until)
from depth_node.sim.frames import save_frames, SimRig

from sensor_msgs.msg import Image  # noqa: I100

CAMERA_FRAME = 'camera_optical'
PASSES = 3
FRAMES = 15  # per pass, 0.2 s apart in stamps: a pass spans 2.8 s (> TIME_JUMP_S)


@pytest.fixture(scope='module')
def drive(tmp_path_factory):
    rig = SimRig.default(320, 240)
    frames = list(rig.frames(3, speed=10.0))
    return rig, frames, save_frames(tmp_path_factory.mktemp('loop'), frames)


def _passes(stamps):
    """Split stamps received in order into passes (a new pass where the stamp goes back)."""
    out = [[]]
    for s in stamps:
        if out[-1] and s < out[-1][-1]:
            out.append([])
        out[-1].append(s)
    return out


def test_looped_replay_keeps_metric_depth_on_every_pass(drive, tmp_path):
    rig, frames, folder = drive
    params = {'estimator.type': 'depth_node.testing.oracle:DisparityOracle',
              'estimator.options': f'{{"frames_dir": "{folder}"}}', 'lidar.wait': 0.5,
              'qos.sensor_data': False, 'diagnostics.period': 0.2, 'cloud.enable': False,
              'output.colored': False, **extrinsic_parameters(rig.lidar_to_camera)}
    proc = start_node(tmp_path, params)
    feed = ReliableFeeder('feeder_time_jumps')
    received = {'depth': [], 'depth/relative': []}
    lock = threading.Lock()
    for topic in received:
        def cb(msg, topic=topic):
            with lock:
                received[topic].append(stamp_of(msg))
        feed.node.create_subscription(Image, topic, cb, 100)
    base = 1_700_000_000.0
    try:
        assert wait_until(feed.connected, 60, proc.alive), proc.output()
        time.sleep(0.5)
        for p in range(PASSES):
            for k in range(FRAMES):  # as a bag plays it: sweep, camera_info, image, 10 Hz
                f = frames[k % len(frames)]
                stamp = base + 0.2 * k
                feed.pubs['points'].publish(xyz_to_pointcloud2(
                    f.lidar, make_header(stamp, 'lidar')))
                if p == 1 and k < 10:  # a driver on another clock: one hour ahead
                    feed.pubs['points'].publish(xyz_to_pointcloud2(
                        f.lidar, make_header(stamp + 3600.0, 'lidar')))
                feed.pubs['camera_info'].publish(camera_info_msg(
                    rig.camera, make_header(stamp, CAMERA_FRAME)))
                feed.pubs['image'].publish(array_to_image(f.rgb, 'rgb8',
                                                          make_header(stamp, CAMERA_FRAME)))
                time.sleep(0.1)

        def settled():
            values = feed.latest_diagnostics()
            done = int(values.get('published', 0)) + int(values.get(
                'published_relative_only', 0)) + int(values.get('dropped_superseded', 0))
            return done >= PASSES * FRAMES
        assert wait_until(settled, 30, proc.alive), (feed.latest_diagnostics(), proc.output())
        time.sleep(0.5)
    finally:
        code = proc.stop()
        feed.close()
    assert code == 0, proc.output()
    values = feed.latest_diagnostics()
    relative = _passes(received['depth/relative'])
    depth = _passes(received['depth'])
    assert len(relative) == PASSES, (relative, values)
    for k in range(PASSES):  # metric depth on every frame processed, in every pass
        assert len(relative[k]) >= 0.6 * FRAMES, (k, relative, values)
        assert depth[k] == relative[k], (k, depth, relative, values)
    assert values['sweeps_in'] == str(PASSES * FRAMES + 10), values
    assert values['sweeps_discarded'] == '10', values
    assert values['time_jumps'] == str(PASSES - 1), values
    assert values['frames_without_lidar'] == '0', values
    assert 'after the latest image' in proc.output(), proc.output()
