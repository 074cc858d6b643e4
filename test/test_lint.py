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


# --- Humble-safe code: the oldest supported distro runs Python 3.10 and rclpy 3.x ---

#: rclpy modules and names that Humble's rclpy does not have (the distro that added them).
NEWER_THAN_HUMBLE = {
    'rclpy.event_handler': 'Iron (Humble: rclpy.qos_event)',
    'rclpy.clock_type': 'Iron (Humble: rclpy.clock.ClockType)',
    'rclpy.service_introspection': 'Iron',
    'rclpy.parameter_client': 'Iron',
    'rclpy.type_support': 'Jazzy',
    'rclpy.experimental': 'Jazzy',
    'rclpy.executors.EventsExecutor': 'Jazzy (experimental)',
    'rclpy.duration.Infinite': 'Iron',
    'rclpy.timer.TimerInfo': 'Jazzy',
}
#: Standard-library names new in Python 3.11 (the syntax check cannot see them).
NEWER_THAN_PY310 = {'tomllib', 'typing.Self', 'typing.LiteralString', 'typing.Never',
                    'typing.assert_never', 'typing.reveal_type', 'typing.Required',
                    'typing.NotRequired', 'typing.TypeVarTuple', 'typing.Unpack',
                    'typing.dataclass_transform', 'enum.StrEnum', 'datetime.UTC',
                    'asyncio.TaskGroup', 'asyncio.timeout', 'wsgiref.types'}


def _python_files():
    for src in SOURCES:
        path = os.path.join(ROOT, src)
        yield from ([path] if path.endswith('.py') else _modules(path))


def test_every_module_parses_as_python_3_10():
    """Humble and Jazzy on Ubuntu 22.04 run Python 3.10: no newer syntax (``except*``,
    PEP 695 generics, ...), checked with the parser's 3.10 grammar."""
    bad = []
    for path in _python_files():
        with open(path) as f:
            try:
                ast.parse(f.read(), filename=path, feature_version=(3, 10))
            except SyntaxError as exc:
                bad.append(f'{os.path.relpath(path, ROOT)}:{exc.lineno}: {exc.msg}')
    assert not bad, bad


def test_no_rclpy_or_stdlib_api_newer_than_humble_unguarded():
    """rclpy (Humble's is 3.x) and standard-library (3.10) names added later are used only
    inside a ``try`` (with a fallback in its handler)."""
    bad = []
    for path in _python_files():
        for name, line in _unguarded_names(path):
            for newer, since in {**NEWER_THAN_HUMBLE,
                                 **{n: 'Python 3.11' for n in NEWER_THAN_PY310}}.items():
                if name == newer or name.startswith(newer + '.'):
                    bad.append(f'{os.path.relpath(path, ROOT)}:{line}: {name} ({since})')
    assert not bad, bad


def _unguarded_names(path):
    """(dotted name, line) of each import and ``a.b.c`` reference outside any ``try`` body."""
    with open(path) as f:
        tree = ast.parse(f.read())
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            for stmt in node.body:
                guarded.update(id(n) for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, node.lineno
            yield from ((f'{node.module}.{a.name}', node.lineno) for a in node.names)
        elif isinstance(node, ast.Attribute):
            parts = []
            cur = node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                yield '.'.join([cur.id, *reversed(parts)]), node.lineno


def test_unguarded_name_finder_sees_imports_and_attributes_but_not_guarded_ones(tmp_path):
    src = tmp_path / 'm.py'
    src.write_text('import rclpy.event_handler\nfrom typing import Self\n'
                   'x = rclpy.duration.Infinite\n'
                   'try:\n    from rclpy.type_support import check_for_type_support\n'
                   'except ImportError:\n    pass\n')
    names = {n for n, _ in _unguarded_names(str(src))}
    assert {'rclpy.event_handler', 'typing.Self', 'rclpy.duration.Infinite'} <= names
    assert 'rclpy.type_support' not in names


# --- the lock files ---

def _requirement_names(path):
    import re
    names = set()
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line and not line.startswith('-'):
                names.add(re.split(r'[\s\[<>=!~;]', line, 1)[0])
    return names


def _normalise(name):
    import re
    return re.sub(r'[-_.]+', '-', name).lower()


def test_lock_files_pin_every_requirement():
    """scripts/constraints*.txt (scripts/lock.sh) pin every package the requirements name, and
    torch at setup.sh's pin: a requirement added without re-locking fails here, not in CI."""
    with open(os.path.join(ROOT, 'scripts', 'setup.sh')) as f:
        torch_pin = next(line.split('"')[1] for line in f if line.startswith('torch_pin='))
    for req, lock in (('requirements.txt', 'constraints.txt'),
                      ('requirements-jazzy.txt', 'constraints-jazzy.txt')):
        pins = {}
        with open(os.path.join(ROOT, 'scripts', lock)) as f:
            for line in f:
                if line.strip() and not line.startswith('#'):
                    name, _, version = line.strip().partition('==')
                    assert version, f'{lock}: {line!r} is not NAME==VERSION'
                    pins[_normalise(name)] = version
        missing = sorted(n for n in _requirement_names(os.path.join(ROOT, 'scripts', req))
                         if _normalise(n) not in pins)
        assert not missing, f'{lock} lacks {missing}: run scripts/lock.sh'
        assert f"torch=={pins.get('torch')}" == torch_pin, lock


def test_python_310_str_enum_behaves_as_str_enum():
    from depth_node.core.compat import StrEnum, StrEnum310  # 3.11+: enum's own

    class Old(StrEnum310):
        FRESH = 'fresh'

    class New(StrEnum):
        FRESH = 'fresh'
    for e in (Old.FRESH, New.FRESH):
        assert e == 'fresh' and str(e) == 'fresh' and f'{e}' == 'fresh' and f'{e:>6}' == ' fresh'
        assert isinstance(e, str) and type(e)('fresh') is e
