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

from depth_node.ros.player import GraphClient  # noqa: E402


def start_node(tmp_path, params: dict) -> NodeProcess:
    path = write_params(str(tmp_path / 'params.yaml'), params)
    return NodeProcess(path, str(tmp_path / 'node.log'), ENV)


def client(name: str) -> GraphClient:
    c = GraphClient(name)
    c.record()
    return c
