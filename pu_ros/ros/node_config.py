"""Settings of the pipeline nodes as dataclasses: the one source of ROS parameter names, defaults and ranges.

This module imports neither rclpy nor torch, so the launch/YAML checks run without a ROS installation.

Every field carries ``metadata={'help': ..., 'range': (lo, hi)}`` (numbers) or ``{'help': ..., 'choices': (...)}``
(strings) or just ``{'help': ...}``; the ROS parameter of field ``f`` of section ``s`` is ``s.f``, the YAML key is
the same dotted name (section ``''``: no prefix, used by the player and echo nodes). The inference sections
(``segmentation``, ``sampler``, ``upsampler``) come from the config
dataclasses of :mod:`pu_ros.inference`; the node-only sections are defined here.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, is_dataclass
import importlib


@dataclass
class DiagnosticsConfig:
    """Section ``diagnostics`` (every pipeline node): when ``/diagnostics`` says WARN or ERROR."""

    latency_budget_ms: float = field(default=1000.0, metadata={
        'help': 'WARN when the pipeline latency (now - header stamp) of a frame exceeds this', 'range': (1.0, 1e6)})
    error_after: int = field(default=3, metadata={
        'help': 'ERROR after this many consecutive failed frames', 'range': (1, 10000)})
    period: float = field(default=1.0, metadata={'help': 'seconds between /diagnostics messages',
                                                 'range': (0.1, 60.0)})


@dataclass
class FusionConfig:
    """Section ``fusion`` (segmentation node, with ``segmentation.fused``): pairing image + camera_info + cloud."""

    queue_size: int = field(default=5, metadata={
        'help': 'messages kept per input while waiting for a match (approximate-time synchronizer)',
        'range': (1, 100)})
    slop: float = field(default=0.06, metadata={
        'help': 'largest stamp difference (s) between the cloud, image and camera_info of one set',
        'range': (0.0, 10.0)})
    T_cam_lidar: list = field(default_factory=list, metadata={
        'help': '16 numbers, row-major 4x4 transform cloud frame -> camera frame; empty: from /tf_static '
                '(needs tf2_msgs), identity when the cloud is already in the camera frame'})


@dataclass
class ResampleConfig:
    """Section ``resample`` (segmentation node): label the original points of a resampled cloud."""

    use_original: bool = field(default=False, metadata={
        'help': 'the input cloud was resampled upstream: pair it by stamp with ~/input/original_points and give '
                'every original point the label of its nearest segmented point'})
    cache_size: int = field(default=10, metadata={
        'help': 'original clouds kept while waiting for their resampled twin', 'range': (1, 100)})


@dataclass
class EvaluationConfig:
    """Section ``evaluation`` (segmentation node): live mIoU against a ground-truth ``label`` field."""

    enabled: bool = field(default=True, metadata={
        'help': 'accumulate a confusion matrix when input clouds carry a label field (raw SemanticKITTI ids)'})


@dataclass
class PlayerConfig:
    """Parameters of ``player_node`` (no section prefix: ``bag``, ``rate``...; also ``config/player.yaml``)."""

    bag: str = field(default='', metadata={'help': 'rosbag2 folder (or .mcap/.db3 file) to play'})
    rate: float = field(default=1.0, metadata={'help': 'playback speed factor (2.0 = twice real time)',
                                               'range': (0.01, 100.0)})
    loop: bool = field(default=False, metadata={'help': 'start again at the end of the bag'})
    start_offset: float = field(default=0.0, metadata={'help': 'seconds of the bag to skip at the start',
                                                       'range': (0.0, 1e6)})
    publish_clock: bool = field(default=False, metadata={
        'help': 'publish the bag time on /clock (for use_sim_time nodes)'})
    clock_frequency: float = field(default=40.0, metadata={'help': '/clock messages per second between bag messages',
                                                           'range': (1.0, 1000.0)})
    qos: str = field(default='reliable', metadata={
        'help': 'publisher QoS of data topics: reliable (matches every subscriber) or sensor (best effort)',
        'choices': ('reliable', 'sensor')})
    topics: list = field(default_factory=list, metadata={'help': 'bag topics to play (empty: all)', 'item': str})
    remap: list = field(default_factory=list, metadata={'help': 'topic renames OLD:=NEW', 'item': str})
    wait_for_subscribers: float = field(default=0.0, metadata={
        'help': 'wait up to this many seconds until every played topic has a subscriber (0: start at once)',
        'range': (0.0, 3600.0)})
    linger: float = field(default=1.0, metadata={
        'help': 'at the end, wait up to this many seconds for reliable subscribers to acknowledge',
        'range': (0.0, 60.0)})


@dataclass
class EchoConfig:
    """Parameters of ``echo_node`` (no section prefix)."""

    topics: list = field(default_factory=list, metadata={
        'help': 'topics to subscribe (TOPIC or TOPIC:pkg/msg/Type); empty: the three KITTI topics', 'item': str})
    reliable: bool = field(default=False, metadata={
        'help': 'reliable subscriptions instead of best-effort sensor QoS'})
    count: int = field(default=0, metadata={'help': 'stop after this many messages in total (0: never)',
                                            'range': (0, 2**31 - 1)})
    depth: int = field(default=10, metadata={'help': 'subscription queue depth', 'range': (1, 10000)})


def _inference(module: str, name: str):
    def load():
        return getattr(importlib.import_module(f'pu_ros.inference.{module}'), name)
    return load


#: Node executable -> ordered {section: loader of its dataclass}. Loaders import lazily: the sampler and
#: upsampler configs live in modules that need only numpy at import time, but may be absent on a partial checkout.
NODE_SECTIONS = {
    'segmentation_node': {
        'segmentation': _inference('segmenter', 'SegmenterConfig'),
        'fusion': lambda: FusionConfig,
        'resample': lambda: ResampleConfig,
        'evaluation': lambda: EvaluationConfig,
        'diagnostics': lambda: DiagnosticsConfig,
    },
    'sampler_node': {
        'sampler': _inference('sampler', 'SamplerConfig'),
        'diagnostics': lambda: DiagnosticsConfig,
    },
    'upsampler_node': {
        'upsampler': _inference('upsampler', 'UpsamplerConfig'),
        'diagnostics': lambda: DiagnosticsConfig,
    },
}


def section_class(node: str, section: str):
    """The dataclass of ``section`` of ``node`` (ImportError when its module is absent)."""
    return NODE_SECTIONS[node][section]()


def field_default(f):
    """Default value of a dataclass field (calls ``default_factory``)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise ValueError(f'field {f.name} has no default: every setting needs one')


