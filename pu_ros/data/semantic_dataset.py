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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from pu_ros.data.kitti import KittiFormatError, open_kitti
from pu_ros.geometry.projection import normalize_image, pixels_in_image


class SplitError(ValueError):
    """A split names sequences or frames that cannot be found, or is malformed."""


# ------------------------------------------------------------------------------------------------ camera


def select_pixel_points(pix_point_idx, pix_uv, kept, num_points: int):
    """Keep the point-pixel pairs of a subset of the points and renumber them into that subset.

    Works on numpy arrays or torch tensors (all on one device).

    Args:
        pix_point_idx: (M,) int64 indices into the original ``num_points`` points.
        pix_uv: (M, 2) int64 pixel of each pair.
        kept: (K,) int64 distinct indices of the points that remain, in their new order.
        num_points: N, number of original points.

    Returns:
        ``(idx, uv)``: (M',) int64 indices into ``kept`` and (M', 2) int64 pixels of the pairs whose point remains.
    """
    if isinstance(kept, np.ndarray):
        remap = np.full(int(num_points), -1, dtype=np.int64)
        remap[kept] = np.arange(kept.size, dtype=np.int64)
    else:
        import torch

        remap = torch.full((int(num_points),), -1, dtype=torch.int64, device=kept.device)
        remap[kept] = torch.arange(kept.numel(), dtype=torch.int64, device=kept.device)
    new = remap[pix_point_idx]
    ok = new >= 0
    return new[ok], pix_uv[ok]


# ------------------------------------------------------------------------------------------------ splits


def parse_split(spec) -> dict[str, list[str] | None]:
    """Normalise a split description.

    Args:
        spec: a list of sequence names, a mapping ``seq -> list of frame ids | 'all' | None``, or a string
            ``'00'`` / ``'00/000002,00/000003'`` / ``'00,01'``. Frame ids may be ints (zero-padded to 6 digits).

    Returns:
        dict ``seq -> sorted list of frame ids`` (``None`` = every labelled frame), sequence names zero-padded to 2.
    """
    if spec is None:
        raise SplitError('split is empty (None)')
    out: dict[str, list[str] | None] = {}

    def add(seq, frames):
        seq = _seq_name(seq)
        if frames is None or (isinstance(frames, str) and frames.lower() == 'all'):
            out[seq] = None
            return
        if isinstance(frames, (str, int)):
            frames = [frames]
        ids = [_frame_name(f) for f in frames]
        if out.get(seq, []) is None:
            return
        out[seq] = sorted(set(out.get(seq, [])) | set(ids))

    if isinstance(spec, str):
        for part in (p.strip() for p in spec.split(',')):
            if not part:
                continue
            seq, sep, frame = part.partition('/')
            add(seq, frame if sep else None)
    elif isinstance(spec, Mapping):
        for seq, frames in spec.items():
            add(seq, frames)
    elif isinstance(spec, Iterable):
        for item in spec:
            if isinstance(item, str) and '/' in item:
                seq, _, frame = item.partition('/')
                add(seq, frame)
            else:
                add(item, None)
    else:
        raise SplitError(f'cannot read split {spec!r}: expected a list, a mapping or a string')
    if not out:
        raise SplitError(f'split {spec!r} names no sequence')
    return out


def _seq_name(seq) -> str:
    s = str(seq).strip()
    if not s.isdigit():
        raise SplitError(f'sequence name {seq!r} must be a number such as "00"')
    return s.zfill(2)


def _frame_name(frame) -> str:
    s = str(frame).strip()
    if not s.isdigit():
        raise SplitError(f'frame id {frame!r} must be a number such as "000002"')
    return s.zfill(6)


@dataclass(frozen=True)
class FrameRef:
    """One labelled frame of one sequence of one root."""

    root: str
    sequence: str
    frame_id: str

    @property
    def name(self) -> str:
        """``'SEQ/FRAME'`` (e.g. ``'00/000002'``)."""
        return f'{self.sequence}/{self.frame_id}'

    @property
    def folder(self) -> Path:
        """The sequence folder."""
        return Path(self.root) / 'sequences' / self.sequence


