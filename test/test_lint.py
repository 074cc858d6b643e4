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
    """DESIGN.md layers (core/sim < estimators < pipeline < ros < tools), with training (student
    training, torch) between pipeline and ros; rclpy only in ros."""
    order = {'core': 0, 'sim': 0, 'estimators': 1, 'pipeline': 2, 'training': 3, 'ros': 4,
             'tools': 5}
    bad = []
    for layer, rank in order.items():
        folder = os.path.join(ROOT, 'depth_node', layer)
        for name in os.listdir(folder):
            if not name.endswith('.py'):
                continue
            with open(os.path.join(folder, name)) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                mods = []
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    mods = [node.module]
                for mod in mods:
                    parts = mod.split('.')
                    if parts[0] == 'depth_node' and len(parts) > 1 and parts[1] in order \
                            and order[parts[1]] > rank:
                        bad.append(f'{layer}/{name} imports {mod}')
                    if parts[0] in ('rclpy', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs',
                                    'rcl_interfaces') and layer != 'ros':
                        bad.append(f'{layer}/{name} imports {mod}')
                    if parts[0] in ('torch', 'transformers') and rank == 0:
                        bad.append(f'{layer}/{name} imports {mod}')
    assert not bad, bad
