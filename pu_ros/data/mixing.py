"""Scene-mixing augmentations for LiDAR segmentation: LaserMix, PolarMix and instance paste.

All three combine a training scan ``a`` with points of other scans, so the network sees new layouts and more
objects than the few labelled scans hold:

- **LaserMix** (Kong et al., CVPR 2023): the inclination angle ``atan2(z, sqrt(x² + y²))`` is cut into ``k``
  equal bands over ``pitch_range``; even bands come from ``a``, odd ones from a partner scan ``b`` (or the
  reverse). Points outside ``pitch_range`` belong to the nearest band.
- **PolarMix** (Xiao et al., NeurIPS 2022): (1) scene level: an azimuth sector of random start and width is cut
  out of ``a`` and filled with the same sector of ``b``; (2) instance level: ``b``'s points of the *thing*
  classes (cars, people...) are copied, rotated about the sensor's z axis by ``copies`` random angles, and added.
  A rotation about the sensor keeps every point's range and inclination, so density and ring pattern stay
  those of a real scan.
- **Instance paste** (2DPASS's instance augmentation): objects cut out of labelled or synthetic scans (points of
  one instance id of a thing class) are rotated about the sensor's z axis to a free spot of ``a`` and set on
  ``a``'s local ground (median height of ground-class points within 2 m); spots where ``a`` has non-ground
  points inside the object's footprint are rejected.

The functions below work on arrays and return *indices* of the points of each source that survive, so that every
other per-point array (labels, image correspondences, original indices) is selected with the same indices and
stays aligned; :class:`MixingDataset` applies them to :class:`~pu_ros.data.semantic_dataset.Sample` objects.
Mixed-in points have ``keep = -1`` (they are not points of ``a``'s original scan) and no pixel correspondence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np

# learning ids of the SemanticKITTI thing classes: car, bicycle, motorcycle, truck, other-vehicle, person,
# bicyclist, motorcyclist
THING_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8)
# learning ids of ground classes: road, parking, sidewalk, other-ground, terrain
GROUND_CLASSES = (9, 10, 11, 12, 17)


@dataclass
class MixConfig:
    """Scene-mixing options (``train.mixing`` in the training YAML; all off by default).

    Attributes:
        lasermix: probability that a training scan is LaserMix-ed with another scan of the training set.
        lasermix_bands: (lo, hi) number of inclination bands, drawn uniformly (inclusive).
        pitch_range: (lo, hi) inclination range in degrees cut into bands (HDL-64E: about -25 to 3).
        polarmix: probability of PolarMix (sector swap, then rotate-paste of the partner's instances).
        polarmix_sector: (lo, hi) width of the swapped azimuth sector in degrees.
        polarmix_copies: rotated copies of the partner's thing points added (0 = sector swap only).
        instance_paste: probability of pasting objects from the instance bank.
        paste_count: (lo, hi) objects pasted (inclusive).
        paste_split: split (see ``parse_split``) of the scans the bank is cut from (frames need instance ids in
            their ``.label`` files: SemanticKITTI ground truth or our synthetic scans); ``None`` = the training
            split.
        paste_min_points: smallest object kept in the bank.
        thing_classes: learning ids treated as objects (PolarMix instance level and the bank).
    """

    lasermix: float = 0.0
    lasermix_bands: tuple[int, int] = (2, 6)
    pitch_range: tuple[float, float] = (-25.0, 3.0)
    polarmix: float = 0.0
    polarmix_sector: tuple[float, float] = (45.0, 180.0)
    polarmix_copies: int = 2
    instance_paste: float = 0.0
    paste_count: tuple[int, int] = (1, 6)
    paste_split: object = None
    paste_min_points: int = 30
    thing_classes: tuple[int, ...] = THING_CLASSES

    @classmethod
    def from_dict(cls, d: Mapping | None) -> MixConfig:
        """Build from a YAML mapping; unknown keys or out-of-range values raise ValueError."""
        d = dict(d or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f'unknown mixing key(s) {unknown}; known: {sorted(names)}')
        for key in ('lasermix', 'polarmix', 'instance_paste'):
            if key in d:
                d[key] = float(d[key])
                if not 0.0 <= d[key] <= 1.0:
                    raise ValueError(f'mixing {key} must be a probability in [0, 1], got {d[key]}')
        for key, typ in (('lasermix_bands', int), ('pitch_range', float), ('polarmix_sector', float),
                         ('paste_count', int)):
            if key in d:
                v = tuple(typ(x) for x in d[key])
                if len(v) != 2 or v[0] > v[1]:
                    raise ValueError(f'mixing {key} must be (lo, hi) with lo <= hi, got {d[key]}')
                d[key] = v
        if d.get('lasermix_bands', (2, 2))[0] < 2:
            raise ValueError('mixing lasermix_bands must be at least 2')
        if 'thing_classes' in d:
            d['thing_classes'] = tuple(int(c) for c in d['thing_classes'])
        return cls(**d)

    def to_dict(self) -> dict:
        """Plain dict for YAML/checkpoints."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @property
    def active(self) -> bool:
        """Whether any mixing can happen."""
        return max(self.lasermix, self.polarmix, self.instance_paste) > 0


# ------------------------------------------------------------------------------------------------ array ops


def inclination(points: np.ndarray) -> np.ndarray:
    """(N,) inclination in degrees of (N, >=3) points seen from the origin."""
    p = np.asarray(points, dtype=np.float64)
    return np.degrees(np.arctan2(p[:, 2], np.hypot(p[:, 0], p[:, 1])))


def azimuth(points: np.ndarray) -> np.ndarray:
    """(N,) azimuth in degrees in [0, 360) of (N, >=2) points."""
    p = np.asarray(points, dtype=np.float64)
    return np.degrees(np.arctan2(p[:, 1], p[:, 0])) % 360.0


def lasermix_select(points_a: np.ndarray, points_b: np.ndarray, bands: int, pitch_range=(-25.0, 3.0),
                    a_first: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """LaserMix: which points of ``a`` and of ``b`` form the mixed scan.

    Args:
        points_a: (Na, >=3) scan a.
        points_b: (Nb, >=3) scan b.
        bands: number k >= 2 of equal inclination bands over ``pitch_range``.
        pitch_range: (lo, hi) degrees; points outside go to the first/last band.
        a_first: band 0 (the lowest) comes from ``a`` (then bands alternate).

    Returns:
        ``(ia, ib)``: (Ka,) and (Kb,) int64 indices of the kept points of ``a`` and ``b``.
    """
    lo, hi = pitch_range

    def band(points):
        t = (inclination(points) - lo) / max(hi - lo, 1e-9)
        return np.clip(np.floor(t * bands), 0, bands - 1).astype(np.int64)

    parity = 0 if a_first else 1
    ia = np.flatnonzero(band(points_a) % 2 == parity)
    ib = np.flatnonzero(band(points_b) % 2 != parity)
    return ia, ib


def polarmix_select(points_a: np.ndarray, points_b: np.ndarray, start_deg: float,
                    width_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """PolarMix scene level: ``a`` outside the sector ``[start, start + width)`` plus ``b`` inside it.

    Returns:
        ``(ia, ib)``: (Ka,) and (Kb,) int64 indices of the kept points of ``a`` and ``b``.
    """

    def in_sector(points):
        return (azimuth(points) - start_deg) % 360.0 < width_deg

    return np.flatnonzero(~in_sector(points_a)), np.flatnonzero(in_sector(points_b))


def rotate_z(points: np.ndarray, angle: float) -> np.ndarray:
    """Copy of (N, >=3) points rotated about the z axis by ``angle`` radians (other columns unchanged)."""
    return rotate_each(points, np.full(len(points), float(angle)))


def rotate_paste_select(labels_b: np.ndarray, thing_classes, angles) -> tuple[np.ndarray, np.ndarray]:
    """PolarMix instance level: the thing points of ``b``, once per angle.

    Args:
        labels_b: (Nb,) learning ids.
        thing_classes: learning ids copied.
        angles: (K,) rotation angles in radians.

    Returns:
        ``(ib, ang)``: (K * T,) int64 indices into ``b`` (T thing points, repeated per angle) and (K * T,) the
        angle each copy is rotated by.
    """
    things = np.flatnonzero(np.isin(labels_b, np.asarray(thing_classes)))
    angles = np.asarray(angles, dtype=np.float64)
    return np.tile(things, angles.size), np.repeat(angles, things.size)


def rotate_each(points: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """(N, >=3) points each rotated about z by its own angle (N,) radians."""
    out = np.array(points, copy=True)
    c, s = np.cos(angles), np.sin(angles)
    x, y = out[:, 0].astype(np.float64), out[:, 1].astype(np.float64)
    out[:, 0] = (c * x - s * y).astype(out.dtype)
    out[:, 1] = (s * x + c * y).astype(out.dtype)
    return out


@dataclass
class BankObject:
    """One object of the instance bank.

    Attributes:
        points: (n, 4) float32 in its source scan's sensor frame.
        label: learning id.
        name: ``'SEQ/FRAME#instance'``.
    """

    points: np.ndarray
    label: int
    name: str = ''


def extract_objects(points: np.ndarray, raw_labels: np.ndarray, label_map, thing_classes=THING_CLASSES,
                    min_points: int = 30, name: str = '') -> list[BankObject]:
    """Cut the instances of thing classes out of one labelled scan.

    Args:
        points: (N, 4) scan.
        raw_labels: (N,) uint32 SemanticKITTI labels (instance id in the upper 16 bits; instance 0 is skipped).
        label_map: :class:`~pu_ros.data.labels.LabelMap`.
        thing_classes: learning ids kept.
        min_points: smallest object kept.
        name: prefix of the objects' names.

    Returns:
        The objects, in order of their full label value.
    """
    raw = np.asarray(raw_labels, dtype=np.uint32)
    learn = label_map.to_learning(raw).astype(np.int64)
    inst = raw >> 16
    cand = np.flatnonzero(np.isin(learn, np.asarray(thing_classes)) & (inst > 0))
    out = []
    if cand.size == 0:
        return out
    keys, inverse, counts = np.unique(raw[cand], return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind='stable')
    splits = np.split(cand[order], np.cumsum(counts)[:-1])
    for key, idx in zip(keys, splits):
        if idx.size >= min_points:
            out.append(BankObject(np.ascontiguousarray(points[idx], np.float32), int(learn[idx[0]]),
                                  f'{name}#{int(key) >> 16}'))
    return out


def paste_objects(points_a: np.ndarray, labels_a: np.ndarray, bank: list[BankObject], count: int,
                  rng: np.random.Generator, tries: int = 8, ground_radius: float = 2.0,
                  ground_classes=GROUND_CLASSES) -> tuple[list[np.ndarray], list[int]]:
    """Place up to ``count`` bank objects into scan ``a``.

    Each object is rotated about the sensor's z axis by a random angle (its range is kept), lifted onto the
    median height of ``a``'s ground points within ``ground_radius`` of its new centre, and accepted only if
    ``a`` has ground there and no non-ground point inside its footprint (bounding circle + 0.2 m) and it does not
    overlap an object pasted before.

    Args:
        points_a: (Na, >=3) scan a.
        labels_a: (Na,) learning ids of a.
        bank: the objects to draw from.
        count: objects wanted.
        rng: random generator.
        tries: random placements tried per object before giving it up.
        ground_radius: metres around the new centre where ``a``'s ground height is read.
        ground_classes: learning ids counted as ground.

    Returns:
        ``(pieces, bank_indices)``: a list of (n_k, 4) float32 placed objects and the bank index of each.
    """
    if not bank or count <= 0:
        return [], []
    xy_a = np.asarray(points_a[:, :2], dtype=np.float64)
    ground = np.isin(labels_a, np.asarray(ground_classes))
    g_xy, g_z = xy_a[ground], np.asarray(points_a[ground, 2], dtype=np.float64)
    o_xy = xy_a[~ground & (labels_a != 0)]
    pieces, used, placed = [], [], []  # placed: (centre x, y, radius)
    for _ in range(int(count)):
        for _ in range(tries):
            k = int(rng.integers(len(bank)))
            obj = bank[k]
            moved = rotate_z(obj.points, rng.uniform(0.0, 2.0 * np.pi))
            cxy = moved[:, :2].astype(np.float64).mean(0)
            radius = float(np.max(np.linalg.norm(moved[:, :2] - cxy, axis=1))) + 0.2
            if any(np.hypot(*(cxy - p[:2])) < radius + p[2] for p in placed):
                continue
            if o_xy.shape[0] and np.any(np.sum((o_xy - cxy) ** 2, axis=1) < radius ** 2):
                continue
            near = np.sum((g_xy - cxy) ** 2, axis=1) < ground_radius ** 2
            if np.count_nonzero(near) < 5:
                continue
            moved[:, 2] += np.float32(np.median(g_z[near]) - float(moved[:, 2].min()))
            pieces.append(moved.astype(np.float32))
            used.append(k)
            placed.append((cxy[0], cxy[1], radius))
            break
    return pieces, used


# ------------------------------------------------------------------------------------------------ dataset


def combine(sample, ia: np.ndarray, extra_points: list[np.ndarray], extra_labels: list[np.ndarray], cfg):
    """A new :class:`~pu_ros.data.semantic_dataset.Sample`: ``sample``'s points ``ia`` plus extra points.

    Extra points outside ``cfg.point_range`` are dropped; they get ``keep = -1`` and no pixel. ``sample``'s
    pixel correspondences follow its kept points. Out-of-range counts stay those of ``sample``.

    Args:
        sample: the base scan.
        ia: (K,) int64 indices of ``sample.points`` kept.
        extra_points: arrays (n_j, 4) float32 appended in order.
        extra_labels: arrays (n_j,) int64 learning ids, one per extra array.
        cfg: object with ``point_range``.
    """
    from dataclasses import replace

    from pu_ros.data.semantic_dataset import select_pixel_points
    from pu_ros.ops.voxelize import in_range_mask

    ia = np.asarray(ia, dtype=np.int64)
    pts = [sample.points[ia]]
    labs = [sample.labels[ia]]
    for p, lab in zip(extra_points, extra_labels):
        if p.shape[0] == 0:
            continue
        ok = np.asarray(in_range_mask(p, cfg), dtype=bool)
        pts.append(np.asarray(p[ok], np.float32))
        labs.append(np.asarray(lab, np.int64)[ok])
    n_extra = sum(p.shape[0] for p in pts[1:])
    pix_idx, pix_uv = select_pixel_points(sample.pix_point_idx, sample.pix_uv, ia, sample.points.shape[0])
    return replace(
        sample,
        points=np.ascontiguousarray(np.concatenate(pts), dtype=np.float32),
        labels=np.concatenate(labs).astype(np.int64),
        keep=np.concatenate([sample.keep[ia], np.full(n_extra, -1, np.int64)]),
        pix_point_idx=pix_idx,
        pix_uv=pix_uv,
    )


class MixingDataset:
    """A training :class:`~pu_ros.data.semantic_dataset.SemanticKittiDataset` with scene mixing on top.

    Sample ``i`` is the base dataset's sample ``i`` (augmented as usual), then, each with its probability,
    LaserMix-ed with another random training scan, PolarMix-ed with another, and given objects from the
    instance bank. Randomness comes from ``default_rng([seed, epoch, i, 1])``: deterministic per seed/epoch/index.

    Args:
        base: the training dataset (``train=True``).
        config: :class:`MixConfig` or mapping.
        roots: dataset roots (for the instance bank's ``paste_split``).
    """

    def __init__(self, base, config, roots):
        """Wrap ``base``; the instance bank is read on first use (in each DataLoader worker)."""
        self.base = base
        self.config = config if isinstance(config, MixConfig) else MixConfig.from_dict(config)
        self.roots = [roots] if isinstance(roots, str) else list(roots)
        self._bank: list[BankObject] | None = None

    @property
    def refs(self):
        """The base dataset's frames."""
        return self.base.refs

    def __len__(self) -> int:
        """Number of training scans."""
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of an epoch (also of the base dataset)."""
        self.base.set_epoch(epoch)

    def __getstate__(self):
        """Pickle without the bank (rebuilt per worker)."""
        state = self.__dict__.copy()
        state['_bank'] = None
        return state

    def bank(self) -> list[BankObject]:
        """The instance bank (objects of ``paste_split``, or of the training split, with instance ids)."""
        if self._bank is None:
            from pu_ros.data.kitti import open_kitti
            from pu_ros.data.semantic_dataset import index_frames

            split = self.config.paste_split
            refs = index_frames(self.roots, split) if split is not None else self.base.refs
            bank, opened = [], {}
            for ref in refs:
                key = (ref.root, ref.sequence)
                if key not in opened:
                    seq = open_kitti(ref.folder, camera=None)
                    opened[key] = (seq, {f: i for i, f in enumerate(seq.frame_ids)})
                seq, index = opened[key]
                frame = seq[index[ref.frame_id]]
                bank += extract_objects(frame.points, frame.labels, self.base.label_map, self.config.thing_classes,
                                        self.config.paste_min_points, ref.name)
            self._bank = bank
        return self._bank

    def _partner(self, i: int, rng: np.random.Generator):
        n = len(self.base)
        if n < 2:
            return None
        j = int(rng.integers(n - 1))
        return self.base[j + (j >= i)]

    def __getitem__(self, i: int):
        """Sample ``i`` with mixing applied."""
        c = self.config
        sample = self.base[i]
        rng = np.random.default_rng([self.base.seed, self.base.epoch, int(i), 1])
        cfg = self.base.cfg
        if c.lasermix > 0 and rng.random() < c.lasermix:
            other = self._partner(i, rng)
            if other is not None:
                bands = int(rng.integers(c.lasermix_bands[0], c.lasermix_bands[1] + 1))
                ia, ib = lasermix_select(sample.points, other.points, bands, c.pitch_range,
                                         a_first=bool(rng.random() < 0.5))
                sample = combine(sample, ia, [other.points[ib]], [other.labels[ib]], cfg)
        if c.polarmix > 0 and rng.random() < c.polarmix:
            other = self._partner(i, rng)
            if other is not None:
                width = rng.uniform(*c.polarmix_sector)
                ia, ib = polarmix_select(sample.points, other.points, rng.uniform(0.0, 360.0), width)
                extra_p, extra_l = [other.points[ib]], [other.labels[ib]]
                if c.polarmix_copies > 0:
                    angles = rng.uniform(0.0, 2.0 * np.pi, c.polarmix_copies)
                    jb, ang = rotate_paste_select(other.labels, c.thing_classes, angles)
                    extra_p.append(rotate_each(other.points[jb], ang))
                    extra_l.append(other.labels[jb])
                sample = combine(sample, ia, extra_p, extra_l, cfg)
        if c.instance_paste > 0 and rng.random() < c.instance_paste:
            bank = self.bank()
            count = int(rng.integers(c.paste_count[0], c.paste_count[1] + 1))
            pieces, used = paste_objects(sample.points, sample.labels, bank, count, rng)
            if pieces:
                labels = [np.full(p.shape[0], bank[k].label, np.int64) for p, k in zip(pieces, used)]
                sample = combine(sample, np.arange(sample.points.shape[0]), pieces, labels, cfg)
        return sample
