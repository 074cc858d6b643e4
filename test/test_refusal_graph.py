"""Refusal on the real graph: a black camera image gets no metric depth and a WARN saying why;
a good one gets depth and its uncertainty with the same header."""

import time

import numpy as np

from graph import client, start_node

from depth_node.messages.readers import image_to_array
from depth_node.ros.player import extrinsic_parameters, stamp_of, wait_until
from depth_node.sim.frames import save_frames, SimFrame, SimRig


def _status(feed):
    """(level, message) of the newest depth_node status, or None."""
    for arr in reversed(feed.messages('/diagnostics')):
        for st in arr.status:
            if 'depth_node' in st.name:
                return int.from_bytes(st.level, 'little') if isinstance(st.level, bytes) \
                    else int(st.level), st.message
    return None


def test_bad_images_get_no_metric_depth_and_a_warning_naming_why(tmp_path):
    rig = SimRig.default(320, 240, seed=4)
    good = next(rig.frames(1, seed=4))
    # The oracle knows these images' true depth: without the image check the fit would be
    # perfect and metres would be published for a picture of nothing.
    rng = np.random.default_rng(0)
    bad = {'dark': np.zeros_like(good.rgb), 'saturated': np.full_like(good.rgb, 255),
           'flat': np.full_like(good.rgb, 128),
           'noise': rng.integers(0, 256, good.rgb.shape, dtype=np.uint8)}
    frames = [good] + [SimFrame(i + 1, good.stamp, img, good.depth, good.lidar)
                       for i, img in enumerate(bad.values())]
    black = frames[1]
    folder = save_frames(tmp_path / 'frames', frames)
    params = {'estimator.type': 'depth_node.testing.oracle:DisparityOracle',
              'estimator.options': f'{{"frames_dir": "{folder}"}}', 'diagnostics.period': 0.3,
              'lidar.wait': 0.3, 'filter.enable': False,
              **extrinsic_parameters(rig.lidar_to_camera)}
    proc = start_node(tmp_path, params)
    feed = client('feeder_refusal')
    try:
        assert feed.wait_connected(60), proc.output()
        feed.send(good.rgb, rig.camera, 100.0, good.lidar)
        assert wait_until(lambda: len(feed.messages('depth')) >= 1
                          and len(feed.messages('depth/uncertainty')) >= 1, 30, proc.alive), \
            proc.output()
        for k in range(3):
            feed.send(black.rgb, rig.camera, 101.0 + 0.2 * k, black.lidar)
            time.sleep(0.3)
        assert wait_until(lambda: sum(stamp_of(m) >= 101.0
                                      for m in feed.messages('depth/relative')) >= 3,
                          30, proc.alive), proc.output()
        assert wait_until(lambda: (_status(feed) or (0, ''))[0] == 1
                          and 'dark' in _status(feed)[1], 10, proc.alive), \
            (_status(feed), proc.output())
        for j, (word, img) in enumerate(list(bad.items())[1:]):
            for k in range(2):
                feed.send(img, rig.camera, 110.0 + 10 * j + 0.2 * k, good.lidar)
                time.sleep(0.3)
            assert wait_until(lambda: word in (_status(feed) or (0, ''))[1], 15, proc.alive), \
                (word, _status(feed), proc.output())
    finally:
        code = proc.stop()
        feed.close()
    assert code == 0, proc.output()
    assert [stamp_of(m) for m in feed.messages('depth')] == [100.0]
    assert not any(stamp_of(m) >= 101.0 for m in feed.messages('depth/points'))
    (depth_msg,), (sigma_msg,) = feed.messages('depth'), feed.messages('depth/uncertainty')
    assert sigma_msg.header == depth_msg.header and sigma_msg.encoding == '32FC1'
    depth, sigma = image_to_array(depth_msg), image_to_array(sigma_msg)
    np.testing.assert_array_equal(np.isnan(sigma), np.isnan(depth))
    assert np.all(sigma[np.isfinite(sigma)] <= 0.2 * depth[np.isfinite(depth)] + 1e-4)
    level, message = _status(feed)
    assert level == 1 and 'noise' in message and 'relative only' in message, message
    assert 'refused' in proc.output() or 'no metric depth' in proc.output()


def _values(feed):
    """Key/values of the newest depth_node status, or {}."""
    for arr in reversed(feed.messages('/diagnostics')):
        for st in arr.status:
            if 'depth_node' in st.name:
                return {kv.key: kv.value for kv in st.values}
    return {}


def test_a_wrong_extrinsic_turns_diagnostics_warn_and_widens_sigma(tmp_path):
    """The node is configured with an extrinsic 1.5 deg off in yaw: its diagnostics say so
    (extrinsic_shift_px, a WARN naming the extrinsic) while it goes on publishing depth."""
    from depth_node.sim.world import Conditions, RigSpec
    rig = SimRig.build(RigSpec(width=320, height=240, extrinsic_error_deg=1.5,
                               extrinsic_error_axis=(0.0, 1.0, 0.0)), Conditions(), 4)
    frames = list(rig.frames(2, seed=4))
    folder = save_frames(tmp_path / 'frames', frames)
    params = {'estimator.type': 'depth_node.testing.oracle:DisparityOracle',
              'estimator.options': f'{{"frames_dir": "{folder}"}}', 'diagnostics.period': 0.3,
              'lidar.wait': 0.3, 'filter.enable': False, 'extrinsic_check.period': 0.0,
              **extrinsic_parameters(rig.nominal)}
    proc = start_node(tmp_path, params)
    feed = client('feeder_extrinsic')
    try:
        assert feed.wait_connected(60), proc.output()
        for k, f in enumerate(frames):
            feed.send(f.rgb, rig.camera, 100.0 + 0.2 * k, f.lidar)
            time.sleep(0.3)
        assert wait_until(lambda: len(feed.messages('depth')) >= 2, 30, proc.alive), \
            proc.output()
        assert wait_until(lambda: 'extrinsic' in (_status(feed) or (0, ''))[1], 10,
                          proc.alive), (_status(feed), proc.output())
    finally:
        code = proc.stop()
        feed.close()
    assert code == 0, proc.output()
    level, message = _status(feed)
    assert level == 1, (level, message)
    assert 'px left of the image edges' in message or 'px right of the image edges' in message, \
        message
    assert abs(int(_values(feed)['extrinsic_shift_px'])) >= 3
