"""``pu-ros train segmentation``: train the 2DPASS-style segmentation network.

Single process::

    pu-ros train segmentation --config config/train/segmentation.yaml --data ROOT [--data ROOT2] --out runs/seg

Distributed data parallel (one process per GPU, or several Gloo processes on a CPU)::

    torchrun --nproc_per_node=4 -m pu_ros.cli train segmentation --data ROOT --out runs/seg
    torchrun --nnodes=2 --node_rank=R --rdzv_endpoint=HOST:29500 --nproc_per_node=8 -m pu_ros.cli train ...

What happens: the YAML's ``model`` section becomes a :class:`SegmentationConfig`, the ``train`` section drives the
loop (see ``config/train/segmentation.yaml``). SGD (Nesterov) or AdamW, linear warm-up then cosine decay per
optimizer step, gradient accumulation, float16 autocast with a GradScaler on CUDA only, a tqdm bar and TensorBoard
scalars (``OUT/tb``) on rank 0. ``OUT/last.pt`` is written every ``checkpoint_interval`` steps and at the end
(``OUT/best.pt`` too when validation improves mIoU); ``--resume OUT/last.pt`` restores model, optimizer,
schedule, GradScaler and the position in the epoch, then continues to ``max_steps``.

Validation (when ``split.val`` is set) runs every ``val_interval`` steps and always once at the end (after any
BatchNorm recalibration; skipped there only when the last step was just validated with the same weights). Every
validation, periodic or final, is compared with the best mIoU so far (carried across ``--resume``), and
``OUT/best.pt`` is rewritten with the weights of that step whenever it improves; so with the default
``val_interval: 0`` best.pt is the final model. Without ``split.val`` no best.pt is written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
import sys
import time

import numpy as np

from pu_ros.training.common import (  # noqa: F401  (re-exported: tests and callers use them from here)
    TrainConfigError,
    WarmupCosine,
    add_train_arguments,
    build_optimizer,
    config_from_args,
    read_train_config,
    validate_optim,
)

DEFAULT_CONFIG = 'train/segmentation.yaml'

TRAIN_DEFAULTS = {
    'seed': 0,
    'batch_size': 8,
    'grad_accum': 1,
    'num_workers': 4,
    'max_steps': 150000,
    'optimizer': 'sgd',
    'lr': 0.24,
    'momentum': 0.9,
    'nesterov': True,
    'betas': [0.9, 0.999],
    'weight_decay': 1.0e-4,
    'schedule': 'cosine',
    'warmup_steps': 1000,
    'min_lr': 0.0,
    'clip_grad_norm': None,
    'amp': True,
    'find_unused_parameters': True,
    'sync_bn': True,
    'log_interval': 20,
    'checkpoint_interval': 2000,
    'val_interval': 0,
    'val_tta': 1,
    'augmentation': {},
    'mixing': {},
    'init_from': None,
    'freeze': [],
    'split': {},
    'bn_recalibration': {'split': None, 'scans': 0},
}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """Read the segmentation training YAML and apply ``key.sub=value`` overrides (values parsed as YAML).

    Args:
        path: YAML file (None: the package's ``config/train/segmentation.yaml``).
        overrides: e.g. ``['train.lr=0.1', 'model.hidden_size=16']``.

    Returns:
        ``{'model': dict, 'train': dict}`` with every train key present (defaults filled in).

    Raises:
        TrainConfigError: unreadable file, unknown train key, malformed override.
    """
    cfg = read_train_config(path or DEFAULT_CONFIG, TRAIN_DEFAULTS, overrides)
    t = cfg['train']
    validate_optim(t)
    recal = t['bn_recalibration'] or {}
    if not isinstance(recal, dict) or set(recal) - {'split', 'scans'}:
        raise TrainConfigError(f'train.bn_recalibration must be {{split: ..., scans: N}}, got {recal!r}')
    t['bn_recalibration'] = {'split': recal.get('split'), 'scans': int(recal.get('scans') or 0)}
    return cfg


# ------------------------------------------------------------------------------------------------ training


def recalibrate_batchnorm(model, dataset, device, scans: int) -> int:
    """Recompute every BatchNorm's running statistics as the plain average over ``scans`` scans of ``dataset``.

    "Precise BN" / AdaBN (Li et al., 2016): the exponential running averages of training mix every domain seen
    in the last few batches (e.g. synthetic and real scans, whose intensities and surface noise differ a lot);
    re-estimating them on scans of the target domain, with the weights frozen, removes that mismatch. The
    dataset should be in evaluation mode (no augmentation). Weights and biases are not changed.

    Args:
        model: the segmentor (any mode; restored afterwards).
        dataset: a ``SemanticKittiDataset`` (scans used in order, cycling when ``scans > len(dataset)``).
        device: torch device.
        scans: number of forward passes (one scan each).

    Returns:
        The number of BatchNorm layers recalibrated: those the passes reach (the image branch's only when the
        dataset yields images); the others keep their statistics.
    """
    import torch

    from pu_ros.data.semantic_dataset import batch_to_device, collate

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or scans < 1:
        return 0
    momenta = [m.momentum for m in norms]
    # norms the 3D-only passes never reach (the image branch) must keep their statistics
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = plain mean over the passes
    model.train()
    try:
        with torch.no_grad():
            for i in range(int(scans)):
                batch = collate([dataset[i % len(dataset)]])
                batch.pop('meta')
                # with images in the batch the 2D branch and fusion run too, so their norms are re-estimated
                model(batch_to_device(batch, device), use_image=None if 'images' in batch else False)
    finally:
        for m, mom in zip(norms, momenta):
            m.momentum = mom
        model.train(was_training)
    unused = [i for i, m in enumerate(norms) if int(m.num_batches_tracked) == 0]
    for i in unused:
        norms[i].load_state_dict(saved[i])
    return len(norms) - len(unused)



def _step_indices(n: int, batch: int, epoch: int, seed: int, info, skip_batches: int) -> list[int]:
    """Sample order of one epoch for this rank (DistributedSampler semantics), minus the batches already done."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed,
                                 drop_last=False)
    sampler.set_epoch(epoch)
    return list(sampler)[skip_batches * batch:]


