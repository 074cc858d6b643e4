"""depth_node: metric depth from a camera, a relative depth model and sparse LiDAR."""

__version__ = "0.1.0"
