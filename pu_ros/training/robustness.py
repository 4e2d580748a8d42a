r"""``pu-ros eval robustness``: segmentation mIoU under the eight LiDAR corruptions at three severities.

::

    pu-ros eval robustness --checkpoint models/segmentation_2dpass_3d.pt --data ../shared/data/semantickitti \\
        [--frames 00/000000,00/000001,00/000002] [--baseline models/segmentation_2dpass_3d.pt] [--out DIR]

For every corruption ``c`` of :data:`pu_ros.data.corruptions.CORRUPTIONS` and level ``l`` in 1..3, every scan is
corrupted (seed ``--seed`` + a hash of the frame name, so the same scan gets the same corruption in every run) and
segmented; the confusion matrix is summed over the scans. Then, as in Robo3D (Kong et al., ICCV 2023), with
mIoU in [0, 1]:

- corruption error ``CE_c = sum_l (1 - mIoU_{c,l}) / sum_l (1 - mIoU^base_{c,l})`` (in %), ``mCE`` its mean over
  corruptions; the paper's baseline is a MinkUNet, ours is ``--baseline`` (default: the packaged
  ``models/segmentation_2dpass_3d.pt``, so that model has CE = 100 % by definition);
- resilience rate ``RR_c = sum_l mIoU_{c,l} / (3 mIoU_clean)`` (in %), ``mRR`` its mean.

Scored points (stated in the output): the points of the *corrupted* scan inside the network's range whose label
is not ignore. Surviving points keep their ground truth; added points (fog, snow, crosstalk returns) carry the
ignore label and are not scored; dropped points are not scored (they are gone). mIoU averages the classes present
in the ground truth or the predictions of that run.

Writes ``OUT/robustness.csv``, ``OUT/robustness.md`` and ``OUT/robustness.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time
import zlib

import numpy as np

from pu_ros.data.semantic_dataset import SemanticKittiDataset

DEFAULT_FRAMES = '00/000000,00/000001,00/000002'
DEFAULT_BASELINE = 'models/segmentation_2dpass_3d.pt'


class CorruptedDataset(SemanticKittiDataset):
    """A :class:`SemanticKittiDataset` whose scans are corrupted when read (before range filtering).

    Args:
        corruption: name of :data:`pu_ros.data.corruptions.CORRUPTIONS`.
        level: 1..3.
        corruption_seed: base seed; scan ``SEQ/FRAME`` uses ``seed + crc32(name) % 2**16``.
        *args, **kwargs: as :class:`SemanticKittiDataset`.
    """

    def __init__(self, *args, corruption: str, level: int, corruption_seed: int = 0, **kwargs):
        """Index the split and remember the corruption."""
        from pu_ros.data.corruptions import parse_corruption

        super().__init__(*args, **kwargs)
        self.corruption, self.level = parse_corruption(f'{corruption}:{level}')
        self.corruption_seed = int(corruption_seed)
        self.stats = {'points_in': 0, 'points_out': 0, 'added': 0}

    def _read(self, ref):
        from pu_ros.data.corruptions import corrupt

        points, raw, image, calib, source = super()._read(ref)
        if raw is None:
            return points, raw, image, calib, source
        seed = self.corruption_seed + zlib.crc32(ref.name.encode()) % (1 << 16)
        c = corrupt(points, raw, self.corruption, self.level, seed=seed, ignore_label=0)
        self.stats['points_in'] += int(points.shape[0])
        self.stats['points_out'] += int(c.points.shape[0])
        self.stats['added'] += c.num_added
        return c.points, c.labels, image, calib, source


def _miou(model, cfg, data, frames, device, corruption=None, level=None, seed=0, label_map=None):
    from pu_ros.training.eval_segmentation import evaluate

    if corruption is None:
        ds = SemanticKittiDataset(data, frames, cfg, train=False, use_image=False, label_map=label_map)
    else:
        ds = CorruptedDataset(data, frames, cfg, train=False, use_image=False, label_map=label_map,
                              corruption=corruption, level=level, corruption_seed=seed)
    res = evaluate(model, ds, device, progress=False)
    cm = res['confusion']
    out = {'miou': cm.miou(), 'accuracy': cm.accuracy(), 'scored_points': int(cm.conf.sum())}
    if corruption is not None:
        out.update({k: int(v) for k, v in ds.stats.items()})
    return out


def measure(checkpoint, data, frames: str = DEFAULT_FRAMES, corruptions=None, levels=(1, 2, 3), seed: int = 0,
            device=None, progress: bool = True) -> dict:
    """MIoU of one checkpoint on clean and corrupted scans: ``{'clean': {...}, 'runs': {(c, l): {...}}}``."""
    import torch
    from tqdm import tqdm

    from pu_ros.data.corruptions import CORRUPTIONS
    from pu_ros.data.labels import LabelMap
    from pu_ros.inference.segmenter import load_segmentor
    from pu_ros.ops.device import resolve_device

    dev = torch.device(resolve_device(device))
    model, cfg, _ = load_segmentor(checkpoint, dev)
    label_map = LabelMap.load()
    corruptions = list(corruptions or CORRUPTIONS)
    out = {'clean': _miou(model, cfg, data, frames, dev, label_map=label_map), 'runs': {}}
    jobs = [(c, lv) for c in corruptions for lv in levels]
    for c, lv in tqdm(jobs, desc=f'robustness {Path(checkpoint).name}', unit='run', disable=not progress,
                      file=sys.stderr):
        out['runs'][(c, lv)] = _miou(model, cfg, data, frames, dev, c, lv, seed, label_map)
    return out


def summarise(model: dict, baseline: dict, levels=(1, 2, 3)) -> dict:
    """CE and RR per corruption (in %) and their means, from two :func:`measure` results."""
    clean = model['clean']['miou']
    rows = {}
    for c in dict.fromkeys(k[0] for k in model['runs']):
        m = [model['runs'][(c, lv)]['miou'] for lv in levels]
        b = [baseline['runs'][(c, lv)]['miou'] for lv in levels]
        denom = sum(1.0 - v for v in b)
        rows[c] = {'miou': m, 'mean': float(np.mean(m)),
                   'ce': 100.0 * sum(1.0 - v for v in m) / denom if denom > 0 else float('nan'),
                   'rr': 100.0 * sum(m) / (len(levels) * clean) if clean > 0 else float('nan')}
    return {'clean': clean, 'rows': rows, 'mce': float(np.mean([r['ce'] for r in rows.values()])),
            'mrr': float(np.mean([r['rr'] for r in rows.values()]))}


def load_results(path, frames: str, seed: int, needed: list) -> dict:
    """A baseline's :func:`measure` result from an earlier ``robustness.json`` (checked: same scans, seed, runs)."""
    d = json.loads(Path(path).read_text())
    if d.get('frames') != frames or int(d.get('seed', -1)) != int(seed):
        raise ValueError(f'{path}: measured on {d.get("frames")} with seed {d.get("seed")}, not {frames} / {seed}')
    runs = {(k.rsplit(':', 1)[0], int(k.rsplit(':', 1)[1])): v for k, v in (d.get('runs') or {}).items()}
    missing = [f'{c}:{lv}' for c, lv in needed if (c, lv) not in runs]
    if missing:
        raise ValueError(f'{path} lacks {", ".join(missing)}')
    return {'clean': d['clean'], 'runs': runs, 'checkpoint': d.get('checkpoint')}


