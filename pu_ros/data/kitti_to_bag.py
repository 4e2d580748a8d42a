"""``pu-ros kitti-to-bag``: convert a KITTI odometry / object / raw folder into a rosbag2 (MCAP or sqlite3).

Topics and frames follow kitti2bag:

=========================================  ================================  =====================
topic                                      type                              frame
=========================================  ================================  =====================
``/kitti/velo/pointcloud``                 sensor_msgs/msg/PointCloud2       ``velo_link``
``/kitti/camera_color_left/image_raw``     sensor_msgs/msg/Image (rgb8)      ``camera_color_left``
``/kitti/camera_color_left/camera_info``   sensor_msgs/msg/CameraInfo        ``camera_color_left``
``/tf_static``                             tf2_msgs/msg/TFMessage            ``velo_link`` -> camera
=========================================  ================================  =====================

With ``--camera image_0`` the camera topics and frame are ``camera_gray_left`` (mono8) instead (image_1 / image_3:
``camera_gray_right`` / ``camera_color_right``).

Decisions:

- **Point fields**: ``x, y, z, intensity`` float32, packed (16 bytes per point), bit-identical to the ``.bin``
  file. Frames that have a SemanticKITTI ``.label`` file get a fifth field ``label`` (uint32) holding the **raw
  SemanticKITTI class id** (the lower 16 bits of the label file; the instance id in the upper bits is dropped),
  not the 0..19 learning id. Frames without a label file have **no** ``label`` field, so "no ground truth" is never
  confused with "unlabeled" (raw id 0). ``--no-labels`` leaves the field out everywhere.
- **Camera frame**: KITTI's ``P2`` projects from the rectified camera-0 frame and carries camera 2's baseline in
  its last column. The bag's camera frame is camera 2's own (rectified) optical frame instead: with
  ``P = K [I | t]`` the published ``camera_info.P`` is ``K [I | 0]`` and ``/tf_static`` holds
  ``T_cam_lidar = [I | t] @ T``. ``P' @ T'`` equals ``P @ T``, so projections are unchanged, and the camera_info
  follows the ROS convention of a monocular camera (``Tx = Ty = 0``).
- **/tf_static**: one TFMessage (parent ``velo_link``, child the camera frame) written before the first frame,
  stamped with the first message time, offered with *transient_local*, reliable, depth 1 QoS so a player can latch
  it. The object layout has a calibration per frame: a new /tf_static message is written whenever it changes.
- **Time**: header stamps equal bag (receive) timestamps. Raw drives carry absolute UTC times (used as they are;
  images use their camera's own timestamps). Odometry (``times.txt``) and object (frame position × 0.1 s) times
  are relative, starting near 0; they are shifted by ``--epoch-offset`` seconds (default 1317600000 =
  2011-10-03 00:00:00 UTC, the day KITTI odometry sequence 00 was recorded) so that no stamp is 0, which tf2 reads as
  "latest". The offset is stored in the bag's ``custom_data`` (``pu_ros.stamp_offset_ns``).
- **Atomic output**: the bag is written to a hidden folder next to OUT and renamed at the end; on any error
  nothing is left at OUT. An existing OUT is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

import numpy as np

from pu_ros.data import bag as bagio
from pu_ros.data.kitti import KittiFormatError, KittiSequence, open_kitti
from pu_ros.ops import cloud_layout

DEFAULT_EPOCH_OFFSET_S = 1_317_600_000  # 2011-10-03 00:00:00 UTC
LIDAR_FRAME = 'velo_link'
POINTS_TOPIC = '/kitti/velo/pointcloud'
TF_STATIC_TOPIC = '/tf_static'
CAMERA_FRAMES = {
    'image_0': 'camera_gray_left',
    'image_1': 'camera_gray_right',
    'image_2': 'camera_color_left',
    'image_3': 'camera_color_right',
}
LABEL_DOC = 'label = raw SemanticKITTI class id (lower 16 bits of the .label file); absent in frames without labels'

POINT_DTYPE = cloud_layout.packed_dtype(
    [('x', np.float32), ('y', np.float32), ('z', np.float32), ('intensity', np.float32)]
)
LABELLED_POINT_DTYPE = cloud_layout.packed_dtype(
    [('x', np.float32), ('y', np.float32), ('z', np.float32), ('intensity', np.float32), ('label', np.uint32)]
)


def camera_topics(camera: str) -> tuple[str, str, str]:
    """``(frame_id, image_topic, camera_info_topic)`` of a camera name (``'image_2'``...)."""
    frame = CAMERA_FRAMES[camera]
    return frame, f'/kitti/{frame}/image_raw', f'/kitti/{frame}/camera_info'


def camera_frame_calibration(P: np.ndarray, T_cam_lidar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move a KITTI projection's baseline column into the extrinsics.

    Args:
        P: (3, 4) rectified projection ``K [I | t]`` (KITTI ``P2``...).
        T_cam_lidar: (4, 4) LiDAR -> rectified camera-0 transform.

    Returns:
        ``(P', T')``: (3, 4) ``K [I | 0]`` and (4, 4) ``[I | t] @ T_cam_lidar`` (LiDAR -> this camera's frame),
        with ``P' @ T' == P @ T``.
    """
    P = np.asarray(P, dtype=np.float64).reshape(3, 4)
    K = P[:, :3]
    t = np.linalg.solve(K, P[:, 3])
    shift = np.eye(4)
    shift[:3, 3] = t
    P_cam = np.zeros((3, 4))
    P_cam[:, :3] = K
    return P_cam, shift @ np.asarray(T_cam_lidar, dtype=np.float64)


