"""SemanticKITTI label map: raw class ids (from .label files) <-> learning ids 0..19, names and colours.

The mapping lives in ``config/semantic_kitti.yaml``. Raw labels are uint32 with the semantic class in the lower
16 bits and the instance id in the upper 16 bits; conversion goes through a 65536-entry lookup table, so it is
one vectorised indexing operation per call.
"""

from __future__ import annotations

from pathlib import Path
import warnings

import numpy as np

RAW_CLASS_MASK = 0xFFFF
_LUT_SIZE = RAW_CLASS_MASK + 1


class LabelMapError(ValueError):
    """The label-map YAML is missing keys or inconsistent."""


class UnknownLabelWarning(UserWarning):
    """Raw label ids that the label map does not know were mapped to the ignore class."""


def _int_keyed(mapping, key_name):
    if not isinstance(mapping, dict) or not mapping:
        raise LabelMapError(f'label map: "{key_name}" must be a non-empty mapping')
    try:
        return {int(k): int(v) for k, v in mapping.items()}
    except (TypeError, ValueError) as exc:
        raise LabelMapError(f'label map: "{key_name}" must map integers to integers ({exc})') from None


class LabelMap:
    """Raw SemanticKITTI ids <-> learning ids, with class names and RGB colours.

    Attributes:
        num_classes: number of learning classes (20 for SemanticKITTI, id 0 = ignore).
        ignore_index: learning id of the ignore class (0).
        names: list of ``num_classes`` class names indexed by learning id.
        colors: (num_classes, 3) uint8 RGB colour per learning id.
        raw_names: dict raw id -> name.
        learning_map: dict raw id -> learning id.
        learning_map_inv: dict learning id -> representative raw id.
        unknown_points: running count of points whose raw id was unknown (mapped to ``ignore_index``).
    """

    def __init__(self, config: dict, source: str = '<dict>'):
        """Build the lookup tables from a parsed YAML dict (see ``config/semantic_kitti.yaml``)."""
        if not isinstance(config, dict):
            raise LabelMapError(f'label map {source}: expected a mapping at the top level')
        try:
            self.num_classes = int(config['num_classes'])
            self.ignore_index = int(config.get('ignore_index', 0))
            learning_map = _int_keyed(config['learning_map'], 'learning_map')
            learning_map_inv = _int_keyed(config['learning_map_inv'], 'learning_map_inv')
            names = [str(n) for n in config['learning_names']]
            colors = np.asarray(config['learning_colors_rgb'], dtype=np.int64)
        except KeyError as exc:
            raise LabelMapError(f'label map {source}: missing key {exc}') from None
        n = self.num_classes
        if len(names) != n:
            raise LabelMapError(f'label map {source}: {len(names)} learning_names for num_classes={n}')
        if colors.shape != (n, 3) or colors.min() < 0 or colors.max() > 255:
            raise LabelMapError(f'label map {source}: learning_colors_rgb must be {n} RGB triples in 0..255')
        if not 0 <= self.ignore_index < n:
            raise LabelMapError(f'label map {source}: ignore_index {self.ignore_index} outside 0..{n - 1}')
        bad = {k: v for k, v in learning_map.items() if not (0 <= k < _LUT_SIZE and 0 <= v < n)}
        if bad:
            raise LabelMapError(f'label map {source}: learning_map entries out of range: {bad}')
        if sorted(learning_map_inv) != list(range(n)):
            raise LabelMapError(f'label map {source}: learning_map_inv must have keys 0..{n - 1}')
        for lid, rid in learning_map_inv.items():
            if learning_map.get(rid) != lid:
                raise LabelMapError(
                    f'label map {source}: learning_map_inv[{lid}] = {rid}, but learning_map[{rid}] = '
                    f'{learning_map.get(rid)}'
                )
        self.names = names
        self.colors = colors.astype(np.uint8)
        self.learning_map = learning_map
        self.learning_map_inv = learning_map_inv
        self.raw_names = {int(k): str(v) for k, v in (config.get('labels') or {}).items()}
        self.source = source
        self.unknown_points = 0

        self._lut = np.full(_LUT_SIZE, self.ignore_index, dtype=np.uint8)
        self._known = np.zeros(_LUT_SIZE, dtype=bool)
        keys = np.fromiter(learning_map.keys(), dtype=np.int64)
        self._lut[keys] = np.fromiter(learning_map.values(), dtype=np.int64)
        self._known[keys] = True
        self._inv = np.array([learning_map_inv[i] for i in range(n)], dtype=np.uint32)

    @classmethod
    def load(cls, path: str | Path | None = None) -> LabelMap:
        """Load a label map YAML; ``None`` loads the package's ``config/semantic_kitti.yaml``."""
        import yaml

        if path is None:
            from pu_ros.resources import config_path

            path = config_path('semantic_kitti.yaml')
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise LabelMapError(f'cannot read label map {path}: {exc.strerror or exc}') from None
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise LabelMapError(f'label map {path} is not valid YAML: {exc}') from None
        return cls(config, source=str(path))

    def to_learning(self, raw: np.ndarray) -> np.ndarray:
        """Map raw labels to learning ids.

        Args:
            raw: (N,) (or any shape) integer array of raw labels, e.g. uint32 straight from a ``.label`` file;
                only the lower 16 bits (the semantic class) are used.

        Returns:
            uint8 array of the same shape with learning ids in ``0..num_classes-1``. Raw ids the map does not
            know become ``ignore_index``; a :class:`UnknownLabelWarning` says how many points and which ids.
        """
        raw = np.asarray(raw)
        if raw.dtype.kind not in 'ui':
            raise ValueError(f'raw labels must be an integer array, got dtype {raw.dtype}')
        if raw.dtype.kind == 'i' and raw.size and raw.min() < 0:
            raise ValueError('raw labels must be non-negative')
        cls_ids = (raw & RAW_CLASS_MASK).astype(np.intp, copy=False)
        known = self._known[cls_ids]
        if not known.all():
            unknown = ~known
            count = int(np.count_nonzero(unknown))
            ids = np.unique(cls_ids[unknown])
            self.unknown_points += count
            shown = ', '.join(str(i) for i in ids[:10]) + (' ...' if ids.size > 10 else '')
            warnings.warn(
                f'{count} point(s) with raw label ids unknown to {self.source} ({shown}) mapped to '
                f'{self.ignore_index} ({self.names[self.ignore_index]})',
                UnknownLabelWarning,
                stacklevel=2,
            )
        return self._lut[cls_ids]

    def _check_learning(self, learning: np.ndarray) -> np.ndarray:
        learning = np.asarray(learning)
        if learning.dtype.kind not in 'ui':
            raise ValueError(f'learning ids must be an integer array, got dtype {learning.dtype}')
        if learning.size and (learning.min() < 0 or learning.max() >= self.num_classes):
            raise ValueError(
                f'learning ids must be in 0..{self.num_classes - 1}, got {learning.min()}..{learning.max()}'
            )
        return learning.astype(np.intp, copy=False)

    def to_raw(self, learning: np.ndarray) -> np.ndarray:
        """Map learning ids (any integer array, values 0..num_classes-1) to representative raw ids (uint32)."""
        return self._inv[self._check_learning(learning)]

    def colorize(self, learning: np.ndarray) -> np.ndarray:
        """RGB colours of learning ids: (N,) integer array -> (N, 3) uint8."""
        return self.colors[self._check_learning(learning)]

    def histogram(self, learning: np.ndarray) -> dict[str, int]:
        """Point count per class name for learning ids (classes with no points are left out)."""
        counts = np.bincount(self._check_learning(learning).ravel(), minlength=self.num_classes)
        return {self.names[i]: int(c) for i, c in enumerate(counts) if c}

    def __repr__(self) -> str:
        """Short description."""
        return f'LabelMap({self.num_classes} classes from {self.source})'