def index_frames(roots: Sequence[str | Path] | str | Path, split) -> list[FrameRef]:
    """Labelled frames of a split over one or several dataset roots.

    Args:
        roots: dataset root(s), each holding ``sequences/XX/``; a path to a ``sequences/XX`` folder itself is
            accepted as a root holding that one sequence.
        split: see :func:`parse_split`.

    Returns:
        Frames in (root, sequence, frame) order.

    Raises:
        SplitError: a sequence found in no root, an explicitly listed frame without scan or labels, or nothing
            found at all.
    """
    if isinstance(roots, (str, Path)):
        roots = [roots]
    wanted = parse_split(split)
    refs: list[FrameRef] = []
    found_seq = set()
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise SplitError(f'dataset root {root} does not exist')
        seq_dirs = _sequence_dirs(root)
        for seq, frames in wanted.items():
            if seq not in seq_dirs:
                continue
            found_seq.add(seq)
            base, folder = seq_dirs[seq]
            labelled = sorted(
                p.stem for p in (folder / 'labels').glob('*.label') if (folder / 'velodyne' / f'{p.stem}.bin').is_file()
            )
            if frames is None:
                chosen = labelled
            else:
                have = set(labelled)
                missing = [f for f in frames if f not in have]
                if missing:
                    raise SplitError(
                        f'{folder}: frame(s) {", ".join(missing[:5])} have no scan+label pair '
                        f'(labelled frames: {", ".join(labelled[:5])}{" ..." if len(labelled) > 5 else ""})'
                    )
                chosen = frames
            refs += [FrameRef(str(base), seq, f) for f in chosen]
    missing_seq = sorted(set(wanted) - found_seq)
    if missing_seq:
        raise SplitError(f'sequence(s) {", ".join(missing_seq)} not found under {", ".join(map(str, roots))}')
    if not refs:
        raise SplitError(f'split {split!r} selects no labelled frame under {", ".join(map(str, roots))}')
    return refs


def _sequence_dirs(root: Path) -> dict[str, tuple[Path, Path]]:
    """Map sequence name -> (root to record, sequence folder)."""
    if (root / 'velodyne').is_dir() and root.parent.name == 'sequences':
        return {root.name: (root.parent.parent, root)}
    seqs = root / 'sequences'
    if not seqs.is_dir():
        raise SplitError(f'{root} has no sequences/ folder (SemanticKITTI layout: ROOT/sequences/XX/velodyne)')
    return {p.name: (root, p) for p in sorted(seqs.iterdir()) if p.is_dir() and p.name.isdigit()}


# ------------------------------------------------------------------------------------------------ augmentation


