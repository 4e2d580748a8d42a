"""launch/pipeline.launch.py, config/pipeline.yaml and config/pu_ros.rviz, checked without a ROS installation.

``launch`` and ``launch_ros`` have no PyPI wheels, so the launch file is imported with a tiny stub of both that
records the actions it builds; its OpaqueFunction is then evaluated for every stage combination. The test that
really runs ``ros2 launch`` skips with a reason where ``launch_ros`` is not importable.
"""

import ast
from dataclasses import fields
import importlib.util
import itertools
import os
from pathlib import Path
import runpy
import shutil
import subprocess
import sys
import types

import pytest
import yaml

from pu_ros.ros.node_config import NODE_SECTIONS, check_value, field_default

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / 'launch' / 'pipeline.launch.py'
CONFIG = ROOT / 'config' / 'pipeline.yaml'
BUILTIN = {'use_sim_time'}


class _Rec:
    """A stub action/substitution: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration(_Rec):
    def perform(self, context):
        return context.launch_configurations[self.args[0]]


def _stub_modules():
    mods = {name: types.ModuleType(name) for name in (
        'launch', 'launch.actions', 'launch.event_handlers', 'launch.substitutions', 'launch_ros',
        'launch_ros.actions', 'launch_ros.substitutions')}
    mods['launch'].LaunchDescription = type('LaunchDescription', (_Rec,), {})
    for name in ('DeclareLaunchArgument', 'OpaqueFunction', 'RegisterEventHandler'):
        setattr(mods['launch.actions'], name, type(name, (_Rec,), {}))
    mods['launch.event_handlers'].OnProcessExit = type('OnProcessExit', (_Rec,), {})
    mods['launch.substitutions'].LaunchConfiguration = _LaunchConfiguration
    mods['launch.substitutions'].PathJoinSubstitution = type('PathJoinSubstitution', (_Rec,), {})
    mods['launch_ros.actions'].Node = type('Node', (_Rec,), {})
    mods['launch_ros.substitutions'].FindPackageShare = type('FindPackageShare', (_Rec,), {})
    return mods


@pytest.fixture()
def launch_module(monkeypatch):
    for name, mod in _stub_modules().items():
        monkeypatch.setitem(sys.modules, name, mod)
    return runpy.run_path(str(LAUNCH))


def _console_scripts():
    tree = ast.parse((ROOT / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'NODES' for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError('setup.py has no NODES dict')


def _evaluate(mod, **overrides):
    desc = mod['generate_launch_description']()
    entities = desc.args[0]
    declared = {e.args[0]: e.kwargs for e in entities if type(e).__name__ == 'DeclareLaunchArgument'}
    values = {name: kw['default_value'] for name, kw in declared.items()}
    values.update({'config': str(CONFIG), **overrides})
    opaque = [e for e in entities if type(e).__name__ == 'OpaqueFunction']
    assert len(opaque) == 1
    context = types.SimpleNamespace(launch_configurations=values, is_shutdown=False)
    return declared, opaque[0].kwargs['function'](context), context


def _declared_parameters(executable):
    names = set(BUILTIN)
    for section, load in NODE_SECTIONS[executable].items():
        try:
            cls = load()
        except ImportError:
            return None  # the sampler / upsampler config lives in its own branch until the merge
        names |= {f'{section}.{f.name}' for f in fields(cls)}
    return names


def test_arguments_have_descriptions(launch_module):
    declared, _, _ = _evaluate(launch_module)
    assert set(declared) == {'config', 'use_sim_time', 'bag', 'rate', 'rviz', 'sampler', 'upsampler', 'fused',
                             'device'}
    for name, kw in declared.items():
        assert len(kw.get('description') or '') > 10, f'launch argument {name} has no description'


@pytest.mark.parametrize('sampler,upsampler', list(itertools.product(['false', 'true'], repeat=2)))
def test_stages_are_connected_by_remappings(launch_module, sampler, upsampler):
    m = launch_module
    _, actions, context = _evaluate(m, sampler=sampler, upsampler=upsampler, bag='/data/bag', rviz='true')
    nodes = [a for a in actions if type(a).__name__ == 'Node']
    by_exe = {n.kwargs['executable']: n for n in nodes}
    stages = [e for e in ('sampler_node', 'upsampler_node', 'segmentation_node') if e in by_exe]
    expected = [e for e, on in (('sampler_node', sampler), ('upsampler_node', upsampler)) if on == 'true']
    assert stages == expected + ['segmentation_node']
    assert {'player_node', 'rviz2'} <= set(by_exe)
    scripts = _console_scripts()
    topic = m['RAW_POINTS']  # what the player publishes (the bag's topic)
    for exe in stages:
        assert exe in scripts, f'{exe} is not a console script in setup.py'
        remap = dict(by_exe[exe].kwargs['remappings'])
        assert remap['~/input/points'] == topic, f'{exe} does not read the previous stage output'
        topic = remap['~/output/points']
        config, overrides = by_exe[exe].kwargs['parameters']
        assert Path(config).is_file()
        declared = _declared_parameters(exe)
        if declared is not None:
            assert set(overrides) <= declared, set(overrides) - declared
    seg = dict(by_exe['segmentation_node'].kwargs['remappings'])
    assert topic == m['LABELLED'] and seg['~/input/original_points'] == m['RAW_POINTS']
    assert by_exe['segmentation_node'].kwargs['parameters'][1]['resample.use_original'] == bool(expected)
    assert 'player_node' in scripts
    # every pu_ros process is required: a non-zero exit of its own fails the launch, a clean stop does not
    handlers = [a.args[0] for a in actions if type(a).__name__ == 'RegisterEventHandler']
    targets = {id(h.kwargs['target_action']) for h in handlers}
    for node in nodes:
        if node.kwargs['package'] == 'pu_ros':
            assert id(node) in targets, f'{node.kwargs["executable"]} has no exit handler'
    on_exit = handlers[0].kwargs['on_exit']
    event = types.SimpleNamespace(returncode=2, action=types.SimpleNamespace(name='player_node-1'))
    with pytest.raises(RuntimeError, match='status 2'):
        on_exit(event, context)
    for code in (0, -2, -15):
        assert on_exit(types.SimpleNamespace(returncode=code, action=event.action), context) is None


def test_without_bag_no_player_and_fused_device_reach_segmentation(launch_module):
    _, actions, _ = _evaluate(launch_module, fused='true', device='cpu')
    exes = [a.kwargs['executable'] for a in actions if type(a).__name__ == 'Node']
    assert exes == ['segmentation_node']
    seg = next(a for a in actions if type(a).__name__ == 'Node')
    params = seg.kwargs['parameters'][1]
    assert params['segmentation.fused'] is True and params['segmentation.device'] == 'cpu'
    remap = dict(seg.kwargs['remappings'])
    assert remap['~/input/image'].endswith('image_raw') and remap['~/input/camera_info'].endswith('camera_info')


@pytest.mark.parametrize('exe', list(NODE_SECTIONS))
def test_pipeline_yaml_keys_match_the_dataclasses(exe):
    doc = yaml.safe_load(CONFIG.read_text())
    common = doc['/**']['ros__parameters']
    section = doc[exe]['ros__parameters']
    declared = _declared_parameters(exe)
    keys = set(section) | set(common)
    if declared is None:
        pytest.skip(f'{exe}: its inference config module is not in this tree yet')
    assert keys <= declared, f'{exe}: unknown keys {sorted(keys - declared)}'
    for sec, load in NODE_SECTIONS[exe].items():
        for f in fields(load()):
            name = f'{sec}.{f.name}'
            default = field_default(f)
            if isinstance(default, list) and not default:
                assert name not in keys  # an empty list has no type in a ROS params file
                continue
            assert name in keys, f'{exe}: {name} is missing from config/pipeline.yaml'
            value = section.get(name, common.get(name))
            assert check_value(f, value) is None, f'{exe}: {name}: {check_value(f, value)}'


def test_rviz_config_shows_the_labelled_cloud(launch_module):
    text = (ROOT / 'config' / 'pu_ros.rviz').read_text()
    doc = yaml.safe_load(text)
    displays = doc['Visualization Manager']['Displays']
    topics = {d.get('Topic', {}).get('Value') for d in displays if isinstance(d.get('Topic'), dict)}
    assert launch_module['LABELLED'] in topics and launch_module['RAW_POINTS'] in topics
    labelled = next(d for d in displays if d.get('Topic', {}).get('Value') == launch_module['LABELLED'])
    assert labelled['Color Transformer'] == 'RGB8'
    assert any(d['Class'] == 'rviz_default_plugins/TF' for d in displays)
    assert any(d['Class'] == 'rviz_default_plugins/Image' for d in displays)


@pytest.mark.ros
def test_pipeline_yaml_is_a_valid_ros_params_file():
    """The rcl parser reads the dotted keys and per-node sections (values reach a node of that name)."""
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(args=['x', '--ros-args', '--params-file', str(CONFIG)], context=ctx)
    try:
        node = rclpy.create_node('segmentation_node', context=ctx, automatically_declare_parameters_from_overrides=True)
        assert node.get_parameter('fusion.slop').value == pytest.approx(0.06)
        assert node.get_parameter('diagnostics.error_after').value == 3
        assert node.get_parameter('segmentation.device').value == 'auto'
        assert not node.has_parameter('sampler.ratio')
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


@pytest.mark.skipif(importlib.util.find_spec('launch_ros') is None or shutil.which('ros2') is None,
                    reason='launch_ros / ros2 are not installed (no PyPI wheels): run on a ROS 2 machine')
@pytest.mark.ros
@pytest.mark.slow
def test_ros2_launch_runs_the_pipeline_on_a_small_bag(tmp_path):  # pragma: no cover - needs a ROS 2 install
    from pu_ros.data.kitti_to_bag import convert
    from pu_ros.data.synthetic import SceneConfig, write_sequence

    seq = write_sequence(tmp_path / 'seq', SceneConfig(seed=1, n_frames=3, n_azimuth=256), progress=False)
    convert(seq, tmp_path / 'bag', progress=False)
    from pu_ros.ros.echo_node import EchoSession

    proc = subprocess.Popen(['ros2', 'launch', str(LAUNCH), f'bag:={tmp_path / "bag"}', 'device:=cpu'],
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with EchoSession({'topics': ['/pu_ros/labelled_points'], 'reliable': True}, keep_arrays=True) as echo:
            assert echo.spin_until(lambda: len(echo.node.records) >= 1, timeout=120)
            assert echo.node.arrays[0]['labels'] is not None
    finally:
        proc.send_signal(2)
        proc.communicate(timeout=60)
