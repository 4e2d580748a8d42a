"""ROS parameters declared from config dataclasses, validated when set at runtime, and the device choice.

>>> params = ParameterSections(node, {'segmentation': SegmenterConfig, 'diagnostics': DiagnosticsConfig},
...                            on_change=node.apply_changes)
>>> params['segmentation'].checkpoint        # a dataclass instance, kept up to date
>>> params.flat()                            # {'segmentation.checkpoint': '', ...}

Each field ``f`` of section ``s`` becomes the parameter ``s.f`` with a ``ParameterDescriptor`` carrying the field's
``help`` (description), ``range`` (``FloatingPointRange`` / ``IntegerRange``) and ``choices``
(``additional_constraints``). A set at runtime (``ros2 param set``) is checked against the same metadata: a bad
value is rejected with the reason (returned to the caller and logged as one error line), a good one updates the
dataclass instance after ``on_change`` accepted it (``on_change`` may raise ``ValueError`` to refuse, e.g. a
checkpoint that does not load).
"""

from __future__ import annotations

from dataclasses import fields, replace

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter

from pu_ros.ros.node_config import check_value, dotted, field_default

_WARNED_CPU = False  # the CPU fallback is said once per process (a runner with three stages: one line)
_ARRAY_TYPES = {float: ParameterType.PARAMETER_DOUBLE_ARRAY, int: ParameterType.PARAMETER_INTEGER_ARRAY,
                str: ParameterType.PARAMETER_STRING_ARRAY, bool: ParameterType.PARAMETER_BOOL_ARRAY}


def _ptype(default, f) -> int:
    if isinstance(default, bool):
        return ParameterType.PARAMETER_BOOL
    if isinstance(default, int):
        return ParameterType.PARAMETER_INTEGER
    if isinstance(default, float):
        return ParameterType.PARAMETER_DOUBLE
    if isinstance(default, str):
        return ParameterType.PARAMETER_STRING
    if isinstance(default, list):
        item = type(default[0]) if default else (f.metadata or {}).get('item', float)
        return _ARRAY_TYPES[item]
    raise TypeError(f'field {f.name}: unsupported parameter type {type(default).__name__}')


