"""See what a subscriber receives: ``KittiEcho`` node, ``echo_node`` executable and ``pu-ros echo``.

The node subscribes to the KITTI topics written by ``pu-ros kitti-to-bag`` (best-effort sensor-data QoS by default,
as the pipeline's nodes do; ``reliable`` for a lossless check), converts every message with
:mod:`pu_ros.ros.conversions` and keeps one record per message (:func:`summarize`): stamp, point count, SHA-1 of
the ``(N, 4)`` float32 x, y, z, intensity array and of the ``label`` field, a histogram of the labels' raw class
ids, image size / encoding / SHA-1 of the pixels, camera_info size and matrices. :func:`bag_records` builds the
same records from a bag, and :func:`compare_records` says which messages arrived intact; the demo and the DDS tests
use them. ``pu-ros echo`` prints one line per message, a summary table at the end and, with ``--json``, writes the
records to a file.

Parameters: ``topics`` (string array; ``TOPIC`` or ``TOPIC:pkg/msg/Type``), ``reliable`` (bool), ``count`` (int,
stop after that many messages in total; 0 = no limit), ``depth`` (int, subscription queue depth).
"""

from __future__ import annotations

from collections import Counter, defaultdict
import hashlib
import json
from pathlib import Path
import signal
import sys
import time

import numpy as np

try:
    import rclpy
    from rclpy.context import Context
    from rclpy.exceptions import NameValidationException, ParameterException, ParameterUninitializedException
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.task import Future
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
except ImportError as exc:  # pragma: no cover - exercised only without rclpy
    raise ImportError(
        'pu_ros.ros.echo_node needs rclpy and sensor_msgs: source a ROS 2 installation or '
        '`pip install ros-rclpy ros-rmw-fastrtps-cpp ros-sensor-msgs`'
    ) from exc

from pu_ros.ros import conversions
from pu_ros.ros.player_node import resolve_message_type

NODE_NAME = 'kitti_echo'
POINTS_TOPIC = '/kitti/velo/pointcloud'
IMAGE_TOPIC = '/kitti/camera_color_left/image_raw'
CAMERA_INFO_TOPIC = '/kitti/camera_color_left/camera_info'
TF_STATIC_TOPIC = '/tf_static'
DEFAULT_TOPICS = (POINTS_TOPIC, IMAGE_TOPIC, CAMERA_INFO_TOPIC)
SETUP_ERRORS = (ValueError, OSError, ParameterException, NameValidationException)
_TYPES_BY_NAME = {
    'sensor_msgs/msg/PointCloud2': PointCloud2,
    'sensor_msgs/msg/Image': Image,
    'sensor_msgs/msg/CameraInfo': CameraInfo,
}
# Fields of a record that must be equal for a message to count as intact, by message type.
CONTENT_KEYS = {
    'sensor_msgs/msg/PointCloud2': ('frame_id', 'points', 'fields', 'points_sha1', 'labels_sha1'),
    'sensor_msgs/msg/Image': ('frame_id', 'height', 'width', 'encoding', 'image_sha1'),
    'sensor_msgs/msg/CameraInfo': ('frame_id', 'height', 'width', 'k', 'p', 'distortion_model'),
    'tf2_msgs/msg/TFMessage': ('transforms',),
}


# ------------------------------------------------------------------------------------------------- records


def array_sha1(arr: np.ndarray) -> str:
    """SHA-1 (hex) of an array's bytes in C order (a non-contiguous array is copied once first)."""
    return hashlib.sha1(np.ascontiguousarray(arr).data).hexdigest()


def points_checksum(points: np.ndarray) -> str:
    """SHA-1 of an (N, 4) point array as little-endian float32, the same digest :func:`summarize` records.

    Args:
        points: (N, 4) x, y, z, intensity (e.g. ``np.fromfile(bin, '<f4').reshape(-1, 4)``); cast to ``<f4``.
    """
    return array_sha1(np.asarray(points, dtype='<f4'))


def labels_checksum(labels: np.ndarray) -> str:
    """SHA-1 of (N,) labels as little-endian uint32, the same digest :func:`summarize` records."""
    return array_sha1(np.asarray(labels, dtype='<u4'))


