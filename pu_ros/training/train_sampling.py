"""``pu-ros train sampling``: train SampleNet in the classification or the pipeline (LiDAR) setting.

The config's ``train.task`` picks the setting (``cls``: frozen PointNet on ModelNet40; ``lidar``: frozen segmentation
network on scans, self-distilled). Shared machinery: :mod:`pu_ros.training.common` (config, optimizer, schedule),
:mod:`pu_ros.networks.checkpoint` (files), :mod:`pu_ros.training.distributed` (torchrun DDP). Writes ``OUT/last.pt``
(training checkpoint, resumable), ``OUT/weights.pt`` (inference weights, fp16 if ``train.export_fp16``),
``OUT/tb`` (TensorBoard) and ``OUT/config.yaml``.
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

DEFAULT_CONFIG = 'train/sampling.yaml'

TRAIN_DEFAULTS = {
    'task': 'lidar', 'seed': 0, 'batch_size': 1, 'grad_accum': 1, 'max_steps': 1000, 'optimizer': 'adamw',
    'lr': 1e-3, 'momentum': 0.9, 'nesterov': False, 'betas': [0.9, 0.999], 'weight_decay': 1e-4,
    'schedule': 'cosine', 'warmup_steps': 20, 'min_lr': 0.0, 'clip_grad_norm': 10.0, 'log_interval': 10,
    'checkpoint_interval': 100, 'max_wall_s': 0, 'export_fp16': True, 'threads': 1,
    'loss': {'alpha': 0.01, 'beta': 1.0, 'gamma': 1.0, 'delta': 0.0, 'lmbda': 0.01},
    # cls
    'task_weights': '', 'modelnet_root': '', 'num_in_points': 1024, 'prefix_sizes': [], 'targets': 'distill',
    'distill_t': 1.0, 'synthetic_shapes': 0, 'synthetic_fraction': 0.5, 'val_shapes': 0, 'rotate_deg': 15.0,
    'scale_range': [0.85, 1.15], 'jitter': 0.01, 'freeze_bn': False,
    # lidar
    'segmentation_checkpoint': '', 'sequence': '00', 'frames': [3, 4, 5, 6, 7, 8, 9], 'synthetic_scans': 0,
    'crop_points': 12288, 'ratios': [0.5, 0.25, 0.125, 0.0625],
}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """Read and check a sampling training config (raises :class:`TrainConfigError`)."""
    cfg = read_train_config(path or DEFAULT_CONFIG, TRAIN_DEFAULTS, overrides)
    t = cfg['train']
    validate_optim(t)
    if t['task'] not in ('cls', 'lidar'):
        raise TrainConfigError(f'train.task must be cls or lidar, got {t["task"]!r}')
    if set(t['loss']) - set(TRAIN_DEFAULTS['loss']):
        raise TrainConfigError(f'train.loss keys must be among {sorted(TRAIN_DEFAULTS["loss"])}')
    t['loss'] = {**TRAIN_DEFAULTS['loss'], **t['loss']}
    kind = cfg['model'].setdefault('kind', 'patch' if t['task'] == 'lidar' else 'cloud')
    if kind not in ('patch', 'cloud'):
        raise TrainConfigError(f'model.kind must be patch or cloud, got {kind!r}')
    from pu_ros.networks.sampling.samplenet import SampleNetConfig

    try:
        SampleNetConfig.from_dict({k: v for k, v in cfg['model'].items() if k not in ('kind', 'patch_size')})
    except (TypeError, ValueError) as exc:
        raise TrainConfigError(f'model section: {exc}') from None
    return cfg


def build_task(cfg: dict, data: str | None, device):
    """The :class:`ClsTask` or :class:`LidarTask` of ``cfg``."""
    from pu_ros.training.sampling_tasks import ClsTask, LidarTask

    t = dict(cfg['train'])
    if t['task'] == 'cls':
        if data:
            t['modelnet_root'] = data
        if not t['modelnet_root']:
            raise TrainConfigError('the cls task needs --data MODELNET_ROOT (or train.modelnet_root)')
        return ClsTask(cfg['model'], t, device)
    return LidarTask(cfg['model'], t, device, data)


def train(cfg: dict, data: str | None, out: str | Path, resume: str | None = None, device: str | None = None,
          progress: bool = True) -> dict:
    """Run the training loop (also under torchrun). Returns a summary dict (rank 0)."""
    import torch

    from pu_ros.networks import checkpoint as ckpt_io
    from pu_ros.ops.device import device_name
    from pu_ros.training.distributed import cleanup, init_distributed

    t = cfg['train']
    if int(t['threads']) > 0:
        torch.set_num_threads(int(t['threads']))
    info = init_distributed(device)
    dev = torch.device(info.device)
    out = Path(out)
    torch.manual_seed(int(t['seed']) + info.rank)
    rng = np.random.default_rng([int(t['seed']), info.rank])
    resumed = None
    if resume:
        resumed = ckpt_io.load_checkpoint(resume)
        if 'optimizer' not in resumed or 'step' not in resumed:
            raise ckpt_io.CheckpointError(f'{resume} is an inference-only checkpoint; resume needs OUT/last.pt')
        cfg = {**cfg, 'model': dict(resumed['config']['model'])}
    task = build_task(cfg, data, dev)
    model = task.model.to(dev)
    optimizer = build_optimizer(model, t)
    max_steps = int(t['max_steps'])
    scheduler = WarmupCosine(optimizer, max_steps, int(t['warmup_steps']), float(t['min_lr']),
                             cosine=t['schedule'] == 'cosine')
    start_step, prev_wall = 0, 0.0
    if resumed is not None:
        start_step, prev_wall = restore_training_state(resumed, model, optimizer, scheduler)
        rng = np.random.default_rng([int(t['seed']), info.rank, start_step])
    net = model
    if info.distributed:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == 'cuda' else None)
    writer = None
    if info.is_main:
        writer = open_run_folder(out, cfg)
    started = time.time()
    losses: dict[str, float] = {}

    def save(step: int) -> Path:
        meta = {'task': t['task'], 'data': list(task.data_names), 'step': step, 'metrics': losses,
                'device': device_name(dev), 'world_size': info.world_size,
                'wall_time_s': round(prev_wall + time.time() - started, 1),
                'parameters': sum(p.numel() for p in model.parameters())}
        return ckpt_io.save_checkpoint(out / 'last.pt', model.state_dict(), cfg, meta,
                                       optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), step=step)

    from tqdm import tqdm

    bar = tqdm(total=max_steps, initial=start_step, desc=f'train sampling/{t["task"]}', unit='step', file=sys.stderr,
               dynamic_ncols=True, disable=not (progress and info.is_main))
    model.train()
    step = start_step
    sums: dict[str, float] = {}
    count = 0
    while step < max_steps:
        optimizer.zero_grad(set_to_none=True)
        for _ in range(int(t['grad_accum'])):
            parts = task.losses(net, task.batch(rng))
            (parts['loss'] / int(t['grad_accum'])).backward()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach() if hasattr(v, 'detach') else v)
            count += 1
        if t['clip_grad_norm']:
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(t['clip_grad_norm']))
        optimizer.step()
        scheduler.step()
        step += 1
        bar.update(1)
        if step % int(t['log_interval']) == 0 or step == max_steps:
            losses = {k: v / count for k, v in sums.items()}
            losses['sigma'] = float(model.net.project.sigma().detach())
            sums, count = {}, 0
            bar.set_postfix(loss=f'{losses["loss"]:.4f}', task=f'{losses["task"]:.4f}')
            if writer is not None:
                for k, v in losses.items():
                    writer.add_scalar(f'train/{k}', v, step)
                writer.add_scalar('train/lr', scheduler.get_last_lr()[0], step)
        if info.is_main and step % int(t['checkpoint_interval']) == 0:
            if hasattr(task, 'validate'):  # logged only: the exported weights are always the last step's
                val = task.validate(model)
                losses.update(val)
                for k, v in val.items():
                    writer.add_scalar(f'val/{k}', v, step)
                if val:
                    print(json.dumps({'step': step, **{k: round(v, 4) for k, v in val.items()}}), file=sys.stderr)
            save(step)
        if float(t['max_wall_s']) and time.time() - started > float(t['max_wall_s']):
            if info.is_main:
                print(f'stopping at step {step}: train.max_wall_s={t["max_wall_s"]} reached', file=sys.stderr)
            break
    bar.close()
    summary = {'step': step}
    if info.is_main:
        last = save(step)
        weights = ckpt_io.export_weights(ckpt_io.load_checkpoint(last), out / 'weights.pt',
                                         dtype=torch.float16 if t['export_fp16'] else None)
        summary.update({'checkpoint': str(last), 'weights': str(weights), 'losses': losses,
                        'wall_time_s': round(prev_wall + time.time() - started, 1)})
        writer.close()
    cleanup(info)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pu-ros train sampling``."""
    add_train_arguments(parser, 'sampling', DEFAULT_CONFIG, '--set train.lr=0.001 --set model.num_out_points=64')
    parser.add_argument('--data', default=None, metavar='ROOT',
                        help='lidar: SemanticKITTI root with sequences/; cls: the modelnet folder')


def run(args) -> int:
    """Entry point of ``pu-ros train sampling``."""
    cfg = config_from_args(args, load_config, 'pu-ros train sampling')
    if cfg is None:
        return 2
    if args.data is not None and not Path(args.data).is_dir():
        print(f'pu-ros train sampling: --data {args.data} is not a folder', file=sys.stderr)
        return 2
    out = args.out or f'runs/sampling-{time.strftime("%Y%m%d-%H%M%S")}'
    try:
        summary = train(cfg, args.data, out, resume=args.resume, device=args.device, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f'pu-ros train sampling: {exc}', file=sys.stderr)
        return 2
    if summary.get('checkpoint'):
        print(json.dumps(summary, default=float))
    return 0
