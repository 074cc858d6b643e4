"""colcon builds the package into the install layout ROS 2 tools expect, and it runs from there.

The package sources are copied to a temporary workspace and built with the colcon of this
interpreter (a plain, non-symlink install, as on a vehicle). No ROS install is needed: colcon-ros
identifies the package from package.xml (with catkin_pkg) and writes the ament index marker and
environment hooks itself; rclpy and the messages come from this interpreter's site-packages.

The launch file cannot be loaded here (launch and launch_ros are not on PyPI), so it is only
compiled.
"""

import ast
import importlib.util
import os
import py_compile
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = 'depth_node'
SOURCES = ('package.xml', 'setup.py', 'setup.cfg', 'resource', 'depth_node', 'launch', 'config')
EXECUTABLES = ('depth_node', 'demo', 'evaluate', 'make_bag', 'record', 'train', 'student_report',
               'export_onnx', 'benchmark', 'pseudo_label')
# Python module -> PyPI distribution, for what colcon needs to build an ament_python package.
COLCON_MODULES = {
    'colcon_ros': 'colcon-ros',  # ament_python build type, ament index marker, hooks
    'catkin_pkg': 'catkin-pkg',  # package.xml: without it the package builds as plain Python
    'colcon_python_setup_py': 'colcon-python-setup-py',  # reads setup.py (data_files, scripts)
    'colcon_recursive_crawl': 'colcon-recursive-crawl',  # --base-paths
    'em': 'empy',  # colcon's shell hook templates
    'distlib': 'distlib',
}


def _colcon() -> list:
    if importlib.util.find_spec('colcon_core') is None:
        pytest.skip('colcon is not installed for this interpreter (pip install colcon-core '
                    'colcon-ros colcon-python-setup-py colcon-recursive-crawl catkin-pkg)')
    missing = [dist for module, dist in COLCON_MODULES.items()
               if importlib.util.find_spec(module) is None]
    if missing:
        pytest.fail('colcon-core is installed but not what it needs to build an ament_python '
                    f"package: pip install {' '.join(missing)}")
    return [sys.executable, '-m', 'colcon']


def _copy_sources(dest: str) -> str:
    src = os.path.join(dest, 'src', PACKAGE)
    os.makedirs(src)
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc', '*.egg-info')
    for name in SOURCES:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(src, name), ignore=ignore)
        else:
            shutil.copy2(path, src)
    return src


@pytest.fixture(scope='module')
def install(tmp_path_factory):
    """Build a copy of the package with colcon; the package's install prefix."""
    colcon = _colcon()
    ws = str(tmp_path_factory.mktemp('ws'))
    _copy_sources(ws)
    env = dict(os.environ)
    env['COLCON_HOME'] = os.path.join(ws, 'colcon_home')  # no user defaults or mixins
    for var in ('COLCON_PREFIX_PATH', 'AMENT_PREFIX_PATH', 'CMAKE_PREFIX_PATH'):
        env.pop(var, None)  # a sourced workspace must not leak into this build
    proc = subprocess.run(
        colcon + ['--log-base', os.path.join(ws, 'log'), 'build',
                  '--base-paths', os.path.join(ws, 'src'),
                  '--build-base', os.path.join(ws, 'build'),
                  '--install-base', os.path.join(ws, 'install')],
        cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=300)
    assert proc.returncode == 0, f'colcon build failed:\n{proc.stdout[-6000:]}'
    prefix = os.path.join(ws, 'install', PACKAGE)  # colcon's default isolated layout
    assert os.path.isdir(prefix), f'no {prefix}; colcon said:\n{proc.stdout[-3000:]}'
    return prefix


def _site_packages(prefix: str) -> str:
    version = f'python{sys.version_info.major}.{sys.version_info.minor}'
    return os.path.join(prefix, 'lib', version, 'site-packages')


