"""Torch device choice and naming, shared by inference, training and benchmarks."""

from __future__ import annotations


def resolve_device(device: str | None) -> str:
    """``None``/``'auto'`` -> ``'cuda'`` when available else ``'cpu'``; ``'cuda'`` without CUDA raises ValueError."""
    import torch

    if device in (None, '', 'auto'):
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if str(device).startswith('cuda') and not torch.cuda.is_available():
        raise ValueError(f'device {device!r} requested but CUDA is not available (use --device cpu)')
    return str(device)


def device_name(device) -> str:
    """Human-readable name of a torch device: the GPU name, or the CPU model from /proc/cpuinfo."""
    import platform

    import torch

    device = torch.device(device)
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    try:
        with open('/proc/cpuinfo') as fh:
            for line in fh:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
