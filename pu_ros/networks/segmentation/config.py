"""Configuration of the 2DPASS-style segmentation network (:class:`SegmentationConfig`).

The field names are the dotted keys' last part everywhere else (``segmentation.voxel_size`` in YAML files, ROS
parameters and checkpoints). ``to_dict`` gives plain Python types (lists instead of tuples) so the dict can go into
YAML, JSON and ``torch.save`` checkpoints that load with ``weights_only=True``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
import math

SPARSE_BACKENDS = ('spconv', 'spconv-triton')
FUSION_MODES = ('2dpass', 'residual')


class SegmentationConfigError(ValueError):
    """A segmentation configuration value or key is invalid."""


@dataclass
class SegmentationConfig:
    """Hyper-parameters of :class:`~pu_ros.networks.segmentation.Segmentor2DPASS` and its loss.

    Attributes:
        num_classes: number of learning classes (20 for SemanticKITTI; id 0 = ignore/unlabeled).
        ignore_index: learning id excluded from the losses (0).
        voxel_size: edge of the base voxels in metres (0.1 m).
        point_range: ``(xmin, ymin, zmin, xmax, ymax, zmax)`` in metres; points must lie in the half-open box
            ``[min, max)`` (see :func:`pu_ros.ops.voxelize.in_range_mask`).
        scale_list: strictly increasing voxel scales of the SPV stages (voxel edge ``voxel_size * s``); the 2D
            branch gives features at image stride ``s`` for each.
        hidden_size: feature channels of every stage (64 gives the published ~1.9 M-parameter 3D branch).
        use_image: build the 2D branch and the multi-scale fusion (training with images, fused inference).
        image_size: ``(H, W)`` of the training image crop (the network accepts any size; this is for the data).
        lambda_xm: weight of the KL distillation from the fused predictions to the 3D ones.
        lambda_seg2d: weight of the 2D/fused segmentation losses.
        lambda_lovasz: weight of the Lovász-softmax terms beside the cross-entropy.
        class_weights: ``num_classes`` cross-entropy weights, or ``None`` for uniform.
        sparse_backend: ``'spconv'`` or ``'spconv-triton'`` (see :mod:`pu_ros.networks.sparse`).
        fusion: how the per-scale fusion is anchored (see :mod:`pu_ros.networks.segmentation.model`):
            ``'2dpass'`` (the paper: the 2D features plus a gated residual from the 3D side) or ``'residual'``
            (the 3D features plus a gated 2D residual that starts at zero, and a fused classifier that starts as a
            copy of the 3D one, so the fused head starts equal to the 3D head and the camera can only add).
    """

    num_classes: int = 20
    ignore_index: int = 0
    voxel_size: float = 0.1
    point_range: tuple[float, ...] = (-50.0, -50.0, -4.0, 50.0, 50.0, 2.0)
    scale_list: tuple[int, ...] = (2, 4, 8, 16)
    hidden_size: int = 64
    use_image: bool = True
    image_size: tuple[int, int] = (320, 480)
    lambda_xm: float = 0.05
    lambda_seg2d: float = 1.0
    lambda_lovasz: float = 1.0
    class_weights: tuple[float, ...] | None = None
    sparse_backend: str = 'spconv'
    fusion: str = '2dpass'

    def __post_init__(self):
        """Normalise sequences to tuples and validate every field (raises :class:`SegmentationConfigError`)."""
        self.point_range = tuple(float(v) for v in self.point_range)
        self.scale_list = tuple(int(v) for v in self.scale_list)
        self.image_size = tuple(int(v) for v in self.image_size)
        if self.class_weights is not None:
            self.class_weights = tuple(float(v) for v in self.class_weights)
        self._validate()

    def _validate(self):
        def bad(msg):
            raise SegmentationConfigError(f'segmentation config: {msg}')

        if int(self.num_classes) < 2:
            bad(f'num_classes must be >= 2, got {self.num_classes}')
        if not 0 <= int(self.ignore_index) < int(self.num_classes):
            bad(f'ignore_index {self.ignore_index} outside 0..{self.num_classes - 1}')
        if not (math.isfinite(self.voxel_size) and self.voxel_size > 0):
            bad(f'voxel_size must be a positive number, got {self.voxel_size}')
        if len(self.point_range) != 6 or not all(math.isfinite(v) for v in self.point_range):
            bad(f'point_range must be 6 finite numbers (xmin ymin zmin xmax ymax zmax), got {self.point_range}')
        lo, hi = self.point_range[:3], self.point_range[3:]
        if any(h <= lo_ for lo_, h in zip(lo, hi)):
            bad(f'point_range minimum must be below maximum on every axis, got {self.point_range}')
        if not self.scale_list or any(s < 1 for s in self.scale_list):
            bad(f'scale_list must be non-empty positive integers, got {self.scale_list}')
        if any(b <= a for a, b in zip(self.scale_list, self.scale_list[1:])) or self.scale_list[0] < 2:
            bad(f'scale_list must be strictly increasing and start at >= 2, got {self.scale_list}')
        if int(self.hidden_size) < 2:
            bad(f'hidden_size must be >= 2, got {self.hidden_size}')
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            bad(f'image_size must be (H, W) positive integers, got {self.image_size}')
        for name in ('lambda_xm', 'lambda_seg2d', 'lambda_lovasz'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                bad(f'{name} must be a finite number >= 0, got {value}')
        if self.class_weights is not None:
            if len(self.class_weights) != self.num_classes:
                bad(f'class_weights has {len(self.class_weights)} entries for num_classes={self.num_classes}')
            if not all(math.isfinite(w) and w >= 0 for w in self.class_weights):
                bad('class_weights must be finite and >= 0')
        if self.sparse_backend not in SPARSE_BACKENDS:
            bad(f'sparse_backend must be one of {SPARSE_BACKENDS}, got {self.sparse_backend!r}')
        if self.fusion not in FUSION_MODES:
            bad(f'fusion must be one of {FUSION_MODES}, got {self.fusion!r}')

    def grid_shape(self, scale: int = 1) -> tuple[int, int, int]:
        """Number of voxels ``(X, Y, Z)`` along each axis at ``scale`` (base voxels: ``scale=1``)."""
        from pu_ros.ops.voxelize import grid_shape

        return grid_shape(self.point_range, self.voxel_size, scale)

    def to_dict(self) -> dict:
        """Plain-type dict (tuples become lists), e.g. for YAML or a checkpoint's ``config`` entry."""
        d = asdict(self)
        for key, value in d.items():
            if isinstance(value, tuple):
                d[key] = list(value)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SegmentationConfig:
        """Build from a dict as written by :meth:`to_dict`; missing keys take defaults, unknown keys are an error."""
        if not isinstance(d, dict):
            raise SegmentationConfigError(f'segmentation config: expected a mapping, got {type(d).__name__}')
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise SegmentationConfigError(
                f'segmentation config: unknown key(s) {", ".join(unknown)} (known: {", ".join(sorted(known))})'
            )
        try:
            return cls(**d)
        except TypeError as exc:
            raise SegmentationConfigError(f'segmentation config: {exc}') from None
