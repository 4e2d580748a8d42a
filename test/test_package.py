"""The package itself: lint, import hygiene, package.xml/setup.py agreement and a real colcon build."""

import ast
import os
from pathlib import Path
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _modules(exclude_prefixes=()):
    names = []
    for path in sorted((ROOT / 'pu_ros').rglob('*.py')):
        rel = path.relative_to(ROOT).with_suffix('')
        name = '.'.join(rel.parts)
        if name.endswith('.__init__'):
            name = name[: -len('.__init__')]
        if not name.startswith(exclude_prefixes):
            names.append(name)
    return names


# A meta-path finder that makes the listed top-level packages unimportable, as on a machine without them.
_BLOCKER = """
import importlib.abc, sys
BLOCKED = set({blocked!r})
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split('.')[0]
        if top in BLOCKED or top.endswith('_msgs'):
            raise ImportError(f'{{name}} is blocked for this test')
        return None
sys.meta_path.insert(0, Block())
import importlib
for mod in {modules!r}:
    importlib.import_module(mod)
loaded = sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED)
assert not loaded, loaded
print('ok', len({modules!r}))
"""


def _run_blocked(blocked, modules):
    code = _BLOCKER.format(blocked=sorted(blocked), modules=modules)
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_ruff_lint_is_clean():
    ruff = shutil.which('ruff', path=str(BIN)) or shutil.which('ruff')
    if ruff is None:
        pytest.skip('ruff is not installed (pip install -r requirements/dev.txt)')
    res = subprocess.run([ruff, 'check', 'pu_ros', 'test', 'bench', 'launch', 'setup.py'],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


def test_core_modules_import_without_rclpy():
    """Everything outside pu_ros.ros imports on a machine with no ROS 2 at all."""
    modules = _modules(exclude_prefixes=('pu_ros.ros',))
    res = _run_blocked({'rclpy', 'rosidl_runtime_py', 'tf2_ros', 'launch', 'launch_ros'}, modules)
    assert res.returncode == 0, res.stderr[-3000:]


def test_light_modules_import_without_torch_or_rclpy():
    """The package, its CLI, geometry and data readers need neither torch nor rclpy."""
    modules = ['pu_ros', 'pu_ros.cli', 'pu_ros.resources', 'pu_ros.geometry']
    modules += [m for m in ('pu_ros.data.kitti', 'pu_ros.data.labels', 'pu_ros.data.synthetic',
                            'pu_ros.data.bag', 'pu_ros.data.kitti_to_bag', 'pu_ros.ops.cloud_layout')
                if (ROOT / (m.replace('.', '/') + '.py')).is_file()]
    res = _run_blocked({'rclpy', 'torch', 'torchvision', 'spconv'}, modules)
    assert res.returncode == 0, res.stderr[-3000:]


def _console_scripts():
    tree = ast.parse((ROOT / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'NODES' for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError('setup.py has no NODES dict')


def _setup_kwargs():
    """The keyword arguments setup.py passes to setuptools.setup (run with setup() replaced)."""
    import runpy
    from unittest import mock

    captured = {}
    with mock.patch('setuptools.setup', lambda **kw: captured.update(kw)):
        cwd = os.getcwd()
        os.chdir(ROOT)
        try:
            runpy.run_path(str(ROOT / 'setup.py'), run_name='__main__')
        finally:
            os.chdir(cwd)
    return captured


def test_console_scripts_resolve_to_callables_without_arguments():
    import importlib
    import importlib.util
    import inspect

    scripts = _setup_kwargs()['entry_points']['console_scripts']
    names = {line.split('=')[0].strip() for line in scripts}
    assert {'pu-ros', *_console_scripts()} == names
    have_rclpy = importlib.util.find_spec('rclpy') is not None
    checked = 0
    for line in scripts:
        name, target = (part.strip() for part in line.split('='))
        module, func = target.split(':')
        if module.startswith('pu_ros.ros.') and not have_rclpy:
            continue
        fn = getattr(importlib.import_module(module), func, None)  # what the generated script will call
        assert callable(fn), f'{name}: {target} is not callable'
        inspect.signature(fn).bind()  # console scripts call it with no argument
        checked += 1
    assert checked >= 1


def test_package_xml_matches_setup():
    xml = ET.parse(ROOT / 'package.xml').getroot()
    assert xml.get('format') == '3'
    assert xml.findtext('name') == 'pu_ros'
    setup_src = (ROOT / 'setup.py').read_text()
    assert f"version='{xml.findtext('version')}'" in setup_src
    assert xml.find('export/build_type').text == 'ament_python'
    deps = {e.text for e in xml.findall('exec_depend')}
    for needed in ('rclpy', 'sensor_msgs', 'sensor_msgs_py', 'std_msgs', 'geometry_msgs', 'visualization_msgs',
                   'diagnostic_msgs', 'rosgraph_msgs', 'tf2_ros', 'python3-numpy', 'python3-torch'):
        assert needed in deps, needed
    import pu_ros

    assert pu_ros.__version__ == xml.findtext('version')


def test_launch_files_compile():
    files = sorted((ROOT / 'launch').glob('*.launch.py'))
    assert files, 'no launch files'
    for path in files:
        compile(path.read_text(), str(path), 'exec')


@pytest.mark.slow
def test_colcon_build(tmp_path):
    """`colcon build` of a copy of the package installs the nodes, the CLI, launch/ config/ models/."""
    colcon = shutil.which('colcon', path=str(BIN)) or shutil.which('colcon')
    if colcon is None:
        pytest.skip('colcon is not installed (pip install -r requirements/dev.txt)')
    src = tmp_path / 'src' / 'pu_ros'
    ignore = shutil.ignore_patterns('__pycache__', '*.egg-info', '.venv', 'build', 'install', 'log', '.git', '.*cache')
    src.mkdir(parents=True)
    for item in ('package.xml', 'setup.py', 'setup.cfg', 'resource', 'pu_ros', 'launch', 'config', 'models'):
        if not (ROOT / item).exists():
            continue
        if (ROOT / item).is_dir():
            shutil.copytree(ROOT / item, src / item, ignore=ignore)
        else:
            shutil.copy2(ROOT / item, src / item)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE='1')
    res = subprocess.run([colcon, 'build', '--base-paths', 'src'], cwd=tmp_path, capture_output=True, text=True,
                         env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    prefix = tmp_path / 'install' / 'pu_ros'
    share = prefix / 'share' / 'pu_ros'
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'pu_ros').is_file()
    assert (share / 'package.xml').is_file()
    for folder in ('launch', 'config', 'models'):
        for f in (ROOT / folder).rglob('*') if (ROOT / folder).is_dir() else ():
            if f.is_file() and '__pycache__' not in f.parts:
                assert (share / f.relative_to(ROOT)).is_file(), f'{f.relative_to(ROOT)} not installed'
    for script in ['pu-ros', *_console_scripts()]:
        assert (prefix / 'lib' / 'pu_ros' / script).is_file(), f'{script} not installed in lib/pu_ros'
    # The installed CLI runs from the install space and finds its config through AMENT_PREFIX_PATH.
    site = next((prefix / 'lib').glob('python3*/site-packages'))
    env = dict(os.environ, PYTHONPATH=str(site), AMENT_PREFIX_PATH=str(prefix))
    res = subprocess.run([sys.executable, str(prefix / 'lib' / 'pu_ros' / 'pu-ros'), '--help'],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0 and 'kitti-to-bag' in res.stdout, res.stderr
    # The node executables start as `ros2 run` starts them: the installed script itself (shebang + entry point).
    for script in _console_scripts():
        res = subprocess.run([str(prefix / 'lib' / 'pu_ros' / script), '--help'], capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=120)
        assert res.returncode == 0 and res.stdout.startswith(f'usage: ros2 run pu_ros {script}'), res.stderr
