"""ROS message types by name: ``'pkg/msg/Type'`` <-> the generated Python class (no rclpy needed)."""

from __future__ import annotations

import importlib


def resolve_message_type(msgtype: str):
    """Import the Python class of a ROS message type.

    Args:
        msgtype: ``'pkg/msg/Type'`` (rosbag2 spelling) or ``'pkg/Type'``.

    Returns:
        ``(cls, None)`` when importable, ``(None, reason)`` otherwise.
    """
    parts = str(msgtype).split('/')
    if len(parts) == 2:
        parts = [parts[0], 'msg', parts[1]]
    if len(parts) != 3 or not all(parts):
        return None, f'malformed message type {msgtype!r}'
    pkg, kind, name = parts
    try:
        module = importlib.import_module(f'{pkg}.{kind}')
    except ImportError:
        hint = ''
        if pkg == 'tf2_msgs':
            hint = ' (no PyPI wheel exists: run requirements/build_tf2_msgs.sh, or source ROS 2)'
        return None, f'the Python package {pkg} is not importable{hint}'
    cls = getattr(module, name, None)
    if cls is None:
        return None, f'{pkg}.{kind} has no type {name}'
    return cls, None


def type_name(msg_or_cls) -> str:
    """``'pkg/msg/Type'`` of a message (or message class) from the generated Python module path."""
    cls = msg_or_cls if isinstance(msg_or_cls, type) else type(msg_or_cls)
    pkg = cls.__module__.split('.')[0]
    return f'{pkg}/msg/{cls.__name__}'