def train(cfg: dict, data: list[str], out: str | Path, resume: str | None = None, device: str | None = None,
          progress: bool = True) -> dict:
    """Run the training loop (also under torchrun).

    Args:
        cfg: ``{'model': ..., 'train': ...}`` from :func:`load_config`.
        data: dataset root(s).
        out: output folder (checkpoints, TensorBoard, resolved config).
        resume: training checkpoint to continue from.
        device: ``'cpu'``, ``'cuda'`` or None (auto).
        progress: show the tqdm bar (rank 0 only).

    Returns:
        Summary dict (rank 0: step, checkpoint path, last losses, val metrics; other ranks: step only).
    """
    import torch
    from torch.utils.data import DataLoader

    from pu_ros.data.semantic_dataset import SemanticKittiDataset, batch_to_device, collate
    from pu_ros.networks import checkpoint as ckpt_io
    from pu_ros.networks.losses import SegmentationLoss
    from pu_ros.networks.segmentation import SegmentationConfig, Segmentor2DPASS
    from pu_ros.ops.device import device_name
    from pu_ros.training.distributed import all_reduce_sum, barrier, cleanup, init_distributed

    t = cfg['train']
    info = init_distributed(device)
    out = Path(out)
    seed = int(t['seed'])
    torch.manual_seed(seed + info.rank)
    np.random.seed(seed + info.rank)
    started = time.time()

    start_step, start_epoch, skip = 0, 0, 0
    resumed = None
    if resume:
        resumed = ckpt_io.load_checkpoint(resume)
        if 'optimizer' not in resumed or 'step' not in resumed:
            raise ckpt_io.CheckpointError(f'{resume} is an inference-only checkpoint (no optimizer state); '
                                          'resume needs a training checkpoint such as OUT/last.pt')
        # both sides normalised, so a checkpoint written before a config key existed compares by its default
        saved_model = SegmentationConfig.from_dict(dict(resumed['config'].get('model') or {})).to_dict()
        if saved_model != SegmentationConfig.from_dict(dict(cfg['model'])).to_dict():
            if info.is_main:
                print('resume: the model section differs from the checkpoint; using the checkpoint\'s',
                      file=sys.stderr)
            cfg = {**cfg, 'model': dict(resumed['config']['model'])}
        start_step = int(resumed['step'])
        start_epoch = int(resumed.get('epoch', 0))
        skip = int(resumed.get('batches_in_epoch', 0))

    model_cfg = SegmentationConfig.from_dict(dict(cfg['model']))
    split = t.get('split') or {}
    if 'train' not in split:
        raise TrainConfigError('train.split.train is missing (e.g. {"00": ["000000"]} or ["00", "01"])')
    dataset = SemanticKittiDataset(data, split['train'], model_cfg, train=True, augment=t['augmentation'], seed=seed)
    if t.get('mixing'):
        from pu_ros.data.mixing import MixConfig, MixingDataset

        mix = MixConfig.from_dict(t['mixing'])
        if mix.active:
            dataset = MixingDataset(dataset, mix, data)
    val_set = None
    if split.get('val'):
        val_set = SemanticKittiDataset(data, split['val'], model_cfg, train=False, use_image=False)

    dev = torch.device(info.device)
    model = Segmentor2DPASS(model_cfg).to(dev)
    if t.get('freeze'):  # before the optimizer: frozen parameters get no optimizer state
        from pu_ros.training.freeze import freeze_modules

        n_frozen = freeze_modules(model, t['freeze'])
        if info.is_main:
            print(f'train.freeze {t["freeze"]}: {n_frozen} parameters frozen (evaluation mode)', file=sys.stderr)
    if info.distributed and dev.type == 'cuda' and bool(t['sync_bn']):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same parameters and state_dict keys
    criterion = SegmentationLoss(model_cfg)
    optimizer = build_optimizer(model, t)
    scheduler = WarmupCosine(optimizer, int(t['max_steps']), int(t['warmup_steps']), float(t['min_lr']),
                             cosine=t['schedule'] == 'cosine')
    use_amp = bool(t['amp']) and dev.type == 'cuda'
    scaler = torch.amp.GradScaler('cuda', enabled=use_amp)
    class_counts = torch.zeros(model_cfg.num_classes, dtype=torch.int64, device=dev)
    best_miou = -1.0
    prev_wall = 0.0
    prev_losses: dict[str, float] = {}
    if resumed is not None:
        model.load_state_dict(ckpt_io.state_dict_to_float32(resumed['state_dict']))
        optimizer.load_state_dict(resumed['optimizer'])
        scheduler.load_state_dict(resumed['scheduler'])
        if use_amp and resumed.get('scaler'):
            scaler.load_state_dict(resumed['scaler'])
        prev = resumed['meta'].get('train_class_counts')
        if prev is not None and info.is_main:  # rank 0 carries the running total; others add only their own
            class_counts += torch.as_tensor(prev, dtype=torch.int64, device=dev)
        best_miou = float(resumed['meta'].get('best_miou', -1.0))
        prev_wall = float(resumed['meta'].get('wall_time_s', 0.0))
        prev_losses = {k: v for k, v in (resumed['meta'].get('metrics') or {}).items()
                       if isinstance(v, float) and not k.startswith('val_')}
        del resumed
    elif t.get('init_from'):
        _init_from(model, t['init_from'], info.is_main)

    net = model
    if info.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == 'cuda' else None,
            find_unused_parameters=bool(t['find_unused_parameters']),
        )

    writer = None
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        import yaml

        (out / 'config.yaml').write_text(yaml.safe_dump({'model': model_cfg.to_dict(), 'train': t}, sort_keys=False))
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / 'tb'))

    batch_size = int(t['batch_size'])
    accum = int(t['grad_accum'])
    max_steps = int(t['max_steps'])
    n_params = sum(p.numel() for p in model.parameters())
    n_params_3d = model.parameter_count_3d() if hasattr(model, 'parameter_count_3d') else None

    def save(path: Path, step: int, epoch: int, batches_in_epoch: int, metrics: dict) -> Path | None:
        counts = all_reduce_sum(class_counts.clone(), info)
        if not info.is_main:
            return None
        meta = {
            'data': [str(Path(d).resolve()) for d in data],
            'split': split,
            'step': step,
            'epoch': epoch,
            'metrics': metrics,
            'best_miou': best_miou,
            'train_class_counts': counts.cpu().tolist(),
            'world_size': info.world_size,
            'device': device_name(dev),
            'wall_time_s': round(prev_wall + time.time() - started, 1),
            'parameters': n_params,
            'parameters_3d': n_params_3d,
        }
        return ckpt_io.save_checkpoint(
            path, model.state_dict(), {'model': model_cfg.to_dict(), 'train': t}, meta,
            optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict() if use_amp else {}, step=step, epoch=epoch, batches_in_epoch=batches_in_epoch,
        )

    def validate(step: int) -> dict:
        from pu_ros.training.eval_segmentation import evaluate

        # evaluate() switches to eval mode and restores the training mode itself
        cm = evaluate(model, val_set, dev, tta=int(t['val_tta']), info=info, progress=False)['confusion']
        res = {'val_miou': cm.miou(), 'val_accuracy': cm.accuracy()}  # both leave out model_cfg.ignore_index
        if writer is not None:
            writer.add_scalar('val/miou', res['val_miou'], step)
            writer.add_scalar('val/accuracy', res['val_accuracy'], step)
        return res

    from tqdm import tqdm

    bar = tqdm(total=max_steps, initial=start_step, desc='train', unit='step', file=sys.stderr, dynamic_ncols=True,
               disable=not (progress and info.is_main))
    step, epoch = start_step, start_epoch
    last_losses: dict[str, float] = dict(prev_losses)  # until this run logs its own
    metrics: dict = {}
    loss_keys: list[str] = []
    sums = None  # (K,) float32 running sums of the loss terms, kept on the device (no host sync per batch)
    n_sum = 0
    points_seen = 0
    t_log = time.time()
    ckpt_path = out / 'last.pt'
    batches_done = skip
    micro = 0
    # a frozen 3D branch cannot learn from the per-scale 3D heads or the distillation: skip them
    aux_3d = 'backbone_3d' not in (t.get('freeze') or [])
    model.train()
    optimizer.zero_grad(set_to_none=True)
    while step < max_steps:
        dataset.set_epoch(epoch)
        order = _step_indices(len(dataset), batch_size, epoch, seed, info, skip)
        loader = DataLoader(dataset, batch_size=batch_size, sampler=order, collate_fn=collate,
                            num_workers=int(t['num_workers']), pin_memory=dev.type == 'cuda', drop_last=False)
        batches_done = skip
        for batch in loader:
            batch.pop('meta', None)
            batch = batch_to_device(batch, dev)
            class_counts += torch.bincount(batch['labels'], minlength=model_cfg.num_classes)[: model_cfg.num_classes]
            points_seen += int(batch['points'].shape[0])
            micro += 1
            sync = micro % accum == 0
            ctx = net.no_sync() if (info.distributed and not sync) else contextlib.nullcontext()
            with ctx:
                with torch.autocast('cuda', dtype=torch.float16, enabled=use_amp):
                    outputs = net(batch, aux_3d=aux_3d)
                    losses = criterion(outputs, batch)
                scaler.scale(losses['total'] / accum).backward()
            values = torch.stack([v.detach().float() for v in losses.values()])
            if sums is None:
                loss_keys, sums = list(losses), values
            else:
                sums += values
            n_sum += 1
            batches_done += 1
            if not sync:
                continue
            if t['clip_grad_norm']:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(t['clip_grad_norm']))
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            bar.update(1)
            if step % int(t['log_interval']) == 0 or step == max_steps:
                last_losses = _mean_losses(loss_keys, sums, n_sum, last_losses)  # the host sync of the interval
                bar.set_postfix(loss=f'{last_losses.get("total", float("nan")):.3f}', epoch=epoch)
                if writer is not None:
                    for k, v in last_losses.items():
                        writer.add_scalar(f'train/{k}', v, step)
                    writer.add_scalar('train/lr', scheduler.get_last_lr()[0], step)
                    dt = max(time.time() - t_log, 1e-9)
                    writer.add_scalar('train/points_per_s', points_seen * info.world_size / dt, step)
                sums, n_sum, points_seen, t_log = None, 0, 0, time.time()
            if val_set is not None and int(t['val_interval']) and step % int(t['val_interval']) == 0:
                metrics.update(validate(step))
                if metrics['val_miou'] > best_miou:
                    best_miou = metrics['val_miou']
                    last_losses = _mean_losses(loss_keys, sums, n_sum, last_losses)
                    save(out / 'best.pt', step, epoch, batches_done, {**last_losses, **metrics})
            if step % int(t['checkpoint_interval']) == 0 and step < max_steps:
                last_losses = _mean_losses(loss_keys, sums, n_sum, last_losses)
                save(ckpt_path, step, epoch, batches_done, {**last_losses, **metrics})
            if step >= max_steps:
                break
        else:
            epoch += 1
            skip = 0
            continue
        break
    bar.close()
    recal = t['bn_recalibration']
    validated_now = bool(int(t['val_interval']) and step % int(t['val_interval']) == 0)
    if recal['scans'] and recal['split']:
        recal_set = SemanticKittiDataset(data, recal['split'], model_cfg, train=False)
        n_bn = recalibrate_batchnorm(model, recal_set, dev, recal['scans'])
        metrics['bn_recalibrated'] = {'layers': n_bn, 'scans': recal['scans'],
                                      'frames': [r.name for r in recal_set.refs]}
        validated_now = False
    if val_set is not None and not validated_now:
        metrics.update(validate(step))
        if metrics['val_miou'] > best_miou:  # the final validation competes like the periodic ones
            best_miou = metrics['val_miou']
            save(out / 'best.pt', step, epoch, batches_done, {**last_losses, **metrics})
    # position after the last optimizer step: next batch of this epoch (or the next epoch)
    path = save(ckpt_path, step, epoch, batches_done, {**last_losses, **metrics})
    if writer is not None:
        writer.close()
    barrier(info)
    cleanup(info)
    summary = {'step': step, 'epoch': epoch, 'rank': info.rank, 'world_size': info.world_size}
    if info.is_main:
        summary.update({'checkpoint': str(path), 'losses': last_losses, 'metrics': metrics,
                        'wall_time_s': round(prev_wall + time.time() - started, 1),
                        'run_wall_time_s': round(time.time() - started, 1)})
    return summary


