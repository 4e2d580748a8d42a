r"""``pu-ros train pseudo-labels``: self-training labels for unlabelled scans from a model's confident predictions.

::

    pu-ros train pseudo-labels --checkpoint models/segmentation_2dpass_3d.pt \
        --data ../shared/data/semantickitti/sequences/00 --frames 3-9 --sequence 50 --out /tmp/pseudo_r1
    pu-ros train pseudo-labels --checkpoint models/segmentation_2dpass_3d.pt \
        --data ../shared/data/kitti_object/training --sequence 51 --boxes --out /tmp/pseudo_r1

What it does, per invocation (one source folder, any KITTI layout :func:`pu_ros.data.kitti.open_kitti` reads):

1. the teacher predicts every scan (optionally voting over ``--tta`` variants), giving per point a class and its
   probability (the confidence);
2. **per-class thresholds** (class-balanced, after CBST, Zou et al. ECCV 2018): for each class, the confidence
   that keeps the ``--keep-fraction`` most confident of the points predicted as that class over all scans of
   the invocation, clamped to ``[--min-confidence, --max-confidence]``. A single global threshold would keep
   almost only road and building; per-class quantiles keep the rare classes in proportion;
3. points under their class's threshold, and points outside the network's range, become ``unlabeled`` (raw 0,
   learning id 0, ignored by the losses);
4. with ``--boxes`` (KITTI object layout with ``label_2``): points inside a 3D box get the box's class
   (Car/Van -> car, Truck -> truck, Pedestrian/Person_sitting -> person, Cyclist -> bicyclist, Tram ->
   other-vehicle), except the lowest 0.15 m of the box (ground). These are real annotations, not predictions;
5. writes ``OUT/sequences/SEQ/`` in the SemanticKITTI layout: ``velodyne/`` and image files as symbolic links to
   the source, ``labels/FRAME.label`` (raw ids through the label map, instance 0), ``calib.txt`` (``P0..P3``,
   ``Tr``; object frames: ``Tr = R0_rect · Tr_velo_to_cam``), ``times.txt``, and ``pseudo_labels.json`` with
   the thresholds and per-class counts. The normal dataset (``--data OUT``) reads it.

Iterate by running it again with the retrained model's checkpoint (round 2) into a new folder. On scans that have
ground truth, the summary also scores the pseudo-labels (``ground_truth``); with ``--thresholds`` another run's
thresholds are applied, e.g. to check round-1 labels on the held-out scan.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys

import numpy as np

# KITTI object classes -> SemanticKITTI raw ids
BOX_CLASSES = {'Car': 10, 'Van': 10, 'Truck': 18, 'Pedestrian': 30, 'Person_sitting': 30, 'Cyclist': 31, 'Tram': 20}
BOX_GROUND_MARGIN = 0.15  # m at the bottom of a box left to the prediction (ground)


def class_thresholds(pred: np.ndarray, conf: np.ndarray, num_classes: int, keep_fraction: float,
                     min_confidence: float, max_confidence: float = 0.95) -> np.ndarray:
    """Class-balanced confidence thresholds.

    Args:
        pred: (N,) int64 predicted learning ids (over all scans).
        conf: (N,) float confidence of each prediction.
        num_classes: C.
        keep_fraction: fraction of each class's predictions to keep (the most confident ones), in (0, 1].
        min_confidence: lower bound of every threshold.
        max_confidence: upper bound of every threshold (so a very sure class still keeps its confident points).

    Returns:
        (C,) float64 thresholds; classes never predicted get ``max_confidence``.
    """
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f'keep_fraction must be in (0, 1], got {keep_fraction}')
    if not 0.0 <= min_confidence <= max_confidence <= 1.0:
        raise ValueError(f'need 0 <= min_confidence <= max_confidence <= 1, got {min_confidence}, {max_confidence}')
    thr = np.full(num_classes, float(max_confidence))
    for c in np.unique(pred):
        q = np.quantile(conf[pred == c], 1.0 - keep_fraction)
        thr[int(c)] = float(np.clip(q, min_confidence, max_confidence))
    return thr


def apply_thresholds(pred: np.ndarray, conf: np.ndarray, thresholds: np.ndarray, ignore_index: int = 0) -> np.ndarray:
    """(N,) learning ids with ``ignore_index`` where ``conf < thresholds[pred]``."""
    out = np.asarray(pred, dtype=np.int64).copy()
    out[np.asarray(conf) < thresholds[out]] = ignore_index
    return out


def points_in_boxes(points: np.ndarray, calib, objects, ground_margin: float = BOX_GROUND_MARGIN) -> np.ndarray:
    """Raw SemanticKITTI id of the KITTI object box each point falls in (0 = none).

    Args:
        points: (N, >=3) LiDAR points.
        calib: :class:`~pu_ros.geometry.calibration.Calibration` whose ``T_cam_lidar`` maps LiDAR points into the
            rectified camera frame (object layout: ``R0_rect · Tr_velo_to_cam``).
        objects: list of :class:`~pu_ros.data.kitti.ObjectLabel` (classes outside :data:`BOX_CLASSES` skipped).
        ground_margin: metres at the bottom of each box that stay unassigned.

    Returns:
        (N,) int64 raw ids.
    """
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    cam = xyz @ calib.T_cam_lidar[:3, :3].T + calib.T_cam_lidar[:3, 3]
    out = np.zeros(xyz.shape[0], np.int64)
    for obj in objects:
        raw = BOX_CLASSES.get(obj.type)
        if raw is None:
            continue
        h, w, length = obj.dimensions
        d = cam - obj.location  # camera frame: x right, y down, z forward; location = bottom centre
        c, s = np.cos(obj.rotation_y), np.sin(obj.rotation_y)
        lx = c * d[:, 0] - s * d[:, 2]  # R_y(ry)^T d
        lz = s * d[:, 0] + c * d[:, 2]
        inside = (np.abs(lx) <= length / 2) & (np.abs(lz) <= w / 2) & (d[:, 1] >= -h) & (d[:, 1] <= -ground_margin)
        out[inside] = raw
    return out


def _teacher_probs(model, cfg, points: np.ndarray, device, tta: int):
    """(N, C) float32 probabilities (zeros outside the range) and (N,) bool in-range mask."""
    import torch

    from pu_ros.ops.voxelize import in_range_mask
    from pu_ros.training.eval_segmentation import predict_probs

    inside = np.asarray(in_range_mask(points, cfg), dtype=bool)
    probs = np.zeros((points.shape[0], cfg.num_classes), np.float32)
    pts = torch.from_numpy(np.ascontiguousarray(points[inside], dtype=np.float32)).to(device)
    batch = {'points': pts, 'batch_idx': torch.zeros(pts.shape[0], dtype=torch.int64, device=device), 'batch_size': 1}
    with torch.inference_mode():
        probs[inside] = predict_probs(model, batch, cfg, tta=tta).cpu().numpy()
    return probs, inside


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    os.symlink(Path(src).resolve(), dst)


def _write_calib(path: Path, seq, frame_index: int) -> None:
    """``calib.txt`` in the odometry form: P0..P3 of the source and ``Tr`` = its LiDAR -> (rectified) camera."""
    from pu_ros.data.kitti import read_calib_file

    if seq.layout == 'odometry':
        text = (seq.path / 'calib.txt').read_text()
    else:
        raw = read_calib_file(seq.path / 'calib' / f'{seq.frame_ids[frame_index]}.txt')
        tr = seq.calib_for(frame_index).T_cam_lidar[:3]
        lines = [f'P{k}: ' + ' '.join(f'{v:.12e}' for v in np.asarray(raw[f'P{k}']).ravel()) for k in range(4)
                 if f'P{k}' in raw]
        lines.append('Tr: ' + ' '.join(f'{v:.12e}' for v in tr.ravel()))
        text = '\n'.join(lines) + '\n'
    path.write_text(text)


def parse_frames(spec: str | None, available: list[str]) -> list[str]:
    """Frame ids from ``'3-9'``, ``'000003,000005'`` or None (all); ids must exist in ``available``."""
    if not spec:
        return list(available)
    wanted: list[int] = []
    for part in (p.strip() for p in spec.split(',')):
        if not part:
            continue
        lo, sep, hi = part.partition('-')
        wanted += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    by_num = {int(f): f for f in available}
    missing = [w for w in wanted if w not in by_num]
    if missing:
        raise ValueError(f'frame(s) {missing[:5]} not found (have {available[:3]}...)')
    return [by_num[w] for w in sorted(set(wanted))]


def generate(checkpoint, source, out, sequence: str, frames: str | None = None, tta: int = 1,
             keep_fraction: float = 0.8, min_confidence: float = 0.5, max_confidence: float = 0.95,
             boxes: bool = False, device=None, progress: bool = True, thresholds=None) -> dict:
    """Write pseudo-labels of the scans of ``source`` to ``out/sequences/<sequence>`` (see the module docstring).

    ``thresholds``: a ``pseudo_labels.json`` path (or mapping class name -> threshold) whose thresholds are used
    instead of computing them from these scans (e.g. to check one round's labels on a labelled scan).

    Returns:
        The summary written to ``pseudo_labels.json``: thresholds per class name, kept points per class,
        points kept / total, box points, frames; when the source scans have ground truth, also
        ``ground_truth``: accuracy and mIoU of the kept pseudo-labels and of all predictions, on the labelled
        in-range points.
    """
    import torch
    from tqdm import tqdm

    from pu_ros.data.kitti import open_kitti
    from pu_ros.data.labels import LabelMap
    from pu_ros.inference.segmenter import load_segmentor
    from pu_ros.ops.device import resolve_device
    from pu_ros.training.metrics import ConfusionMatrix

    dev = torch.device(resolve_device(device))
    model, cfg, _ = load_segmentor(checkpoint, dev)
    label_map = LabelMap.load()
    seq = open_kitti(source, camera=None)
    chosen = parse_frames(frames, seq.frame_ids)
    index = {f: i for i, f in enumerate(seq.frame_ids)}
    seq_name = str(sequence).zfill(2)
    folder = Path(out) / 'sequences' / seq_name

    preds, confs, box_ids, sizes = [], [], [], []
    for fid in tqdm(chosen, desc='teacher', unit='scan', file=sys.stderr, disable=not progress):
        frame = seq[index[fid]]
        probs, inside = _teacher_probs(model, cfg, frame.points, dev, tta)
        probs[:, cfg.ignore_index] = -1.0  # never predict ignore
        pred = probs.argmax(1).astype(np.int64)
        conf = probs[np.arange(pred.size), pred]
        pred[~inside] = cfg.ignore_index
        conf[~inside] = 0.0
        preds.append(pred)
        confs.append(conf)
        sizes.append(pred.size)
        objs = seq.object_labels(index[fid]) if boxes else None
        box_ids.append(points_in_boxes(frame.points, frame.calib, objs) if objs else None)
    all_pred, all_conf = np.concatenate(preds), np.concatenate(confs)
    valid = all_pred != cfg.ignore_index
    if thresholds is not None:
        given = thresholds if isinstance(thresholds, dict) else json.loads(Path(thresholds).read_text())
        given = given.get('thresholds', given)
        thr = np.array([float(given.get(n, max_confidence)) for n in label_map.names])
    else:
        thr = class_thresholds(all_pred[valid], all_conf[valid], cfg.num_classes, keep_fraction, min_confidence,
                               max_confidence)

    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'labels').mkdir(exist_ok=True)
    kept_counts = np.zeros(cfg.num_classes, np.int64)
    n_box = 0
    cm_kept, cm_all = ConfusionMatrix(cfg.num_classes, cfg.ignore_index), ConfusionMatrix(cfg.num_classes,
                                                                                            cfg.ignore_index)
    for k, fid in enumerate(chosen):
        i = index[fid]
        learn = apply_thresholds(preds[k], confs[k], thr, cfg.ignore_index)
        if seq.has_label(i):  # a labelled scan: how good are the pseudo-labels?
            gt = label_map.to_learning(seq[i].labels).astype(np.int64)
            scored = (gt != cfg.ignore_index) & (preds[k] != cfg.ignore_index)
            cm_all.update(preds[k][scored], gt[scored])
            kept = scored & (learn != cfg.ignore_index)
            cm_kept.update(learn[kept], gt[kept])
        if box_ids[k] is not None:
            hit = box_ids[k] > 0
            learn[hit] = label_map.to_learning(box_ids[k][hit].astype(np.uint32))
            n_box += int(hit.sum())
        kept_counts += np.bincount(learn, minlength=cfg.num_classes)[: cfg.num_classes]
        label_map.to_raw(learn).astype('<u4').tofile(folder / 'labels' / f'{fid}.label')
        _link(seq._scans[i], folder / 'velodyne' / f'{fid}.bin')
        for cam in ('image_0', 'image_2'):
            img = seq.path / cam / f'{fid}.png'
            if img.is_file():
                _link(img, folder / cam / f'{fid}.png')
    _write_calib(folder / 'calib.txt', seq, index[chosen[0]])
    frame_nums = [int(f) for f in chosen]
    times = np.zeros(max(frame_nums) + 1)
    times[frame_nums] = seq.stamps[[index[f] for f in chosen]]
    np.savetxt(folder / 'times.txt', times, fmt='%.6e')
    names = label_map.names
    summary = {
        'checkpoint': str(checkpoint), 'source': str(source), 'frames': chosen, 'tta': tta,
        'keep_fraction': keep_fraction, 'min_confidence': min_confidence, 'max_confidence': max_confidence,
        'thresholds': {names[c]: round(float(thr[c]), 4) for c in range(cfg.num_classes) if c != cfg.ignore_index},
        'kept_points': {names[c]: int(kept_counts[c]) for c in range(cfg.num_classes) if kept_counts[c]},
        'points_total': int(sum(sizes)), 'points_labelled': int(kept_counts[1:].sum()) if cfg.ignore_index == 0
        else int(kept_counts.sum() - kept_counts[cfg.ignore_index]),
        'box_points': n_box,
    }
    if cm_all.conf.sum():
        summary['ground_truth'] = {
            'points': int(cm_all.conf.sum()), 'kept': int(cm_kept.conf.sum()),
            'accuracy_kept': cm_kept.accuracy(), 'accuracy_all': cm_all.accuracy(),
            'miou_kept': cm_kept.miou(), 'miou_all': cm_all.miou(),
        }
    (folder / 'pseudo_labels.json').write_text(json.dumps(summary, indent=2))
    return summary


# ------------------------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pu-ros train pseudo-labels``."""
    parser.add_argument('--checkpoint', required=True, help='teacher: training checkpoint or exported weights')
    parser.add_argument('--data', required=True, metavar='FOLDER',
                        help='one KITTI folder: an odometry sequence (sequences/XX) or object training/ folder')
    parser.add_argument('--out', required=True, help='output root (SemanticKITTI layout: OUT/sequences/SEQ)')
    parser.add_argument('--sequence', required=True, help='sequence name to write, e.g. 50')
    parser.add_argument('--frames', default=None, help="frames to label, e.g. '3-9' or '000003,000005' (default all)")
    parser.add_argument('--tta', type=int, default=1, help='teacher test-time-augmentation votes')
    parser.add_argument('--keep-fraction', type=float, default=0.8,
                        help='per class, the fraction of its most confident predictions kept')
    parser.add_argument('--min-confidence', type=float, default=0.5, help='lower bound of every class threshold')
    parser.add_argument('--max-confidence', type=float, default=0.95, help='upper bound of every class threshold')
    parser.add_argument('--boxes', action='store_true', help='KITTI object label_2 boxes override the prediction')
    parser.add_argument('--thresholds', default=None, metavar='JSON',
                        help="use the thresholds of another run's pseudo_labels.json (e.g. to score them on a "
                             'labelled scan)')
    parser.add_argument('--device', default=None, choices=['cpu', 'cuda', 'auto'])
    parser.add_argument('--no-progress', action='store_true')


def run(args) -> int:
    """Entry point of ``pu-ros train pseudo-labels``; returns the exit status."""
    try:
        summary = generate(args.checkpoint, args.data, args.out, args.sequence, frames=args.frames, tta=args.tta,
                           keep_fraction=args.keep_fraction, min_confidence=args.min_confidence,
                           max_confidence=args.max_confidence, boxes=args.boxes, device=args.device,
                           progress=not args.no_progress, thresholds=args.thresholds)
    except (ValueError, FileNotFoundError) as exc:
        print(f'pu-ros train pseudo-labels: {exc}', file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0