def type_name(msg_or_cls) -> str:
    """``'pkg/msg/Type'`` of a message (or message class) from the generated Python module path."""
    cls = msg_or_cls if isinstance(msg_or_cls, type) else type(msg_or_cls)
    pkg = cls.__module__.split('.')[0]
    return f'{pkg}/msg/{cls.__name__}'


def summarize(msg, topic: str, keep: dict | None = None) -> dict:
    """One JSON-serialisable record describing a received message.

    Args:
        msg: a PointCloud2, Image or CameraInfo (other types get only topic, type, stamp and frame).
        topic: topic it came from.
        keep: when a dict, the converted arrays are stored in it: ``points`` (N, 4) float32, ``labels`` (N,)
            uint32 or None, ``image`` (H, W[, C]).

    Returns:
        dict with ``topic``, ``type``, ``stamp_ns``, ``frame_id`` and per type: PointCloud2 ``points`` (N),
        ``fields``, ``points_sha1`` (of the (N, 4) ``<f4`` x, y, z, intensity array), ``labels_sha1`` (of the
        ``label`` field as ``<u4``, None without one), ``label_histogram`` (``{raw class id: count}`` of
        ``label & 0xFFFF``); Image ``height``, ``width``, ``encoding``, ``image_sha1``; CameraInfo ``height``,
        ``width``, ``k``, ``p``, ``distortion_model``. A message that cannot be converted gets ``error``.
    """
    header = getattr(msg, 'header', None)
    rec = {
        'topic': topic,
        'type': type_name(msg),
        'stamp_ns': conversions.stamp_to_ns(header.stamp) if header is not None else None,
        'frame_id': header.frame_id if header is not None else None,
    }
    try:
        if isinstance(msg, PointCloud2):
            points = conversions.cloud_to_xyzi(msg, skip_nans=False)
            names = [f.name for f in msg.fields]
            labels = None
            if 'label' in names:
                labels = np.asarray(conversions.cloud_to_array(msg, fields=['label'])['label'], dtype='<u4')
            rec.update(points=int(points.shape[0]), fields=names, points_sha1=points_checksum(points),
                       labels_sha1=None if labels is None else labels_checksum(labels), label_histogram=None)
            if labels is not None:
                ids, counts = np.unique(labels & np.uint32(0xFFFF), return_counts=True)
                rec['label_histogram'] = {str(int(i)): int(c) for i, c in zip(ids, counts)}
            if keep is not None:
                keep.update(points=points, labels=labels)
        elif isinstance(msg, Image):
            pixels = conversions.image_to_array(msg)
            rec.update(height=int(msg.height), width=int(msg.width), encoding=msg.encoding,
                       image_sha1=array_sha1(pixels))
            if keep is not None:
                keep['image'] = np.array(pixels)
        elif isinstance(msg, CameraInfo):
            rec.update(height=int(msg.height), width=int(msg.width), k=[float(v) for v in msg.k],
                       p=[float(v) for v in msg.p], distortion_model=msg.distortion_model)
        elif rec['type'] == 'tf2_msgs/msg/TFMessage':
            rec['transforms'] = [_transform_row(t) for t in msg.transforms]
            if msg.transforms:
                rec['stamp_ns'] = conversions.stamp_to_ns(msg.transforms[0].header.stamp)
    except ValueError as exc:  # ConversionError is a ValueError
        rec['error'] = str(exc)
    return rec


def _transform_row(t) -> list:
    tr, rot = t.transform.translation, t.transform.rotation
    return [t.header.frame_id, t.child_frame_id, *(float(v) for v in (tr.x, tr.y, tr.z, rot.x, rot.y, rot.z, rot.w))]


