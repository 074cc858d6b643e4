"""The one bag reader: stamp pairing (StampedCache), the bag's own types and the default-type
fallback, and damaged MCAP files read on with the mcap library (truncated, corrupt chunks)."""

import dataclasses
import os
import shutil
import sqlite3
from collections import Counter

import numpy as np
import pytest
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import StoragePlugin
from rosbags.typesys import get_types_from_msg, get_typestore, Stores

from depth_node.core.errors import DepthNodeError
from depth_node.offline.drive_bag import (DEFAULT_START_NS, DriveTopics, MessageBuilder, typestore,
                                          write_drive)
from depth_node.offline.reader import DriveReader, read_drive
from depth_node.sim.frames import SimRig
from depth_node.sim.scene import LidarModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, 'data', 'sample_drive')


@pytest.fixture(scope='module')
def rig():
    return SimRig.default(64, 48, lidar=LidarModel(azimuth_step_deg=4.0))


def _nearest_by_brute_force(image_ns, sweep_ns, tol_ns):
    """The rule, written out: the sweep stamp nearest the image within tol (earlier on a tie)."""
    best = None
    for s in sorted(sweep_ns):
        d = abs(s - image_ns)
        if d <= tol_ns and (best is None or d < abs(best - image_ns)):
            best = s
    return best


def _same_frames(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x.index, x.stamp_ns, x.lidar_stamp_ns, x.frame_id, x.lidar_frame_id) == \
            (y.index, y.stamp_ns, y.lidar_stamp_ns, y.frame_id, y.lidar_frame_id)
        np.testing.assert_array_equal(x.rgb, y.rgb)
        for u, v in ((x.depth, y.depth), (x.lidar, y.lidar), (x.intensity, y.intensity)):
            assert (u is None) == (v is None)
            if u is not None:
                np.testing.assert_array_equal(u, v)


def test_pairing_on_the_sample_bag_is_the_nearest_rule_and_both_readers_agree():
    frames = list(DriveReader(SAMPLE).frames())
    assert len(frames) == 20
    stamps = [f.stamp_ns for f in frames]
    assert all(f.lidar_stamp_ns == _nearest_by_brute_force(f.stamp_ns, stamps, 50_000_000)
               for f in frames)
    assert all(f.depth is not None and f.camera is not None for f in frames)
    _same_frames(frames, list(read_drive(SAMPLE)))
    with pytest.raises(DepthNodeError, match=r"no /nope messages \(topics: \['/camera"):
        list(read_drive(SAMPLE, DriveTopics(image='/nope')))


def test_jittered_lidar_stamps_pair_with_the_nearest_sweep_within_tolerance(rig, tmp_path):
    rng = np.random.default_rng(7)
    jitter = rng.uniform(-0.07, 0.07, 12)  # s; frames every 0.1 s
    jitter[3], jitter[4] = 0.065, -0.065  # sweep 3 is nearer image 4 than sweep 4 is
    frames = [dataclasses.replace(f, lidar_stamp=f.stamp + float(j))
              for f, j in zip(rig.frames(12, rate=10.0, start=1.0), jitter)]
    write_drive(tmp_path / 'bag', frames, rig.camera, rig.lidar_to_camera, ground_truth=False)
    sweep_ns = {DEFAULT_START_NS + int(round(f.lidar_stamp * 1e9)): f for f in frames}
    tol = 50_000_000
    back = list(DriveReader(tmp_path / 'bag', lidar_tolerance=tol * 1e-9).frames())
    assert len(back) == 12
    expected = [_nearest_by_brute_force(b.stamp_ns, sweep_ns, tol) for b in back]
    assert [b.lidar_stamp_ns for b in back] == expected
    assert expected[4] == DEFAULT_START_NS + int(round(frames[3].lidar_stamp * 1e9))
    assert None in expected  # some images have no sweep close enough
    for b in back:
        if b.lidar_stamp_ns is None:
            assert b.lidar is None and b.lidar_to_camera is None
        else:
            np.testing.assert_array_equal(b.lidar, sweep_ns[b.lidar_stamp_ns].lidar)
    _same_frames(back, list(read_drive(tmp_path / 'bag')))


def test_a_bag_without_message_definitions_reads_with_the_default_types(rig, tmp_path):
    frames = list(rig.frames(3, rate=5.0, start=0.5))
    write_drive(tmp_path / 'bag', frames, rig.camera, rig.lidar_to_camera, storage='sqlite3')
    want = list(read_drive(tmp_path / 'bag'))
    # As a bag recorded by an older rosbag2 (Humble, sqlite3): no definitions in the bag.
    with sqlite3.connect(tmp_path / 'bag' / 'bag.db3') as db:
        db.execute('DELETE FROM message_definitions')
    with pytest.raises(AnyReaderError, match='no type definitions'):
        with AnyReader([tmp_path / 'bag']):
            pass
    reader = DriveReader(tmp_path / 'bag')
    _same_frames(list(reader.frames()), want)
    assert reader.issues == []