def descriptor_for(f, read_only: bool = False) -> ParameterDescriptor:
    """ParameterDescriptor of a config dataclass field (description, type, range, choices)."""
    default = field_default(f)
    meta = f.metadata or {}
    desc = ParameterDescriptor(description=str(meta.get('help', '')), type=_ptype(default, f), read_only=read_only)
    if 'range' in meta:
        lo, hi = meta['range']
        if isinstance(default, int) and not isinstance(default, bool):
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        elif isinstance(default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    if 'choices' in meta:
        desc.additional_constraints = 'one of: ' + ', '.join(map(str, meta['choices']))
    return desc


def to_parameter(name: str, value) -> Parameter:
    """A typed rclpy Parameter (lists of numbers become double arrays, of strings string arrays)."""
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            return Parameter(name, Parameter.Type.STRING_ARRAY, [str(v) for v in value])
        return Parameter(name, Parameter.Type.DOUBLE_ARRAY, [float(v) for v in value])
    return Parameter(name, value=value)


def settings_overrides(settings: dict | None) -> list[Parameter]:
    """``parameter_overrides`` for a Node from ``{'section.field': value}`` (empty lists mean "not set")."""
    return [to_parameter(k, v) for k, v in (settings or {}).items()
            if not (isinstance(v, (list, tuple)) and not v)]


class ParameterSections:
    """Declares the parameters of several config dataclasses on a node and keeps instances of them current.

    Args:
        node: the rclpy Node (parameters are declared at once; overrides come from ``--ros-args``, YAML files or
            the node's ``parameter_overrides``).
        sections: ordered ``{section: dataclass type}``.
        on_change: called as ``on_change({section: new instance})`` before a runtime set takes effect; raising
            ``ValueError`` refuses the whole set with that reason.
        read_only: dotted names that cannot change at runtime.

    Raises:
        ValueError: a start-up value breaks the field's range/choices/type (message names the parameter).
    """

    def __init__(self, node, sections: dict, on_change=None, read_only=()):
        """Declare every parameter and validate the start-up values."""
        self.node = node
        self.classes = dict(sections)
        self.on_change = on_change
        self._fields = {}  # dotted name -> (section, field)
        self.values = {}
        for section, cls in self.classes.items():
            kwargs = {}
            for f in fields(cls):
                name = dotted(section, f.name)
                self._fields[name] = (section, f)
                default = field_default(f)
                desc = descriptor_for(f, read_only=name in read_only)
                if isinstance(default, list) and not default:
                    node.declare_parameter(name, Parameter.Type(desc.type), desc)
                else:
                    node.declare_parameter(name, default, desc)
                try:
                    value = node.get_parameter(name).value
                except ParameterUninitializedException:
                    value = []
                if isinstance(value, tuple) or type(value).__name__ == 'array':
                    value = list(value)
                reason = check_value(f, value)
                if reason:
                    raise ValueError(f'parameter {name}: {reason}')
                kwargs[f.name] = value
            self.values[section] = cls(**kwargs)
        report = getattr(node, 'report_error', None)
        self._report = report if callable(report) else node.get_logger().error
        if hasattr(node, 'add_pre_set_parameters_callback'):
            node.add_pre_set_parameters_callback(self._log_bad)
        node.add_on_set_parameters_callback(self._on_set)

    def __getitem__(self, section: str):
        """The current dataclass instance of ``section``."""
        return self.values[section]

    def flat(self) -> dict:
        """``{'section.field': current value}`` of every declared parameter."""
        return {name: getattr(self.values[s], f.name) for name, (s, f) in self._fields.items()}

    def _reason(self, param) -> str | None:
        entry = self._fields.get(param.name)
        if entry is None:
            return None  # not ours (use_sim_time, ...): rclpy checks it
        value = param.value
        if isinstance(value, tuple) or type(value).__name__ == 'array':
            value = list(value)
        reason = check_value(entry[1], value)
        return f'parameter {param.name}: {reason}' if reason else None

    def _log_bad(self, params):
        # Runs before rclpy's own descriptor checks, which reject out-of-range values silently: say why here.
        for p in params:
            reason = self._reason(p)
            if reason:
                self._report(f'rejected: {reason}')
        return params

    def _on_set(self, params) -> SetParametersResult:
        changed = {}
        for p in params:
            reason = self._reason(p)
            if reason:
                if not hasattr(self.node, 'add_pre_set_parameters_callback'):
                    self._report(f'rejected: {reason}')
                return SetParametersResult(successful=False, reason=reason)
            if p.name in self._fields:
                section, f = self._fields[p.name]
                value = list(p.value) if isinstance(p.value, (tuple, list)) or type(p.value).__name__ == 'array' \
                    else p.value
                changed.setdefault(section, {})[f.name] = value
        if not changed:
            return SetParametersResult(successful=True)
        new = {s: replace(self.values[s], **kv) for s, kv in changed.items()}
        if self.on_change is not None:
            try:
                self.on_change(new)
            except (ValueError, OSError) as exc:
                reason = f'parameter {", ".join(p.name for p in params)}: {exc}'
                self._report(f'rejected: {reason}')
                return SetParametersResult(successful=False, reason=reason)
        self.values.update(new)
        return SetParametersResult(successful=True)


def pick_device(requested: str, logger) -> str:
    """Resolve ``'auto'``/``'cpu'``/``'cuda'`` (pu_ros.ops.device); warn once per process when falling back to CPU.

    Raises:
        ValueError: ``'cuda'`` asked for without CUDA.
    """
    from pu_ros.ops.device import resolve_device

    device = resolve_device(requested)
    if requested in ('', 'auto', None) and device == 'cpu':
        global _WARNED_CPU
        if not _WARNED_CPU:
            _WARNED_CPU = True
            logger.warning('CUDA is not available: running on the CPU (slower; see the README for GPU timings)')
    return device
