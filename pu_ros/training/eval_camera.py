r"""Segmentation inside the camera's view: the 3D head against the fused (camera) head, per class.

::

    python -m pu_ros.training.eval_camera --data ../shared/data/semantickitti --frames 00/000002 \
        --checkpoint models/segmentation_2dpass_3d.pt --checkpoint models/segmentation_2dpass_fused.pt

Only points that project into the frame's image (``image_2`` when the frame has one, else the grey ``image_0``
replicated to three channels) and have a ground-truth class are counted, so every column is measured on the
same points. Each checkpoint gives a ``3d`` column; one with the 2D branch also gives ``fused`` (the fused
head's prediction, which is what ``Segmenter(fused=True)`` returns for those points). The table is Markdown; each
column's mIoU is over the classes present in the ground truth or in that column's predictions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys

import numpy as np


def camera_confusions(checkpoints, data, frames, device=None, tta: int = 1, progress: bool = True) -> dict:
    """Confusion matrices over the labelled points inside the camera view.

    Args:
        checkpoints: checkpoint paths.
        data: dataset root(s).
        frames: split description (e.g. ``'00/000002'``).
        device: torch device name or None (auto).
        tta: test-time-augmentation votes.
        progress: tqdm bar.

    Returns:
        dict ``'<checkpoint name>:<head>' -> ConfusionMatrix`` (insertion order: checkpoints, then 3d/fused).
    """
    import torch
    from tqdm import tqdm

    from pu_ros.data.semantic_dataset import SemanticKittiDataset, batch_to_device, collate
    from pu_ros.inference.segmenter import argmax_valid, load_segmentor
    from pu_ros.networks.checkpoint import load_checkpoint
    from pu_ros.ops.device import resolve_device
    from pu_ros.training.eval_segmentation import predict_probs
    from pu_ros.training.metrics import ConfusionMatrix

    dev = torch.device(resolve_device(device))
    out = {}
    for path in checkpoints:
        meta = load_checkpoint(path)['meta']
        heads = ['3d', 'fused'] if '2d' in meta.get('branches', ['3d', '2d']) else ['3d']
        for head in heads:
            fused = head == 'fused'
            try:
                model, cfg, _ = load_segmentor(path, dev, fused=fused)
            except ValueError:
                if fused:
                    continue
                raise
            ds = SemanticKittiDataset(data, frames, cfg, train=False, use_image=True)
            cm = ConfusionMatrix(cfg.num_classes, cfg.ignore_index)
            with torch.inference_mode():
                for i in tqdm(range(len(ds)), desc=f'{Path(path).name}:{head}', file=sys.stderr,
                              disable=not progress):
                    sample = ds[i]
                    if sample.pix_point_idx.size == 0:
                        continue
                    batch = collate([sample])
                    batch.pop('meta')
                    probs = predict_probs(model, batch_to_device(batch, dev), cfg, tta=tta, fused=fused)
                    pred = argmax_valid(probs, cfg.ignore_index).cpu().numpy()
                    view = np.unique(sample.pix_point_idx)
                    cm.update(pred[view], sample.labels[view])
            out[f'{Path(path).name}:{head}'] = cm
    return out


def format_table(cms: dict, names) -> str:
    """Markdown table: one row per class present in any entry, one IoU column per entry, then mIoU and accuracy.

    Each column's mIoU follows ``pu-ros eval segmentation``: the mean over the classes present in the ground truth
    or in *that column's* predictions (``-`` in a cell: neither), the number of classes given in brackets.
    """
    first = next(iter(cms.values()))
    ign = first.ignore_index
    present = np.zeros(first.num_classes, bool)
    for cm in cms.values():
        present |= cm.present('gt_or_pred')
    if ign is not None:
        present[ign] = False
    lines = ['| class | gt points | ' + ' | '.join(cms) + ' |', '|---|---:|' + '---:|' * len(cms)]
    for c in np.flatnonzero(present):
        cells = ['-' if not cm.present('gt_or_pred')[c] else f'{100 * np.nan_to_num(cm.iou()[c]):.2f}'
                 for cm in cms.values()]
        lines.append(f'| {names[c]} | {int(first.gt_counts[c])} | ' + ' | '.join(cells) + ' |')
    lines.append('| **mIoU** | | ' + ' | '.join(
        f'**{100 * cm.miou():.2f}** ({int(cm.present("gt_or_pred").sum())})' for cm in cms.values()) + ' |')
    lines.append(f'| **accuracy** | {int(first.conf.sum())} | '
                 + ' | '.join(f'**{100 * cm.accuracy():.2f}**' for cm in cms.values()) + ' |')
    return '\n'.join(lines)


def main(argv=None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog='python -m pu_ros.training.eval_camera', description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint', action='append', required=True, help='checkpoint (repeatable)')
    parser.add_argument('--data', action='append', required=True, metavar='ROOT', help='dataset root (repeatable)')
    parser.add_argument('--frames', required=True, help='frames, e.g. 00/000002')
    parser.add_argument('--tta', type=int, default=1)
    parser.add_argument('--device', default=None, choices=['cpu', 'cuda', 'auto'])
    parser.add_argument('--out', default=None, help='write the IoU per column as JSON here')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    from pu_ros.data.labels import LabelMap

    try:
        cms = camera_confusions(args.checkpoint, args.data, args.frames, args.device, args.tta,
                                progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f'eval_camera: {exc}', file=sys.stderr)
        return 2
    names = LabelMap.load().names
    print(format_table(cms, names))
    if args.out:
        Path(args.out).write_text(json.dumps({k: cm.summary(names) for k, cm in cms.items()}, indent=2))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
