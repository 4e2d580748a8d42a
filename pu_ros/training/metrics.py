"""Semantic segmentation metrics: confusion matrix, per-class IoU, mIoU, overall accuracy.

Conventions:
- The confusion matrix ``conf`` is (C, C) int64 with rows = ground truth and columns = prediction, so
  ``conf[g, p]`` counts points of true class ``g`` predicted as ``p``.
- Points whose ground truth is ``ignore_index`` are not counted (as in the SemanticKITTI benchmark). A
  prediction of ``ignore_index`` on a labelled point is counted (it is a false negative of the true class).
- ``mean_iou`` averages over the evaluated classes (every class except ``ignore_index``) that are *present*: with
  ``present='gt'`` those with ground-truth points, with ``present='gt_or_pred'`` (default) those appearing in the
  ground truth or in the predictions, so a class predicted but absent from the ground truth counts as IoU 0.
  ``present='all'`` averages over every evaluated class (the benchmark convention on a full test set).

Everything is vectorised (one ``np.bincount`` per update); no per-point Python loops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PRESENT_MODES = ('gt_or_pred', 'gt', 'all')


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None = None):
    """Confusion matrix of one set of predictions.

    Args:
        pred: (N,) integer array of predicted class ids in ``0..num_classes-1``.
        target: (N,) integer array of ground-truth class ids in ``0..num_classes-1``.
        num_classes: number of classes C.
        ignore_index: ground-truth id whose points are left out (``None``: keep all).

    Returns:
        (C, C) int64 array, rows = ground truth, columns = prediction.

    Raises:
        ValueError: shapes differ, non-integer input, or ids outside ``0..C-1``.
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f'pred and target must have the same shape, got {pred.shape} and {target.shape}')
    if pred.dtype.kind not in 'ui' or target.dtype.kind not in 'ui':
        raise ValueError(f'pred and target must be integer arrays, got {pred.dtype} and {target.dtype}')
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ValueError(f'num_classes must be positive, got {num_classes}')
    pred = pred.ravel().astype(np.int64, copy=False)
    target = target.ravel().astype(np.int64, copy=False)
    if ignore_index is not None:
        keep = target != ignore_index
        pred = pred[keep]
        target = target[keep]
    for name, arr in (('pred', pred), ('target', target)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f'{name} ids must be in 0..{num_classes - 1}, got {arr.min()}..{arr.max()}')
    flat = np.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64, copy=False)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """Intersection over union per class.

    Args:
        conf: (C, C) confusion matrix (rows = ground truth).

    Returns:
        (C,) float64 IoU ``tp / (tp + fp + fn)``; NaN for a class with no ground truth and no prediction.
    """
    conf = _check_conf(conf)
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(axis=0) + conf.sum(axis=1) - np.diag(conf)
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def present_classes(conf: np.ndarray, ignore_index: int | None = 0, present: str = 'gt_or_pred') -> np.ndarray:
    """Classes that enter the mean IoU.

    Args:
        conf: (C, C) confusion matrix.
        ignore_index: class never averaged (``None``: none).
        present: ``'gt_or_pred'``, ``'gt'`` or ``'all'`` (see the module docstring).

    Returns:
        (C,) bool mask.
    """
    conf = _check_conf(conf)
    if present not in PRESENT_MODES:
        raise ValueError(f'present must be one of {PRESENT_MODES}, got {present!r}')
    n = conf.shape[0]
    if present == 'all':
        mask = np.ones(n, dtype=bool)
    elif present == 'gt':
        mask = conf.sum(axis=1) > 0
    else:
        mask = (conf.sum(axis=1) + conf.sum(axis=0)) > 0
    if ignore_index is not None and 0 <= ignore_index < n:
        mask[ignore_index] = False
    return mask


