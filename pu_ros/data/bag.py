"""rosbag2 writing and reading on the pure-Python ``rosbags`` library (no rclpy, no ROS installation).

Writing: :class:`BagWriter` stages the bag in a hidden folder next to the target and renames it into place on
:meth:`BagWriter.close`, so a failed or interrupted conversion never leaves a half-written bag at the target path.
Message builders (:func:`pointcloud2`, :func:`image`, :func:`camera_info`, :func:`tf_message`) make ``rosbags``
message objects from numpy arrays; the PointCloud2 byte layout comes from :mod:`pu_ros.ops.cloud_layout`.

Reading: :func:`read_bag` yields ``(topic, msgtype, timestamp_ns, raw_cdr_bytes)`` in time order,
:func:`bag_info` summarises a bag, :func:`deserialize` decodes one message, and :func:`pointcloud2_to_array` /
:func:`image_to_array` turn decoded messages back into numpy arrays.

Messages use the ROS 2 Kilted type definitions (``rosbags.typesys.Stores.ROS2_KILTED``); the sensor_msgs,
std_msgs, geometry_msgs and tf2_msgs types used here have the same layout in Humble, Jazzy and Kilted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
import os
from pathlib import Path
import shutil
import tempfile

import numpy as np

from pu_ros.ops import cloud_layout

STORAGES = ('mcap', 'sqlite3')


class BagError(ValueError):
    """A bag cannot be read or written (missing, corrupt, wrong target)."""


@lru_cache(maxsize=1)
def get_typestore():
    """The shared ``rosbags`` typestore with the ROS 2 Kilted message definitions."""
    from rosbags import typesys

    return typesys.get_typestore(typesys.Stores.ROS2_KILTED)


def qos_profile(durability: str = 'volatile', reliability: str = 'reliable', depth: int = 10):
    """A ``rosbags`` QoS profile for a bag's ``offered_qos_profiles`` (deadline/lifespan/lease left unspecified).

    Args:
        durability: ``'volatile'`` or ``'transient_local'`` (latched, e.g. ``/tf_static``).
        reliability: ``'reliable'`` or ``'best_effort'``.
        depth: history depth (keep-last).
    """
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=int(depth),
        reliability=QosReliability[reliability.upper()],
        durability=QosDurability[durability.upper()],
        deadline=zero,
        lifespan=zero,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=zero,
        avoid_ros_namespace_conventions=False,
    )


# --------------------------------------------------------------------------------------------------- messages


def header(stamp_ns: int, frame_id: str):
    """``std_msgs/msg/Header`` with the stamp split into seconds and nanoseconds."""
    ts = get_typestore()
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f'negative stamp {stamp_ns} ns')
    time = ts.types['builtin_interfaces/msg/Time'](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    return ts.types['std_msgs/msg/Header'](stamp=time, frame_id=str(frame_id))


def stamp_to_ns(stamp) -> int:
    """``builtin_interfaces/msg/Time`` -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def pointcloud2(points: np.ndarray, stamp_ns: int, frame_id: str):
    """An unorganised ``sensor_msgs/msg/PointCloud2`` from a structured array.

    Args:
        points: (N,) structured array, e.g. built with :func:`pu_ros.ops.cloud_layout.make_structured`; fields of
            int8..uint32, float32 or float64 (see :func:`pu_ros.ops.cloud_layout.dtype_to_fields`).
        stamp_ns: header stamp in nanoseconds.
        frame_id: header frame.

    Returns:
        ``rosbags`` PointCloud2 object (height 1, width N, little-endian on little-endian hosts, ``is_dense``
        True only when every float field is finite).
    """
    ts = get_typestore()
    points = cloud_layout.points_to_bytes_array(np.asarray(points).reshape(-1))
    fields = [
        ts.types['sensor_msgs/msg/PointField'](name=name, offset=offset, datatype=datatype, count=count)
        for name, offset, datatype, count in cloud_layout.dtype_to_fields(points.dtype)
    ]
    float_names = [n for n in points.dtype.names if points.dtype.fields[n][0].kind == 'f']
    dense = all(bool(np.isfinite(points[n]).all()) for n in float_names)
    step = points.dtype.itemsize
    return ts.types['sensor_msgs/msg/PointCloud2'](
        header=header(stamp_ns, frame_id),
        height=1,
        width=int(points.shape[0]),
        fields=fields,
        is_bigendian=cloud_layout.NATIVE_BIGENDIAN,
        point_step=step,
        row_step=step * int(points.shape[0]),
        data=points.view(np.uint8).reshape(-1),
        is_dense=dense,
    )