def _init_from(model, path: str, verbose: bool) -> None:
    """Start from the weights of another checkpoint (``train.init_from``).

    Every tensor whose name and shape match is copied (e.g. the 3D branch of an exported 3D-only model into a
    model with the 2D branch); the optimizer and schedule start fresh.
    """
    from pu_ros.networks import checkpoint as ckpt_io

    state = ckpt_io.state_dict_to_float32(ckpt_io.load_checkpoint(path)['state_dict'])
    own = model.state_dict()
    match = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not match:
        raise TrainConfigError(f'train.init_from {path}: no tensor matches the network')
    model.load_state_dict(match, strict=False)
    # fusion: residual: a fused head not in the checkpoint starts as a copy of the (just loaded) 3D classifier
    copied = not any(k.startswith('head_fused.') for k in match) and model.copy_3d_classifier_to_fused()
    if verbose:
        print(f'init_from {path}: {len(match)} of {len(own)} tensors loaded'
              + ('; fused head copied from the 3D classifier' if copied else ''), file=sys.stderr)


def _mean_losses(keys: list[str], sums, n: int, default: dict[str, float]) -> dict[str, float]:
    """Host copy of the running loss means: ``keys`` names of the (K,) tensor ``sums`` over ``n`` batches.

    One device sync; returns ``default`` when nothing was summed since the last reset.
    """
    if sums is None or n == 0:
        return default
    return dict(zip(keys, (sums / n).tolist()))


# ------------------------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pu-ros train segmentation``."""
    add_train_arguments(parser, 'segmentation', DEFAULT_CONFIG, '--set train.lr=0.1 --set model.hidden_size=32')
    parser.add_argument('--data', action='append', required=True, metavar='ROOT',
                        help='dataset root with sequences/XX/ (repeat to combine several roots)')


def run(args) -> int:
    """Entry point of ``pu-ros train segmentation``; returns the exit status."""
    cfg = config_from_args(args, load_config, 'pu-ros train segmentation')
    if cfg is None:
        return 2
    out = args.out or f'runs/segmentation-{time.strftime("%Y%m%d-%H%M%S")}'
    try:
        summary = train(cfg, args.data, out, resume=args.resume, device=args.device, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f'pu-ros train segmentation: {exc}', file=sys.stderr)
        return 2
    if summary.get('checkpoint'):
        print(json.dumps(summary, default=float))
    return 0
