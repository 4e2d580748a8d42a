"""``pu-ros eval sampling-cls``: SampleNet's classification setting, accuracy of the frozen PointNet against M.

For every test shape of the shared ModelNet40 sample, ``--draws`` random 1024-point subsets (seeded) are sampled
down to M points by SampleNet (hard projection, de-duplication, FPS completion), FPS and random sampling, and
classified by the frozen PointNet; the table gives the accuracy per method and M (and on all 1024 points) as the
mean ± standard deviation over the draws (each draw: one subset of every shape, so one accuracy over all shapes).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
import sys

import numpy as np


def _pick_checkpoint(models: list, m: int):
    """The dedicated model for ``m`` if any, else a progressive one with at least ``m`` outputs, else None."""
    exact = [mod for mod, cfg in models if cfg.num_out_points == m]
    prog = [mod for mod, cfg in models if cfg.progressive and cfg.num_out_points >= m]
    return (exact or prog or [None])[0]


def evaluate(shapes, task_net, models: list, sizes: list[int], draws: int, n_in: int, device, seed: int = 0) -> dict:
    """Accuracy per (method, M).

    Args:
        shapes: ModelNet ``Shape`` list (test split).
        task_net: frozen classifier ((B, N, 3) -> logits).
        models: ``[(WholeCloudSampleNet, SampleNetConfig)]``.
        sizes: the M values.
        draws: random input subsets per shape.
        n_in: input points per cloud (1024).
        device: torch device.
        seed: subset seed.

    Returns:
        ``{(method, M): (D,) accuracy of every draw}`` with method in samplenet/fps/random/full (full: M = n_in).
    """
    import torch

    from pu_ros.networks.sampling.patches import normalise_patches
    from pu_ros.networks.sampling.projection import match_and_complete
    from pu_ros.ops.neighbors import farthest_point_sample

    rng = np.random.default_rng(seed)
    clouds, labels = [], []
    for s in shapes:
        for _ in range(draws):
            clouds.append(s.points[rng.choice(len(s.points), n_in, replace=False)])
            labels.append(s.label)
    pts = torch.from_numpy(np.stack(clouds)).to(device)
    pts = normalise_patches(pts.reshape(-1, 3), torch.arange(pts.shape[0] * n_in, device=device).reshape(-1, n_in))[0]
    lab = torch.as_tensor(labels, device=device)
    gen = torch.Generator(device='cpu').manual_seed(seed + 1)
    res = {}

    def acc(sub):  # clouds are shape-major: row s * draws + d
        with torch.no_grad():
            return (task_net(sub).argmax(1) == lab).float().reshape(len(shapes), draws).mean(0).cpu().numpy()

    res[('full', n_in)] = acc(pts)
    for m in sizes:
        idx = {'fps': farthest_point_sample(pts, m),
               'random': torch.stack([torch.randperm(n_in, generator=gen)[:m] for _ in range(pts.shape[0])]).to(device)}
        model = _pick_checkpoint(models, m)
        if model is not None:
            with torch.no_grad():
                idx['samplenet'] = match_and_complete(pts, model.net.simplify(pts), m)
        for method, ix in idx.items():
            res[(method, m)] = acc(torch.gather(pts, 1, ix[..., None].expand(-1, -1, 3)))
    return res


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pu-ros eval sampling-cls``."""
    parser.add_argument('--checkpoint', action='append', default=[], metavar='C',
                        help='SampleNet classification weights (repeat; each serves its M, progressive ones any M '
                             'up to theirs)')
    parser.add_argument('--data', required=True, metavar='ROOT', help='the modelnet folder (splits/, ModelNet40/)')
    parser.add_argument('--task-weights', required=True, metavar='T7',
                        help='frozen PointNet classifier, e.g. ../shared/weights/pointnet_modelnet40/best_model.t7')
    parser.add_argument('--sizes', default='32,64,128', help='comma-separated M values')
    parser.add_argument('--draws', type=int, default=10, help='random 1024-point subsets per test shape')
    parser.add_argument('--split', default='test', choices=['test', 'train'])
    parser.add_argument('--seen-classes-only', action='store_true',
                        help='keep only shapes whose class has at least one TRAIN-split shape under --data')
    parser.add_argument('--csv', default=None, help='also write the table as CSV here')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])


def run(args) -> int:
    """Entry point; prints the accuracy table."""
    import torch

    from pu_ros.data.modelnet import load_modelnet
    from pu_ros.inference.sampler import load_samplenet
    from pu_ros.networks.checkpoint import CheckpointError
    from pu_ros.networks.sampling.pointnet import load_pointnet_cls
    from pu_ros.ops.device import resolve_device

    try:
        sizes = [int(s) for s in args.sizes.split(',') if s]
        if not sizes or min(sizes) < 1 or max(sizes) > 1024 or args.draws < 1:
            raise ValueError('--sizes must be in 1..1024 and --draws >= 1')
        device = torch.device(resolve_device(args.device))
        task_net = load_pointnet_cls(args.task_weights, device)
        models = []
        for c in args.checkpoint:
            model, _ = load_samplenet(c, device)
            if not hasattr(model, 'net') or hasattr(model, 'patch_size'):
                raise ValueError(f'{c} is not a classification-setting (whole-cloud) SampleNet')
            models.append((model, model.net.cfg))
        shapes = load_modelnet(args.data, args.split)
        if args.seen_classes_only:
            seen = {s.label for s in load_modelnet(args.data, 'train')}
            shapes = [s for s in shapes if s.label in seen]
        if not shapes:
            raise FileNotFoundError(f'no {args.split} shapes under {args.data}')
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f'pu-ros eval sampling-cls: {exc}', file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    res = evaluate(shapes, task_net, models, sizes, args.draws, 1024, device)
    n = len(shapes) * args.draws
    subset = ' (classes seen in training only)' if args.seen_classes_only else ''
    full = res[('full', 1024)]
    print(f'# PointNet accuracy on {len(shapes)} {args.split} shapes{subset} x {args.draws} draws = {n} clouds '
          f'(mean ± std over draws); all 1024 points: {full.mean():.3f} ± {full.std():.3f}')
    methods = ['samplenet', 'fps', 'random']
    print(f'{"M":>6} ' + ' '.join(f'{m:>15}' for m in methods))
    rows = []
    for m in sizes:
        vals = [res.get((meth, m)) for meth in methods]
        print(f'{m:>6} ' + ' '.join(f'{v.mean():7.3f} ± {v.std():.3f}' if v is not None else f'{"-":>15}'
                                    for v in vals))
        rows.append([m] + [x for v in vals for x in (('', '') if v is None else (f'{v.mean():.4f}', f'{v.std():.4f}'))])
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, 'w', newline='') as fh:
            w = csv.writer(fh)
            w.writerow(['M'] + [f'{meth}{suf}' for meth in [*methods, 'all_points'] for suf in ('', '_std')])
            w.writerows(r + ['', ''] for r in rows)
            w.writerow([1024] + [''] * 6 + [f'{full.mean():.4f}', f'{full.std():.4f}'])
    return 0
