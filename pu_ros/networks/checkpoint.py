"""Checkpoints that can never run code: plain containers and tensors only, loaded with ``weights_only=True``.

Layout (GUIDE §3)::

    {
      'format': 'pu_ros.checkpoint/1',
      'state_dict': {name: Tensor},                    # model weights (may be fp16, see export_weights)
      'config': {'model': {...}, 'train': {...}},      # SegmentationConfig.to_dict() + the train section
      'meta': {'data': [...], 'epoch': int, 'step': int, 'metrics': {...}, 'git_commit': str | None,
               'time': ISO-8601 str, ...},
      # training checkpoints only (absent in exported weights):
      'optimizer': optimizer.state_dict(), 'scheduler': scheduler.state_dict(), 'scaler': GradScaler.state_dict(),
      'step': int, 'epoch': int,
    }

Everything put in is first converted to plain Python types (numpy scalars/arrays, tuples, paths become
int/float/list/str), so ``torch.load(path, weights_only=True)`` accepts it. Writes are atomic (temporary file in the
same folder, then rename), so an interrupted save never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
import subprocess
import tempfile

import numpy as np

FORMAT = 'pu_ros.checkpoint/1'
REQUIRED_KEYS = ('state_dict', 'config', 'meta')


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be read or lacks the expected structure."""


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a hard dependency of training
        raise ImportError('checkpoints need PyTorch: pip install torch') from exc
    return torch


def to_plain(obj, _path='checkpoint'):
    """Convert ``obj`` to containers ``weights_only`` loading accepts.

    Dicts (string or int keys), lists, tuples (kept as tuples), str, int, float, bool, None and torch tensors stay;
    numpy arrays become tensors, numpy scalars Python numbers, ``Path`` a string.

    Raises:
        TypeError: something else (naming where it sits), e.g. a function or a custom object.
    """
    torch = _torch()
    if obj is None or isinstance(obj, bool):
        return obj
    for base in (str, int, float):  # subclasses (TorchVersion, IntEnum...) become the plain type
        if isinstance(obj, base):
            return base(obj)
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(k, np.generic):
                k = k.item()
            if not isinstance(k, (str, int)):
                raise TypeError(f'{_path}: dict key {k!r} must be str or int')
            out[k] = to_plain(v, f'{_path}.{k}')
        return out
    if isinstance(obj, list):
        return [to_plain(v, f'{_path}[{i}]') for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return tuple(to_plain(v, f'{_path}[{i}]') for i, v in enumerate(obj))
    raise TypeError(f'{_path}: {type(obj).__name__} cannot go into a weights_only checkpoint')


def git_commit(cwd: str | Path | None = None) -> str | None:
    """Commit hash of the source checkout (``+dirty`` appended when files changed), or None outside git."""
    cwd = Path(cwd) if cwd is not None else Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ['git', 'rev-parse', 'HEAD'], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ['git', 'status', '--porcelain', '--untracked-files=no'],
            cwd=cwd, capture_output=True, text=True, timeout=5, check=False,
        )
        return rev.stdout.strip() + ('+dirty' if dirty.stdout.strip() else '')
    except (OSError, subprocess.SubprocessError):
        return None


