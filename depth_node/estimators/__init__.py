"""Estimator layer: relative/metric depth models (torch and friends, no rclpy).

Heavy libraries are imported inside each backend; :func:`build_estimator` builds one from
configuration.
"""

from depth_node.estimators.base import Estimator, EstimatorConfig
from depth_node.estimators.registry import build_estimator

__all__ = ['Estimator', 'EstimatorConfig', 'build_estimator']
