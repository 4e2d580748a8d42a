"""Segmentation metrics against slow, obvious twins."""

import numpy as np
import pytest

from pu_ros.training.metrics import (
    ConfusionMatrix,
    confusion_matrix,
    format_iou_table,
    iou_per_class,
    majority_class,
    mean_iou,
    overall_accuracy,
)


def confusion_naive(pred, target, c, ignore_index=None):
    """Slow twin: one point at a time."""
    conf = np.zeros((c, c), np.int64)
    for p, t in zip(pred.tolist(), target.tolist()):
        if ignore_index is not None and t == ignore_index:
            continue
        conf[t, p] += 1
    return conf


def iou_naive(pred, target, c, ignore_index):
    """Slow twin of IoU straight from the sets of points."""
    out = []
    keep = [i for i in range(len(target)) if target[i] != ignore_index]
    for k in range(c):
        inter = sum(1 for i in keep if pred[i] == k and target[i] == k)
        union = sum(1 for i in keep if pred[i] == k or target[i] == k)
        out.append(inter / union if union else float('nan'))
    return np.array(out)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_confusion_and_iou_match_twins(seed):
    rng = np.random.default_rng(seed)
    c = 7
    target = rng.integers(0, c, 500)
    pred = np.where(rng.random(500) < 0.6, target, rng.integers(0, c, 500))
    pred[pred == 5] = 4  # class 5 is never predicted
    conf = confusion_matrix(pred, target, c, ignore_index=0)
    np.testing.assert_array_equal(conf, confusion_naive(pred, target, c, 0))
    np.testing.assert_allclose(iou_per_class(conf), iou_naive(pred, target, c, 0), equal_nan=True)
    twin = iou_naive(pred, target, c, 0)
    present = [k for k in range(1, c) if not np.isnan(twin[k])]
    assert mean_iou(conf, 0) == pytest.approx(np.mean([twin[k] for k in present]))
    keep = target != 0
    assert overall_accuracy(conf, 0) == pytest.approx(np.mean(pred[keep] == target[keep]))


def test_present_modes_and_absent_classes():
    target = np.array([1, 1, 2, 2, 0, 0])
    pred = np.array([1, 3, 2, 2, 3, 1])  # class 3 predicted, absent from the ground truth
    conf = confusion_matrix(pred, target, 5, ignore_index=0)
    assert conf.sum() == 4  # ignore rows dropped
    iou = iou_per_class(conf)
    assert np.isnan(iou[4]) and iou[3] == 0.0
    assert mean_iou(conf, 0, 'gt') == pytest.approx((0.5 + 1.0) / 2)
    assert mean_iou(conf, 0, 'gt_or_pred') == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert mean_iou(conf, 0, 'all') == pytest.approx((0.5 + 1.0) / 4)
    with pytest.raises(ValueError):
        mean_iou(conf, 0, 'bogus')


def test_bad_input_raises():
    with pytest.raises(ValueError, match='same shape'):
        confusion_matrix(np.zeros(3, int), np.zeros(4, int), 3)
    with pytest.raises(ValueError, match='0..2'):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match='integer'):
        confusion_matrix(np.zeros(2), np.zeros(2, int), 3)


def test_accumulator_and_table():
    cm = ConfusionMatrix(4, ignore_index=0)
    a = cm.update(np.array([1, 2, 3]), np.array([1, 2, 2]))
    cm.update(np.array([3, 3]), np.array([3, 0]))
    assert a.sum() == 3 and cm.conf.sum() == 4
    assert cm.accuracy() == pytest.approx(3 / 4)
    s = cm.summary(['unlabeled', 'a', 'b', 'c'])
    assert set(s['iou']) == {'a', 'b', 'c'}
    assert majority_class(np.array([100, 3, 7, 7])) == 2
    base = np.zeros_like(cm.conf)
    base[:, 2] = cm.conf.sum(1)
    table = format_iou_table(cm.conf, ['unlabeled', 'a', 'b', 'c'], baseline=base)
    assert 'mIoU' in table and 'unlabeled' not in table and 'majority' not in table
    assert table.splitlines()[2].startswith('a')


def test_constant_prediction_and_mean_over_given_classes():
    cm = ConfusionMatrix(4, ignore_index=0)
    cm.update(np.array([1, 1, 3, 3, 2]), np.array([1, 2, 2, 3, 0]))
    np.testing.assert_array_equal(cm.gt_counts, [0, 1, 2, 1])
    base = cm.constant_prediction(2)
    np.testing.assert_array_equal(base.conf, [[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 2, 0], [0, 0, 1, 0]])
    assert base.accuracy() == pytest.approx(2 / 4)
    np.testing.assert_array_equal(cm.present(), [False, True, True, True])
    # baseline IoU: class 1 -> 0, class 2 -> 2/4, class 3 -> 0; averaged over the model's present classes
    assert base.miou(classes=cm.present()) == pytest.approx((0 + 0.5 + 0) / 3)
    assert base.miou(classes=np.array([False, False, True, False])) == pytest.approx(0.5)
    assert np.isnan(base.miou(classes=np.zeros(4, bool)))
    with pytest.raises(ValueError, match='bool mask'):
        mean_iou(cm.conf, 0, classes=np.ones(3, bool))
    with pytest.raises(ValueError, match='outside'):
        cm.constant_prediction(4)
