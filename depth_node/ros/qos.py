"""QoS of the node's topics, the ROS 2 way: defaults in code, ``qos_overrides`` to change them.

Every subscription and publisher of the node is created with
``QoSOverridingOptions.with_default_policies()``, so rclpy declares, per topic and entity,
read-only parameters for history, depth and reliability that a params file (or ``-p``)
overrides, as for any rclpy/rclcpp node::

    /**:
      ros__parameters:
        qos_overrides:
          /camera/image:               # the resolved topic name (namespace and remaps applied)
            subscription:
              reliability: reliable    # reliable | best_effort | system_default
              history: keep_last       # keep_last | keep_all | system_default
              depth: 10

Defaults: inputs (``image``, ``camera_info``, ``points``) take sensor-data QoS (best effort,
volatile, keep last 5); outputs are reliable, keep last 5 (rviz2's default subscriptions and
best-effort subscribers both receive them).

The ``qos.sensor_data``, ``qos.output_reliable`` and ``qos.depth`` parameters of the previous
release still set those defaults for one more release, with a deprecation warning; a
``qos_overrides`` value wins over them. Policy values are checked here, before rclpy sees them,
so a bad one stops the node naming the parameter.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Optional, TypeVar

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions

from depth_node.core.errors import ConfigError

#: The deprecated parameters and what replaces each (shown in the warning).
DEPRECATED = {
    'qos.sensor_data': 'qos_overrides.<input topic>.subscription.reliability',
    'qos.output_reliable': 'qos_overrides.<output topic>.publisher.reliability',
    'qos.depth': 'qos_overrides.<topic>.{subscription,publisher}.depth',
}

#: Policy values that ``qos_overrides`` accepts (rclpy's enum names, lower case).
_CHOICES = {
    'reliability': ('reliable', 'best_effort', 'system_default'),
    'history': ('keep_last', 'keep_all', 'system_default'),
}
_MAX_DEPTH = 100_000

E = TypeVar('E')


def input_qos(sensor_data: bool = True, depth: int = 5) -> QoSProfile:
    """Default QoS of the subscriptions: sensor data (best effort), keep last ``depth``."""
    if sensor_data:
        return QoSProfile(reliability=qos_profile_sensor_data.reliability,
                          durability=qos_profile_sensor_data.durability,
                          history=HistoryPolicy.KEEP_LAST, depth=depth)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE)


def output_qos(reliable: bool = True, depth: int = 5) -> QoSProfile:
    """Default QoS of the publishers: reliable (or best effort), keep last ``depth``."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=(ReliabilityPolicy.RELIABLE if reliable
                                   else ReliabilityPolicy.BEST_EFFORT))


def deprecation_warnings(given: Iterable[str]) -> list[str]:
    """One warning for each deprecated ``qos.*`` parameter among the names ``given``."""
    return [f"parameter '{name}' is deprecated and will be removed in the next release: use "
            f'{DEPRECATED[name]} (see README, QoS)' for name in sorted(set(given))
            if name in DEPRECATED]


def overrides_of(node: Node) -> dict[str, Any]:
    """The ``qos_overrides.*`` values given to ``node`` (params file, ``-p``), by name."""
    given = getattr(node, '_parameter_overrides', {}) or {}
    return {name: p.value for name, p in given.items() if name.startswith('qos_overrides.')}


def check_override(name: str, value: Any) -> None:
    """Raise ConfigError if ``value`` is no valid value of the QoS override ``name``."""
    policy = name.rsplit('.', 1)[-1]
    if policy in _CHOICES:
        if not isinstance(value, str) or value.lower() not in _CHOICES[policy]:
            raise ConfigError(name, 'must be one of ' + ', '.join(_CHOICES[policy]), value)
    elif policy == 'depth':
        if not isinstance(value, int) or isinstance(value, bool) or \
                not 1 <= value <= _MAX_DEPTH:
            raise ConfigError(name, f'must be an integer in [1, {_MAX_DEPTH}]', value)
    else:
        raise ConfigError(name, 'is not a QoS policy depth_node lets override (history, '
                          'depth, reliability)', value)


class TopicQos:
    """Creates the node's publishers and subscriptions with ``qos_overrides`` support.

    Remembers the parameter prefix of each entity, so that :meth:`unmatched` can name the
    overrides that matched none (a wrong namespace, a typo, a topic of another node).
    """

    def __init__(self, node: Node) -> None:
        self._node = node
        self._given = overrides_of(node)
        self._prefixes: list[str] = []

    def publisher(self, msg_type: Any, topic: str, qos: QoSProfile) -> Any:
        """``node.create_publisher`` with the default QoS policies overridable."""
        qos = copy.copy(qos)  # rclpy writes the overrides into the profile it is given
        return self._create('publisher', topic, lambda options: self._node.create_publisher(
            msg_type, topic, qos, qos_overriding_options=options))

    def subscription(self, msg_type: Any, topic: str, callback: Callable[[Any], None],
                     qos: QoSProfile) -> Any:
        """``node.create_subscription`` with the default QoS policies overridable."""
        qos = copy.copy(qos)
        return self._create('subscription', topic, lambda options:
                            self._node.create_subscription(msg_type, topic, callback, qos,
                                                           qos_overriding_options=options))

    def _create(self, entity: str, topic: str, make: Callable[[QoSOverridingOptions], E]) -> E:
        prefix = f'qos_overrides.{self._node.resolve_topic_name(topic)}.{entity}.'
        self._prefixes.append(prefix)
        mine = {n: v for n, v in self._given.items() if n.startswith(prefix)}
        for name, value in sorted(mine.items()):
            check_override(name, value)
        try:
            return make(QoSOverridingOptions.with_default_policies())
        except Exception as exc:  # rclpy's QoS/parameter exceptions have no common base
            name = sorted(mine)[0] if mine else prefix.rstrip('.')
            raise ConfigError(name, f'refused by rclpy: {exc}', mine.get(name)) from None

    def unmatched(self) -> list[str]:
        """Names of the given ``qos_overrides`` that no entity created so far declares."""
        return sorted(n for n in self._given
                      if not any(n.startswith(p) for p in self._prefixes))

    def topics(self) -> list[str]:
        """``<topic>.<entity>`` of every entity created so far (for messages)."""
        return [p[len('qos_overrides.'):-1] for p in self._prefixes]


def unmatched_warning(qos: TopicQos) -> Optional[str]:
    """The warning for overrides that match none of the node's topics, or None."""
    names = qos.unmatched()
    if not names:
        return None
    return (f"{', '.join(names)} match{'es' if len(names) == 1 else ''} no topic of this "
            f"node: ignored (its topics: {', '.join(qos.topics())})")