def mean_iou(conf: np.ndarray, ignore_index: int | None = 0, present: str = 'gt_or_pred',
             classes: np.ndarray | None = None) -> float:
    """Mean IoU over the present classes (see :func:`present_classes`); NaN when no class is present.

    Args:
        conf: (C, C) confusion matrix.
        ignore_index: class left out of the average.
        present: which classes are averaged: ``'gt_or_pred'``, ``'gt'`` or ``'all'``.
        classes: optional (C,) bool mask of the classes to average instead of ``present`` (e.g. the classes present
            for another model, to compare a baseline on the same classes).

    Returns:
        float mIoU in [0, 1]. A class with an empty union counts as 0.
    """
    if classes is None:
        mask = present_classes(conf, ignore_index, present)
    else:
        mask = np.asarray(classes, dtype=bool)
        if mask.shape != (np.asarray(conf).shape[0],):
            raise ValueError(f'classes must be a ({np.asarray(conf).shape[0]},) bool mask, got shape {mask.shape}')
    if not mask.any():
        return float('nan')
    iou = np.nan_to_num(iou_per_class(conf), nan=0.0)
    return float(iou[mask].mean())


def overall_accuracy(conf: np.ndarray, ignore_index: int | None = 0) -> float:
    """Fraction of counted points whose prediction equals the ground truth (NaN when nothing was counted).

    Args:
        conf: (C, C) confusion matrix.
        ignore_index: ground-truth row left out (normally already excluded when the matrix was built).
    """
    conf = _check_conf(conf)
    if ignore_index is not None and 0 <= ignore_index < conf.shape[0]:
        conf = conf.copy()
        conf[ignore_index, :] = 0
    total = conf.sum()
    return float(np.trace(conf) / total) if total else float('nan')


def _check_conf(conf) -> np.ndarray:
    conf = np.asarray(conf)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f'confusion matrix must be square (C, C), got shape {conf.shape}')
    return conf


class ConfusionMatrix:
    """Running confusion matrix over many scans.

    Attributes:
        num_classes: C.
        ignore_index: ground-truth id left out of the counts.
        conf: (C, C) int64 accumulated counts (rows = ground truth).
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 0):
        """Start with all counts zero."""
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.conf = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Add one scan: ``pred``, ``target`` (N,) integer arrays. Returns that scan's own (C, C) matrix."""
        conf = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self.conf += conf
        return conf

    def merge(self, conf: np.ndarray) -> None:
        """Add a (C, C) matrix computed elsewhere (e.g. on another rank)."""
        conf = _check_conf(conf)
        if conf.shape != self.conf.shape:
            raise ValueError(f'confusion matrix shape {conf.shape} does not match {self.conf.shape}')
        self.conf += conf.astype(np.int64)

    @property
    def gt_counts(self) -> np.ndarray:
        """(C,) int64 number of counted points per ground-truth class."""
        return self.conf.sum(axis=1)

    def iou(self) -> np.ndarray:
        """(C,) float64 IoU per class (NaN where the union is empty)."""
        return iou_per_class(self.conf)

    def present(self, present: str = 'gt_or_pred') -> np.ndarray:
        """(C,) bool mask of the classes that enter the mean IoU (:func:`present_classes`)."""
        return present_classes(self.conf, self.ignore_index, present)

    def miou(self, present: str = 'gt_or_pred', classes: np.ndarray | None = None) -> float:
        """Mean IoU over present classes (or over the (C,) bool mask ``classes``), ignore class excluded."""
        return mean_iou(self.conf, self.ignore_index, present, classes)

    def accuracy(self) -> float:
        """Overall accuracy over counted points."""
        return overall_accuracy(self.conf, self.ignore_index)

    def summary(self, names: Sequence[str] | None = None, present: str = 'gt_or_pred') -> dict:
        """Plain-dict summary (JSON-able): miou, accuracy, points, per-class iou by name (present classes only)."""
        names = list(names) if names is not None else [str(i) for i in range(self.num_classes)]
        iou = self.iou()
        mask = self.present(present)
        return {
            'miou': self.miou(present),
            'miou_classes': present,
            'accuracy': self.accuracy(),
            'points': int(self.conf.sum()),
            'iou': {names[i]: float(np.nan_to_num(iou[i])) for i in np.flatnonzero(mask)},
        }

    def constant_prediction(self, cls: int) -> ConfusionMatrix:
        """The matrix of a predictor that answers ``cls`` for every counted point (e.g. the majority baseline).

        Args:
            cls: predicted class id.

        Returns:
            New :class:`ConfusionMatrix` with the same ground-truth counts, all in column ``cls``.
        """
        cls = int(cls)
        if not 0 <= cls < self.num_classes:
            raise ValueError(f'class {cls} outside 0..{self.num_classes - 1}')
        out = ConfusionMatrix(self.num_classes, self.ignore_index)
        out.conf[:, cls] = self.gt_counts
        if self.ignore_index is not None and 0 <= self.ignore_index < self.num_classes:
            out.conf[self.ignore_index] = 0
        return out