def format_markdown(summary: dict, levels=(1, 2, 3)) -> str:
    """The robustness table (mIoU in %, CE and RR in %)."""
    head = '| corruption | ' + ' | '.join(f'L{lv} mIoU' for lv in levels) + ' | mean mIoU | CE | RR |'
    lines = [head, '|' + '---|' * (len(levels) + 4)]
    lines.append('| clean | ' + ' | '.join(f'{100 * summary["clean"]:.2f}' for _ in levels)
                 + f' | {100 * summary["clean"]:.2f} | - | - |')
    for c, r in summary['rows'].items():
        lines.append(f'| {c} | ' + ' | '.join(f'{100 * v:.2f}' for v in r['miou'])
                     + f' | {100 * r["mean"]:.2f} | {r["ce"]:.1f} | {r["rr"]:.1f} |')
    lines.append('| **mean** | ' + ' | '.join('' for _ in levels) + f' | | **mCE {summary["mce"]:.1f}** '
                 f'| **mRR {summary["mrr"]:.1f}** |')
    return '\n'.join(lines)


def write_csv(path: Path, summary: dict, levels=(1, 2, 3)) -> None:
    """``corruption,L1,L2,L3,mean,ce,rr`` rows (mIoU in %), the clean row first."""
    lines = ['corruption,' + ','.join(f'miou_l{lv}' for lv in levels) + ',miou_mean,ce,rr']
    lines.append('clean,' + ','.join(f'{100 * summary["clean"]:.4f}' for _ in levels)
                 + f',{100 * summary["clean"]:.4f},,')
    for c, r in summary['rows'].items():
        lines.append(f'{c},' + ','.join(f'{100 * v:.4f}' for v in r['miou'])
                     + f',{100 * r["mean"]:.4f},{r["ce"]:.4f},{r["rr"]:.4f}')
    path.write_text('\n'.join(lines) + '\n')