def bag_records(bag_path: str | Path, topics=None) -> tuple[list[dict], dict[str, str]]:
    """Records (:func:`summarize`) of the messages in a bag, decoded with rclpy from the stored CDR bytes.

    Args:
        bag_path: rosbag2 folder.
        topics: topics to read (default: all).

    Returns:
        ``(records, skipped)``: records in bag order, and ``{topic: reason}`` for topics whose type is not
        importable here (they are not decoded).
    """
    from rclpy.serialization import deserialize_message

    from pu_ros.data.bag import bag_info, read_bag

    info = bag_info(bag_path)
    wanted = list(info['topics']) if topics is None else [t for t in topics if t in info['topics']]
    classes, skipped = {}, {}
    for topic in wanted:
        cls, reason = resolve_message_type(info['topics'][topic]['type'])
        if cls is None:
            skipped[topic] = reason
        else:
            classes[topic] = cls
    records = []
    for topic, _msgtype, _stamp, raw in read_bag(bag_path, topics=list(classes)):
        records.append(summarize(deserialize_message(raw, classes[topic]), topic))
    return records, skipped


def compare_records(expected: list[dict], received: list[dict]) -> dict:
    """Which expected messages arrived, and intact.

    Messages are matched by topic and header stamp; a match is intact when the content fields
    (:data:`CONTENT_KEYS`) of both records are equal.

    Args:
        expected: records of what was sent (e.g. :func:`bag_records`).
        received: records of what arrived (:attr:`KittiEcho.records`).

    Returns:
        dict with ``ok`` (every expected message arrived intact and nothing unexpected arrived) and ``topics``:
        ``{topic: {'expected', 'received', 'intact', 'missing': [stamps], 'corrupt': [stamps],
        'unexpected': [stamps]}}``.
    """
    got = defaultdict(list)
    for rec in received:
        got[(rec['topic'], rec['stamp_ns'])].append(rec)
    topics: dict[str, dict] = {}
    for rec in expected:
        t = topics.setdefault(rec['topic'], {'expected': 0, 'received': 0, 'intact': 0, 'missing': [],
                                             'corrupt': [], 'unexpected': []})
        t['expected'] += 1
        matches = got.get((rec['topic'], rec['stamp_ns']))
        if not matches:
            t['missing'].append(rec['stamp_ns'])
            continue
        other = matches.pop(0)
        keys = CONTENT_KEYS.get(rec['type'], ())
        if 'error' in rec or 'error' in other or any(rec.get(k) != other.get(k) for k in keys):
            t['corrupt'].append(rec['stamp_ns'])
        else:
            t['intact'] += 1
    for rec in received:
        t = topics.setdefault(rec['topic'], {'expected': 0, 'received': 0, 'intact': 0, 'missing': [],
                                             'corrupt': [], 'unexpected': []})
        t['received'] += 1
    for (topic, stamp), left in got.items():
        topics[topic]['unexpected'].extend([stamp] * len(left))
    ok = bool(expected) and all(not (t['missing'] or t['corrupt'] or t['unexpected']) for t in topics.values())
    return {'ok': ok, 'topics': topics}