def pointcloud2_to_array(msg) -> np.ndarray:
    """Structured (N,) array of a decoded PointCloud2 (a view of its data when the layout allows)."""
    dtype = cloud_layout.fields_to_dtype(msg.fields, msg.point_step, bool(msg.is_bigendian))
    return cloud_layout.bytes_to_points(msg.data, msg.width, msg.height, msg.point_step, msg.row_step, dtype)


_ENCODINGS = {'rgb8': 3, 'bgr8': 3, 'mono8': 1}


def image(pixels: np.ndarray, encoding: str, stamp_ns: int, frame_id: str):
    """A ``sensor_msgs/msg/Image`` from an 8-bit array.

    Args:
        pixels: (H, W, 3) uint8 for ``'rgb8'``/``'bgr8'`` or (H, W) uint8 for ``'mono8'``.
        encoding: ROS image encoding.
        stamp_ns: header stamp in nanoseconds.
        frame_id: header frame.
    """
    if encoding not in _ENCODINGS:
        raise ValueError(f'unsupported image encoding {encoding!r} (supported: {", ".join(_ENCODINGS)})')
    pixels = np.ascontiguousarray(pixels)
    channels = _ENCODINGS[encoding]
    expected_ndim = 2 if channels == 1 else 3
    if pixels.dtype != np.uint8 or pixels.ndim != expected_ndim or (channels == 3 and pixels.shape[2] != 3):
        raise ValueError(f'{encoding} image must be uint8 with {expected_ndim} dims, got {pixels.dtype} {pixels.shape}')
    height, width = pixels.shape[:2]
    return get_typestore().types['sensor_msgs/msg/Image'](
        header=header(stamp_ns, frame_id),
        height=int(height),
        width=int(width),
        encoding=encoding,
        is_bigendian=0,
        step=int(width * channels),
        data=pixels.reshape(-1),
    )


def image_to_array(msg) -> np.ndarray:
    """Pixels of a decoded ``rgb8``/``bgr8``/``mono8`` Image: (H, W, 3) or (H, W) uint8 (rows padding removed)."""
    if msg.encoding not in _ENCODINGS:
        raise ValueError(f'unsupported image encoding {msg.encoding!r}')
    channels = _ENCODINGS[msg.encoding]
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != msg.step * msg.height or msg.step < msg.width * channels:
        raise ValueError(f'image data has {data.size} bytes for step {msg.step} x height {msg.height}')
    rows = data.reshape(msg.height, msg.step)[:, : msg.width * channels]
    return rows.reshape(msg.height, msg.width, channels) if channels == 3 else rows.reshape(msg.height, msg.width)


