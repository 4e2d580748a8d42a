"""pu_ros.networks.segmentation: the 2DPASS-style LiDAR segmentation network.

Exports load lazily, so ``from pu_ros.networks.segmentation import SegmentationConfig`` (or importing the
``config`` submodule) does not import torch; the network classes import torch, and spconv/torchvision load when a
model is built.
"""

from importlib import import_module

_EXPORTS = {
    'SegmentationConfig': 'config',
    'SegmentationConfigError': 'config',
    'ImageFCN': 'image_branch',
    'gather_pixel_features': 'image_branch',
    'ScaleFusion': 'model',
    'ResidualScaleFusion': 'model',
    'Segmentor2DPASS': 'model',
    'PointVoxelBranch': 'point_voxel',
    'SPVStage': 'point_voxel',
    'SparseResBlock': 'point_voxel',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    """Import an exported name on first use."""
    if name in _EXPORTS:
        return getattr(import_module(f'{__name__}.{_EXPORTS[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
