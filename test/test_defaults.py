"""Defaults are stated once: every node parameter's default equals the default of what it feeds.

The node's parameter table (``depth_node.ros.params.PARAMETERS``) feeds dataclass fields
(``EstimatorConfig``, ``PipelineConfig``, ``KeyframeConfig``). Building the configuration from
the table's defaults alone must give objects whose every field equals that field's own
default, so that code that builds one of them without parameters (tools, tests, the
evaluation) runs what the node runs. Keyword arguments of plain classes are not compared:
``KeyframePolicy()`` is off by default on purpose (a policy that names no criterion never
triggers; the node's ``keyframes.every_t`` is 5 s), and ``MarigoldEstimator`` defaults to one
ensemble member (the node's teacher uses 5).
"""

import dataclasses
import json

from depth_node.estimators.base import EstimatorConfig
from depth_node.pipeline.frame import PipelineConfig
from depth_node.pipeline.keyframes import KeyframeConfig
from depth_node.ros.params import BY_NAME, build_config


def _differences(built, cls):
    """Fields of dataclass instance ``built`` whose value differs from ``cls``'s default."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            continue
        if getattr(built, f.name) != default:
            out[f.name] = (getattr(built, f.name), default)
    return out


def test_estimator_defaults_agree_with_the_parameters():
    built = build_config({}).estimator
    assert _differences(built, EstimatorConfig) == {}
    assert EstimatorConfig().input_size == BY_NAME['estimator.input_size'].default == 0
    assert EstimatorConfig().options == json.loads(BY_NAME['estimator.options'].default)


def test_pipeline_defaults_agree_with_the_parameters():
    assert _differences(build_config({}).pipeline, PipelineConfig) == {}


def test_keyframe_defaults_agree_with_the_parameters():
    settings = build_config({'keyframes.enable': True, 'keyframes.model_path': 'teacher'})
    assert _differences(settings.keyframes.worker, KeyframeConfig) == {}
