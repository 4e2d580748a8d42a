"""Run the pipeline nodes in one process, fed by a bag: the engine of ``pu-ros pipeline`` and ``bench/pipeline.py``.

The stage nodes (``sampler_node`` / ``upsampler_node`` when enabled, then ``segmentation_node``) are the very classes
``pipeline.launch.py`` starts, built with the same parameter file (``--params-file config/pipeline.yaml`` given to
this process's rclpy context) and connected by the same kind of remappings. They and the
:class:`~pu_ros.ros.pipeline_monitor.PipelineMonitor` spin in one ``SingleThreadedExecutor`` (rclpy's
``MultiThreadedExecutor`` drops timer events with the PyPI wheels). The bag is played by the
:class:`~pu_ros.ros.player_node.BagPlayer` node in a second thread with its own single-threaded executor, so it
publishes on time like a sensor driver would while a stage is busy; messages go through DDS (loopback / shared
memory) exactly as between processes, and the stages' sensor-data QoS (keep last 1) drops what they cannot keep up
with.

>>> result = run_pipeline(RunnerOptions(bag=Path('kitti.bag'), stages=('segmentation',), output_bag=Path('out.mcap')))
>>> result.frames_in, result.frames_out, result.monitor.stage_ms['segmentation']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import importlib
from pathlib import Path
import threading
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from pu_ros.data import bag as bagio
from pu_ros.ros.pipeline_monitor import PipelineMonitor
from pu_ros.ros.player_node import SETUP_ERRORS, BagPlayer

STAGE_ORDER = ('sampler', 'upsampler', 'segmentation')
#: stage -> (module, class, node name = the section of config/pipeline.yaml)
STAGE_NODES = {
    'sampler': ('pu_ros.ros.sampler_node', 'SamplerNode', 'sampler_node'),
    'upsampler': ('pu_ros.ros.upsampler_node', 'UpsamplerNode', 'upsampler_node'),
    'segmentation': ('pu_ros.ros.segmentation_node', 'SegmentationNode', 'segmentation_node'),
}
#: topics between the stages (the same names as in launch/pipeline.launch.py)
STAGE_OUTPUT = {
    'sampler': '/pu_ros/sampled_points',
    'upsampler': '/pu_ros/dense_points',
    'segmentation': '/pu_ros/labelled_points',
}
LABELLED_RESAMPLED = '/pu_ros/labelled_resampled_points'
CLOUD_TYPE = 'sensor_msgs/msg/PointCloud2'


class PipelineError(ValueError):
    """The pipeline cannot be set up (missing stage implementation, bad bag, bad parameters)."""


@dataclass
class RunnerOptions:
    """What to run.

    Attributes:
        bag: rosbag2 to play (``pu-ros kitti-to-bag`` layout: a PointCloud2 topic, optionally camera topics).
        config: parameter file given to every node (``config/pipeline.yaml``); None = none.
        stages: enabled stages, a subset of :data:`STAGE_ORDER` ending with ``'segmentation'``.
        fused: camera-fused segmentation (the node's ``segmentation.fused`` parameter).
        rate: playback speed factor (1.0 = the bag's 10 Hz).
        duration_s: loop the bag for this many seconds (None: play it once).
        output_bag: write the labelled clouds to this rosbag2 folder (MCAP), or None.
        keep_every: keep every N-th labelled frame for renders (0: none); ``max_keep`` at most.
        max_keep: see ``keep_every``.
        parameters: extra parameter overrides per node name, e.g. ``{'segmentation_node': {'segmentation.device':
            'cpu'}}``.
        drain_s: after the last message, stop once no stage produced anything for this long.
        wait_s: how long the player waits for the stages to subscribe.
        rss_every_s: resident-memory sampling period.
    """

    bag: Path
    config: Path | None = None
    stages: tuple[str, ...] = ('segmentation',)
    fused: bool = False
    rate: float = 1.0
    duration_s: float | None = None
    output_bag: Path | None = None
    keep_every: int = 0
    max_keep: int = 8
    parameters: dict = field(default_factory=dict)
    drain_s: float = 3.0
    wait_s: float = 60.0
    rss_every_s: float = 2.0


@dataclass
class RunResult:
    """What a run measured (see :class:`~pu_ros.ros.pipeline_monitor.PipelineMonitor` for the timings)."""

    options: RunnerOptions
    frames_in: int
    frames_out: int
    monitor: PipelineMonitor
    stage_nodes: dict
    topics: dict
    wall_s: float
    rss_mb: list = field(default_factory=list)  # (seconds since start, resident MiB)
    device: str = ''
    node_stats: dict = field(default_factory=dict)  # stage -> node.monitor.summary() at the end

    @property
    def frames_dropped(self) -> int:
        """Bag clouds that never came out labelled."""
        return max(0, self.frames_in - self.frames_out)


def rss_mib() -> float:
    """Resident memory of this process in MiB (Linux /proc; 0.0 elsewhere)."""
    try:
        with open('/proc/self/status') as fh:
            for line in fh:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def bag_topics(bag: Path) -> dict:
    """``points``, ``image``, ``camera_info`` topic names of a bag (None when absent) and ``tf_static``."""
    info = bagio.bag_info(bag)
    by_type: dict[str, list[str]] = {}
    for topic, t in sorted(info['topics'].items()):
        by_type.setdefault(t['type'], []).append(topic)
    clouds = by_type.get(CLOUD_TYPE, [])
    if not clouds:
        raise PipelineError(f'bag {bag} has no {CLOUD_TYPE} topic')
    images = by_type.get('sensor_msgs/msg/Image', [])
    infos = by_type.get('sensor_msgs/msg/CameraInfo', [])
    return {
        'points': clouds[0],
        'image': images[0] if images else None,
        'camera_info': infos[0] if infos else None,
        'tf_static': '/tf_static' if '/tf_static' in info['topics'] else None,
        'clouds': info['topics'][clouds[0]]['count'],
    }


def stage_class(stage: str):
    """The node class of a stage; :class:`PipelineError` with the reason when it is not available."""
    module, cls, _ = STAGE_NODES[stage]
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise PipelineError(f'the {stage} stage is not available in this version ({module}.{cls}: {exc})') from None


def check_stages(stages) -> tuple[str, ...]:
    """Stages in pipeline order; :class:`PipelineError` for unknown ones or without segmentation last."""
    stages = tuple(stages)
    unknown = [s for s in stages if s not in STAGE_NODES]
    if unknown:
        raise PipelineError(f'unknown stage(s) {unknown}; use {", ".join(STAGE_ORDER)}')
    if 'segmentation' not in stages:
        raise PipelineError('the segmentation stage is always part of the pipeline')
    return tuple(s for s in STAGE_ORDER if s in stages)


def _overrides(values: dict) -> list[Parameter]:
    return [Parameter(k, value=str(v) if isinstance(v, Path) else v) for k, v in values.items()]


def _device_of(node) -> str:
    """``'cpu (CPU model)'`` / ``'cuda (GPU name)'`` of the segmentation node's network."""
    device = getattr(getattr(node, 'segmenter', None), 'device', None)
    if device is None:
        return ''
    from pu_ros.ops.device import device_name

    return f'{device} ({device_name(device)})'


def node_statistics(node) -> dict:
    """A stage node's own counters and timings (``node.monitor.summary()``), {} when it has none."""
    monitor = getattr(node, 'monitor', None)
    return dict(monitor.summary()) if monitor is not None and hasattr(monitor, 'summary') else {}


def _find_publisher(node, suffix: str):
    for pub in getattr(node, 'publishers', []):
        if pub.topic_name.endswith(suffix):
            return pub
    return None


def run_pipeline(options: RunnerOptions, on_progress: Callable[[int, int], None] | None = None,
                 context=None) -> RunResult:
    """Play ``options.bag`` through the enabled stages and measure; see the module docstring.

    Args:
        options: :class:`RunnerOptions`.
        on_progress: called about 10 times a second with ``(clouds published, labelled clouds received)``.
        context: an initialised rclpy context to use (default: a new one, initialised with the parameter file
            and shut down at the end).

    Returns:
        :class:`RunResult`.

    Raises:
        PipelineError: a stage class is missing, the bag has no cloud topic, or a node refused its parameters.
    """
    stages = check_stages(options.stages)
    classes = {s: stage_class(s) for s in stages}
    topics = bag_topics(Path(options.bag))
    own_context = context is None
    if own_context:
        args = ['pu-ros-pipeline']
        if options.config is not None:
            args += ['--ros-args', '--params-file', str(options.config)]
        context = rclpy.Context()
        rclpy.init(args=args, context=context)
    nodes: dict[str, object] = {}
    writer = None
    player = monitor = None
    executor = player_executor = thread = monitor_executor = monitor_thread = None
    try:
        links = []  # (stage, input topic, output topic)
        upstream = topics['points']
        for stage in stages:
            links.append((stage, upstream, STAGE_OUTPUT[stage]))
            upstream = STAGE_OUTPUT[stage]
        for stage, inp, out in links:
            name = STAGE_NODES[stage][2]
            remaps = ['-r', f'~/input/points:={inp}', '-r', f'~/output/points:={out}']
            if stage == 'segmentation' and options.fused and topics['image'] and topics['camera_info']:
                remaps += ['-r', f'~/input/image:={topics["image"]}',
                           '-r', f'~/input/camera_info:={topics["camera_info"]}']
            values = dict(options.parameters.get(name, {}))
            if stage == 'segmentation' and options.fused:
                values.setdefault('segmentation.fused', True)
            if stage == 'segmentation' and len(stages) > 1:  # label the original cloud, not the resampled one
                values.setdefault('resample.use_original', True)
                remaps += ['-r', f'~/input/original_points:={topics["points"]}',
                           '-r', f'~/output/resampled_points:={LABELLED_RESAMPLED}']
            try:
                nodes[stage] = classes[stage](values, context=context, cli_args=['--ros-args', *remaps])
            except ImportError as exc:
                raise PipelineError(f'the {stage} stage is not available in this version ({exc})') from None
            except (*SETUP_ERRORS, TypeError) as exc:
                raise PipelineError(f'{name}: {exc}') from None

        miou_pub = _find_publisher(nodes['segmentation'], '/debug/miou')
        if options.output_bag is not None:
            writer = bagio.BagWriter(Path(options.output_bag), storage='mcap', overwrite=True).open()
            writer.set_custom_data('pu_ros.source_bag', str(options.bag))
            writer.set_custom_data('pu_ros.stages', ','.join(stages))
            writer.add_topic(STAGE_OUTPUT['segmentation'], CLOUD_TYPE)
            _copy_tf_static(Path(options.bag), topics, writer)
        monitor = PipelineMonitor(topics['points'], links,
                                  miou_topic=(miou_pub.topic_name, miou_pub.msg_type) if miou_pub else None,
                                  writer=writer, keep_every=options.keep_every, max_keep=options.max_keep,
                                  context=context)
        executor = SingleThreadedExecutor(context=context)
        for node in nodes.values():
            executor.add_node(node)
        monitor_executor = SingleThreadedExecutor(context=context)  # its own thread: it never waits for a stage
        monitor_executor.add_node(monitor)
        monitor_thread = threading.Thread(target=_spin_quietly, args=(monitor_executor,), name='monitor', daemon=True)
        monitor_thread.start()

        # camera topics only when a node listens to them (fused mode can fall back to LiDAR-only)
        listened = {sub.topic_name for node in nodes.values() for sub in getattr(node, 'subscriptions', [])}
        played = [topics['points']] + [t for t in (topics['image'], topics['camera_info']) if t and t in listened]
        played += [topics['tf_static']] if topics['tf_static'] else []
        try:
            player = BagPlayer({'bag': str(options.bag), 'rate': float(options.rate),
                                'loop': options.duration_s is not None, 'topics': played,
                                'wait_for_subscribers': float(options.wait_s), 'linger': 0.0}, context=context)
        except SETUP_ERRORS as exc:
            raise PipelineError(f'bag player: {exc}') from None
        player_executor = SingleThreadedExecutor(context=context)
        player_executor.add_node(player)
        thread = threading.Thread(target=_spin_quietly, args=(player_executor,), name='bag_player', daemon=True)
        t0 = time.monotonic()
        rss = [(0.0, rss_mib())]
        thread.start()

        def stop_player():
            player_executor.shutdown()
            thread.join()

        _spin(options, executor, player, monitor, topics['points'], on_progress, rss, t0, stop_player)
        stop_player()
        player_executor = None
        monitor_executor.shutdown()
        monitor_thread.join()
        monitor_executor = None
        frames_in = player.published.get(topics['points'], 0)
        result = RunResult(options=options, frames_in=frames_in, frames_out=monitor.received(monitor.output_topic),
                           monitor=monitor, stage_nodes=dict(nodes), topics=topics,
                           wall_s=time.monotonic() - t0, rss_mb=rss, device=_device_of(nodes['segmentation']),
                           node_stats={s: node_statistics(n) for s, n in nodes.items()})
        if writer is not None:
            writer.close()
            writer = None
        return result
    finally:
        if writer is not None:
            writer.abort()
        for ex, th in ((player_executor, thread), (monitor_executor, monitor_thread)):
            if ex is not None:
                ex.shutdown()
                if th is not None and th.is_alive():
                    th.join()
        if executor is not None:
            executor.shutdown()
        for node in (player, monitor, *nodes.values()):
            if node is not None:
                try:
                    node.destroy_node()
                except Exception:  # noqa: BLE001 - best effort during teardown
                    pass
        if own_context:
            rclpy.try_shutdown(context=context)


def _spin_quietly(executor) -> None:
    try:
        executor.spin()
    except Exception:  # noqa: BLE001 - ExternalShutdownException / a shut-down context at teardown
        pass


def _copy_tf_static(bag: Path, topics: dict, writer) -> None:
    if not topics['tf_static']:
        return
    writer.add_topic('/tf_static', 'tf2_msgs/msg/TFMessage', qos=bagio.qos_profile('transient_local', depth=1))
    for _, _, stamp, raw in bagio.read_bag(bag, topics=['/tf_static']):
        writer.write_raw('/tf_static', stamp, raw)


def _spin(options, executor, player, monitor, points_topic, on_progress, rss, t0, stop_player) -> None:
    """Spin the stages until the bag is played (or ``duration_s`` passed) and the pipeline is drained."""
    last_rss = last_progress = t0
    started = fed_until = None
    while True:
        executor.spin_once(timeout_sec=0.05)
        now = time.monotonic()
        if now - last_rss >= options.rss_every_s:
            rss.append((now - t0, rss_mib()))
            last_rss = now
        if on_progress is not None and now - last_progress >= 0.1:
            on_progress(player.published.get(points_topic, 0), monitor.received(monitor.output_topic))
            last_progress = now
        if fed_until is None:
            if started is None and player.published.get(points_topic, 0) > 0:
                started = now
            if player.finished.done():
                fed_until = now
            elif options.duration_s is not None and started is not None and now - started >= options.duration_s:
                stop_player()
                fed_until = now
            continue
        # draining: the last cloud published came out labelled, or nothing came out for drain_s
        settled = monitor.settled()
        done = (settled and monitor.received(points_topic) >= player.published.get(points_topic, 0)
                and monitor.last_output_stamp is not None
                and monitor.last_output_stamp == monitor.last_stamp(points_topic))
        quiet = now - max(monitor.last_activity, fed_until)
        idle = quiet >= options.drain_s and (settled or quiet >= options.drain_s + 10.0)
        if idle or (done and now - monitor.last_activity >= 0.3) or now - fed_until > 600:
            break
    rss.append((time.monotonic() - t0, rss_mib()))
