"""The teacher -> student loop on a real graph: record the keyframe labels, train on the bag.

As on a vehicle: the node runs a (tiny, random) Depth Anything student with the Marigold keyframe
teacher, ``record`` writes the camera images and the teacher's ``keyframe/depth`` and
``keyframe/uncertainty`` into a bag, and ``train --bag`` fine-tunes the student on it.
"""

import json
import os
import threading
import time

import numpy as np
import yaml

from graph import client, start_node

import rclpy  # noqa: I100  (after graph: it sets the private graph's environment first)
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import String

from depth_node.offline.drive_bag import typestore
from depth_node.offline.reader import DriveReader, read_drive
from depth_node.ros.messages import array_to_image
from depth_node.ros.player import extrinsic_parameters, make_header, stamp_of, wait_until
from depth_node.ros.recorder import main as record_main, Recorder

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(os.path.dirname(HERE), 'data', 'sample_drive')
KEYFRAME_TOPICS = ('keyframe/depth', 'keyframe/uncertainty')


class _Running:
    """A Recorder in a context of its own, spun on a thread; ``close`` finishes the bag."""

    def __init__(self, path, topics, name):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        try:
            self.recorder = Recorder(path, topics, name=name, context=self.context, poll=0.1)
        except BaseException:
            rclpy.try_shutdown(context=self.context)
            raise
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.recorder)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.recorder.destroy_node()
        finally:
            rclpy.try_shutdown(context=self.context)


def _bag_messages(path):
    """Topic -> [(log_ns, bytes)] of a bag."""
    out = {}
    for m in DriveReader(path).messages():
        out.setdefault(m.topic, []).append((m.log_ns, bytes(m.data)))
    return out


