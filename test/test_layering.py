"""Layers import downwards only (GUIDE §2): ops/geometry < data, networks < inference < training < ros < cli.

Every ``import`` / ``from ... import`` of a ``pu_ros`` module anywhere in a file (also inside functions) is read
with :mod:`ast`, so a lazy import inside a function cannot hide an upward dependency.
"""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / 'pu_ros'

#: layer -> pu_ros sub-packages it must never import.
FORBIDDEN = {
    'ops': {'data', 'networks', 'inference', 'training', 'ros', 'cli', 'demo', 'pipeline'},
    'geometry': {'data', 'networks', 'inference', 'training', 'ros', 'cli', 'demo', 'pipeline'},
    'data': {'networks', 'inference', 'training', 'ros', 'cli', 'demo', 'pipeline'},
    'networks': {'data', 'inference', 'training', 'ros', 'cli', 'demo', 'pipeline'},
    'inference': {'training', 'ros', 'cli', 'demo', 'pipeline'},
    'training': {'ros', 'cli', 'demo', 'pipeline'},
    'ros': {'cli', 'demo', 'pipeline'},
}


def pu_ros_imports(path: Path) -> set[str]:
    """Second component of every ``pu_ros.X`` module imported by ``path`` (``from pu_ros import X`` too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + ([f'pu_ros.{a.name}' for a in node.names] if node.module == 'pu_ros' else [])
        else:
            continue
        for name in names:
            parts = name.split('.')
            if parts[0] == 'pu_ros' and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize('layer', sorted(FORBIDDEN))
def test_layer_imports_downwards_only(layer):
    bad = []
    for path in sorted((PKG / layer).rglob('*.py')):
        for target in pu_ros_imports(path) & FORBIDDEN[layer]:
            bad.append(f'{path.relative_to(PKG.parent)} imports pu_ros.{target}')
    assert not bad, '\n'.join(bad)


def test_checker_sees_lazy_imports(tmp_path):
    f = tmp_path / 'm.py'
    f.write_text('def f():\n    from pu_ros.training.metrics import x\n    import pu_ros.ros.conversions\n'
                 'from pu_ros import cli\n')
    assert pu_ros_imports(f) == {'training', 'ros', 'cli'}


def test_only_ros_imports_rclpy():
    bad = []
    for path in sorted(PKG.rglob('*.py')):
        if path.relative_to(PKG).parts[0] == 'ros':
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ''] if isinstance(node, ast.ImportFrom) else [])
            if any(m.split('.')[0] in ('rclpy', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs') for m in mods):
                bad.append(str(path.relative_to(PKG.parent)))
    assert not bad, bad