def dotted_defaults(section: str, cls) -> dict:
    """``{'section.field': default}`` of a config dataclass (``{'field': default}`` for section ``''``)."""
    if not is_dataclass(cls):
        raise TypeError(f'{cls!r} is not a dataclass')
    return {dotted(section, f.name): field_default(f) for f in fields(cls)}


def dotted(section: str, name: str) -> str:
    """ROS parameter name of field ``name`` of ``section`` (no prefix for the section ``''``)."""
    return f'{section}.{name}' if section else name


def check_value(f, value) -> str | None:
    """Why ``value`` is not acceptable for dataclass field ``f`` (type, range, choices), or None when it is."""
    default = field_default(f)
    meta = f.metadata or {}
    if isinstance(default, bool):
        if not isinstance(value, bool):
            return f'must be true or false, got {value!r}'
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return f'must be an integer, got {value!r}'
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f'must be a number, got {value!r}'
        if value != value:
            return 'must not be NaN'
    elif isinstance(default, str):
        if not isinstance(value, str):
            return f'must be a string, got {value!r}'
    elif isinstance(default, list):
        if not isinstance(value, (list, tuple)):
            return f'must be a list, got {value!r}'
    if 'range' in meta and isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = meta['range']
        if not lo <= value <= hi:
            return f'{value!r} is out of range [{lo}, {hi}]'
    if 'choices' in meta and value not in meta['choices']:
        return f'{value!r} is not one of {", ".join(map(str, meta["choices"]))}'
    return None
