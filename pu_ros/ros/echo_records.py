"""Records of received KITTI messages: what :class:`~pu_ros.ros.echo_node.KittiEcho` keeps, and their comparison.

:func:`summarize` turns a message into one JSON-serialisable record (stamp, point count, SHA-1 of the points and
labels, label histogram, image size / encoding / SHA-1, camera_info matrices); :func:`bag_records` builds the same
records from a bag and :func:`compare_records` says which messages arrived intact.
"""

from __future__ import annotations

from collections import defaultdict
import hashlib
from pathlib import Path

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from pu_ros.ros import conversions
from pu_ros.ros.message_types import resolve_message_type, type_name

POINTS_TOPIC = '/kitti/velo/pointcloud'
IMAGE_TOPIC = '/kitti/camera_color_left/image_raw'
CAMERA_INFO_TOPIC = '/kitti/camera_color_left/camera_info'
DEFAULT_TOPICS = (POINTS_TOPIC, IMAGE_TOPIC, CAMERA_INFO_TOPIC)
# Fields of a record that must be equal for a message to count as intact, by message type.
CONTENT_KEYS = {
    'sensor_msgs/msg/PointCloud2': ('frame_id', 'points', 'fields', 'points_sha1', 'labels_sha1'),
    'sensor_msgs/msg/Image': ('frame_id', 'height', 'width', 'encoding', 'image_sha1'),
    'sensor_msgs/msg/CameraInfo': ('frame_id', 'height', 'width', 'k', 'p', 'distortion_model'),
    'tf2_msgs/msg/TFMessage': ('transforms',),
}


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
