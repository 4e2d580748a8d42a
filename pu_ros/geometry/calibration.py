"""Camera/LiDAR calibration: one small dataclass shared by readers, nodes and networks.

Conventions (GUIDE §3):
- ``P`` is the 3×4 projection matrix of the (rectified) camera whose image is used.
- ``T_cam_lidar`` is the 4×4 rigid transform from the LiDAR frame to the camera frame
  (for KITTI object / raw it already contains ``R0_rect``), so that
  ``pixel ~ P @ T_cam_lidar @ [x y z 1]ᵀ``.
- ``width`` / ``height`` are the image size in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _as_matrix(value, shape, name):
    arr = np.asarray(value, dtype=np.float64)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f'{name} must have {int(np.prod(shape))} values for shape {shape}, got {arr.size}')
    arr = arr.reshape(shape)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f'{name} contains NaN or inf')
    return arr


@dataclass(frozen=True)
class Calibration:
    """Projection of LiDAR points into one camera image."""

    P: np.ndarray
    T_cam_lidar: np.ndarray = field(default_factory=lambda: np.eye(4))
    width: int = 0
    height: int = 0

    def __post_init__(self):
        object.__setattr__(self, 'P', _as_matrix(self.P, (3, 4), 'P'))
        T = _as_matrix(self.T_cam_lidar, (4, 4), 'T_cam_lidar')
        if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0]):
            raise ValueError('T_cam_lidar must be a homogeneous transform (last row 0 0 0 1)')
        object.__setattr__(self, 'T_cam_lidar', T)
        if int(self.width) < 0 or int(self.height) < 0:
            raise ValueError('image size must be non-negative')
        object.__setattr__(self, 'width', int(self.width))
        object.__setattr__(self, 'height', int(self.height))

    @property
    def K(self) -> np.ndarray:
        """3×3 intrinsic matrix (left 3×3 block of ``P``)."""
        return self.P[:, :3].copy()

    @property
    def lidar_to_image(self) -> np.ndarray:
        """3×4 matrix mapping homogeneous LiDAR points to homogeneous pixels."""
        return self.P @ self.T_cam_lidar

    def project(self, xyz: np.ndarray, min_depth: float = 0.1):
        """Project LiDAR points into the image.

        Args:
            xyz: (N, 3) or (N, ≥3) array of points in the LiDAR frame (extra columns ignored).
            min_depth: points closer than this (in camera z) are not in front of the camera.

        Returns:
            uv: (N, 2) float64 pixel coordinates (u right, v down); undefined where not ``in_image``.
            depth: (N,) camera-frame z of each point.
            in_image: (N,) bool, in front of the camera and inside ``width`` × ``height``.
        """
        pts = np.asarray(xyz, dtype=np.float64)[:, :3]
        M = self.lidar_to_image
        hom = pts @ M[:, :3].T + M[:, 3]
        cam_z = pts @ self.T_cam_lidar[2, :3] + self.T_cam_lidar[2, 3]
        with np.errstate(divide='ignore', invalid='ignore'):
            uv = hom[:, :2] / hom[:, 2:3]
        in_front = cam_z > min_depth
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < self.width) & (uv[:, 1] >= 0) & (uv[:, 1] < self.height)
        return uv, cam_z, in_front & inside & np.isfinite(uv).all(axis=1)
