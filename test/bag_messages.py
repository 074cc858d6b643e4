"""Reading test bags back with rosbags' own deserializer (an implementation independent of the
package's reader), shared by the bag-writing tests."""

from rosbags.rosbag2 import Reader
from rosbags.typesys import get_typestore, Stores

from depth_node.offline.drive_bag import DEFAULT_START_NS

TS = get_typestore(Stores.ROS2_JAZZY)  # an independent store: same definitions as Kilted


def bag_messages(path):
    """{topic: [(bag timestamp, message)]} decoded with rosbags' own deserializer."""
    out = {}
    with Reader(path) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, TS.deserialize_cdr(raw, conn.msgtype)))
    return out


def bag_ns(seconds):
    """The bag timestamp (ns) of ``seconds`` on the drive's clock."""
    return DEFAULT_START_NS + int(round(seconds * 1e9))
