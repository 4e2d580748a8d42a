"""``pu-ros eval segmentation``: per-class IoU of a segmentation checkpoint on labelled SemanticKITTI scans.

::

    pu-ros eval segmentation --checkpoint models/segmentation_2dpass_3d.pt --data ROOT --frames 00/000002
    pu-ros eval segmentation --checkpoint runs/seg/last.pt --data ROOT --split val --tta 4 --out eval/

What is measured:

- points inside the network's ``point_range`` are predicted (the 3D branch, or the fused 2D+3D head with
  ``--fused``); with ``--tta N`` the scan is also fed flipped/rotated and the softmax probabilities averaged
  (a point that leaves the range in one variant simply gets no vote from it);
- the prediction is the most probable class other than the ignore class;
- the confusion matrix counts in-range points whose ground truth is not ``ignore`` (SemanticKITTI convention);
  points outside the range are not labelled by the network: they are counted and reported, and a second
  accuracy/mIoU treats them as wrong (prediction = ignore) so the range cost is visible;
- mIoU averages the classes present in the ground truth *or* in the predictions (ignore class excluded);
- beside it, the majority-class baseline: every in-range point gets the most frequent class of the training labels
  (from the checkpoint's ``meta.train_class_counts``; without it, of the evaluated ground truth, which is then an
  optimistic baseline), on the same points, averaged over the same classes.

``--out DIR`` saves ``confusion.npy`` and ``confusion.csv`` (rows = ground truth, columns = prediction, class
names as headers) and ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
import sys

import numpy as np


def tta_variants(n: int) -> list[tuple[float, bool]]:
    """The ``n`` test-time transforms as ``(angle about z in rad, flip_y)``; the first is the identity.

    Variant ``k``: ``flip_y = k odd``, ``angle = 2π · (k // 2) / ceil(n / 2)`` (n=2: identity + y-flip, n=4: also
    the half turn, n=8: quarter turns with and without flip).
    """
    n = int(n)
    if n < 1:
        raise ValueError(f'tta must be >= 1, got {n}')
    turns = math.ceil(n / 2)
    return [(2.0 * math.pi * (k // 2) / turns, bool(k % 2)) for k in range(n)]


def _transform(points, angle: float, flip_y: bool):
    """Torch (P, 4) -> (P, 4): mirror y, then rotate about z."""
    import torch

    out = points.clone()
    if flip_y:
        out[:, 1] = -out[:, 1]
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        x, y = out[:, 0].clone(), out[:, 1].clone()
        out[:, 0] = c * x - s * y
        out[:, 1] = s * x + c * y
    return out.to(torch.float32)


def predict_probs(model, batch: dict, cfg, tta: int = 1, fused: bool = False):
    """Class probabilities of every point of a batch, averaged over test-time variants.

    Args:
        model: a ``Segmentor2DPASS`` in eval mode.
        batch: batch dict (tensors on the model's device), points inside ``cfg.point_range``.
        cfg: the model's ``SegmentationConfig``.
        tta: number of variants (:func:`tta_variants`).
        fused: use the fused 2D+3D head (needs ``images``/``pix_*`` in the batch and a 2D branch).

    Returns:
        (P, C) float32 probabilities (rows sum to 1).
    """
    import torch

    from pu_ros.data.semantic_dataset import select_pixel_points
    from pu_ros.ops.voxelize import in_range_mask

    points = batch['points']
    n = points.shape[0]
    probs = torch.zeros((n, cfg.num_classes), dtype=torch.float32, device=points.device)
    votes = torch.zeros(n, dtype=torch.float32, device=points.device)
    for angle, flip in tta_variants(tta):
        pts = _transform(points, angle, flip) if (angle or flip) else points
        mask = in_range_mask(pts, cfg)
        if bool(mask.all()):
            sub = dict(batch, points=pts)
        else:
            idx = torch.nonzero(mask).squeeze(1)
            sub = {**batch, 'points': pts[idx], 'batch_idx': batch['batch_idx'][idx]}
            if 'labels' in batch:
                sub['labels'] = batch['labels'][idx]
            if 'pix_point_idx' in batch:
                sub['pix_point_idx'], sub['pix_uv'] = select_pixel_points(batch['pix_point_idx'], batch['pix_uv'],
                                                                          idx, n)
        logits = model.predict(sub, fused=fused)
        p = torch.softmax(logits.float(), dim=1)
        probs[mask] += p
        votes[mask] += 1.0
    return probs / votes.clamp_min(1.0)[:, None]


def evaluate(model, dataset, device, tta: int = 1, fused: bool = False, info=None, progress: bool = True,
             on_sample=None) -> dict:
    """Confusion matrices of a model over a dataset (sharded over DDP ranks and summed when ``info`` says so).

    Args:
        model: ``Segmentor2DPASS`` (put in eval mode here).
        dataset: a :class:`~pu_ros.data.semantic_dataset.SemanticKittiDataset` in evaluation mode.
        device: torch device.
        tta: test-time variants.
        fused: fused 2D+3D prediction.
        info: :class:`~pu_ros.training.distributed.DistInfo` or None.
        progress: tqdm bar.
        on_sample: optional ``callback(sample, pred (P,) int64 numpy)`` (e.g. to write label files).

    Returns:
        dict: ``confusion`` a :class:`~pu_ros.training.metrics.ConfusionMatrix` over in-range labelled points,
        ``confusion_full`` one with out-of-range labelled points predicted as ignore, ``points`` total points read,
        ``in_range``, ``out_of_range``, ``out_of_range_labelled``, ``frames`` (ints).
    """
    import torch
    from tqdm import tqdm

    from pu_ros.data.semantic_dataset import batch_to_device, collate
    from pu_ros.inference.segmenter import argmax_valid
    from pu_ros.training.distributed import all_reduce_sum
    from pu_ros.training.metrics import ConfusionMatrix

    cfg = model.cfg if hasattr(model, 'cfg') else dataset.cfg
    c = int(cfg.num_classes)
    ign = int(cfg.ignore_index)
    rank, world = (info.rank, info.world_size) if info is not None else (0, 1)
    cm = ConfusionMatrix(c, ign)
    cm_full = ConfusionMatrix(c, ign)
    counters = np.zeros(5, np.int64)  # points, in_range, out_of_range, out_of_range_labelled, frames
    was_training = model.training
    model.eval()
    indices = range(rank, len(dataset), world)
    with torch.inference_mode():
        for i in tqdm(indices, desc='eval', unit='scan', file=sys.stderr, disable=not progress or rank != 0):
            sample = dataset[i]
            batch = collate([sample])
            batch.pop('meta')
            batch = batch_to_device(batch, device)
            probs = predict_probs(model, batch, cfg, tta=tta, fused=fused)
            pred = argmax_valid(probs, ign).cpu().numpy()
            cm_full.merge(cm.update(pred, sample.labels))
            counters += [sample.num_total, sample.points.shape[0], sample.num_out_of_range,
                         sample.num_out_of_range_labelled, 1]
            if sample.num_out_of_range_labelled:
                # out-of-range labelled points count as predicted 'ignore' in the full-scan matrix
                lab = sample.out_of_range_labels
                cm_full.update(np.full(lab.shape, ign, np.int64), lab)
            if on_sample is not None:
                on_sample(sample, pred)
    if was_training:
        model.train()
    if world > 1:
        packed = torch.from_numpy(np.concatenate([cm.conf.ravel(), cm_full.conf.ravel(), counters]))
        packed = all_reduce_sum(packed, info).numpy()
        cm.conf = packed[: c * c].reshape(c, c).copy()
        cm_full.conf = packed[c * c: 2 * c * c].reshape(c, c).copy()
        counters = packed[2 * c * c:]
    return {
        'confusion': cm,
        'confusion_full': cm_full,
        'points': int(counters[0]),
        'in_range': int(counters[1]),
        'out_of_range': int(counters[2]),
        'out_of_range_labelled': int(counters[3]),
        'frames': int(counters[4]),
    }


# ------------------------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pu-ros eval segmentation``."""
    parser.add_argument('--checkpoint', required=True, help='training checkpoint or exported weights (.pt)')
    parser.add_argument('--data', action='append', required=True, metavar='ROOT',
                        help='dataset root with sequences/XX/ (repeatable)')
    parser.add_argument('--split', default='val', help="split of the checkpoint's train config (default: val)")
    parser.add_argument('--frames', default=None,
                        help='explicit frames instead of --split, e.g. 00/000002,00/000003 or 08 (whole sequence)')
    parser.add_argument('--tta', type=int, default=1, help='test-time augmentation votes (1 = off)')
    parser.add_argument('--fused', action='store_true', help='fused 2D+3D prediction (needs images + 2D weights)')
    parser.add_argument('--device', default=None, choices=['cpu', 'cuda', 'auto'], help='default: cuda if available')
    parser.add_argument('--out', default=None, help='folder for confusion.npy/.csv and metrics.json')
    parser.add_argument('--save-labels', action='store_true',
                        help='also write OUT/sequences/XX/predictions/FRAME.label (raw ids; out of range = 0)')
    parser.add_argument('--no-progress', action='store_true', help='no tqdm progress bar')
    parser.add_argument('--corruption', default=None, metavar='NAME[:LEVEL]',
                        help='corrupt every scan first (pu_ros.data.corruptions: fog, wet_ground, snow, motion_blur, '
                             'beam_missing, crosstalk, incomplete_echo, cross_sensor; level 1-3, default 2); '
                             'added points are ignored, dropped points not scored')
    parser.add_argument('--corruption-seed', type=int, default=0, help='seed of --corruption (default 0)')


def run(args) -> int:
    """Entry point of ``pu-ros eval segmentation``; returns the exit status."""
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f'pu-ros eval segmentation: {exc}', file=sys.stderr)
        return 2


