"""Core layer: numpy only (no rclpy, no torch).

Camera model, LiDAR projection, affine solvers, depth to points, colour maps.
"""