def test_types_come_from_the_bag_own_definitions(tmp_path):
    name = 'my_msgs/msg/Reading'
    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(get_types_from_msg('std_msgs/Header header\nfloat64 value\n', name))
    assert name not in typestore().types
    header = MessageBuilder().header(DEFAULT_START_NS, 'sensor')
    with Writer(tmp_path / 'bag', version=Writer.VERSION_LATEST,
                storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection('/reading', name, typestore=store)
        for k in range(3):
            msg = store.types[name](header=header, value=0.5 * k)
            writer.write(conn, DEFAULT_START_NS + k, store.serialize_cdr(msg, name))
    reader = DriveReader(tmp_path / 'bag')
    got = [reader.decode(m) for m in reader.messages()]
    assert [g.value for g in got] == [0.0, 0.5, 1.0] and reader.issues == []
    # Without its footer, rosbags cannot open the file: the types come from its schema records.
    mcap = tmp_path / 'bag' / 'bag.mcap'
    mcap.write_bytes(mcap.read_bytes()[:-20])
    reader = DriveReader(mcap)
    got = [reader.decode(m) for m in reader.messages()]
    assert [g.value for g in got] == [0.0, 0.5, 1.0]
    assert [i.message.split(' (')[0] for i in reader.issues] == \
        ['cannot be opened as a rosbag2 bag']


def _damaged(tmp_path, name, damage, bare=False):
    """A copy of the sample bag whose MCAP file went through ``damage`` (bare: the file only)."""
    src = os.path.join(SAMPLE, 'sample_drive.mcap')
    data = bytearray(open(src, 'rb').read())
    if bare:
        path = tmp_path / f'{name}.mcap'
        path.write_bytes(damage(data))
        return path
    shutil.copytree(SAMPLE, tmp_path / name)
    (tmp_path / name / 'sample_drive.mcap').write_bytes(damage(data))
    return tmp_path / name


def _corrupt(d):
    mid = len(d) // 2
    d[mid:mid + 4096] = np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes()
    return bytes(d)


@pytest.fixture(scope='module')
def healthy():
    return [(m.topic, m.log_ns, bytes(m.data)) for m in DriveReader(SAMPLE).messages()]


def test_corrupt_chunk_loses_its_messages_only_and_none_twice(tmp_path, healthy):
    reader = DriveReader(_damaged(tmp_path, 'corrupt', _corrupt))
    got = [(m.topic, m.log_ns, bytes(m.data)) for m in reader.messages()]
    assert max(Counter((t, ns) for t, ns, _ in got).values()) == 1  # resumed without repeats
    assert set(got) <= set(healthy)
    lost = Counter(t for t, _, _ in set(healthy) - set(got))
    assert lost == {'/camera/image_rect': 1, '/lidar/points': 1, '/tf': 1}
    reported = [i for i in reader.issues if 'messages lost' in i.message]
    assert {i.topic: int(i.message.split(' ')[0]) for i in reported} == lost  # as indexed
    assert all('ZstdError' in i.message and 'chunk at byte' in i.message for i in reported)
    assert 'reading stopped at log time' in reader.issues[0].message


def test_truncated_bare_mcap_file_yields_what_is_before_the_cut(tmp_path, healthy):
    path = _damaged(tmp_path, 'cut', lambda d: bytes(d[:len(d) // 2]), bare=True)
    reader = DriveReader(path)
    got = [(m.topic, m.log_ns, bytes(m.data)) for m in reader.messages()]
    assert got == healthy[:len(got)] and 40 < len(got) < len(healthy)
    assert any('the file was truncated' in i.message for i in reader.issues)
    reader = DriveReader(path)
    frames = list(reader.frames())
    assert [f.index for f in frames] == list(range(10))
    assert all(f.lidar is not None and f.lidar_to_camera is not None for f in frames[:9])
    with pytest.raises(DepthNodeError, match='truncated'):
        list(read_drive(path))  # the strict reader refuses a damaged bag


def test_a_file_that_is_not_mcap_is_one_issue(tmp_path):
    path = tmp_path / 'noise.mcap'
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 1000, np.uint8).tobytes())
    reader = DriveReader(path)
    assert list(reader.frames()) == []
    assert any('not an MCAP file' in i.message for i in reader.issues), reader.issues


def test_training_labels_pair_with_images_by_the_same_nearest_rule(tmp_path):
    from depth_node.training.data import bag_samples, TeacherTopics

    m = MessageBuilder()
    rgb = np.zeros((8, 12, 3), np.uint8)
    offsets_us = [0, 400, -900, 2000]  # label stamp minus image stamp; tolerance 1 ms
    with Writer(tmp_path / 'bag', version=Writer.VERSION_LATEST) as writer:
        image, depth = (writer.add_connection(t, 'sensor_msgs/msg/Image', typestore=m.ts)
                        for t in ('/image', '/depth'))
        for k, off in enumerate(offsets_us):
            ns = DEFAULT_START_NS + k * 10**8
            writer.write(image, ns, m.serialize(m.image(ns, 'cam', rgb, 'rgb8')))
            label = np.full((8, 12), 1.0 + k, np.float32)
            msg = m.image(ns + off * 1000, 'cam', label, '32FC1')
            writer.write(depth, ns + 1000, m.serialize(msg))
    issues = []
    got = list(bag_samples(tmp_path / 'bag', TeacherTopics('/image', '/depth', ''),
                           issues=issues))
    assert [float(s.target[0, 0]) for s in got] == pytest.approx([1.0, 1 / 2.0, 1 / 3.0])
    assert len(issues) == 1 and 'no /image' in issues[0], issues
