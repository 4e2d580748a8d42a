"""Training machinery shared by every network's trainer.

YAML config with dotted overrides, the learning-rate schedule and the optimizer. Checkpoint files live in
:mod:`pu_ros.networks.checkpoint`, process groups in :mod:`pu_ros.training.distributed`.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path


class TrainConfigError(ValueError):
    """The training configuration file or an override is invalid."""


# ------------------------------------------------------------------------------------------------ config


def _set_dotted(cfg: dict, dotted: str, value) -> None:
    keys = dotted.split('.')
    node = cfg
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value


def read_train_config(path: str | Path, train_defaults: dict, overrides: list[str] | None = None) -> dict:
    """Read a training YAML (``model`` and ``train`` sections) and apply ``key.sub=value`` overrides.

    Args:
        path: YAML file, or a name relative to the package's ``config/`` folder (``'train/upsampling.yaml'``).
        train_defaults: every allowed ``train`` key with its default; an unknown key is an error.
        overrides: e.g. ``['train.lr=0.1', 'model.hidden_size=16']`` (values parsed as YAML).

    Returns:
        ``{'model': dict, 'train': dict}`` with every train key present.

    Raises:
        TrainConfigError: unreadable file, unknown train key, malformed override.
    """
    import yaml

    path = Path(path)
    if not path.exists() and not path.is_absolute():
        from pu_ros.resources import config_path

        try:
            path = config_path(str(path))
        except FileNotFoundError:
            pass
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise TrainConfigError(f'cannot read training config {path}: {exc.strerror or exc}') from None
    except yaml.YAMLError as exc:
        raise TrainConfigError(f'training config {path} is not valid YAML: {exc}') from None
    if not isinstance(raw, dict) or set(raw) - {'model', 'train'}:
        raise TrainConfigError(f'training config {path}: top level must hold only "model" and "train"')
    cfg = {'model': dict(raw.get('model') or {}), 'train': copy.deepcopy(train_defaults)}
    cfg['train'].update(raw.get('train') or {})
    for item in overrides or []:
        key, sep, value = item.partition('=')
        if not sep or not key.startswith(('model.', 'train.')):
            raise TrainConfigError(f'override {item!r} must look like train.lr=0.1 or model.hidden_size=32')
        try:
            _set_dotted(cfg, key, yaml.safe_load(value))
        except yaml.YAMLError as exc:
            raise TrainConfigError(f'override {item!r}: value is not valid YAML ({exc})') from None
    unknown = sorted(set(cfg['train']) - set(train_defaults))
    if unknown:
        raise TrainConfigError(f'unknown train key(s) {unknown} in {path}; known: {sorted(train_defaults)}')
    return cfg


def validate_optim(t: dict) -> None:
    """Check the optimizer / schedule / size keys of a ``train`` section (raises :class:`TrainConfigError`)."""
    if t['optimizer'] not in ('sgd', 'adamw'):
        raise TrainConfigError(f'train.optimizer must be sgd or adamw, got {t["optimizer"]!r}')
    if t['schedule'] not in ('cosine', 'constant'):
        raise TrainConfigError(f'train.schedule must be cosine or constant, got {t["schedule"]!r}')
    for key in ('batch_size', 'grad_accum', 'max_steps'):
        if int(t[key]) < 1:
            raise TrainConfigError(f'train.{key} must be >= 1, got {t[key]}')


# ------------------------------------------------------------------------------------------------ schedule


class WarmupCosine:
    """Per-step learning rate: linear warm-up from 0, then cosine decay to ``min_lr`` at ``total_steps``.

    The state is the step count alone (plus the base lrs), so ``state_dict()`` is a plain dict.
    """

    def __init__(self, optimizer, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0,
                 cosine: bool = True):
        """Set every group's lr for step 0."""
        self.optimizer = optimizer
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(0, int(warmup_steps))
        self.min_lr = float(min_lr)
        self.cosine = bool(cosine)
        self.base_lrs = [float(g['lr']) for g in optimizer.param_groups]
        self.step_count = 0
        self._apply()

    def factor_lr(self, base: float, step: int) -> float:
        """Learning rate at ``step`` for a group whose peak is ``base``."""
        if self.warmup_steps and step < self.warmup_steps:
            return base * (step + 1) / self.warmup_steps
        if not self.cosine:
            return base
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + 0.5 * (base - self.min_lr) * (1.0 + math.cos(math.pi * t))

    def _apply(self):
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group['lr'] = self.factor_lr(base, self.step_count)

    def step(self) -> None:
        """Advance one optimizer step."""
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """Current lr of every group."""
        return [float(g['lr']) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """Plain dict: step count and base lrs."""
        return {'step_count': self.step_count, 'base_lrs': list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        """Restore the step count (the total and warm-up come from the current config)."""
        self.step_count = int(state['step_count'])
        self.base_lrs = [float(v) for v in state.get('base_lrs', self.base_lrs)]
        self._apply()


def build_optimizer(model, t: dict):
    """SGD or AdamW over the model's trainable parameters (no weight decay on biases and norm weights)."""
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith('.bias') else decay).append(p)
    groups = [{'params': decay, 'weight_decay': float(t['weight_decay'])},
              {'params': no_decay, 'weight_decay': 0.0}]
    if t['optimizer'] == 'sgd':
        return torch.optim.SGD(groups, lr=float(t['lr']), momentum=float(t['momentum']),
                               nesterov=bool(t['nesterov']) and float(t['momentum']) > 0)
    return torch.optim.AdamW(groups, lr=float(t['lr']), betas=tuple(float(b) for b in t['betas']))


# ------------------------------------------------------------------------------------------------ command line


def add_train_arguments(parser, network: str, default_config: str, set_example: str) -> None:
    """The options every ``pu-ros train NETWORK`` shares (a trainer adds its own data options after these).

    ``--config --out --resume --device --max-steps --seed --set --no-progress``; read them back with
    :func:`config_from_args`.
    """
    parser.add_argument('--config', default=None, help=f'training YAML (default: config/{default_config})')
    parser.add_argument('--out', default=None, help=f'output folder (default: runs/{network}-<time>)')
    parser.add_argument('--resume', default=None, metavar='CKPT', help='continue from a training checkpoint')
    parser.add_argument('--device', default=None, choices=['cpu', 'cuda', 'auto'], help='default: cuda if available')
    parser.add_argument('--max-steps', type=int, default=None, help='override train.max_steps')
    parser.add_argument('--seed', type=int, default=None, help='override train.seed')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help=f'override a config value, e.g. {set_example}')
    parser.add_argument('--no-progress', action='store_true', help='no tqdm progress bar')