# ------------------------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pu-ros eval robustness``."""
    parser.add_argument('--checkpoint', required=True, help='segmentation checkpoint to measure')
    parser.add_argument('--data', action='append', required=True, metavar='ROOT', help='labelled dataset root')
    parser.add_argument('--frames', default=DEFAULT_FRAMES, help=f'scans (default {DEFAULT_FRAMES})')
    parser.add_argument('--baseline', default=DEFAULT_BASELINE,
                        help=f'reference model of the corruption error (default {DEFAULT_BASELINE})')
    parser.add_argument('--baseline-results', default=None, metavar='JSON',
                        help='robustness.json of an earlier run of the baseline (same scans and seed) instead of '
                             're-measuring --baseline, e.g. after the packaged model was replaced')
    parser.add_argument('--corruptions', default=None, help='comma-separated subset (default: all eight)')
    parser.add_argument('--seed', type=int, default=0, help='corruption seed (default 0)')
    parser.add_argument('--device', default=None, choices=['cpu', 'cuda', 'auto'], help='default: cuda if available')
    parser.add_argument('--out', default=None, help='folder for robustness.csv/.md/.json')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def run(args) -> int:
    """Entry point of ``pu-ros eval robustness``; returns the exit status."""
    from pu_ros.data.corruptions import parse_corruption

    try:
        corr = [parse_corruption(c)[0] for c in args.corruptions.split(',')] if args.corruptions else None
        for path in (args.checkpoint,) + (() if args.baseline_results else (args.baseline,)):
            if not Path(path).is_file():
                raise FileNotFoundError(f'no such checkpoint: {path}')
        t0 = time.time()
        model = measure(args.checkpoint, args.data, args.frames, corr, seed=args.seed, device=args.device,
                        progress=not args.no_progress)
        if args.baseline_results:
            base = load_results(args.baseline_results, args.frames, args.seed, list(model['runs']))
            args.baseline = f'{base["checkpoint"]} (stored results {args.baseline_results})'
            same = False
        else:
            same = Path(args.checkpoint).resolve() == Path(args.baseline).resolve()
            base = model if same else measure(args.baseline, args.data, args.frames, corr, seed=args.seed,
                                              device=args.device, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f'pu-ros eval robustness: {exc}', file=sys.stderr)
        return 2
    summary = summarise(model, base)
    table = format_markdown(summary)
    note = ' (itself: CE = 100 by definition)' if same else ''
    print(f'checkpoint: {args.checkpoint}; baseline for CE: {args.baseline}{note}')
    print(f'scans: {args.frames}; corruption seed {args.seed}; scored: surviving labelled points inside the range '
          '(added points ignored, dropped points not scored)')
    print(table)
    print('CE_c = sum_l (1 - mIoU_c,l) / sum_l (1 - mIoU^base_c,l); RR_c = sum_l mIoU_c,l / (3 mIoU_clean) '
          f'(Robo3D); {time.time() - t0:.0f} s')
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_csv(out / 'robustness.csv', summary)
        (out / 'robustness.md').write_text(table + '\n')
        runs = {f'{c}:{lv}': v for (c, lv), v in model['runs'].items()}
        import hashlib

        sha = hashlib.sha256(Path(args.checkpoint).read_bytes()).hexdigest()
        (out / 'robustness.json').write_text(json.dumps({'checkpoint': str(args.checkpoint), 'checkpoint_sha256': sha,
                                                         'baseline': str(args.baseline), 'frames': args.frames,
                                                         'seed': args.seed, 'clean': model['clean'], 'runs': runs,
                                                         'summary': summary}, indent=2, default=float))
        print(f'wrote {out / "robustness.csv"}, robustness.md, robustness.json')
    return 0
