"""``pu-ros eval sim2real``: how well a model trained on synthetic scans only segments real ones.

::

    pu-ros eval sim2real [--frames 40] [--steps 30] [--out runs/sim2real] [--data ../shared/data/semantickitti]

One command, three stages:

1. **generate** ``--frames`` synthetic scans with the current generator (:func:`pu_ros.data.synthetic_writer.
   write_dataset`: drives of ``--frames-per-sequence`` scans 1 s apart, seeds ``--seed``, ``--seed + 1``, ...,
   a process pool) into ``OUT/synth`` (reused when ``--synth DIR`` is given);
2. **train** the 3D-only segmentation network on them only (:func:`pu_ros.training.train_segmentation.train` with
   ``config/train/segmentation.yaml`` and the overrides of :data:`SIM2REAL_OVERRIDES`, then ``--set`` ones;
   hidden size 32, 30 steps of one scan, AdamW): a very short CPU budget (the shared 2-core machine of this
   project), so it measures the *direction* the synthetic data pushes the network, not its ceiling; raise
   ``--steps`` / ``--frames`` where compute allows (the numbers are only comparable at equal settings);
3. **evaluate** on the real labelled scans (default SemanticKITTI 00/000000-000002; never seen in training) with
   :func:`pu_ros.training.eval_segmentation.evaluate`: per-class IoU, mIoU over the classes present in the ground
   truth or the predictions, overall accuracy, majority-class baseline.

Writes ``OUT/sim2real.json`` (config, timings, per-class IoU) and ``OUT/sim2real.md`` (the table and the command).
Nothing real is used for training, BatchNorm statistics included (no recalibration).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import shlex
import sys
import time

import numpy as np

DEFAULT_EVAL_FRAMES = '00/000000,00/000001,00/000002'
SIM2REAL_OVERRIDES = [
    'model.use_image=false',
    'model.hidden_size=32',
    'train.batch_size=1',
    'train.num_workers=0',
    'train.optimizer=adamw',
    'train.lr=0.002',
    'train.weight_decay=0.01',
    'train.warmup_steps=10',
    'train.checkpoint_interval=100000',
    'train.log_interval=10',
    'train.val_interval=0',
    'train.bn_recalibration={split: null, scans: 0}',
]


def default_real_root() -> Path:
    """``$PU_ROS_SHARED_DATA/semantickitti`` or ``../shared/data/semantickitti``."""
    return Path(os.environ.get('PU_ROS_SHARED_DATA', '../shared/data')) / 'semantickitti'


def evaluate_checkpoint(checkpoint, data, frames: str, device=None, progress: bool = False) -> dict:
    """Per-class IoU of a checkpoint on labelled scans (3D head, no TTA).

    Args:
        checkpoint: segmentation checkpoint path.
        data: dataset root(s) holding the frames.
        frames: ``'SEQ/FRAME,...'`` (see :func:`pu_ros.data.semantic_dataset.parse_split`).
        device: torch device name or None (auto).
        progress: tqdm bar.

    Returns:
        dict with ``miou``, ``accuracy``, ``iou`` (name -> IoU of present classes), ``table`` (text),
        ``majority`` (baseline mIoU/accuracy), ``confusion`` ((C, C) list), ``points``.
    """
    import torch

    from pu_ros.data.labels import LabelMap
    from pu_ros.data.semantic_dataset import SemanticKittiDataset
    from pu_ros.inference.segmenter import load_segmentor
    from pu_ros.ops.device import resolve_device
    from pu_ros.training.eval_segmentation import evaluate
    from pu_ros.training.metrics import format_iou_table, majority_class

    dev = torch.device(resolve_device(device))
    model, cfg, ckpt = load_segmentor(checkpoint, dev)
    label_map = LabelMap.load()
    dataset = SemanticKittiDataset(data, frames, cfg, train=False, use_image=False, label_map=label_map)
    res = evaluate(model, dataset, dev, progress=progress)
    cm = res['confusion']
    names = label_map.names
    counts = ckpt['meta'].get('train_class_counts')
    major = majority_class(np.asarray(counts) if counts is not None else cm.gt_counts, cfg.ignore_index)
    base = cm.constant_prediction(major)
    mask = cm.present()
    summary = cm.summary(names)
    return {
        'frames': [r.name for r in dataset.refs],
        'miou': summary['miou'],
        'accuracy': summary['accuracy'],
        'iou': summary['iou'],
        'points': summary['points'],
        'table': format_iou_table(cm.conf, names, cfg.ignore_index, baseline=base.conf, baseline_name='majority'),
        'majority': {'class': names[major], 'miou': base.miou(classes=mask), 'accuracy': base.accuracy()},
        'confusion': cm.conf.tolist(),
    }


def run_sim2real(out, n_frames: int = 40, steps: int = 30, real_root=None, eval_frames: str = DEFAULT_EVAL_FRAMES,
                 seed: int = 0, frames_per_sequence: int = 8, workers: int | None = None, synth_dir=None,
                 overrides: list[str] | None = None, device: str | None = 'cpu', progress: bool = True,
                 style: str = 'kitti') -> dict:
    """Generate, train, evaluate (see the module docstring). Returns the JSON-able result (also written)."""
    from pu_ros.data.synthetic_writer import write_dataset
    from pu_ros.training.train_segmentation import load_config, train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    real_root = Path(real_root) if real_root else default_real_root()
    if not (real_root / 'sequences').is_dir():
        raise FileNotFoundError(f'real labelled data not found at {real_root} (pass --data or set PU_ROS_SHARED_DATA)')
    timings = {}
    t0 = time.time()
    if synth_dir is None:
        synth_dir = out / 'synth'
        info = write_dataset(synth_dir, n_frames, seed=seed, frames_per_sequence=frames_per_sequence,
                             workers=workers, progress=progress, style=style)
        seqs = info['sequences']
    else:
        seqs = sorted(p.name for p in (Path(synth_dir) / 'sequences').iterdir() if p.is_dir())
    timings['generate_s'] = round(time.time() - t0, 1)

    sets = [*SIM2REAL_OVERRIDES, f'train.max_steps={int(steps)}', f'train.seed={int(seed)}',
            'train.split={train: [' + ', '.join(f"'{s}'" for s in seqs) + ']}', *(overrides or [])]
    cfg = load_config(None, sets)
    t0 = time.time()
    summary = train(cfg, [str(synth_dir)], out / 'train', device=device, progress=progress)
    timings['train_s'] = round(time.time() - t0, 1)

    t0 = time.time()
    res = evaluate_checkpoint(summary['checkpoint'], [str(real_root)], eval_frames, device=device, progress=progress)
    timings['eval_s'] = round(time.time() - t0, 1)
    result = {
        'measure': 'sim2real: trained on synthetic scans only, evaluated on real labelled scans',
        'synthetic': {'root': str(synth_dir), 'style': style, 'sequences': seqs, 'scans': int(n_frames),
                      'seed': int(seed),
                      'frames_per_sequence': int(frames_per_sequence)},
        'train': {'steps': int(steps), 'overrides': sets, 'final_losses': summary.get('losses'),
                  'checkpoint': summary['checkpoint']},
        'real': {'root': str(real_root), 'frames': res['frames']},
        'miou': res['miou'], 'accuracy': res['accuracy'], 'iou': res['iou'], 'points': res['points'],
        'majority': res['majority'], 'confusion': res['confusion'], 'timings_s': timings,
        'torch_threads': _threads(),
    }
    (out / 'sim2real.json').write_text(json.dumps(result, indent=2, default=float))
    md = [f'# sim-to-real ({time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})', '',
          f'{n_frames} synthetic scans (style {style}, seed {seed}), {steps} steps, evaluated on '
          f'{", ".join(res["frames"])}.', '',
          '```', res['table'], '```', '',
          f'mIoU {100 * res["miou"]:.2f} %, accuracy {100 * res["accuracy"]:.2f} % '
          f'(majority "{res["majority"]["class"]}": mIoU {100 * res["majority"]["miou"]:.2f} %).', '',
          f'Timings: {timings} on {_threads()} torch thread(s).']
    (out / 'sim2real.md').write_text('\n'.join(md) + '\n')
    result['table'] = res['table']
    return result


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


# ------------------------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pu-ros eval sim2real``."""
    parser.add_argument('--frames', type=int, default=40, help='synthetic scans to generate (default 40)')
    parser.add_argument('--steps', type=int, default=30,
                        help='training steps of one scan each (default 30: ~5 min on 1 idle CPU thread)')
    parser.add_argument('--out', default='runs/sim2real', help='output folder (default runs/sim2real)')
    parser.add_argument('--data', default=None,
                        help='real labelled root with sequences/ (default $PU_ROS_SHARED_DATA/semantickitti)')
    parser.add_argument('--eval-frames', default=DEFAULT_EVAL_FRAMES, help=f'default {DEFAULT_EVAL_FRAMES}')
    parser.add_argument('--seed', type=int, default=0, help='generator and training seed (default 0)')
    parser.add_argument('--frames-per-sequence', type=int, default=8, help='scans per synthetic drive (default 8)')
    parser.add_argument('--workers', type=int, default=None, help='generator processes (default: CPU count)')
    parser.add_argument('--style', default='kitti', choices=['basic', 'kitti'],
                        help="generator style (default kitti; 'basic' = the generator before issue 8)")
    parser.add_argument('--synth', default=None, help='reuse synthetic scans already written under this root')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='extra training config override, e.g. --set model.hidden_size=32')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda', 'auto'], help='default cpu')
    parser.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')


def run(args) -> int:
    """Entry point of ``pu-ros eval sim2real``; returns the exit status."""
    import torch

    from pu_ros.training.common import TrainConfigError

    if args.frames < 1 or args.steps < 1:
        print('pu-ros eval sim2real: --frames and --steps must be >= 1', file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, int(args.threads)))
    try:
        res = run_sim2real(args.out, args.frames, args.steps, args.data, args.eval_frames, args.seed,
                           args.frames_per_sequence, args.workers, args.synth, args.set,
                           None if args.device == 'auto' else args.device, progress=not args.no_progress,
                           style=args.style)
    except (TrainConfigError, ValueError, FileNotFoundError) as exc:
        print(f'pu-ros eval sim2real: {exc}', file=sys.stderr)
        return 2
    print('command: pu-ros ' + ' '.join(shlex.quote(a) for a in sys.argv[1:]))
    print(res['table'])
    print(f'sim2real mIoU {100 * res["miou"]:.2f} %, accuracy {100 * res["accuracy"]:.2f} % '
          f'({res["timings_s"]}); wrote {Path(args.out) / "sim2real.json"} and sim2real.md')
    return 0
