"""Pipeline layer: one frame (+ sparse LiDAR) in, one typed result out. No rclpy.

``runner`` (what the node and the bag evaluation do with each frame) calls ``frame`` (estimate,
align, depth, points), which calls ``alignment`` (project, see-through, fit); ``published``
says what goes out, ``stats`` counts it; ``keyframes`` runs the teacher on its own worker.
The node, rosbag evaluation and benchmarks all run this code, so offline numbers are the
node's numbers.
"""

from depth_node.pipeline.frame import DepthPipeline, FrameInput, FrameResult, PipelineConfig

__all__ = ['DepthPipeline', 'FrameInput', 'FrameResult', 'PipelineConfig']
