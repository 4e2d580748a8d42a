"""Point-cloud semantic segmentation with the 2DPASS-style network: numpy in, numpy out.

>>> seg = Segmenter()                                   # packaged models/segmentation_2dpass_3d.pt, cuda if any
>>> result = seg.segment(points)                        # points (N, 4) float32 x, y, z, intensity
>>> result.labels, result.probs, result.in_range        # (N,) uint8, (N, C) float32, (N,) bool
>>> seg.segment(points, probs=False).probs              # None: only the labels leave the device (faster)

Only points inside the network's ``point_range`` (and finite) are segmented; the others get label 0 (the ignore
class), an all-zero probability row and ``in_range = False``. With ``fused=True`` the camera image and its
calibration are used as well (the fused 2D+3D head; needs a checkpoint with the 2D branch).

Checkpoints are read with ``torch.load(weights_only=True)``; fp16-stored weights (the packaged 3D-only file) are
cast back to float32 before use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_MODEL = 'segmentation_2dpass_3d.pt'
DEFAULT_FUSED_MODEL = 'segmentation_2dpass_fused.pt'


@dataclass
class SegmenterConfig:
    """Settings of a :class:`Segmenter` (section ``segmentation`` of the ROS parameters and YAML files)."""

    checkpoint: str = field(default='', metadata={
        'help': "checkpoint file; '' = models/segmentation_2dpass_3d.pt (models/segmentation_2dpass_fused.pt "
                'when fused)'})
    device: str = field(default='auto', metadata={'help': 'torch device: auto (cuda when present, else cpu)',
                                                  'choices': ('auto', 'cpu', 'cuda')})
    fused: bool = field(default=False, metadata={
        'help': 'use the camera image through the fused 2D+3D head (needs a checkpoint with the 2D branch)'})

    def checkpoint_path(self) -> Path:
        """The checkpoint file to load: ``checkpoint`` or the packaged default for the mode.

        Raises:
            FileNotFoundError: the packaged default is missing.
        """
        if self.checkpoint:
            return Path(self.checkpoint)
        from pu_ros.resources import model_path

        return model_path(DEFAULT_FUSED_MODEL if self.fused else DEFAULT_MODEL)

    def build(self) -> Segmenter:
        """A :class:`Segmenter` with these settings (see its constructor for what it raises)."""
        return Segmenter(self.checkpoint_path(), device=self.device, fused=self.fused)


@dataclass
class SegmentationResult:
    """Per-point output of :meth:`Segmenter.segment`.

    Attributes:
        labels: (N,) uint8 learning ids (0 = ignore: out of range, non-finite).
        probs: (N, C) float32 class probabilities (rows of out-of-range points are zero), or None when
            :meth:`Segmenter.segment` was called with ``probs=False``.
        in_range: (N,) bool, the point was segmented.
    """

    labels: np.ndarray
    probs: np.ndarray | None
    in_range: np.ndarray


def argmax_valid(probs, ignore_index: int | None):
    """Most probable class per row other than ``ignore_index``.

    Args:
        probs: (P, C) float torch tensor of class probabilities (or logits).
        ignore_index: class never chosen, or None.

    Returns:
        (P,) int64 tensor of class ids, on the device of ``probs``.
    """
    if ignore_index is None:
        return probs.argmax(dim=1)
    p = probs.clone()
    p[:, ignore_index] = -1.0
    return p.argmax(dim=1)


def load_segmentor(checkpoint, device, fused: bool = False):
    """Build a ``Segmentor2DPASS`` from a checkpoint file.

    Args:
        checkpoint: path to a training checkpoint or exported weights.
        device: torch device.
        fused: the fused head will be used (the checkpoint must contain the 2D branch).

    Returns:
        ``(model, cfg, ckpt)``: the model in eval mode on ``device``, its ``SegmentationConfig`` and the loaded
        checkpoint dict.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (a ValueError): unreadable/corrupt file, a config the network refuses, weights that do not
            fit the network, or ``fused`` without 2D weights. Messages name the path.
    """
    import torch

    from pu_ros.networks.checkpoint import CheckpointError, load_checkpoint, state_dict_to_float32
    from pu_ros.networks.segmentation import SegmentationConfig, Segmentor2DPASS

    ckpt = load_checkpoint(checkpoint)
    try:
        cfg = SegmentationConfig.from_dict(dict(ckpt['config']['model']))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f'checkpoint {checkpoint}: bad model config ({exc})') from None
    branches = list(ckpt['meta'].get('branches', ['3d', '2d'] if cfg.use_image else ['3d']))
    if fused and '2d' not in branches:
        raise CheckpointError(f'checkpoint {checkpoint} holds only the 3D branch; fused inference needs a training '
                              'checkpoint with the 2D branch (or use fused=False)')
    if not fused and cfg.use_image:
        cfg.use_image = False  # the 3D branch alone: no ResNet to build or load
    model = Segmentor2DPASS(cfg)
    state = state_dict_to_float32(ckpt['state_dict'])
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    shape_bad = sorted(k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape))
    if missing or shape_bad:
        detail = (f'missing {missing[:5]}' if missing else '') + (f' wrong shape {shape_bad[:5]}' if shape_bad else '')
        raise CheckpointError(f'checkpoint {checkpoint} does not fit the network built from its config: {detail}')
    model.load_state_dict({k: state[k] for k in own}, strict=True)
    model.to(torch.device(device)).eval()
    return model, cfg, ckpt


class Segmenter:
    """Semantic segmentation of single LiDAR scans (optionally with the camera image).

    Args:
        checkpoint: checkpoint path, or None for the packaged ``models/segmentation_2dpass_3d.pt``.
        device: ``'cuda'``, ``'cpu'``, ``'cuda:1'``...; None = ``'cuda'`` when available else ``'cpu'``.
        fused: use image + calibration through the fused 2D+3D head.

    Attributes:
        cfg: the network's ``SegmentationConfig``.
        num_classes: C.
        device: the torch device.
        meta: the checkpoint's ``meta`` dict (data, steps, metrics...).

    Raises:
        FileNotFoundError: the checkpoint (or the packaged model) is missing.
        ValueError: the checkpoint cannot be used (see :func:`load_segmentor`), CUDA asked for but absent.
    """

    def __init__(self, checkpoint: str | Path | None = None, device: str | None = None, fused: bool = False):
        """Load the network."""
        try:
            import torch
        except ImportError as exc:  # pragma: no cover
            raise ImportError('Segmenter needs PyTorch and spconv: pip install torch spconv-cu126 (or spconv)') from exc
        from pu_ros.ops.device import resolve_device

        if checkpoint is None:
            from pu_ros.resources import model_path

            try:
                checkpoint = model_path(DEFAULT_MODEL)
            except FileNotFoundError as exc:
                raise FileNotFoundError(f'no checkpoint given and the packaged model is missing: {exc}') from None
        self.checkpoint = Path(checkpoint)
        self.device = torch.device(resolve_device(device))
        self.fused = bool(fused)
        self.model, self.cfg, ckpt = load_segmentor(self.checkpoint, self.device, fused=self.fused)
        self.meta = ckpt['meta']
        self.num_classes = int(self.cfg.num_classes)

    def _batch(self, pts: np.ndarray, image, calib):
        import torch

        from pu_ros.geometry.projection import normalize_image, pixels_in_image

        dev = self.device
        batch = {
            'points': torch.from_numpy(pts).to(dev),
            'batch_idx': torch.zeros(pts.shape[0], dtype=torch.int64, device=dev),
            'batch_size': 1,
        }
        if self.fused:
            if image is None or calib is None:
                raise ValueError('fused segmentation needs both image and calib')
            img = np.asarray(image)
            if img.ndim == 2:
                img = np.repeat(img[:, :, None], 3, axis=2)
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f'image must be (H, W, 3) or (H, W) uint8, got {img.shape} {img.dtype}')
            pix_idx, uv = pixels_in_image(pts, calib, img.shape[0], img.shape[1])
            batch['images'] = torch.from_numpy(normalize_image(img))[None].to(dev)
            batch['pix_point_idx'] = torch.from_numpy(pix_idx).to(dev)
            batch['pix_uv'] = torch.from_numpy(uv).to(dev)
        return batch

    def segment(self, points: np.ndarray, image: np.ndarray | None = None, calib=None, *,
                probs: bool = True) -> SegmentationResult:
        """Segment one scan.

        Args:
            points: (N, 4) float array x, y, z, intensity in the LiDAR frame (float32 preferred).
            image: (H, W, 3) uint8 RGB or (H, W) uint8 grey; used only when ``fused``.
            calib: :class:`pu_ros.geometry.Calibration` of ``image``; used only when ``fused``.
            probs: also return the (N, C) float32 probabilities. With False, ``result.probs`` is None and only the
                (N,) labels are copied from the device (the cheaper call when only labels are needed, e.g. the
                ROS node); the labels are the same either way.

        Returns:
            :class:`SegmentationResult` (numpy arrays on the host).

        Raises:
            ValueError: ``points`` not an (N, 4) numeric array; fused without image/calib.
        """
        import torch

        from pu_ros.ops.voxelize import in_range_mask

        pts = np.asarray(points)
        if pts.ndim != 2 or pts.shape[1] != 4 or pts.dtype.kind not in 'fiu':
            raise ValueError(f'points must be an (N, 4) numeric array (x, y, z, intensity), got shape '
                             f'{pts.shape} dtype {pts.dtype}')
        pts = np.ascontiguousarray(pts, dtype=np.float32)
        n = pts.shape[0]
        c = self.num_classes
        in_range = np.asarray(in_range_mask(pts, self.cfg), dtype=bool) & np.isfinite(pts[:, 3])
        labels = np.zeros(n, np.uint8)
        prob_out = np.zeros((n, c), np.float32) if probs else None
        if not in_range.any():
            return SegmentationResult(labels, prob_out, in_range)
        idx = np.flatnonzero(in_range)
        batch = self._batch(pts[idx], image, calib)
        with torch.inference_mode():
            logits = self.model.predict(batch, fused=self.fused)
            p = torch.softmax(logits.float(), dim=1)
            lab = argmax_valid(p, self.cfg.ignore_index).to(torch.uint8)  # ids < 256: 1 byte per point to copy
        if prob_out is not None:
            prob_out[idx] = p.cpu().numpy()
        labels[idx] = lab.cpu().numpy()
        return SegmentationResult(labels, prob_out, in_range)

    def __repr__(self) -> str:
        """Short description."""
        return (f'Segmenter({self.checkpoint}, device={self.device}, fused={self.fused}, '
                f'classes={self.num_classes})')
