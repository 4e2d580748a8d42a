"""``pu-ros train upsampling``: train PU-Flow on object patches (meshes) or on LiDAR scans (sparse -> full).

Single process::

    pu-ros train upsampling --config config/train/upsampling.yaml --out runs/puflow [--mesh-dir DIR ...]
    pu-ros train upsampling --config config/train/upsampling_lidar.yaml --velodyne SEQ/velodyne --out runs/lidar

Distributed data parallel (torchrun, NCCL on GPUs or Gloo on CPUs)::

    torchrun --nproc_per_node=4 -m pu_ros.cli train upsampling --config ... --out ...

The YAML's ``model`` section is a :class:`pu_ros.networks.upsampling.PUFlowConfig` (``model.decoder: mlp`` trains
the ablation that decodes with an MLP instead of the inverse flow). Loss per batch:
``lambda_cd · CD(prediction, ground truth) + lambda_nll · NLL(input patch)``, CD = the squared Chamfer distance of
:mod:`pu_ros.training.metrics_upsampling` (an approximation of the EMD used by the paper, stated in the model card)
and NLL the flow's negative log-likelihood per point. AdamW or SGD with warm-up + cosine (``training/common.py``),
checkpoints ``OUT/last.pt`` (weights_only-loadable; ``--resume`` restores model, optimizer, schedule and the
step), TensorBoard scalars in ``OUT/tb``, a tqdm bar; ``--export FILE`` writes inference weights at the end.
The sampled point sets are cached in ``OUT/pool.npz`` so a resumed run cuts patches from the same data.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time

import numpy as np

from pu_ros.training.common import (
    TrainConfigError,
    WarmupCosine,
    add_train_arguments,
    build_optimizer,
    config_from_args,
    open_run_folder,
    read_train_config,
    restore_training_state,
    validate_optim,
)

DEFAULT_CONFIG = 'train/upsampling.yaml'

TRAIN_DEFAULTS = {
    'seed': 0,
    'mode': 'mesh',                 # mesh | lidar
    'ratios': [4],                  # one ratio per step, drawn from this list
    'patch_size': 256,
    'batch_size': 8,
    'grad_accum': 1,
    'max_steps': 20000,
    'optimizer': 'adamw',
    'lr': 1.0e-3,
    'momentum': 0.9,
    'nesterov': False,
    'betas': [0.9, 0.999],
    'weight_decay': 1.0e-4,
    'schedule': 'cosine',
    'warmup_steps': 100,
    'min_lr': 1.0e-5,
    'clip_grad_norm': 1.0,
    'lambda_cd': 1000.0,
    'lambda_nll': 0.01,
    'log_interval': 10,
    'checkpoint_interval': 100,
    'max_wall_s': 0,                # stop early (with a checkpoint) after this many seconds of this run; 0 = off
    'augmentation': {'rotate': True, 'scale': [0.8, 1.2], 'jitter': 0.0},
    'mesh': {'shapes': 24, 'shape_seed': 0, 'dirs': [], 'gt_points': 8192},
    'lidar': {'velodyne': [], 'frames': [], 'synthetic': 0, 'synthetic_seed': 200, 'max_range': 50.0},
}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """Read the upsampling training YAML (``model`` = PUFlowConfig keys, ``train`` = :data:`TRAIN_DEFAULTS`).

    Raises:
        TrainConfigError: unreadable file, unknown key, bad value.
    """
    cfg = read_train_config(path or DEFAULT_CONFIG, TRAIN_DEFAULTS, overrides)
    t = cfg['train']
    validate_optim(t)
    if t['mode'] not in ('mesh', 'lidar'):
        raise TrainConfigError(f'train.mode must be mesh or lidar, got {t["mode"]!r}')
    t['ratios'] = [int(r) for r in (t['ratios'] if isinstance(t['ratios'], list) else [t['ratios']])]
    if not t['ratios'] or any(not 2 <= r <= 16 for r in t['ratios']):
        raise TrainConfigError(f'train.ratios must be integers in 2..16, got {t["ratios"]}')
    for key in ('mesh', 'lidar'):
        t[key] = {**TRAIN_DEFAULTS[key], **(t[key] or {})}
    return cfg


def build_pool(t: dict, progress: bool = False):
    """The :class:`PatchPool` the config asks for (synthetic shapes + mesh folders, or LiDAR scans)."""
    from pu_ros.training.upsampling_data import lidar_pool, mesh_pool

    if t['mode'] == 'mesh':
        from pu_ros.data.meshes import list_meshes, read_off
        from pu_ros.data.shapes import random_shape

        m = t['mesh']
        meshes = [random_shape(int(m['shape_seed']) + i) for i in range(int(m['shapes']))]
        for d in m['dirs'] or []:
            meshes += [read_off(p) for p in list_meshes(d)]
        if not meshes:
            raise TrainConfigError('no training meshes: set train.mesh.shapes > 0 or train.mesh.dirs')
        return mesh_pool(meshes, t['ratios'], int(m['gt_points']), int(t['seed']), progress=progress)
    from pu_ros.data.kitti import read_points
    from pu_ros.data.synthetic import SceneConfig, SyntheticSequence

    lid = t['lidar']
    scans = []
    for d in lid['velodyne'] or []:
        files = sorted(Path(d).glob('*.bin'))
        want = {str(f) for f in lid['frames']} if lid['frames'] else None
        scans += [(f'{d}/{f.stem}', read_points(f)) for f in files if want is None or f.stem in want]
    for k in range(int(lid['synthetic'])):
        seq = SyntheticSequence(SceneConfig(seed=int(lid['synthetic_seed']) + k, n_frames=1, render_image=False))
        scans.append((f'synthetic:{int(lid["synthetic_seed"]) + k}', seq.scan(0)[0]))
    if not scans:
        raise TrainConfigError('no training scans: set train.lidar.velodyne (+frames) or train.lidar.synthetic')
    return lidar_pool(scans, t['ratios'], float(lid['max_range']))


def _wrapper(net):
    """Wrap the network so DDP sees one forward returning ``(prediction (B, N·R, 3), NLL per point)``."""
    import torch

    class TrainStep(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, points, ratio: int):
            return self.net.upsample_with_nll(points, ratio)

    return TrainStep(net)


def train(cfg: dict, out: str | Path, resume: str | None = None, device: str | None = None,
          progress: bool = True, export: str | None = None) -> dict:
    """Run the training loop (also under torchrun); returns a summary dict (rank 0: checkpoint, losses)."""
    import torch

    from pu_ros.networks import checkpoint as ckpt_io
    from pu_ros.networks.upsampling import PUFlow, PUFlowConfig
    from pu_ros.ops.device import device_name
    from pu_ros.training.distributed import all_reduce_sum, barrier, cleanup, init_distributed
    from pu_ros.training.metrics_upsampling import chamfer_distance
    from pu_ros.training.upsampling_data import PatchPool, sample_batch

    t = cfg['train']
    info = init_distributed(device)
    out = Path(out)
    started = time.time()
    resumed = ckpt_io.load_checkpoint(resume) if resume else None
    if resumed is not None:
        if 'optimizer' not in resumed or 'step' not in resumed:
            raise ckpt_io.CheckpointError(f'{resume} is an inference-only checkpoint; resume needs OUT/last.pt')
        cfg = {**cfg, 'model': dict(resumed['config']['model'])}
    model_cfg = PUFlowConfig.from_dict(dict(cfg['model']))
    seed = int(t['seed'])
    torch.manual_seed(seed + info.rank)

    pool_path = out / 'pool.npz'
    if pool_path.exists():
        pool = PatchPool.load(pool_path)
    else:
        pool = build_pool(t, progress=progress and info.is_main)
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            pool.save(pool_path)

    dev = torch.device(info.device)
    net = PUFlow(model_cfg).to(dev)
    optimizer = build_optimizer(net, t)
    scheduler = WarmupCosine(optimizer, int(t['max_steps']), int(t['warmup_steps']), float(t['min_lr']),
                             cosine=t['schedule'] == 'cosine')
    step, prev_wall = 0, 0.0
    if resumed is not None:
        step, prev_wall = restore_training_state(resumed, net, optimizer, scheduler)
        del resumed
    module = _wrapper(net)
    if info.distributed:
        module = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[dev.index] if dev.type == 'cuda' else None)
    writer = None
    if info.is_main:
        writer = open_run_folder(out, {'model': model_cfg.to_dict(), 'train': t})
    # patch stream: a pure function of (seed, rank, step), so a resumed run continues the same stream
    max_steps, accum = int(t['max_steps']), int(t['grad_accum'])
    lam_cd, lam_nll = float(t['lambda_cd']), float(t['lambda_nll'])
    losses: dict[str, float] = {}
    sums, n_sum = torch.zeros(3), 0

    def save(path: Path) -> Path | None:
        if not info.is_main:
            return None
        meta = {'data': {'mode': t['mode'], 'sets': pool.names}, 'step': step, 'metrics': losses,
                'device': device_name(dev), 'world_size': info.world_size,
                'wall_time_s': round(prev_wall + time.time() - started, 1),
                'parameters': sum(p.numel() for p in net.parameters()),
                'loss': f'{lam_cd} * CD (squared) + {lam_nll} * NLL per point'}
        return ckpt_io.save_checkpoint(path, net.state_dict(), {'model': model_cfg.to_dict(), 'train': t}, meta,
                                       optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), step=step)

    from tqdm import tqdm

    bar = tqdm(total=max_steps, initial=step, desc='train', unit='step', file=sys.stderr, dynamic_ncols=True,
               disable=not (progress and info.is_main))
    net.train()
    while step < max_steps:
        optimizer.zero_grad(set_to_none=True)
        for micro in range(accum):
            rng = np.random.default_rng(np.random.SeedSequence([seed, info.rank, step, micro]))
            ratio = int(t['ratios'][int(rng.integers(len(t['ratios'])))])
            inp, gt = sample_batch(pool, int(t['batch_size']), ratio, int(t['patch_size']), rng, t['augmentation'])
            inp, gt = inp.to(dev), gt.to(dev)
            if info.distributed and micro < accum - 1:
                with module.no_sync():
                    pred, nll = module(inp, ratio)
                    cd = chamfer_distance(pred, gt).mean()
                    ((lam_cd * cd + lam_nll * nll) / accum).backward()
            else:
                pred, nll = module(inp, ratio)
                cd = chamfer_distance(pred, gt).mean()
                ((lam_cd * cd + lam_nll * nll) / accum).backward()
            total = lam_cd * cd + lam_nll * nll
            sums += torch.stack([total.detach(), cd.detach() * 1e3, nll.detach()]).float().cpu()
            n_sum += 1
        if t['clip_grad_norm']:
            torch.nn.utils.clip_grad_norm_(net.parameters(), float(t['clip_grad_norm']))
        optimizer.step()
        scheduler.step()
        step += 1
        bar.update(1)
        if step % int(t['log_interval']) == 0 or step == max_steps:
            losses = dict(zip(('total', 'cd_x1e3', 'nll'), (sums / max(n_sum, 1)).tolist()))
            sums, n_sum = torch.zeros(3), 0
            bar.set_postfix(loss=f'{losses["total"]:.3f}', cd=f'{losses["cd_x1e3"]:.3f}')
            if writer is not None:
                for k, v in losses.items():
                    writer.add_scalar(f'train/{k}', v, step)
                writer.add_scalar('train/lr', scheduler.get_last_lr()[0], step)
        if step % int(t['checkpoint_interval']) == 0 and step < max_steps:
            save(out / 'last.pt')
        if float(t['max_wall_s']):
            stop = torch.tensor([float(time.time() - started > float(t['max_wall_s']))], device=dev)
            if float(all_reduce_sum(stop, info)[0]) > 0:  # every rank stops at the same step
                break
    bar.close()
    path = save(out / 'last.pt')
    if writer is not None:
        writer.close()
    if export and info.is_main:
        ckpt_io.export_weights(ckpt_io.load_checkpoint(path), export, meta_update={'exported_from': str(path)})
    barrier(info)
    cleanup(info)
    summary = {'step': step, 'rank': info.rank, 'world_size': info.world_size}
    if info.is_main:
        summary.update({'checkpoint': str(path), 'losses': losses, 'export': export,
                        'wall_time_s': round(prev_wall + time.time() - started, 1)})
    return summary


# ------------------------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pu-ros train upsampling``."""
    add_train_arguments(parser, 'upsampling', DEFAULT_CONFIG, '--set train.lr=0.0005 --set model.decoder=mlp')
    parser.add_argument('--mesh-dir', action='append', default=[], metavar='DIR',
                        help='add the .off meshes of DIR to the training meshes (repeatable)')
    parser.add_argument('--velodyne', action='append', default=[], metavar='DIR',
                        help='LiDAR mode: a folder of KITTI .bin scans (repeatable; train.lidar.frames selects)')
    parser.add_argument('--export', default=None, metavar='FILE', help='write inference weights here at the end')


def run(args) -> int:
    """Entry point of ``pu-ros train upsampling``; returns the exit status."""
    cfg = config_from_args(args, load_config, 'pu-ros train upsampling')
    if cfg is None:
        return 2
    t = cfg['train']
    t['mesh']['dirs'] = list(t['mesh']['dirs'] or []) + list(args.mesh_dir)
    t['lidar']['velodyne'] = list(t['lidar']['velodyne'] or []) + list(args.velodyne)
    out = args.out or f'runs/upsampling-{time.strftime("%Y%m%d-%H%M%S")}'
    try:
        summary = train(cfg, out, resume=args.resume, device=args.device, progress=not args.no_progress,
                        export=args.export)
    except (ValueError, FileNotFoundError) as exc:
        print(f'pu-ros train upsampling: {exc}', file=sys.stderr)
        return 2
    if summary.get('checkpoint'):
        print(json.dumps(summary, default=float))
    return 0
