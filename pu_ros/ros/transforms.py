"""Static transforms without tf2_ros (no PyPI wheel): the ``/tf_static`` edges a node has heard, one hop only."""

from __future__ import annotations

import numpy as np


def quaternion_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """(3, 3) rotation matrix of a quaternion (normalised first)."""
    q = np.array([x, y, z, w], np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError(f'bad quaternion {q.tolist()}')
    x, y, z, w = q / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def transform_matrix(tf) -> np.ndarray:
    """(4, 4) matrix of a ``geometry_msgs/Transform``: maps child-frame points into the parent frame."""
    t, r = tf.translation, tf.rotation
    m = np.eye(4)
    m[:3, :3] = quaternion_matrix(r.x, r.y, r.z, r.w)
    m[:3, 3] = (t.x, t.y, t.z)
    return m


class StaticTransforms:
    """Edges parent -> child from ``tf2_msgs/TFMessage`` messages; :meth:`lookup` follows one edge either way."""

    def __init__(self):
        """No edge yet."""
        self.edges: dict[tuple[str, str], np.ndarray] = {}

    def add(self, tf_message) -> None:
        """Store every ``TransformStamped`` of a TFMessage (bad ones are skipped)."""
        for ts in tf_message.transforms:
            try:
                self.edges[(ts.header.frame_id.lstrip('/'), ts.child_frame_id.lstrip('/'))] = \
                    transform_matrix(ts.transform)
            except ValueError:
                continue

    def lookup(self, target: str, source: str) -> np.ndarray | None:
        """(4, 4) transform mapping points from frame ``source`` into frame ``target``, or None when unknown."""
        target, source = target.lstrip('/'), source.lstrip('/')
        if target == source:
            return np.eye(4)
        if (target, source) in self.edges:
            return self.edges[(target, source)]
        if (source, target) in self.edges:
            return np.linalg.inv(self.edges[(source, target)])
        return None
