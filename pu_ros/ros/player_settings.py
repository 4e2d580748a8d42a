"""Bag player settings turned into ROS objects: parameter overrides, topic remaps and publisher QoS."""

from __future__ import annotations

from pathlib import Path

from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

QOS_CHOICES = ('reliable', 'sensor')


def parse_remaps(items) -> dict[str, str]:
    """Turn ``['old:=new', ...]`` into ``{'old': 'new'}``.

    Raises:
        ValueError: an item without ``:=`` or with an empty side.
    """
    out = {}
    for item in items or ():
        old, sep, new = str(item).partition(':=')
        if not sep or not old.strip() or not new.strip():
            raise ValueError(f'bad remap {item!r}: expected OLD:=NEW (e.g. /kitti/velo/pointcloud:=/points)')
        out[old.strip()] = new.strip()
    return out


def qos_for(mode: str, latched: bool, depth: int = 10) -> QoSProfile:
    """Publisher QoS for a replayed topic.

    Args:
        mode: ``'reliable'`` (reliable, keep-last ``depth``) or ``'sensor'`` (the sensor-data profile).
        latched: transient-local topic (``/tf_static``): reliable + transient-local whatever ``mode`` is.
        depth: keep-last depth (for latched topics: how many messages late subscribers get).
    """
    if latched:
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=max(1, int(depth)),
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
    if mode == 'sensor':
        return qos_profile_sensor_data
    if mode == 'reliable':
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=max(1, int(depth)),
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE,
        )
    raise ValueError(f'unknown qos {mode!r}; use one of {", ".join(QOS_CHOICES)}')


def empty_list(value) -> bool:
    """An empty list or tuple (rclpy cannot type it as a string array; "not set" means the same)."""
    return isinstance(value, (list, tuple)) and not value


def to_parameter(name: str, value) -> Parameter:
    """A player setting as an rclpy Parameter: lists as string arrays, paths as strings, numbers as doubles."""
    if isinstance(value, (list, tuple)):
        return Parameter(name, Parameter.Type.STRING_ARRAY, [str(v) for v in value])
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # all numeric player parameters are doubles
    return Parameter(name, value=value)