def _installed_env(prefix: str) -> dict:
    """This interpreter's environment with the install's site-packages first on the path.

    The venv's own site-packages still provide rclpy and the messages; a private ROS domain
    keeps the node's participant off any other graph.
    """
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [_site_packages(prefix)] + [p for p in [env.get('PYTHONPATH')] if p])
    env['AMENT_PREFIX_PATH'] = prefix
    env.update({'ROS_DOMAIN_ID': str(1 + (os.getpid() + 25) % 100),
                'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'ROS_LOCALHOST_ONLY': '1'})
    return env


def test_install_tree_has_the_ros_layout(install):
    share = os.path.join(install, 'share')
    for path in (
            f'{PACKAGE}/package.xml',
            f'ament_index/resource_index/packages/{PACKAGE}',
            f'{PACKAGE}/launch/depth.launch.py',
            f'{PACKAGE}/config/depth.yaml',
            f'{PACKAGE}/config/fastdds_large_messages.xml',
            # Written by colcon-ros for build type ament_python only: sourcing the workspace
            # puts the prefix on AMENT_PREFIX_PATH, which ros2 launch / run look in.
            f'{PACKAGE}/hook/ament_prefix_path.dsv'):
        assert os.path.isfile(os.path.join(share, path)), f'missing share/{path}'
    with open(os.path.join(ROOT, 'package.xml')) as a, \
            open(os.path.join(share, PACKAGE, 'package.xml')) as b:
        assert a.read() == b.read()
    with open(os.path.join(share, PACKAGE, 'config', 'depth.yaml')) as f:
        assert 'ros__parameters' in next(iter(yaml.safe_load(f).values()))
    for name in EXECUTABLES:
        path = os.path.join(install, 'lib', PACKAGE, name)
        assert os.path.isfile(path), f'missing lib/{PACKAGE}/{name}'
        assert os.access(path, os.X_OK), f'lib/{PACKAGE}/{name} is not executable'
    assert sorted(os.listdir(os.path.join(install, 'lib', PACKAGE))) == sorted(EXECUTABLES)
    assert os.path.isfile(os.path.join(_site_packages(install), PACKAGE, 'ros', 'node.py'))
    # the shipped student (estimator.model_path ''), next to the installed code
    student = os.path.join(_site_packages(install), PACKAGE, 'models', 'student')
    for name in ('config.json', 'model.safetensors', 'preprocessor_config.json', 'README.md'):
        with open(os.path.join(ROOT, PACKAGE, 'models', 'student', name), 'rb') as a, \
                open(os.path.join(student, name), 'rb') as b:
            assert a.read() == b.read(), f'installed models/student/{name} differs'


def test_sourced_workspace_finds_the_installed_package(install):
    # What a user gets after `source install/setup.sh`: the installed code (not this
    # checkout) and the package's share folder through the ament index.
    setup = os.path.join(os.path.dirname(install), 'setup.sh')
    check = ('import depth_node, depth_node.ros.node, depth_node.bench.pipeline; '
             'from ament_index_python.packages import get_package_share_directory as share; '
             f"print(depth_node.__file__); print(share('{PACKAGE}'))")
    env = dict(os.environ)
    for var in ('COLCON_PREFIX_PATH', 'AMENT_PREFIX_PATH'):
        env.pop(var, None)
    proc = subprocess.run(['sh', '-c', f'. "{setup}" && exec "{sys.executable}" -c "{check}"'],
                          env=env, cwd=os.path.dirname(install), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    module_file, share_dir = proc.stdout.split()
    assert module_file.startswith(_site_packages(install) + os.sep), module_file
    assert share_dir == os.path.join(install, 'share', PACKAGE)


@pytest.mark.parametrize('args, parameter', [
    (['-p', 'cloud.stride:=0'], 'cloud.stride'),
    (['--params-file', '{params}'], 'fit.min_ponits'),
])
def test_installed_node_fails_naming_the_bad_parameter(install, tmp_path, args, parameter):
    params = tmp_path / 'params.yaml'
    params.write_text(yaml.safe_dump({'/**': {'ros__parameters': {'fit': {'min_ponits': 5}}}}))
    node = os.path.join(install, 'lib', PACKAGE, 'depth_node')
    env = _installed_env(install)
    proc = subprocess.run([node, '--ros-args'] + [a.format(params=params) for a in args],
                          env=env, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert 'configuration error' in proc.stderr and parameter in proc.stderr, proc.stderr
    # The script ran the installed package, not this checkout's editable install.
    where = subprocess.run([sys.executable, '-c', 'import depth_node; print(depth_node.__file__)'],
                           env=env, cwd=str(tmp_path), capture_output=True, text=True,
                           timeout=60)
    assert where.stdout.strip().startswith(_site_packages(install) + os.sep), where


def test_installed_benchmark_entry_point_runs(install, tmp_path):
    script = os.path.join(install, 'lib', PACKAGE, 'benchmark')
    proc = subprocess.run([script, '--help'], env=_installed_env(install), cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert 'usage: benchmark' in proc.stdout
    for name in ('pipeline', 'backends', 'keyframes', 'transport', 'accuracy'):
        assert f'  {name} ' in proc.stdout, name
    proc = subprocess.run([script, 'pipeline', '--help'], env=_installed_env(install),
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert 'usage: benchmark pipeline' in proc.stdout and '--json' in proc.stdout


def _check_launch_file(path, tmp_path):
    py_compile.compile(path, cfile=str(tmp_path / 'launch.pyc'), doraise=True)
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions, path


def test_launch_file_compiles(tmp_path):
    _check_launch_file(os.path.join(ROOT, 'launch', 'depth.launch.py'), tmp_path)


def test_installed_launch_file_compiles(install, tmp_path):
    _check_launch_file(os.path.join(install, 'share', PACKAGE, 'launch', 'depth.launch.py'),
                       tmp_path)