def now_iso() -> str:
    """Current UTC time as ISO-8601 (seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def save_checkpoint(path: str | Path, state_dict: dict, config: dict, meta: dict | None = None, **extra) -> Path:
    """Write a checkpoint atomically.

    Args:
        path: output file (parent folders are created).
        state_dict: model ``state_dict()`` (name -> Tensor).
        config: ``{'model': cfg.to_dict(), 'train': {...}}``.
        meta: provenance (data, epoch, step, metrics, ...); ``git_commit`` and ``time`` are filled in when absent.
        **extra: further top-level entries (``optimizer``, ``scheduler``, ``scaler``, ``step``, ``epoch``).

    Returns:
        The path written.
    """
    torch = _torch()
    path = Path(path)
    meta = dict(meta or {})
    meta.setdefault('git_commit', git_commit())
    meta.setdefault('time', now_iso())
    meta.setdefault('torch', torch.__version__)
    payload = {'format': FORMAT, 'state_dict': to_plain(dict(state_dict), 'state_dict'),
               'config': to_plain(config, 'config'), 'meta': to_plain(meta, 'meta')}
    for key, value in extra.items():
        payload[key] = to_plain(value, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as fh:
            torch.save(payload, fh)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | Path, map_location='cpu') -> dict:
    """Load a checkpoint with ``weights_only=True`` and check its structure.

    Args:
        path: checkpoint file.
        map_location: passed to ``torch.load`` (default CPU).

    Returns:
        The checkpoint dict (see the module docstring).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: unreadable, not a torch file, refused by ``weights_only`` or missing required keys; the
            message names the path.
    """
    torch = _torch()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, zipfile errors...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f'cannot load checkpoint {path}: {type(exc).__name__}: {first[:300]}') from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'checkpoint {path} holds a {type(ckpt).__name__}, expected a dict')
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f'checkpoint {path} lacks {missing} (has {sorted(map(str, ckpt))})')
    if not isinstance(ckpt['state_dict'], dict) or not all(
        isinstance(v, torch.Tensor) for v in ckpt['state_dict'].values()
    ):
        raise CheckpointError(f'checkpoint {path}: state_dict must map names to tensors')
    if not isinstance(ckpt['config'], dict) or not isinstance(ckpt['meta'], dict):
        raise CheckpointError(f'checkpoint {path}: config and meta must be dicts')
    return ckpt


def export_weights(
    ckpt: dict,
    path: str | Path,
    keep=None,
    dtype=None,
    meta_update: dict | None = None,
) -> Path:
    """Write an inference-only copy of a training checkpoint (no optimizer/scheduler state).

    Args:
        ckpt: a loaded checkpoint dict.
        path: output file.
        keep: optional predicate ``keep(name) -> bool`` selecting state_dict entries (e.g. the 3D branch only).
        dtype: optional floating dtype (``torch.float16``) for floating-point tensors; integer buffers
            (e.g. BatchNorm's ``num_batches_tracked``) are left as they are. Loaders cast back to fp32.
        meta_update: entries merged into ``meta`` (e.g. ``{'weights_dtype': 'float16', 'branches': ['3d']}``).

    Returns:
        The path written.
    """
    state = {}
    for name, tensor in ckpt['state_dict'].items():
        if keep is not None and not keep(name):
            continue
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[name] = tensor.contiguous()
    meta = dict(ckpt.get('meta', {}))
    meta['weights_dtype'] = str(dtype).replace('torch.', '') if dtype is not None else 'as trained'
    meta.update(meta_update or {})
    return save_checkpoint(path, state, ckpt['config'], meta)


def state_dict_to_float32(state_dict: dict) -> dict:
    """Copy of ``state_dict`` with every floating-point tensor cast to float32 (for fp16-stored weights)."""
    torch = _torch()
    return {k: (v.to(torch.float32) if v.is_floating_point() else v) for k, v in state_dict.items()}


def main(argv: list[str] | None = None) -> int:
    """``python -m pu_ros.networks.checkpoint SRC DST [--keep-prefix P ...] [--fp16]``: export inference weights.

    Example (the packaged 3D-only segmentation model)::

        python -m pu_ros.networks.checkpoint runs/seg/last.pt models/segmentation_2dpass_3d.pt
            --keep-prefix backbone_3d. --fp16 --branches 3d
    """
    import argparse
    import sys

    torch = _torch()
    parser = argparse.ArgumentParser(prog='python -m pu_ros.networks.checkpoint',
                                     description='export inference weights from a training checkpoint')
    parser.add_argument('src', help='training checkpoint')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--keep-prefix', action='append', default=None,
                        help='keep only state_dict keys with this prefix (repeatable)')
    parser.add_argument('--fp16', action='store_true', help='store floating-point tensors as float16')
    parser.add_argument('--branches', default=None, help='comma-separated branch names recorded in meta.branches')
    args = parser.parse_args(argv)
    try:
        ckpt = load_checkpoint(args.src)
    except (FileNotFoundError, CheckpointError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    prefixes = tuple(args.keep_prefix) if args.keep_prefix else None
    update = {'exported_from': str(args.src)}
    if args.branches:
        update['branches'] = [b.strip() for b in args.branches.split(',') if b.strip()]
    out = export_weights(ckpt, args.dst, keep=(lambda k: k.startswith(prefixes)) if prefixes else None,
                         dtype=torch.float16 if args.fp16 else None, meta_update=update)
    kept = load_checkpoint(out)['state_dict']
    n = sum(v.numel() for v in kept.values() if v.is_floating_point())
    print(f'wrote {out}: {len(kept)} tensors, {n} floating-point values, {out.stat().st_size / 2**20:.2f} MiB')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
