"""Pipeline layer: one frame (+ sparse LiDAR) in, one typed result out. No rclpy.

The node, rosbag evaluation and benchmarks all run this code, so offline numbers are the
node's numbers.
"""

from depth_node.pipeline.frame import DepthPipeline, FrameInput, FrameResult, PipelineConfig

__all__ = ['DepthPipeline', 'FrameInput', 'FrameResult', 'PipelineConfig']
