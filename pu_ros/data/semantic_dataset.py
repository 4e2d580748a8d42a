"""SemanticKITTI-layout dataset for the 2DPASS-style segmentation network: splits, augmentation, collate.

A dataset root holds ``ROOT/sequences/XX/`` folders (odometry layout, read with :func:`pu_ros.data.kitti.open_kitti`).
Several roots may be combined (e.g. real scans and synthetic sequences); a split names sequences and optionally
frames, and is looked up in every root::

    train: ['00', '01']                        # every labelled frame of these sequences
    train: {'00': ['000000', '000001'], '90': all}
    val:   {'00': ['000002']}
    val:   '00/000002,00/000003'               # the --frames form

Only frames with a ``.label`` file are used. Each sample:

1. reads the scan, maps raw labels to learning ids (:class:`pu_ros.data.labels.LabelMap`);
2. when images are used, projects the *original* points into the colour image (``image_2``), or, for frames
   without one, the grey image (``image_0``) replicated to 3 channels; no image at all is allowed (no 2D part);
   training takes a random ``image_size`` (H, W) crop, evaluation the full image;
3. training only: image colour jitter and horizontal flip (``pix_uv`` flipped with it), point dropout, rotation
   about z, flips of x/y, scaling and translation of the points (image correspondences stay valid since they were
   computed before);
4. keeps points inside ``point_range`` (after augmentation) and counts the others.

All randomness comes from ``numpy.random.default_rng([seed, epoch, index])``, so a sample is the same for a given
seed/epoch whatever the worker or process that builds it. :func:`collate` concatenates samples into the batch dict
of :class:`pu_ros.networks.segmentation.Segmentor2DPASS`.

Splits live in :mod:`pu_ros.data.splits`, the augmentation in :mod:`pu_ros.data.augmentation` and batching in
:mod:`pu_ros.data.batching`; their public names stay importable from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pu_ros.data.augmentation import AugmentConfig, color_jitter, transform_points
from pu_ros.data.batching import batch_to_device, collate, select_pixel_points
from pu_ros.data.kitti import KittiFormatError, open_kitti
from pu_ros.data.splits import FrameRef, SplitError, index_frames, parse_split
from pu_ros.geometry.projection import normalize_image, pixels_in_image

__all__ = [
    'AugmentConfig', 'FrameRef', 'Sample', 'SemanticKittiDataset', 'SplitError', 'batch_to_device', 'collate',
    'color_jitter', 'index_frames', 'parse_split', 'select_pixel_points', 'transform_points',
]


@dataclass
class Sample:
    """One prepared scan (numpy arrays).

    Attributes:
        points: (P, 4) float32 in-range points (augmented in training).
        labels: (P,) int64 learning ids.
        keep: (P,) int64 index of each kept point in the original scan.
        num_total: N, points in the original scan.
        num_out_of_range: points left out by ``point_range`` (after augmentation; dropped points not counted).
        num_out_of_range_labelled: of those, how many had a label other than ignore.
        out_of_range_labels: (num_out_of_range,) int64 learning ids of the points left out by the range.
        image: (3, H, W) float32 normalised image or None.
        pix_point_idx: (M,) int64 indices into ``points`` of points projecting into ``image``.
        pix_uv: (M, 2) int64 (column, row) in ``image``.
        name: ``'SEQ/FRAME'``.
        image_source: ``'image_2'``, ``'image_0'`` (grey replicated) or None.
    """

    points: np.ndarray
    labels: np.ndarray
    keep: np.ndarray
    num_total: int
    num_out_of_range: int
    num_out_of_range_labelled: int
    out_of_range_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    image: np.ndarray | None = None
    pix_point_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    pix_uv: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    name: str = ''
    image_source: str | None = None


class SemanticKittiDataset:
    """Labelled SemanticKITTI scans as :class:`Sample` objects (a map-style ``torch.utils.data`` dataset).

    Args:
        roots: dataset root(s) (``ROOT/sequences/XX``).
        split: split description (:func:`parse_split`).
        model_cfg: object with ``point_range`` (6,), ``use_image``, ``image_size`` (H, W), ``ignore_index``
            (a ``SegmentationConfig``).
        train: training mode (random crop + augmentation) or evaluation (full image, no augmentation).
        augment: :class:`AugmentConfig` or mapping (training only; ``None`` = defaults).
        seed: base seed.
        use_image: override ``model_cfg.use_image`` (e.g. False for 3D-only evaluation to skip image reads).
        label_map: a :class:`pu_ros.data.labels.LabelMap` (default: the package's SemanticKITTI map).
    """

    def __init__(self, roots, split, model_cfg, train: bool = True, augment=None, seed: int = 0,
                 use_image: bool | None = None, label_map=None):
        """Index the split (no scan is read yet)."""
        from pu_ros.data.labels import LabelMap

        self.refs = index_frames(roots, split)
        self.cfg = model_cfg
        self.train = bool(train)
        self.augment = augment if isinstance(augment, AugmentConfig) else AugmentConfig.from_dict(augment)
        self.seed = int(seed)
        self.epoch = 0
        self.use_image = bool(model_cfg.use_image if use_image is None else use_image)
        self.crop_hw = tuple(int(v) for v in model_cfg.image_size)
        self.point_range = np.asarray(model_cfg.point_range, dtype=np.float64)
        self.ignore_index = int(getattr(model_cfg, 'ignore_index', 0))
        self.label_map = label_map if label_map is not None else LabelMap.load()
        self._seqs: dict[tuple[str, str], dict] = {}

    def __len__(self) -> int:
        """Number of labelled frames in the split."""
        return len(self.refs)

    def __getstate__(self):
        """Pickle without the open sequences (DataLoader workers under the spawn start method reopen them)."""
        state = self.__dict__.copy()
        state['_seqs'] = {}
        return state

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of an epoch (call before each epoch, like ``DistributedSampler``)."""
        self.epoch = int(epoch)

    def _sequence(self, ref: FrameRef) -> dict:
        key = (ref.root, ref.sequence)
        if key not in self._seqs:
            folder = ref.folder
            entry = {'lidar': open_kitti(folder, camera=None) if not self.use_image else None}
            if self.use_image:
                cams = {}
                for cam in ('image_2', 'image_0'):
                    if (folder / cam).is_dir():
                        try:
                            cams[cam] = open_kitti(folder, camera=cam)
                        except KittiFormatError:
                            continue  # folder present but no image for any scan
                entry['cams'] = cams
                entry['lidar'] = next(iter(cams.values())) if cams else open_kitti(folder, camera=None)
            seq = entry['lidar']
            entry['index'] = {fid: i for i, fid in enumerate(seq.frame_ids)}
            self._seqs[key] = entry
        return self._seqs[key]

    def _read(self, ref: FrameRef):
        """(points, raw labels, image (H,W,3) uint8 or None, calibration or None, image source)."""
        entry = self._sequence(ref)
        idx = entry['index'][ref.frame_id]
        if self.use_image:
            for cam, seq in entry['cams'].items():
                if seq.has_image(idx):
                    frame = seq[idx]
                    image = frame.image
                    if image.ndim == 2:
                        image = np.repeat(image[:, :, None], 3, axis=2)
                    return frame.points, frame.labels, image, seq.calib_for(idx), cam
        frame = entry['lidar'][idx]
        return frame.points, frame.labels, None, None, None

    def __getitem__(self, index: int) -> Sample:
        """Read and prepare frame ``index`` (deterministic for ``(seed, epoch, index)``)."""
        from pu_ros.ops.voxelize import in_range_mask

        ref = self.refs[index]
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        points, raw, image, calib, source = self._read(ref)
        if raw is None:
            raise SplitError(f'{ref.folder}: frame {ref.frame_id} has no labels')
        labels = self.label_map.to_learning(raw).astype(np.int64)
        n_total = points.shape[0]
        keep = np.arange(n_total, dtype=np.int64)

        img_out = None
        pix_idx = np.zeros(0, np.int64)
        pix_uv = np.zeros((0, 2), np.int64)
        if image is not None:
            h, w = image.shape[:2]
            if self.train:
                ch, cw = min(self.crop_hw[0], h), min(self.crop_hw[1], w)
                y0 = int(rng.integers(0, h - ch + 1))
                x0 = int(rng.integers(0, w - cw + 1))
            else:
                ch, cw, y0, x0 = h, w, 0, 0
            pix_idx, uv = pixels_in_image(points, calib, ch, cw, origin=(x0, y0))
            img = image[y0:y0 + ch, x0:x0 + cw].astype(np.float32) / 255.0
            if self.train:
                img = color_jitter(img, self.augment.color_jitter, rng)
                if rng.random() < self.augment.image_hflip:
                    img = img[:, ::-1]
                    uv = uv.copy()
                    uv[:, 0] = cw - 1 - uv[:, 0]
            if self.train and (ch, cw) != self.crop_hw:  # image smaller than the crop: pad bottom/right
                padded = np.zeros((*self.crop_hw, 3), np.float32)
                padded[:ch, :cw] = img
                img = padded
            img_out = normalize_image(img)
            pix_uv = uv

        if self.train:
            a = self.augment
            if a.dropout > 0:
                frac = rng.uniform(0.0, a.dropout)
                keep = np.flatnonzero(rng.random(n_total) >= frac)
            angle = rng.uniform(0.0, 2.0 * np.pi) if a.rotate else 0.0
            fx = bool(rng.random() < a.flip_x)
            fy = bool(rng.random() < a.flip_y)
            scale = rng.uniform(*a.scale)
            shift = rng.normal(0.0, 1.0, 3) * np.asarray(a.translate_std)
            pts = transform_points(points[keep], angle, fx, fy, scale, shift)
        else:
            pts = points
        inside = np.asarray(in_range_mask(pts, self.cfg), dtype=bool)
        n_out = int(np.count_nonzero(~inside))
        labels_out = labels[keep[~inside]]
        n_out_lab = int(np.count_nonzero(labels_out != self.ignore_index))
        # map original indices -> compact indices of the kept in-range points
        keep = keep[inside]
        pix_idx, pix_uv = select_pixel_points(pix_idx, pix_uv, keep, n_total)
        return Sample(
            points=np.ascontiguousarray(pts[inside], dtype=np.float32),
            labels=labels[keep],
            keep=keep,
            num_total=int(n_total),
            num_out_of_range=n_out,
            num_out_of_range_labelled=n_out_lab,
            out_of_range_labels=labels_out,
            image=img_out,
            pix_point_idx=pix_idx,
            pix_uv=pix_uv,
            name=ref.name,
            image_source=source,
        )