def _offered(path, topic):
    meta = yaml.safe_load((path / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    for t in meta['topics_with_message_count']:
        if t['topic_metadata']['name'] == topic:
            qos = t['topic_metadata']['offered_qos_profiles']
            return qos[0] if isinstance(qos, list) else yaml.safe_load(qos)[0]
    raise KeyError(topic)


def test_recorder_writes_the_bytes_on_the_wire_with_receive_times(tmp_path):
    pub = client('recorder_test_publisher')
    chatter = pub.node.create_publisher(String, 'recorder_test/chatter', 10)
    bag = tmp_path / 'bag'
    rec = None
    sent_images, sent_strings = [], []
    try:
        # image: best effort (sensor data), type from the graph; chatter: reliable, type given
        rec = _Running(bag, {'image': None, '/recorder_test/chatter': 'std_msgs/msg/String'},
                       'recorder_under_test')
        assert wait_until(lambda: rec.recorder.subscribed
                          and pub.image_pub.get_subscription_count() >= 1
                          and chatter.get_subscription_count() >= 1, 20)
        time.sleep(0.5)  # let the subscriber match the publishers too (discovery is not atomic)
        t0 = time.time_ns()
        rng = np.random.default_rng(0)
        for k in range(3):
            msg = array_to_image(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), 'rgb8',
                                 make_header(100.0 + 0.1 * k, 'camera_optical'))
            sent_images.append(msg)
            pub.image_pub.publish(msg)
            time.sleep(0.05)
        for k in range(5):
            sent_strings.append(String(data=f'message {k}'))
            chatter.publish(sent_strings[-1])
        assert wait_until(lambda: rec.recorder.counts == {'/image': 3,
                                                          '/recorder_test/chatter': 5}, 10), \
            rec.recorder.counts
        t1 = time.time_ns()
    finally:
        if rec is not None:
            rec.close()
        pub.close()
    assert rec.recorder.types == {'/image': 'sensor_msgs/msg/Image',
                                  '/recorder_test/chatter': 'std_msgs/msg/String'}
    got = _bag_messages(bag)
    # The CDR bytes as sent; compared as messages: alignment padding bytes are not defined.
    assert [deserialize_message(d, Image) for _, d in got['/image']] == sent_images
    assert [deserialize_message(d, String) for _, d in got['/recorder_test/chatter']] == \
        sent_strings
    sizes = [len(serialize_message(m)) for m in sent_images]
    assert [len(d) for _, d in got['/image']] == sizes
    log = [ns for ns, _ in got['/image'] + got['/recorder_test/chatter']]
    assert all(t0 <= ns <= t1 for ns in log), (t0, log, t1)  # receive times, wall clock
    back = typestore().deserialize_cdr(got['/image'][1][1], 'sensor_msgs/msg/Image')
    assert (back.height, back.width, back.encoding) == (48, 64, 'rgb8')
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (100, 100_000_000)
    assert bytes(back.data) == bytes(sent_images[1].data)
    declared = DriveReader(bag).topics_in_bag()
    assert declared['/image'] == ('sensor_msgs/msg/Image', 3)
    assert _offered(bag, '/image')['reliability'] == 'best_effort'  # adapted to the publisher
    assert _offered(bag, '/recorder_test/chatter')['reliability'] == 'reliable'


def test_record_cli_takes_a_latched_topic_and_stops_after_its_duration(tmp_path):
    pub = client('recorder_cli_publisher')
    latched = pub.node.create_publisher(String, 'recorder_test/latched', QoSProfile(
        depth=5, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    bag = tmp_path / 'cli_bag'
    try:
        for text in ('a', 'b', 'c'):
            latched.publish(String(data=text))
        t0 = time.monotonic()
        assert record_main(['--out', str(bag), '--duration', '2.5',
                            '/recorder_test/latched']) == 0
        took = time.monotonic() - t0
    finally:
        pub.close()
    assert 2.5 <= took < 10
    got = _bag_messages(bag)['/recorder_test/latched']
    assert [typestore().deserialize_cdr(d, 'std_msgs/msg/String').data for _, d in got] == [
        'a', 'b', 'c']
    assert _offered(bag, '/recorder_test/latched')['durability'] == 'transient_local'
    assert record_main(['--out', str(bag), '--duration', '0.1', '/x']) == 2  # never overwrites


def test_keyframes_recorded_from_the_node_train_the_student(tmp_path):
    from safetensors.numpy import load_file
    from tiny_models import save_tiny_depth_anything, save_tiny_marigold

    from depth_node.estimators.depth_anything import DepthAnythingEstimator
    from depth_node.cli.train import main as train_main

    frames = []
    for f in read_drive(SAMPLE):
        frames.append(f)
        if len(frames) == 6:
            break
    camera, extrinsic = frames[0].camera, frames[0].lidar_to_camera
    student = save_tiny_depth_anything(tmp_path / 'tiny_da')
    teacher = save_tiny_marigold(tmp_path / 'tiny_marigold', processing_resolution=64)
    params = {'estimator.model_path': str(student), 'estimator.input_size': 140,
              'lidar.wait': 0.3, 'lidar.max_age': 0.05, 'diagnostics.period': 0.5,
              'keyframes.enable': True, 'keyframes.model_path': str(teacher),
              'keyframes.every_n': 2, 'keyframes.every_t': 0.0, 'keyframes.ensemble_size': 3,
              'keyframes.num_inference_steps': 1, 'keyframes.mode': 'thread',
              # A random teacher fits the LiDAR badly: accept its fit, this checks the wiring.
              'fit.max_residual': 10.0, **extrinsic_parameters(extrinsic)}
    proc = start_node(tmp_path, params)
    feed = client('feeder_teacher_loop')
    for topic in KEYFRAME_TOPICS:
        feed.received[topic] = []
        feed.node.create_subscription(
            Image, topic, lambda msg, topic=topic: feed.received[topic].append((0.0, msg)), 10)
    bag = tmp_path / 'keyframes_bag'
    rec = None
    stamps = [round(f.stamp, 6) for f in frames]
    try:
        # What goes over the graph: the client publishes the camera on /image (the node's
        # 'image'; a vehicle remaps it to /camera/image_rect).
        rec = _Running(bag, {'/image': None, '/keyframe/depth': None,
                             '/keyframe/uncertainty': None}, 'keyframe_recorder')
        assert feed.wait_connected(120), proc.output()
        assert wait_until(lambda: rec.recorder.subscribed
                          and feed.image_pub.get_subscription_count() >= 2, 30, proc.alive), \
            (rec.recorder.types, proc.output())
        time.sleep(0.5)
        for k, (f, stamp) in enumerate(zip(frames, stamps)):
            # Lock-step, so that no frame is superseded and no keyframe candidate replaced.
            feed.send(f.rgb, camera, stamp, f.lidar)
            assert wait_until(lambda: stamp in {stamp_of(m) for m in
                                                feed.messages('depth/relative')},
                              30, proc.alive), proc.output()
            if k % 2 == 0:  # keyframes: frames 0, 2, 4; wait for the teacher's label
                assert wait_until(lambda: stamp in {stamp_of(m) for m in feed.messages(
                    'keyframe/depth')} or _keyframe_runs(feed) > k // 2, 60, proc.alive), \
                    (feed.diagnostics(), proc.output())
        assert wait_until(lambda: _keyframe_runs(feed) >= 3, 30, proc.alive), proc.output()
        time.sleep(0.5)  # the last keyframe's messages are on their way
        kf = {t: len(feed.messages(t)) for t in KEYFRAME_TOPICS}
        assert wait_until(lambda: rec.recorder.counts == {
            '/image': 6, '/keyframe/depth': kf['keyframe/depth'],
            '/keyframe/uncertainty': kf['keyframe/uncertainty']}, 10), (rec.recorder.counts, kf)
    finally:
        code = proc.stop()
        feed.close()
        if rec is not None:
            rec.close()
    assert code == 0, proc.output()
    recorded = _bag_messages(bag)
    keyframes = len(recorded.get('/keyframe/depth', []))
    assert keyframes >= 2, (kf, proc.output())  # a random teacher's fit may be refused
    assert len(recorded['/keyframe/uncertainty']) == keyframes

    out = tmp_path / 'train'
    assert train_main(['--bag', str(bag), '--image-topic', '/image',
                       '--depth-topic', '/keyframe/depth',
                       '--uncertainty-topic', '/keyframe/uncertainty', '--init', str(student),
                       '--steps', '2', '--batch-size', '2', '--input-size', '56',
                       '--synthetic-seeds', '', '--val-seeds', '', '--threads', '1', '-q',
                       '--out', str(out)]) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['train_samples'] == keyframes, summary
    assert summary['data'].startswith(f'{keyframes} labelled images of keyframes_bag'), summary
    assert summary['step'] == 2 and np.isfinite(summary['train_loss_last50'])

    trained = DepthAnythingEstimator(out / 'student', input_size=56)
    pred = trained.predict(frames[0].rgb)
    assert pred.shape == frames[0].rgb.shape[:2] and np.isfinite(pred).all()
    before = load_file(str(student / 'model.safetensors'))
    after = load_file(str(out / 'student' / 'model.safetensors'))
    assert set(before) == set(after)
    assert any(not np.array_equal(before[k], after[k]) for k in before)


def _keyframe_runs(feed):
    """Keyframes the node's teacher has finished (its diagnostics; 0 before the first)."""
    for arr in reversed(feed.messages('/diagnostics')):
        for st in arr.status:
            if st.name.endswith('keyframes'):
                return int({kv.key: kv.value for kv in st.values}.get('run', 0))
    return 0


def test_labels_received_seconds_after_their_image_still_label_it(tmp_path):
    from rosbags.rosbag2 import Writer

    from depth_node.offline.drive_bag import MessageBuilder
    from depth_node.training.data import bag_samples, TeacherTopics

    m = MessageBuilder()
    writer = Writer(tmp_path / 'late', version=Writer.VERSION_LATEST)
    start = 1_700_000_000 * 10**9
    rgb = np.zeros((24, 32, 3), np.uint8)
    with writer:
        image, depth, unc = (writer.add_connection(t, 'sensor_msgs/msg/Image', typestore=m.ts)
                             for t in ('/image', '/keyframe/depth', '/keyframe/uncertainty'))
        for k in range(30):  # a 10 Hz camera; the teacher labels frame 0, 1.5 s later
            ns = start + k * 10**8
            writer.write(image, ns, m.serialize(m.image(ns, 'camera_optical', rgb, 'rgb8')))
            if k == 15:
                for conn, value in ((depth, 10.0), (unc, 0.1)):
                    writer.write(conn, ns, m.serialize(m.image(
                        start, 'camera_optical', np.full((24, 32), value, np.float32),
                        '32FC1')))
        # a label whose image is not in the bag
        ns = start + 40 * 10**8
        for conn in (depth, unc):
            writer.write(conn, ns, m.serialize(m.image(
                ns, 'camera_optical', np.ones((24, 32), np.float32), '32FC1')))
    issues = []
    got = list(bag_samples(tmp_path / 'late', TeacherTopics(image='/image'), issues=issues))
    assert len(got) == 1, issues
    assert np.allclose(got[0].target, 0.1)  # 1 / 10 m
    assert np.allclose(got[0].weight, 1 / (1 + (0.1 / (0.05 * 10.0)) ** 2))
    assert any('no /image' in i for i in issues), issues