def cloud_array(points: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """Structured (N,) array for the PointCloud2: x, y, z, intensity float32 [, label uint32 = labels & 0xFFFF].

    Args:
        points: (N, 4) float32.
        labels: (N,) uint32 raw SemanticKITTI labels (instance bits are dropped) or None.
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    if labels is None:
        return points.view(POINT_DTYPE).reshape(-1)  # the .bin layout is already x, y, z, intensity packed
    return cloud_layout.make_structured(
        {
            'x': points[:, 0],
            'y': points[:, 1],
            'z': points[:, 2],
            'intensity': points[:, 3],
            'label': np.asarray(labels, dtype=np.uint32) & np.uint32(0xFFFF),
        },
        dtype=LABELLED_POINT_DTYPE,
    )


def convert(
    input_path: str | Path,
    output: str | Path,
    *,
    storage: str = 'mcap',
    camera: str | None = None,
    start: int = 0,
    count: int | None = None,
    labels: bool = True,
    overwrite: bool = False,
    epoch_offset_s: float = DEFAULT_EPOCH_OFFSET_S,
    progress: bool | None = None,
) -> dict:
    """Convert a KITTI folder into a rosbag2 (see the module docstring for topics and conventions).

    Args:
        input_path: odometry sequence, object ``training`` folder or raw drive folder (see ``open_kitti``).
        output: bag folder to create.
        storage: ``'mcap'`` or ``'sqlite3'``.
        camera: ``'image_2'``, ``'image_0'``... or None for image_2 when present, else image_0.
        start: first frame (position in the sorted scan list, not the file number).
        count: number of frames (default: to the end).
        labels: write the ``label`` field for frames with SemanticKITTI labels.
        overwrite: replace an existing ``output``.
        epoch_offset_s: seconds added to relative (odometry / object) stamps; ignored for raw drives.
        progress: show a tqdm bar on stderr (None: only on a terminal).

    Returns:
        summary dict: ``output``, ``storage``, ``layout``, ``frames``, ``clouds``, ``labelled_clouds``,
        ``images``, ``camera``, ``stamp_offset_ns``, ``first_stamp_ns``, ``last_stamp_ns``.

    Raises:
        KittiFormatError: unreadable or inconsistent input (nothing is left at ``output``).
        BagError: bad output path (exists without ``overwrite``, missing parent folder).
    """
    from tqdm import tqdm

    output = Path(output)
    if output.exists() and not overwrite:
        raise bagio.BagError(f'{output} exists already (use --overwrite to replace it)')
    seq: KittiSequence = open_kitti(input_path, camera)
    n = len(seq)
    if not 0 <= start < n:
        raise KittiFormatError(f'--start {start} is outside the {n} frames of {seq.path}')
    if count is not None and count < 1:
        raise KittiFormatError(f'--count must be at least 1, got {count}')
    stop = n if count is None else min(n, start + count)
    indices = range(start, stop)
    offset_ns = 0 if seq.stamps_absolute else int(round(float(epoch_offset_s) * 1e9))
    write_labels = labels and any(seq.has_label(i) for i in indices)
    has_images = seq.camera is not None and any(seq.has_image(i) for i in indices)

    summary = {
        'output': str(output),
        'storage': storage,
        'layout': seq.layout,
        'frames': len(indices),
        'clouds': 0,
        'labelled_clouds': 0,
        'images': 0,
        'camera': seq.camera if has_images else None,
        'stamp_offset_ns': offset_ns,
        'first_stamp_ns': None,
        'last_stamp_ns': None,
    }
    with bagio.BagWriter(output, storage=storage, overwrite=overwrite) as bag:
        bag.set_custom_data('pu_ros.source', str(seq.path))
        bag.set_custom_data('pu_ros.layout', seq.layout)
        bag.set_custom_data('pu_ros.stamp_offset_ns', str(offset_ns))
        bag.set_custom_data('pu_ros.frames', f'{start}:{stop}')
        if write_labels:
            bag.set_custom_data('pu_ros.label_field', LABEL_DOC)
        bag.add_topic(TF_STATIC_TOPIC, 'tf2_msgs/msg/TFMessage', qos=bagio.qos_profile('transient_local', depth=1))
        bag.add_topic(POINTS_TOPIC, 'sensor_msgs/msg/PointCloud2')
        cam_frame = image_topic = info_topic = None
        if has_images:
            cam_frame, image_topic, info_topic = camera_topics(seq.camera)
            bag.add_topic(image_topic, 'sensor_msgs/msg/Image')
            bag.add_topic(info_topic, 'sensor_msgs/msg/CameraInfo')
        tf_frame = cam_frame or CAMERA_FRAMES[seq.camera or 'image_2']

        last_T = None
        bar = tqdm(indices, desc='kitti-to-bag', unit='frame', file=sys.stderr, disable=None if progress is None
                   else not progress)
        for i in bar:
            frame = seq[i]
            stamp = frame.stamp_ns + offset_ns
            P_cam, T_cam = camera_frame_calibration(frame.calib.P, frame.calib.T_cam_lidar)
            out = []  # (timestamp, topic, message)
            cloud_labels = frame.labels if write_labels else None
            cloud = bagio.pointcloud2(cloud_array(frame.points, cloud_labels), stamp, LIDAR_FRAME)
            out.append((stamp, POINTS_TOPIC, cloud))
            if has_images and frame.image is not None:
                img_stamp = (frame.image_stamp_ns if frame.image_stamp_ns is not None else frame.stamp_ns) + offset_ns
                h, w = frame.image.shape[:2]
                out.append((img_stamp, image_topic, bagio.image(frame.image, frame.image_encoding, img_stamp,
                                                                 cam_frame)))
                out.append((img_stamp, info_topic, bagio.camera_info(P_cam, w, h, img_stamp, cam_frame)))
                summary['images'] += 1
            out.sort(key=lambda item: item[0])
            if last_T is None or not np.allclose(T_cam, last_T, rtol=0.0, atol=1e-12):
                tf_stamp = out[0][0]
                tf = bagio.transform_stamped(np.linalg.inv(T_cam), LIDAR_FRAME, tf_frame, tf_stamp)
                bag.write(TF_STATIC_TOPIC, tf_stamp, bagio.tf_message([tf]))
                last_T = T_cam
            for ts_ns, topic, msg in out:
                bag.write(topic, ts_ns, msg)
            summary['clouds'] += 1
            summary['labelled_clouds'] += cloud_labels is not None
            if summary['first_stamp_ns'] is None:
                summary['first_stamp_ns'] = out[0][0]
            summary['last_stamp_ns'] = out[-1][0]
        bar.close()
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``pu-ros kitti-to-bag``."""
    parser.add_argument('input', metavar='INPUT', help='KITTI odometry sequence (sequences/00), object training '
                        'folder or raw drive folder (DATE/DATE_drive_XXXX_sync)')
    parser.add_argument('-o', '--output', required=True, metavar='OUT', help='rosbag2 folder to create')
    parser.add_argument('--storage', choices=bagio.STORAGES, default='mcap', help='storage plugin (default: mcap)')
    parser.add_argument('--camera', choices=sorted(CAMERA_FRAMES), default=None,
                        help='camera to write (default: image_2 when present, else image_0)')
    parser.add_argument('--start', type=int, default=0, metavar='N', help='first frame (position, default 0)')
    parser.add_argument('--count', type=int, default=None, metavar='N', help='number of frames (default: all)')
    parser.add_argument('--no-labels', action='store_true', help='leave out the SemanticKITTI label field')
    parser.add_argument('--overwrite', action='store_true', help='replace OUT if it exists')
    parser.add_argument('--epoch-offset', type=float, default=DEFAULT_EPOCH_OFFSET_S, metavar='SECONDS',
                        help='added to relative (odometry/object) stamps (default: %(default)d; raw: unused)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar and no summary line')


def run(args: argparse.Namespace) -> int:
    """Run the conversion; 0 on success, 2 on bad input or output path, 1 on a write failure."""
    try:
        summary = convert(
            args.input,
            args.output,
            storage=args.storage,
            camera=args.camera,
            start=args.start,
            count=args.count,
            labels=not args.no_labels,
            overwrite=args.overwrite,
            epoch_offset_s=args.epoch_offset,
            progress=False if args.quiet else None,
        )
    except (KittiFormatError, bagio.BagError) as exc:
        print(f'pu-ros kitti-to-bag: error: {exc}', file=sys.stderr)
        return 2
    except OSError as exc:
        print(f'pu-ros kitti-to-bag: error: cannot write {args.output}: {exc}', file=sys.stderr)
        return 1
    if not args.quiet:
        print(
            f'wrote {summary["output"]} ({summary["storage"]}, {summary["layout"]}): {summary["clouds"]} clouds '
            f'({summary["labelled_clouds"]} with labels), {summary["images"]} images'
            + (f' from {summary["camera"]}' if summary['camera'] else '')
        )
    return 0
