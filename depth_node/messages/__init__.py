"""ROS-free message boundary: encodings and depth units, readers, and the output layouts.

Readers take rclpy message objects and rosbags message objects alike (any object with the
message's fields; byte fields through the buffer protocol), so the node and every offline tool
decode a message with this one code and reach the same decision with the same error text.
Nothing here imports rclpy or a message package: the node's :mod:`depth_node.ros` builds rclpy
messages from the layouts of :mod:`depth_node.messages.layout`.
"""
