"""Inputs and outputs of the segmentation node that need no node: camera pairing checks, label transfer, clouds.

Kept apart from :mod:`pu_ros.ros.segmentation_node` so the node stays a thin parameters -> inference -> publish
layer, and so these pieces are tested without DDS.
"""

from __future__ import annotations

import numpy as np

from pu_ros.ros.conversions import camera_info_to_calibration, image_to_array


def image_rgb(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an Image message (rgb8/bgr8/rgba8/bgra8/mono8/8UC1/8UC3).

    Raises:
        ValueError: other encodings (16-bit, float) or a bad layout (ConversionError).
    """
    img = image_to_array(msg)
    enc = msg.encoding
    if img.dtype != np.uint8:
        raise ValueError(f'image encoding {enc!r} is not 8-bit; the fused head needs rgb8, bgr8 or mono8')
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if enc in ('bgr8', 'bgra8'):
        return np.ascontiguousarray(img[:, :, 2::-1])
    return np.ascontiguousarray(img[:, :, :3])


def fused_inputs(cloud, image_msg, info_msg, T_cam_cloud) -> tuple[np.ndarray, object]:
    """Check a cloud/image/camera_info set and return ``(rgb image, Calibration)``.

    Args:
        cloud: the PointCloud2 (its ``frame_id`` names the LiDAR frame).
        image_msg: the Image.
        info_msg: the CameraInfo of that image.
        T_cam_cloud: (4, 4) transform cloud frame -> camera frame, or None when unknown.

    Raises:
        ValueError: image and camera_info in different frames, image size not the camera_info size, no
            transform from the cloud's frame to the camera's, or a bad image / camera_info.
    """
    cam = info_msg.header.frame_id.lstrip('/')
    if image_msg.header.frame_id.lstrip('/') != cam:
        raise ValueError(f'image frame {image_msg.header.frame_id!r} differs from camera_info frame {cam!r}')
    if (image_msg.width, image_msg.height) != (info_msg.width, info_msg.height):
        raise ValueError(f'image is {image_msg.width}x{image_msg.height} but camera_info says '
                         f'{info_msg.width}x{info_msg.height}')
    if T_cam_cloud is None:
        raise ValueError(f'cloud is in frame {cloud.header.frame_id!r}, camera_info in {cam!r}, and no transform '
                         'between them is known (publish /tf_static or set fusion.T_cam_lidar)')
    calib = camera_info_to_calibration(info_msg, T_cam_lidar=T_cam_cloud)
    return image_rgb(image_msg), calib


def transfer_labels(query: np.ndarray, ref: np.ndarray, ref_labels: np.ndarray, device='cpu') -> np.ndarray:
    """Label every ``query`` point with the label of its nearest ``ref`` point (pu_ros.ops.neighbors.knn_points).

    Args:
        query: (M, >=3) points to label (non-finite rows get label 0).
        ref: (N, >=3) labelled points (non-finite rows are never chosen).
        ref_labels: (N,) integer labels of ``ref``.
        device: torch device for the search.

    Returns:
        (M,) labels, dtype of ``ref_labels``.

    Raises:
        ValueError: no finite reference point.
    """
    import torch

    from pu_ros.ops.neighbors import knn_points

    out = np.zeros(query.shape[0], ref_labels.dtype)
    q_ok = np.isfinite(query[:, :3]).all(1)
    r_ok = np.isfinite(ref[:, :3]).all(1)
    if not r_ok.any():
        raise ValueError('the segmented cloud has no finite point to take labels from')
    if not q_ok.any():
        return out
    r_idx = np.flatnonzero(r_ok)
    q = torch.from_numpy(np.ascontiguousarray(query[q_ok, :3], np.float32)).to(device)
    r = torch.from_numpy(np.ascontiguousarray(ref[r_idx, :3], np.float32)).to(device)
    with torch.inference_mode():
        _, idx = knn_points(q, r, 1)
    out[q_ok] = ref_labels[r_idx[idx[:, 0].cpu().numpy()]]
    return out
