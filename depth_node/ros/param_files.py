"""The node's params file: rendering ``config/depth.yaml`` from the table, and reading a file
as ``ros2 run ... --params-file`` would give it to the node (for the offline tools).

Why not ``rclpy.parameter.parameter_dict_from_yaml_file``: it does not read a file as rcl (the
node's parser) does. It parses string values again as YAML (``estimator.options: '{}'``
becomes a dict) and turns a list mixing integers and floats into a string, where rcl refuses
that list. :func:`load_params_file` reads the YAML once, as rcl does, and refuses what rcl
refuses, naming the parameter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from depth_node.core.errors import ConfigError
from depth_node.ros.declare import RCLPY_PARAMS
from depth_node.ros.params import PARAMETERS


def load_params_file(path: str | Path, node_name: str = 'depth_node',
                     keep_rclpy: bool = False) -> dict[str, Any]:
    """Parameter values for ``node_name`` from a ROS 2 params file, with dotted names.

    Sections apply as ``ros2 run ... --params-file`` applies them: ``/**`` (or ``**``) to every
    node, ``<name>``, ``/<name>``, ``/<namespace>/<name>`` or ``/**/<name>`` to the node of that
    name; later sections override earlier ones. Each section's ``ros__parameters`` is flattened
    (``{'fit': {'method': 'lsq'}}`` -> ``{'fit.method': 'lsq'}``). rclpy's own parameters
    (``use_sim_time``, ``qos_overrides.*``, ...) are left out, as the node ignores them,
    unless ``keep_rclpy``.

    Raises
    ------
    ConfigError
        The file is not YAML, has no section for the node, or a section has no
        ``ros__parameters`` mapping (the message names the file).
    """

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError('--params-file', f'cannot be read as YAML ({exc})', str(p)) from None
    if not isinstance(doc, dict):
        raise ConfigError('--params-file', 'must map node names to ros__parameters', str(p))
    values: dict[str, Any] = {}
    matched = False
    for key, section in doc.items():
        name = str(key).strip()
        last = name.rstrip('/').rsplit('/', 1)[-1]
        if not (name in ('/**', '**') or last == node_name):
            continue
        if not isinstance(section, dict) or not isinstance(section.get('ros__parameters'),
                                                           dict):
            raise ConfigError('--params-file', f'section {name!r} has no ros__parameters '
                              'mapping', str(p))
        matched = True
        _flatten(section['ros__parameters'], '', values, str(p))
    if not matched:
        raise ConfigError('--params-file', f'has no section for node {node_name!r} (sections: '
                          f'{", ".join(map(str, doc))}; use /** or {node_name})', str(p))
    return {k: v for k, v in values.items() if keep_rclpy or not k.startswith(RCLPY_PARAMS)}


def params_files(argv: Sequence[str]) -> list[str]:
    """The files of every ``--params-file FILE`` in a ROS command line, in order."""
    return [path for flag, path in zip(argv, argv[1:]) if flag == '--params-file']


def check_params_files(paths: Sequence[str], node_name: str) -> None:
    """Raise :class:`ConfigError` (naming the file and the sections seen) unless each params
    file has a section that applies to ``node_name``.

    rcl applies a file's sections by node name and silently ignores the others: parameters
    filed under another name (``depth_nod:``) would leave the node on its defaults - the
    identity extrinsic, no metric depth - without a word.
    """
    for path in paths:
        load_params_file(path, node_name)


def node_values(params_file: Optional[str | Path], node_name: str = 'depth_node',
                overrides: Sequence[str] = (), values: Optional[dict[str, Any]] = None
                ) -> dict[str, Any]:
    """Parameter values as the node would get them: the params file, then ``NAME:=VALUE``
    overrides (values in YAML, as ``ros2 run ... -p``), then ``values`` (already typed).

    Raises
    ------
    ConfigError
        An unreadable params file, or an override that is not ``NAME:=VALUE`` (``--param``).
    """
    out = load_params_file(params_file, node_name) if params_file else {}
    for item in overrides:
        name, sep, raw = item.partition(':=')
        if not sep or not name.strip():
            raise ConfigError('--param', 'must be NAME:=VALUE', item)
        out[name.strip()] = yaml.safe_load(raw)
    out.update(values or {})
    return out


def _flatten(tree: dict, prefix: str, out: dict[str, Any], path: str) -> None:
    for k, v in tree.items():
        name = f'{prefix}{k}'
        if isinstance(v, dict):
            _flatten(v, name + '.', out, path)
            continue
        if isinstance(v, list) and len({_rcl_kind(x) for x in v}) > 1:
            raise ConfigError(name, f'mixes value types in a list (rcl refuses the file: '
                              f'write {[float(x) if _rcl_kind(x) == "int" else x for x in v]} '
                              f'for doubles; in {path})', v)
        out[name] = v


def _rcl_kind(v: Any) -> str:
    """rcl's type of a sequence element: bool, int, float or str (one per sequence)."""
    return 'bool' if isinstance(v, bool) else 'int' if isinstance(v, int) else \
        'float' if isinstance(v, float) else 'str'


def params_yaml() -> str:
    """``config/depth.yaml`` as rendered from the table (a test keeps the file equal to it)."""
    import textwrap

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return 'true' if v else 'false'
        if isinstance(v, str):
            return json.dumps(v) if v == '' or v.startswith('{') else v
        if isinstance(v, list):
            return '[' + ', '.join(repr(float(x)) for x in v) + ']'
        return repr(v)

    lines = ['# depth_node parameters: every one, with its default.',
             '# Values marked (restart) are read-only while the node runs.',
             '# Use with: ros2 launch depth_node depth.launch.py params_file:=<this file>',
             '# (generated from depth_node/ros/params.py: python -m depth_node.ros.params)',
             '/**:', '  ros__parameters:']
    group = None
    for p in PARAMETERS:
        if p.deprecated:
            continue
        g, key = p.name.split('.', 1)
        if g != group:
            if group is not None:
                lines.append('')
            lines.append(f'    {g}:')
            group = g
        desc = p.description + (' (restart)' if p.read_only else '')
        if p.range:
            desc += f' Range [{p.range[0]}, {p.range[1]}].'
        lines += ['      # ' + t for t in textwrap.wrap(desc, 88)]
        lines.append(f'      {key}: {fmt(p.default)}')
    lines += ['', *('    ' + t if t else '' for t in _QOS_EXAMPLE.splitlines())]
    return '\n'.join(lines) + '\n'


#: QoS is set the ROS 2 way, per topic (depth_node/ros/qos.py); the example in the YAML.
_QOS_EXAMPLE = """\
# QoS, per topic and entity (resolved names: namespace and remaps applied); defaults:
# inputs best effort (sensor data), outputs reliable, keep last 5. For example:
# qos_overrides:
#   /image:
#     subscription:
#       reliability: reliable  # reliable | best_effort | system_default
#       depth: 10
#   /depth/points:
#     publisher:
#       reliability: best_effort"""


__all__ = ['check_params_files', 'load_params_file', 'params_files', 'params_yaml']


if __name__ == '__main__':
    print(params_yaml(), end='')
