"""Lint like ament: flake8 at 99 columns (setup.cfg) and pep257 docstrings of modules."""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ['depth_node', 'test', 'launch', 'setup.py']


def test_flake8_clean():
    out = subprocess.run([sys.executable, '-m', 'flake8', *SOURCES], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_package_module_has_a_docstring():
    missing = []
    for folder, _, files in os.walk(os.path.join(ROOT, 'depth_node')):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                with open(path) as f:
                    if not ast.get_docstring(ast.parse(f.read())):
                        missing.append(os.path.relpath(path, ROOT))
    assert not missing, missing


def test_layers_import_only_layers_above():
    """DESIGN.md layers: core < messages < estimators < pipeline < sim < offline < training < ros
    < cli / bench / testing; rclpy and message packages only in ros; no torch in core or
    messages; runtime layers (core .. pipeline, ros) never import sim, offline, training, cli,
    bench or testing, except ros tools that are not the node (see test_node_imports)."""
    order = {'core': 0, 'messages': 1, 'estimators': 2, 'pipeline': 3, 'sim': 4, 'offline': 5,
             'training': 6, 'ros': 7, 'testing': 8, 'bench': 9, 'cli': 10}
    bad = []
    for layer, rank in order.items():
        for path in _modules(os.path.join(ROOT, 'depth_node', layer)):
            name = os.path.relpath(path, os.path.join(ROOT, 'depth_node', layer))
            for mod in _imports(path):
                parts = mod.split('.')
                if parts[0] == 'depth_node' and len(parts) > 1 and parts[1] in order \
                        and order[parts[1]] > rank:
                    bad.append(f'{layer}/{name} imports {mod}')
                if parts[0] in ('rclpy', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs',
                                'rcl_interfaces') and layer != 'ros':
                    bad.append(f'{layer}/{name} imports {mod}')
                if parts[0] in ('torch', 'transformers') and rank <= 1:
                    bad.append(f'{layer}/{name} imports {mod}')
    assert not bad, bad


def test_node_imports_only_runtime_layers():
    """The node's module, imported in a fresh interpreter, loads no offline, sim, training,
    testing, bench or cli module, and neither rosbags nor matplotlib."""
    code = ('import sys, depth_node.ros.node\n'
            'print("\\n".join(sorted(sys.modules)))')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.split()
    offline = [m for m in loaded if m.split('.')[0] in ('rosbags', 'matplotlib')
               or (m.startswith('depth_node.') and m.split('.')[1] in (
                   'offline', 'sim', 'training', 'testing', 'bench', 'cli'))]
    assert not offline, offline
    tools = [m for m in loaded if m in ('depth_node.ros.player', 'depth_node.ros.transport_check',
                                        'depth_node.ros.recorder')]
    assert not tools, tools
    assert 'depth_node.pipeline.frame' in loaded  # the import really happened


def test_ros_harness_is_used_only_by_harness_layers():
    """The ros modules that are tools, not the node (the graph client, the transport check,
    the recorder), are imported only from testing, bench or cli (and tests), never by the
    runtime layers or the node's own ros modules."""
    tools = ('depth_node.ros.player', 'depth_node.ros.transport_check', 'depth_node.ros.recorder')
    harness = ('testing', 'bench', 'cli')
    bad = []
    for path in _modules(os.path.join(ROOT, 'depth_node')):
        layer = os.path.relpath(path, os.path.join(ROOT, 'depth_node')).split(os.sep)[0]
        if layer not in harness:
            bad += [f'{os.path.relpath(path, ROOT)} imports {m}' for m in _imports(path)
                    if m in tools]
    assert not bad, bad


def _modules(folder):
    """Every .py file under ``folder`` (sub-packages included)."""
    for here, _, files in os.walk(folder):
        yield from (os.path.join(here, n) for n in sorted(files) if n.endswith('.py'))


def _imports(path):
    """Names of the modules a file imports (``import a.b``, ``from a.b import c``: 'a.b')."""
    with open(path) as f:
        tree = ast.parse(f.read())
    mods = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods.append(node.module)
    return mods