def format_summary(records: list[dict]) -> str:
    """A per-topic table of the records: message count, stamps, rate and content."""
    by_topic = defaultdict(list)
    for rec in records:
        by_topic[rec['topic']].append(rec)
    rows = [('topic', 'type', 'msgs', 'first stamp [s]', 'rate [Hz]', 'content')]
    for topic in sorted(by_topic):
        recs = by_topic[topic]
        stamps = [r['stamp_ns'] for r in recs if r.get('stamp_ns') is not None]
        first = f'{min(stamps) / 1e9:.3f}' if stamps else '-'
        span = (max(stamps) - min(stamps)) / 1e9 if len(stamps) > 1 else 0.0
        rate = f'{(len(stamps) - 1) / span:.2f}' if span > 0 else '-'
        rows.append((topic, recs[0]['type'].split('/')[-1], str(len(recs)), first, rate, _content(recs)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ['  '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def _content(recs: list[dict]) -> str:
    errors = sum('error' in r for r in recs)
    kind = recs[0]['type']
    text = ''
    if kind.endswith('/PointCloud2'):
        pts = [r['points'] for r in recs if 'points' in r]
        labelled = sum(r.get('labels_sha1') is not None for r in recs)
        text = f'{min(pts)}-{max(pts)} points, labels in {labelled}/{len(recs)}' if pts else ''
    elif kind.endswith('/Image'):
        shapes = Counter(f'{r["width"]}x{r["height"]} {r["encoding"]}' for r in recs if 'encoding' in r)
        text = ', '.join(shapes)
    elif kind.endswith('/CameraInfo'):
        shapes = Counter(f'{r["width"]}x{r["height"]} fx={r["k"][0]:.1f}' for r in recs if 'k' in r)
        text = ', '.join(shapes)
    return text + (f' ({errors} not convertible)' if errors else '')


def message_line(rec: dict) -> str:
    """One line describing a record, as ``pu-ros echo`` prints it."""
    stamp = '-' if rec.get('stamp_ns') is None else f'{rec["stamp_ns"] / 1e9:.6f}'
    head = f'{rec["topic"]} #{rec.get("index", 0)} stamp {stamp}'
    if 'error' in rec:
        return f'{head} ERROR {rec["error"]}'
    if 'points_sha1' in rec:
        labels = f' labels {rec["labels_sha1"][:10]}' if rec['labels_sha1'] else ''
        return f'{head} {rec["points"]} points sha1 {rec["points_sha1"][:10]}{labels}'
    if 'image_sha1' in rec:
        return f'{head} {rec["width"]}x{rec["height"]} {rec["encoding"]} sha1 {rec["image_sha1"][:10]}'
    if 'k' in rec:
        return f'{head} {rec["width"]}x{rec["height"]} fx {rec["k"][0]:.2f} fy {rec["k"][4]:.2f}'
    if 'transforms' in rec:
        return f'{head} ' + ', '.join(f'{t[0]} -> {t[1]}' for t in rec['transforms'])
    return f'{head} {rec["type"]}'


def guess_type(topic: str):
    """Message class for a topic name of the KITTI layout (``..._info`` / ``image`` / ``points``), else None."""
    name = topic.lower()
    if name in ('/tf_static', '/tf'):
        return resolve_message_type('tf2_msgs/msg/TFMessage')[0]  # None without tf2_msgs
    if name.endswith('camera_info'):
        return CameraInfo
    if 'image' in name:
        return Image
    if any(key in name for key in ('point', 'cloud', 'velo', 'lidar', 'scan')):
        return PointCloud2
    return None


# ------------------------------------------------------------------------------------------------- node


class KittiEcho(Node):
    """Subscribes to KITTI topics and keeps a :func:`summarize` record of every message.

    Args:
        settings: parameter values by name (``topics``, ``reliable``, ``count``, ``depth``).
        node_name: ROS node name.
        keep_arrays: also keep the converted arrays in :attr:`arrays` (memory grows with every message).
        on_record: called with each new record (after it is appended).
        **kwargs: passed to :class:`rclpy.node.Node`.

    Attributes:
        records: list of records in arrival order; each also has ``index`` (per-topic count) and
            ``received_ns`` (wall time of arrival).
        arrays: list parallel to ``records`` of dicts with ``points`` (N, 4) float32, ``labels`` (N,) uint32 or
            None, ``image`` (H, W[, C]); only with ``keep_arrays``.
        counts: ``{topic: messages received}``.
        finished: future completed once ``count`` messages have arrived (never when ``count`` is 0).
    """

    def __init__(self, settings: dict | None = None, *, node_name: str = NODE_NAME, keep_arrays: bool = False,
                 on_record=None, **kwargs):
        """Declare parameters and subscribe (topics of unknown type are resolved from the ROS graph)."""
        overrides = list(kwargs.pop('parameter_overrides', None) or [])
        overrides += [_to_parameter(k, v) for k, v in (settings or {}).items()
                      if not (isinstance(v, (list, tuple)) and not v)]
        super().__init__(node_name, parameter_overrides=overrides, **kwargs)
        from pu_ros.ros.node_config import EchoConfig
        from pu_ros.ros.node_params import ParameterSections

        # Subscriptions are made once: runtime changes are refused, not ignored.
        self.params = ParameterSections(self, {'': EchoConfig}, read_only=['topics', 'reliable', 'count', 'depth'])
        try:
            topics = [str(t) for t in self.get_parameter('topics').value if str(t)]
        except ParameterUninitializedException:
            topics = []
        self.topics = topics or list(DEFAULT_TOPICS)
        self.reliable = bool(self.get_parameter('reliable').value)
        self.count = int(self.get_parameter('count').value)
        depth = int(self.get_parameter('depth').value)
        self.qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
            reliability=ReliabilityPolicy.RELIABLE if self.reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        )
        self.keep_arrays = keep_arrays
        self.on_record = on_record
        self.records: list[dict] = []
        self.arrays: list[dict] = []
        self.counts: dict[str, int] = {}
        self.finished = Future()
        self._subs = {}
        self._unresolved: dict[str, float] = {}
        self._errors_logged: set[str] = set()
        for spec in self.topics:
            topic, _, msgtype = spec.partition(':')
            cls = None
            if msgtype:
                cls, reason = resolve_message_type(msgtype)
                if cls is None:
                    raise ValueError(f'topic {topic}: {reason}')
            cls = cls or guess_type(topic)
            if cls is None:
                self._unresolved[topic] = time.monotonic()
            else:
                self._subscribe(topic, cls)
        self._resolve_timer = self.create_timer(0.5, self._resolve) if self._unresolved else None
        latched = ', /tf_static reliable + transient local' if TF_STATIC_TOPIC in self._subs else ''
        self.get_logger().info(f'listening on {", ".join(t.partition(":")[0] for t in self.topics)} '
                               f'({"reliable" if self.reliable else "best effort"}, depth {depth}{latched})')

    def _subscribe(self, topic: str, cls) -> None:
        self.counts.setdefault(topic, 0)
        qos = self.qos
        if topic == TF_STATIC_TOPIC:  # latched: reliable + transient local, or the static transforms are missed
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._subs[topic] = self.create_subscription(cls, topic, lambda msg, t=topic: self._on_message(t, msg), qos)

    def _resolve(self) -> None:
        known = dict(self.get_topic_names_and_types())
        for topic in list(self._unresolved):
            types = known.get(self.resolve_topic_name(topic))
            if not types:
                continue
            cls, reason = resolve_message_type(types[0])
            if cls is None:
                self.get_logger().warning(f'cannot subscribe to {topic} ({types[0]}): {reason}')
            else:
                self._subscribe(topic, cls)
                self.get_logger().info(f'subscribed to {topic} ({types[0]})')
            del self._unresolved[topic]
        if not self._unresolved:
            self._resolve_timer.cancel()

    def _on_message(self, topic: str, msg) -> None:
        keep = {} if self.keep_arrays else None
        rec = summarize(msg, topic, keep)
        rec['index'] = self.counts[topic]
        rec['received_ns'] = time.time_ns()
        self.counts[topic] += 1
        self.records.append(rec)
        if keep is not None:
            self.arrays.append(keep)
        if 'error' in rec and topic not in self._errors_logged:
            self._errors_logged.add(topic)
            self.get_logger().error(f'{topic}: cannot convert message: {rec["error"]}')
        if self.on_record is not None:
            self.on_record(rec)
        if self.count and len(self.records) >= self.count and not self.finished.done():
            self.finished.set_result(len(self.records))


def _to_parameter(name: str, value) -> Parameter:
    if isinstance(value, (list, tuple)):
        return Parameter(name, Parameter.Type.STRING_ARRAY, [str(v) for v in value])
    return Parameter(name, value=value)


class EchoSession:
    """A :class:`KittiEcho` in a private rclpy context with its own executor, for scripts and tests.

    Example::

        with EchoSession({'topics': ['/kitti/velo/pointcloud'], 'reliable': True}) as echo:
            echo.spin_until(lambda: len(echo.node.records) >= 10, timeout=20)

    Args:
        settings: parameters of the node.
        **kwargs: passed to :class:`KittiEcho` (``keep_arrays``, ``on_record``, ``node_name``).
    """

    def __init__(self, settings: dict | None = None, **kwargs):
        """Initialise a context, create the node and the executor."""
        self.context = Context()
        rclpy.init(args=[], context=self.context)
        try:
            self.node = KittiEcho(settings, context=self.context, **kwargs)
        except BaseException:
            rclpy.try_shutdown(context=self.context)
            raise
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, predicate, timeout: float, step: float = 0.05) -> bool:
        """Process callbacks until ``predicate()`` is true (returns True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + float(timeout)
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0 or not self.context.ok():
                return bool(predicate())
            self.executor.spin_once(timeout_sec=min(step, left))
        return True

    def close(self) -> None:
        """Destroy the node and shut the context down."""
        try:
            self.executor.remove_node(self.node)
            self.executor.shutdown()
            self.node.destroy_node()
        finally:
            rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> EchoSession:
        """Return self."""
        return self

    def __exit__(self, *exc) -> bool:
        """Close."""
        self.close()
        return False


# ------------------------------------------------------------------------------------------------- entry points


def main(args=None) -> int:
    """``ros2 run pu_ros echo_node [--ros-args -p topics:=[...] -p count:=10 -p reliable:=true]``.

    ``--help`` prints usage without listening; SIGINT/SIGTERM (once or more) print the summary and exit 0, or 1
    when ``count`` was set and not reached (like ``pu-ros echo``); reaching ``count`` exits 0; bad parameters exit
    2 (see :func:`pu_ros.ros.process.node_main`).
    """
    from pu_ros.ros.node_config import EchoConfig
    from pu_ros.ros.process import node_main, parameter_table

    made = []

    def make_node():
        made.append(KittiEcho(on_record=lambda rec: print(message_line(rec), flush=True)))
        return made[0]

    code = node_main(make_node, prog='echo_node', description=__doc__, parameters=parameter_table({'': EchoConfig}),
                     argv=args, finished=lambda node: 0 if node.finished.done() else None,
                     on_exit=lambda node: print(format_summary(node.records) if node.records
                                                else 'no message received', flush=True))
    if code == 0 and made and made[0].count and not made[0].finished.done():
        return 1  # stopped before `count` messages arrived
    return code


def add_arguments(parser) -> None:
    """Arguments of ``pu-ros echo``."""
    parser.add_argument('--topics', nargs='+', default=list(DEFAULT_TOPICS), metavar='TOPIC',
                        help='topics (TOPIC or TOPIC:pkg/msg/Type; default: the KITTI point cloud, image and '
                             'camera_info topics)')
    parser.add_argument('--count', type=int, default=0, metavar='N', help='stop after N messages in total')
    parser.add_argument('--timeout', type=float, default=0.0, metavar='S', help='stop after S seconds (0: never)')
    parser.add_argument('--reliable', action='store_true', help='reliable subscriptions (default: best effort)')
    parser.add_argument('--depth', type=int, default=10, metavar='N', help='subscription queue depth (default 10)')
    parser.add_argument('--json', type=Path, default=None, metavar='FILE', help='write the records to FILE')
    parser.add_argument('--quiet', action='store_true', help='no line per message, only the summary')


def run(args) -> int:
    """``pu-ros echo``: 0 when stopped by count, timeout or Ctrl-C; 1 when ``--count`` was not reached; 2 bad args."""
    if args.count < 0 or args.timeout < 0:
        print('pu-ros echo: error: --count and --timeout must be >= 0', file=sys.stderr)
        return 2
    settings = {'topics': list(args.topics), 'reliable': bool(args.reliable), 'count': int(args.count),
                'depth': int(args.depth)}
    on_record = None if args.quiet else (lambda rec: print(message_line(rec), flush=True))
    try:
        session = EchoSession(settings, on_record=on_record)
    except SETUP_ERRORS as exc:
        print(f'pu-ros echo: error: {exc}', file=sys.stderr)
        return 2
    node = session.node
    stop = []
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}  # Ctrl-C / kill: stop, print the summary, exit 0
    try:
        session.spin_until(lambda: bool(stop) or node.finished.done(), timeout=args.timeout or float('inf'))
        reached = node.finished.done()
    except (KeyboardInterrupt, ExternalShutdownException):
        reached = node.finished.done()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        records = list(node.records)
        session.close()
    print(format_summary(records) if records else 'no message received', flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({'topics': args.topics, 'messages': records}, indent=1))
        print(f'wrote {len(records)} records to {args.json}')
    return 0 if (reached or not args.count) else 1


if __name__ == '__main__':
    sys.exit(main())
