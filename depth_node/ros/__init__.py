"""ROS layer: the only place that imports rclpy and message types."""