@dataclass
class AugmentConfig:
    """Training augmentation (all off in evaluation).

    Attributes:
        rotate: random rotation about z, uniform in [0, 2π).
        flip_x: probability of mirroring x (x -> -x).
        flip_y: probability of mirroring y.
        scale: (lo, hi) uniform scale factor range (1, 1 = off).
        translate_std: (3,) std of a Gaussian translation in metres.
        dropout: maximum fraction of points randomly removed (uniform in [0, dropout]).
        color_jitter: strength s of brightness/contrast/saturation factors drawn in [1-s, 1+s].
        image_hflip: probability of mirroring the image (and the pixel columns of the correspondences).
    """

    rotate: bool = True
    flip_x: float = 0.5
    flip_y: float = 0.5
    scale: tuple[float, float] = (0.95, 1.05)
    translate_std: tuple[float, float, float] = (0.1, 0.1, 0.1)
    dropout: float = 0.0
    color_jitter: float = 0.3
    image_hflip: float = 0.5

    @classmethod
    def from_dict(cls, d: Mapping | None) -> AugmentConfig:
        """Build from a YAML mapping; unknown keys raise ValueError (no silent typos)."""
        d = dict(d or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f'unknown augmentation key(s) {unknown}; known: {sorted(names)}')
        if 'scale' in d:
            d['scale'] = tuple(float(v) for v in d['scale'])
            if len(d['scale']) != 2 or not 0 < d['scale'][0] <= d['scale'][1]:
                raise ValueError(f'augmentation scale must be (lo, hi) with 0 < lo <= hi, got {d["scale"]}')
        if 'translate_std' in d:
            v = d['translate_std']
            d['translate_std'] = tuple(float(x) for x in (v if isinstance(v, (list, tuple)) else [v] * 3))
            if len(d['translate_std']) != 3:
                raise ValueError('augmentation translate_std must be one number or three')
        for key in ('flip_x', 'flip_y', 'image_hflip', 'dropout'):
            if key in d and not 0.0 <= float(d[key]) <= 1.0:
                raise ValueError(f'augmentation {key} must be in [0, 1], got {d[key]}')
        return cls(**d)

    def to_dict(self) -> dict:
        """Plain dict (lists instead of tuples) for YAML/checkpoints."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def transform_points(
    xyz: np.ndarray, angle: float = 0.0, flip_x: bool = False, flip_y: bool = False, scale: float = 1.0,
    translation=(0.0, 0.0, 0.0),
) -> np.ndarray:
    """Apply flip, rotation about z, scale and translation (in that order) to points.

    Args:
        xyz: (N, ≥3) float array; only the first three columns change (others are copied).
        angle: rotation about z in radians.
        flip_x: mirror x (x -> -x).
        flip_y: mirror y.
        scale: isotropic factor.
        translation: (3,) added last.

    Returns:
        New (N, ≥3) array of the same dtype.
    """
    out = np.array(xyz, copy=True)
    p = out[:, :3].astype(np.float64)
    if flip_x:
        p[:, 0] = -p[:, 0]
    if flip_y:
        p[:, 1] = -p[:, 1]
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        x, y = p[:, 0].copy(), p[:, 1].copy()
        p[:, 0] = c * x - s * y
        p[:, 1] = s * x + c * y
    p = p * scale + np.asarray(translation, dtype=np.float64)
    out[:, :3] = p.astype(out.dtype)
    return out


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation on a float RGB image.

    Args:
        image: (H, W, 3) float32 in [0, 1].
        strength: factors are drawn uniformly in [1 - strength, 1 + strength].
        rng: random generator.

    Returns:
        (H, W, 3) float32 clipped to [0, 1].
    """
    if strength <= 0:
        return image
    b, c, s = rng.uniform(1.0 - strength, 1.0 + strength, size=3)
    img = image * b
    grey = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    img = (img - grey.mean()) * c + grey.mean()
    grey = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    img = (img - grey[..., None]) * s + grey[..., None]
    return np.clip(img, 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------------------ dataset


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


# ------------------------------------------------------------------------------------------------ collate


def collate(samples: Sequence[Sample]) -> dict:
    """Concatenate samples into the network's batch dict (torch tensors on the CPU).

    Returns:
        dict with ``points`` (P, 4) float32, ``batch_idx`` (P,) int64, ``batch_size`` int, ``labels`` (P,) int64,
        and when any sample has an image: ``images`` (B, 3, H, W) float32 (zero-padded to the largest image;
        zeros for samples without one), ``pix_point_idx`` (M,) int64 into ``points``, ``pix_uv`` (M, 2) int64.
        ``meta`` is a list of per-sample dicts (name, keep (P_b,) int64, num_total, num_out_of_range,
        num_out_of_range_labelled, image_source) that the network ignores.
    """
    import torch

    if not samples:
        raise ValueError('collate needs at least one sample')
    offsets = np.cumsum([0] + [s.points.shape[0] for s in samples])
    batch = {
        'points': torch.from_numpy(np.concatenate([s.points for s in samples])),
        'batch_idx': torch.from_numpy(
            np.concatenate([np.full(s.points.shape[0], b, np.int64) for b, s in enumerate(samples)])
        ),
        'batch_size': len(samples),
        'labels': torch.from_numpy(np.concatenate([s.labels for s in samples]).astype(np.int64)),
    }
    if any(s.image is not None for s in samples):
        h = max(s.image.shape[1] for s in samples if s.image is not None)
        w = max(s.image.shape[2] for s in samples if s.image is not None)
        images = np.zeros((len(samples), 3, h, w), np.float32)
        for b, s in enumerate(samples):
            if s.image is not None:
                images[b, :, : s.image.shape[1], : s.image.shape[2]] = s.image
        batch['images'] = torch.from_numpy(images)
        batch['pix_point_idx'] = torch.from_numpy(
            np.concatenate([s.pix_point_idx + offsets[b] for b, s in enumerate(samples)]).astype(np.int64)
        )
        batch['pix_uv'] = torch.from_numpy(np.concatenate([s.pix_uv for s in samples]).astype(np.int64))
    batch['meta'] = [
        {
            'name': s.name, 'keep': s.keep, 'num_total': s.num_total, 'num_out_of_range': s.num_out_of_range,
            'num_out_of_range_labelled': s.num_out_of_range_labelled, 'image_source': s.image_source,
        }
        for s in samples
    ]
    return batch


def batch_to_device(batch: dict, device) -> dict:
    """Copy of ``batch`` with every tensor moved to ``device`` (non-blocking); other entries kept as they are."""
    import torch

    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
