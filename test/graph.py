"""Real-graph test helpers: a private local-only graph, the node as a subprocess, a client.

Every graph test gets a private ``ROS_DOMAIN_ID`` and ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``
(set in this process before rclpy.init, and in the node's environment) and the shipped Fast DDS
profile; the node is always stopped in ``finally``.
"""

from __future__ import annotations

import os

from depth_node.testing.nodeproc import NodeProcess, private_graph_env, write_params

ENV = private_graph_env(int(os.environ['DEPTH_NODE_TEST_DOMAIN'])
                        if 'DEPTH_NODE_TEST_DOMAIN' in os.environ else None)
os.environ.update(ENV)


from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from depth_node.messages.readers import stamp_ns  # noqa: E402
from depth_node.ros.player import GraphClient, SpunNode  # noqa: E402


#: Reliable subscriptions of the node's inputs (root namespace), for lock-step tests.
RELIABLE_INPUTS = {f'qos_overrides./{topic}.subscription.reliability': 'reliable'
                   for topic in ('image', 'camera_info', 'points')}


def start_node(tmp_path, params: dict) -> NodeProcess:
    path = write_params(str(tmp_path / 'params.yaml'), params)
    return NodeProcess(path, str(tmp_path / 'node.log'), ENV)


def client(name: str) -> GraphClient:
    c = GraphClient(name)
    c.record()
    return c


class ReliableFeeder(SpunNode):
    """Reliable publishers of the node's inputs, reliable recorders of its outputs (by stamp).

    For lock-step tests with the node's ``RELIABLE_INPUTS``: nothing is lost on the way.
    """

    OUT = {'depth': Image, 'depth/points': PointCloud2, 'depth/camera_info': CameraInfo,
           'depth/colored': Image, 'depth/relative': Image}

    def __init__(self, name: str) -> None:
        super().__init__(name)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                         reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {'image': self.node.create_publisher(Image, 'image', qos),
                     'camera_info': self.node.create_publisher(CameraInfo, 'camera_info', qos),
                     'points': self.node.create_publisher(PointCloud2, 'points', qos)}
        self.got = {t: {} for t in self.OUT}
        for topic, kind in self.OUT.items():
            def cb(msg, topic=topic):
                with self._lock:
                    self.got[topic][stamp_ns(msg)] = msg
            self.node.create_subscription(kind, topic, cb, 50)
        self.diagnostics: list[dict[str, str]] = []  # depth_node's key/values, in order

        def on_diag(arr):
            for st in arr.status:
                if st.name.endswith(': metric depth'):
                    with self._lock:
                        self.diagnostics.append({kv.key: kv.value for kv in st.values})
        self.node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 50)
        self.start()

    def connected(self) -> bool:
        return all(p.get_subscription_count() > 0 for p in self.pubs.values())

    def has(self, topic: str, stamp: int) -> bool:
        with self._lock:
            return stamp in self.got[topic]

    def latest_diagnostics(self) -> dict[str, str]:
        with self._lock:
            return dict(self.diagnostics[-1]) if self.diagnostics else {}