def majority_class(counts: np.ndarray, ignore_index: int | None = 0) -> int:
    """The most frequent class in a (C,) histogram, never ``ignore_index`` (ties: the lowest id)."""
    counts = np.asarray(counts, dtype=np.int64).copy()
    if ignore_index is not None and 0 <= ignore_index < counts.size:
        counts[ignore_index] = -1
    return int(np.argmax(counts))


def format_iou_table(
    conf: np.ndarray,
    names: Sequence[str],
    ignore_index: int | None = 0,
    present: str = 'gt_or_pred',
    baseline: np.ndarray | None = None,
    baseline_name: str = 'baseline',
) -> str:
    """Human-readable per-class IoU table, with an optional baseline column.

    Args:
        conf: (C, C) confusion matrix of the model.
        names: C class names.
        ignore_index: class left out.
        present: which classes enter the mean (see :func:`mean_iou`).
        baseline: optional (C, C) confusion matrix of a reference on the same points.
        baseline_name: column title of the reference.

    Returns:
        Multi-line string: one row per evaluated class (``gt`` points, model IoU, baseline IoU; ``-`` where the
        class is not present), then mIoU and overall accuracy rows.
    """
    conf = _check_conf(conf)
    names = list(names)
    if len(names) != conf.shape[0]:
        raise ValueError(f'{len(names)} names for a {conf.shape[0]}-class confusion matrix')
    iou = iou_per_class(conf)
    mask = present_classes(conf, ignore_index, present)
    gt = conf.sum(axis=1)
    b_iou = iou_per_class(baseline) if baseline is not None else None
    width = max(12, *(len(n) for n in names))
    head = f'{"class":<{width}} {"gt points":>10} {"IoU %":>7}'
    if baseline is not None:
        head += f' {baseline_name[:12]:>12}'
    lines = [head, '-' * len(head)]
    for c in range(conf.shape[0]):
        if ignore_index is not None and c == ignore_index:
            continue
        cell = f'{100 * np.nan_to_num(iou[c]):7.2f}' if mask[c] else f'{"-":>7}'
        row = f'{names[c]:<{width}} {int(gt[c]):>10} {cell}'
        if b_iou is not None:
            row += f' {100 * np.nan_to_num(b_iou[c]):12.2f}' if mask[c] else f' {"-":>12}'
        lines.append(row)
    lines.append('-' * len(head))
    miou_row = f'{"mIoU":<{width}} {f"{int(mask.sum())} cls":>10} {100 * mean_iou(conf, ignore_index, present):7.2f}'
    acc_row = f'{"accuracy":<{width}} {int(gt.sum()):>10} {100 * overall_accuracy(conf, ignore_index):7.2f}'
    if baseline is not None:
        miou_row += f' {100 * mean_iou(baseline, ignore_index, classes=mask):12.2f}'
        acc_row += f' {100 * overall_accuracy(baseline, ignore_index):12.2f}'
    lines += [miou_row, acc_row]
    return '\n'.join(lines)