def _run(args) -> int:
    import torch

    from pu_ros.data.labels import LabelMap
    from pu_ros.data.semantic_dataset import SemanticKittiDataset
    from pu_ros.inference.segmenter import load_segmentor
    from pu_ros.ops.device import resolve_device
    from pu_ros.training.metrics import format_iou_table, majority_class

    device = torch.device(resolve_device(args.device))
    model, cfg, ckpt = load_segmentor(args.checkpoint, device, fused=args.fused)
    if args.frames:
        split = args.frames
    else:
        splits = (ckpt['config'].get('train') or {}).get('split') or {}
        if args.split not in splits:
            raise ValueError(f'checkpoint {args.checkpoint} has no split {args.split!r} in its train config '
                             f'(has {sorted(splits)}); pass --frames SEQ/FRAME,...')
        split = splits[args.split]
    label_map = LabelMap.load()
    if getattr(args, 'corruption', None):
        from pu_ros.data.corruptions import parse_corruption
        from pu_ros.training.robustness import CorruptedDataset

        if args.save_labels:
            raise ValueError('--save-labels cannot be combined with --corruption '
                             '(the labels would index the corrupted scan)')
        name, level = parse_corruption(args.corruption)
        dataset = CorruptedDataset(args.data, split, cfg, train=False, use_image=args.fused, label_map=label_map,
                                   corruption=name, level=level, corruption_seed=args.corruption_seed)
    else:
        dataset = SemanticKittiDataset(args.data, split, cfg, train=False, use_image=args.fused, label_map=label_map)

    writer = None
    if args.save_labels:
        if not args.out:
            raise ValueError('--save-labels needs --out')

        def writer(sample, pred):
            seq, frame = sample.name.split('/')
            full = np.zeros(sample.num_total, np.int64)
            full[sample.keep] = pred
            folder = Path(args.out) / 'sequences' / seq / 'predictions'
            folder.mkdir(parents=True, exist_ok=True)
            label_map.to_raw(full).astype('<u4').tofile(folder / f'{frame}.label')

    res = evaluate(model, dataset, device, tta=args.tta, fused=args.fused, progress=not args.no_progress,
                   on_sample=writer)
    cm, cm_full = res['confusion'], res['confusion_full']
    conf = cm.conf
    c, ign = cfg.num_classes, cfg.ignore_index
    names = label_map.names if label_map.num_classes == c else [str(i) for i in range(c)]

    train_counts = ckpt['meta'].get('train_class_counts')
    if train_counts is not None and len(train_counts) == c and sum(train_counts[1:]):
        major = majority_class(np.asarray(train_counts), ign)
        major_src = 'most frequent class of the training labels'
    else:
        major = majority_class(cm.gt_counts, ign)
        major_src = 'most frequent class of the evaluated ground truth (optimistic)'
    base = cm.constant_prediction(major)

    present = 'gt_or_pred'
    mask = cm.present(present)
    iou_table = format_iou_table(conf, names, ign, present, baseline=base.conf, baseline_name='majority')
    summary = cm.summary(names, present)
    miou_full, acc_full = cm_full.miou(present), cm_full.accuracy()

    print(f'checkpoint: {args.checkpoint}  (step {ckpt["meta"].get("step")}, '
          f'weights {ckpt["meta"].get("weights_dtype", "as trained")})')
    print(f'frames: {res["frames"]} ({dataset.refs[0].name}{" ..." if len(dataset) > 1 else ""}), '
          f'tta={args.tta}, head={"fused 2D+3D" if args.fused else "3D"}, device={device}')
    if getattr(args, 'corruption', None):
        st = dataset.stats
        print(f'corruption: {dataset.corruption} level {dataset.level} (seed {args.corruption_seed}): '
              f'{st["points_in"]} points read -> {st["points_out"]} ({st["added"]} added, ignored); scored: '
              'surviving labelled points')
    print(iou_table)
    print(f'mIoU over the {int(mask.sum())} classes present in the ground truth or the predictions '
          f'(ignore class "{names[ign]}" excluded)')
    print(f'majority baseline: every point -> "{names[major]}" ({major_src})')
    print(f'points: {res["points"]} read, {res["in_range"]} inside point_range {list(cfg.point_range)} '
          f'({int(conf.sum())} labelled, evaluated), {res["out_of_range"]} outside (not labelled by the network; '
          f'{res["out_of_range_labelled"]} of them have a ground-truth class)')
    print(f'counting out-of-range labelled points as wrong: mIoU {100 * miou_full:.2f}, '
          f'accuracy {100 * acc_full:.2f}')

    metrics = {
        'checkpoint': str(args.checkpoint),
        'frames': [r.name for r in dataset.refs],
        'tta': args.tta,
        'corruption': getattr(args, 'corruption', None),
        'fused': bool(args.fused),
        'miou': summary['miou'],
        'miou_classes': 'present in ground truth or predictions, ignore excluded',
        'accuracy': summary['accuracy'],
        'iou': summary['iou'],
        'baseline': {'class': names[major], 'source': major_src, 'miou': base.miou(classes=mask),
                     'accuracy': base.accuracy()},
        'full_scan': {'miou': miou_full, 'accuracy': acc_full},
        'points': {k: res[k] for k in ('points', 'in_range', 'out_of_range', 'out_of_range_labelled')},
        'evaluated_points': summary['points'],
    }
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / 'confusion.npy', conf)
        header = 'gt\\pred,' + ','.join(names)
        rows = [f'{names[i]},' + ','.join(str(int(v)) for v in conf[i]) for i in range(c)]
        (out / 'confusion.csv').write_text(header + '\n' + '\n'.join(rows) + '\n')
        (out / 'metrics.json').write_text(json.dumps(metrics, indent=2))
        print(f'wrote {out / "confusion.npy"}, {out / "confusion.csv"}, {out / "metrics.json"}')
    return 0