def camera_info(P: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str):
    """A ``sensor_msgs/msg/CameraInfo`` for a rectified camera (no distortion, identity R).

    Args:
        P: (3, 4) projection matrix; ``K`` is its left 3×3 block.
        width: image width in pixels.
        height: image height in pixels.
        stamp_ns: header stamp in nanoseconds.
        frame_id: header frame.
    """
    ts = get_typestore()
    P = np.asarray(P, dtype=np.float64).reshape(3, 4)
    return ts.types['sensor_msgs/msg/CameraInfo'](
        header=header(stamp_ns, frame_id),
        height=int(height),
        width=int(width),
        distortion_model='plumb_bob',
        d=np.zeros(5, dtype=np.float64),
        k=P[:, :3].reshape(-1).copy(),
        r=np.eye(3).reshape(-1),
        p=P.reshape(-1).copy(),
        binning_x=0,
        binning_y=0,
        roi=ts.types['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(x, y, z, w)`` of a 3×3 rotation matrix (re-orthonormalised with an SVD first)."""
    U, _, Vt = np.linalg.svd(np.asarray(R, dtype=np.float64).reshape(3, 3))
    R = U @ Vt
    if np.linalg.det(R) < 0:
        raise ValueError('matrix is a reflection, not a rotation')
    m = R
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[3] >= 0 else -q


def quaternion_to_rotation(q) -> np.ndarray:
    """3×3 rotation matrix of a quaternion ``(x, y, z, w)``."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def transform_stamped(T_parent_child: np.ndarray, parent: str, child: str, stamp_ns: int):
    """``geometry_msgs/msg/TransformStamped``: the pose of ``child`` in ``parent`` (maps child coords to parent)."""
    ts = get_typestore()
    T = np.asarray(T_parent_child, dtype=np.float64).reshape(4, 4)
    q = rotation_to_quaternion(T[:3, :3])
    t = T[:3, 3]
    transform = ts.types['geometry_msgs/msg/Transform'](
        translation=ts.types['geometry_msgs/msg/Vector3'](x=float(t[0]), y=float(t[1]), z=float(t[2])),
        rotation=ts.types['geometry_msgs/msg/Quaternion'](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
    )
    return ts.types['geometry_msgs/msg/TransformStamped'](
        header=header(stamp_ns, parent), child_frame_id=str(child), transform=transform
    )


def transform_to_matrix(transform) -> np.ndarray:
    """4×4 matrix of a ``geometry_msgs/msg/Transform``."""
    T = np.eye(4)
    r, t = transform.rotation, transform.translation
    T[:3, :3] = quaternion_to_rotation([r.x, r.y, r.z, r.w])
    T[:3, 3] = [t.x, t.y, t.z]
    return T


def tf_message(transforms: Iterable):
    """``tf2_msgs/msg/TFMessage`` holding the given TransformStamped objects."""
    return get_typestore().types['tf2_msgs/msg/TFMessage'](transforms=list(transforms))


# --------------------------------------------------------------------------------------------------- writing


class BagWriter:
    """Write a rosbag2 atomically: staged next to ``path``, renamed into place by :meth:`close`.

    Use as a context manager; an exception inside the ``with`` block removes the staged bag and leaves ``path``
    untouched::

        with BagWriter(out, storage='mcap') as bag:
            bag.add_topic('/tf_static', 'tf2_msgs/msg/TFMessage', qos=qos_profile('transient_local'))
            bag.write('/tf_static', stamp_ns, msg)

    Args:
        path: the bag folder to create.
        storage: ``'mcap'`` (default) or ``'sqlite3'``.
        overwrite: replace an existing ``path`` (only once the new bag is complete).
    """

    def __init__(self, path: str | Path, storage: str = 'mcap', overwrite: bool = False):
        """Check the target; nothing is written before :meth:`open`."""
        self.path = Path(path)
        if storage not in STORAGES:
            raise BagError(f'unknown storage {storage!r}; use one of {", ".join(STORAGES)}')
        if self.path.exists() and not overwrite:
            raise BagError(f'{self.path} exists already (pass overwrite to replace it)')
        if not self.path.parent.is_dir():
            raise BagError(f'the folder {self.path.parent} for the bag does not exist')
        self.storage = storage
        self.overwrite = overwrite
        self._writer = None
        self._staging: Path | None = None
        self._connections: dict[str, object] = {}
        self._custom: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def open(self) -> BagWriter:
        """Create the staging folder and open the ``rosbags`` writer."""
        from rosbags.rosbag2 import StoragePlugin, Writer

        self._staging = Path(tempfile.mkdtemp(prefix=f'.{self.path.name}.partial-', dir=self.path.parent))
        plugin = StoragePlugin.MCAP if self.storage == 'mcap' else StoragePlugin.SQLITE3
        self._writer = Writer(self._staging / self.path.name, version=Writer.VERSION_LATEST, storage_plugin=plugin)
        self._writer.open()
        return self

    def set_custom_data(self, key: str, value: str) -> None:
        """Store a ``key: value`` string pair in the bag metadata (``custom_data``)."""
        self._custom[str(key)] = str(value)

    def add_topic(self, topic: str, msgtype: str, qos=None) -> None:
        """Declare a topic (once) with its type and, optionally, the QoS profile offered (see :func:`qos_profile`)."""
        if self._writer is None:
            raise BagError('bag is not open')
        if topic in self._connections:
            raise BagError(f'topic {topic} added twice')
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=get_typestore(), offered_qos_profiles=[qos] if qos is not None else []
        )
        self.counts[topic] = 0

    def write(self, topic: str, timestamp_ns: int, msg) -> None:
        """Serialise ``msg`` (a ``rosbags`` message object of the topic's type) to CDR and record it."""
        conn = self._connections.get(topic)
        if conn is None:
            raise BagError(f'topic {topic} was not added')
        raw = get_typestore().serialize_cdr(msg, conn.msgtype)
        self.write_raw(topic, timestamp_ns, raw)

    def write_raw(self, topic: str, timestamp_ns: int, raw: bytes | memoryview) -> None:
        """Record already serialised CDR bytes."""
        conn = self._connections.get(topic)
        if conn is None:
            raise BagError(f'topic {topic} was not added')
        self._writer.write(conn, int(timestamp_ns), raw)
        self.counts[topic] += 1

    def close(self) -> Path:
        """Finish the bag and move it to ``path`` (replacing an old one when ``overwrite``); returns ``path``."""
        if self._writer is None:
            raise BagError('bag is not open')
        for key, value in self._custom.items():
            self._writer.set_custom_data(key, value)
        self._writer.close()
        self._writer = None
        staged = self._staging / self.path.name
        if self.path.exists():
            if not self.overwrite:
                self.abort()
                raise BagError(f'{self.path} appeared while writing; the new bag was discarded')
            if self.path.is_dir() and not self.path.is_symlink():
                shutil.rmtree(self.path)
            else:
                self.path.unlink()
        os.replace(staged, self.path)
        self._staging.rmdir()
        self._staging = None
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; ``path`` is left as it was."""
        if self._writer is not None:
            try:
                self._writer.abort()
            except Exception:  # noqa: BLE001 - best effort, the staging folder is deleted anyway
                pass
            self._writer = None
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def __enter__(self) -> BagWriter:
        """Open."""
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> bool:
        """Close on success, abort on an exception (which propagates)."""
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


# --------------------------------------------------------------------------------------------------- reading


def _open_reader(path):
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not path.exists():
        raise BagError(f'bag {path} does not exist')
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises its own error types and yaml/sqlite/mcap errors
        raise BagError(f'cannot open bag {path}: {exc}') from None
    return reader


def read_bag(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[tuple[str, str, int, bytes]]:
    """Iterate over the messages of a rosbag2 in time order.

    Args:
        path: bag folder (or a single ``.mcap`` / ``.db3`` file).
        topics: only these topics (default: all).

    Yields:
        ``(topic, msgtype, timestamp_ns, raw_cdr_bytes)``; decode with :func:`deserialize`.

    Raises:
        BagError: the bag cannot be opened, or a damaged record is met while iterating (after the messages
            before it were yielded).
    """
    reader = _open_reader(path)
    try:
        wanted = None if topics is None else set(topics)
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if conns:
            messages = reader.messages(connections=conns)
            while True:
                try:
                    conn, timestamp, raw = next(messages)
                    item = conn.topic, conn.msgtype, int(timestamp), bytes(raw)
                except StopIteration:
                    break
                except Exception as exc:  # rosbags / mcap / sqlite errors on a damaged record
                    raise BagError(f'cannot read bag {path}: {type(exc).__name__}: {exc}') from None
                yield item
    finally:
        reader.close()


def deserialize(raw: bytes, msgtype: str):
    """Decode CDR bytes of ``msgtype`` (e.g. ``'sensor_msgs/msg/PointCloud2'``) into a ``rosbags`` message."""
    return get_typestore().deserialize_cdr(raw, msgtype)


def bag_info(path: str | Path) -> dict:
    """Summary of a rosbag2.

    Returns:
        dict with ``path``, ``storage`` (``'mcap'``/``'sqlite3'``), ``message_count``, ``start_ns`` and ``end_ns``
        (times of the first and last message), ``duration_ns`` (their difference), ``custom_data`` (dict) and
        ``topics``: ``{topic: {'type', 'count', 'qos'}}`` where ``qos`` is a list of dicts (``durability``,
        ``reliability``, ``history``, ``depth``).
    """
    reader = _open_reader(path)
    try:
        topics = {}
        for conn in reader.connections:
            qos = []
            for q in getattr(conn.ext, 'offered_qos_profiles', []) or []:
                qos.append(
                    {
                        'durability': q.durability.name.lower(),
                        'reliability': q.reliability.name.lower(),
                        'history': q.history.name.lower(),
                        'depth': int(q.depth),
                    }
                )
            entry = topics.setdefault(conn.topic, {'type': conn.msgtype, 'count': 0, 'qos': qos})
            entry['count'] += int(conn.msgcount)
        count = int(reader.message_count)
        meta = getattr(reader.storage, 'metadata', None)
        custom = dict(getattr(meta, 'custom', None) or {})
        bag_path = Path(path)
        files = [bag_path] if bag_path.is_file() else list(bag_path.iterdir())
        suffixes = {f.suffix for f in files}
        storage = 'mcap' if '.mcap' in suffixes else 'sqlite3' if '.db3' in suffixes else ''
        start = int(reader.start_time) if count else 0
        end = int(reader.end_time) - 1 if count else 0  # rosbags reports the end as exclusive
        return {
            'path': str(path),
            'storage': storage,
            'message_count': count,
            'start_ns': start,
            'end_ns': end,
            'duration_ns': end - start,
            'custom_data': custom,
            'topics': topics,
        }
    finally:
        reader.close()