def config_from_args(args, load_config, prog: str) -> dict | None:
    """``load_config(args.config, overrides)`` with ``--set``, ``--max-steps`` and ``--seed`` as overrides.

    Returns the config, or None after printing one ``prog: reason`` line on stderr (the caller exits 2).
    """
    import sys

    overrides = list(args.set)
    if args.max_steps is not None:
        overrides.append(f'train.max_steps={args.max_steps}')
    if args.seed is not None:
        overrides.append(f'train.seed={args.seed}')
    try:
        return load_config(args.config, overrides)
    except (TrainConfigError, FileNotFoundError) as exc:
        print(f'{prog}: {exc}', file=sys.stderr)
        return None


# ------------------------------------------------------------------------------------------------ run state


def restore_training_state(ckpt: dict, model, optimizer, scheduler) -> tuple[int, float]:
    """Load a training checkpoint's weights, optimizer and schedule into a fresh run (``--resume``).

    Returns:
        ``(step, wall_time_s)`` reached by the run that wrote ``ckpt``.
    """
    from pu_ros.networks.checkpoint import state_dict_to_float32

    model.load_state_dict(state_dict_to_float32(ckpt['state_dict']))
    optimizer.load_state_dict(ckpt['optimizer'])
    scheduler.load_state_dict(ckpt['scheduler'])
    return int(ckpt['step']), float(ckpt['meta'].get('wall_time_s', 0.0))


def open_run_folder(out: Path, cfg: dict):
    """Create ``out``, write the resolved ``out/config.yaml`` and return a TensorBoard writer on ``out/tb``."""
    from torch.utils.tensorboard import SummaryWriter
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    (out / 'config.yaml').write_text(yaml.safe_dump(cfg, sort_keys=False))
    return SummaryWriter(str(out / 'tb'))
