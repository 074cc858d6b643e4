"""Declaring the parameter table on the node: descriptors (ranges, choices, read-only) and a
:class:`ConfigError` naming the parameter for what rclpy refuses or does not know, or what the
keyframe teacher refuses (:func:`teacher_error`)."""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

from depth_node.core.errors import ConfigError
from depth_node.ros.params import BY_NAME, check_value, Param, PARAMETERS

#: rclpy's own parameters, which a params file may set besides ours.
RCLPY_PARAMS = ('use_sim_time', 'start_type_description_service', 'qos_overrides.')


def descriptor(p: Param) -> ParameterDescriptor:
    """The ``ParameterDescriptor`` of one row of the table (``ros2 param describe`` shows it)."""
    d = ParameterDescriptor(description=p.description, read_only=p.read_only)
    if p.choices is not None:
        d.additional_constraints = 'one of: ' + ', '.join(repr(c) for c in p.choices)
    if p.range is not None and not isinstance(p.default, bool):
        if isinstance(p.default, int):
            d.integer_range = [IntegerRange(from_value=int(p.range[0]),
                                            to_value=int(p.range[1]), step=1)]
        elif isinstance(p.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]),
                                                         to_value=float(p.range[1]), step=0.0)]
    return d


def declare_parameters(node: Node) -> dict[str, Any]:
    """Declare every parameter on ``node``; their values (overrides applied), by name.

    Raises
    ------
    ConfigError
        An override that is not a parameter of the node (a typo), or one rclpy refuses (type,
        range), naming it.
    """
    overrides = getattr(node, '_parameter_overrides', {}) or {}
    known = {p.name for p in PARAMETERS}
    for name in sorted(overrides):
        if name not in known and not name.startswith(RCLPY_PARAMS):
            raise ConfigError(name, 'is not a parameter of depth_node (typo?)',
                              overrides[name].value)
        if name in BY_NAME:  # the table's words for a range or choice, not rclpy's
            try:
                check_value(BY_NAME[name], overrides[name].value)
            except ConfigError as exc:
                if not exc.rule.startswith('must be of type'):
                    raise
    values = {}
    for p in PARAMETERS:
        try:
            param = node.declare_parameter(p.name, p.default, descriptor(p))
        except Exception as exc:  # rclpy's range/type exceptions have no common base
            given = overrides[p.name].value if p.name in overrides else p.default
            raise ConfigError(p.name, str(exc).strip(), given) from None
        values[p.name] = param.value
    return values


def teacher_error(exc: ConfigError) -> ConfigError:
    """A keyframe teacher's :class:`ConfigError` naming the ``keyframes.*`` parameter.

    The teacher is an estimator built from ``keyframes.*``: its errors say ``estimator.*``
    (``estimator.model_path`` for a missing ``keyframes.model_path``), which would send the
    user to the wrong parameter.
    """
    name = exc.name
    if not name.startswith('estimator.'):
        return exc
    parts = name.split('.')[1:]  # options.ensemble_size -> keyframes.ensemble_size
    key = 'keyframes.' + '.'.join(parts)
    if parts[0] == 'options':
        key = 'keyframes.' + parts[1] if len(parts) == 2 else 'keyframes.options'
        key = key if key in BY_NAME else 'keyframes.options'
    if key not in BY_NAME:
        return exc
    return ConfigError(key, exc.rule, exc.value)
