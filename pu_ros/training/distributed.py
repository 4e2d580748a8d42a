"""Distributed data parallel (DDP) set-up from torchrun's environment.

``torchrun --nproc_per_node=N -m pu_ros.cli train segmentation ...`` (or ``torchrun ... $(which pu-ros) ...``)
sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; multi-node runs add
``--nnodes``/``--node_rank``/``--rdzv_endpoint`` and torchrun fills in the same variables. Without them
everything here degrades to a single process (rank 0 of 1) and no process group is created.

Backend: NCCL when training on CUDA (one GPU per local rank), Gloo on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
import datetime as _dt
import os

from pu_ros.ops.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0..world_size-1).
        local_rank: rank on this node (selects the GPU).
        world_size: number of processes.
        device: torch device string for this process (``'cpu'``, ``'cuda:LOCAL_RANK'``).
        backend: ``'nccl'``, ``'gloo'`` or ``None`` (single process).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: str = 'cpu'
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        """True when a process group is in use."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the only rank that logs and writes checkpoints)."""
        return self.rank == 0


def env_world() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment variables; (0, 0, 1) when absent."""

    def _int(name, default):
        value = os.environ.get(name, '')
        try:
            return int(value) if value != '' else default
        except ValueError:
            raise ValueError(f'environment variable {name}={value!r} is not an integer') from None

    world = _int('WORLD_SIZE', 1)
    rank = _int('RANK', 0)
    local = _int('LOCAL_RANK', rank)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f'inconsistent torchrun environment: RANK={rank} WORLD_SIZE={world}')
    return rank, local, world



def init_distributed(device: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Initialise the process group when launched by torchrun, else return single-process info.

    Args:
        device: ``'cpu'``, ``'cuda'`` or ``None`` (auto). Under DDP on CUDA each process takes ``cuda:LOCAL_RANK``.
        timeout_s: collective timeout.

    Returns:
        :class:`DistInfo` for this process.
    """
    import torch
    import torch.distributed as dist

    device = resolve_device(device)
    rank, local, world = env_world()
    if world == 1:
        if device == 'cuda':
            device = 'cuda:0'
        return DistInfo(device=device)
    use_cuda = device.startswith('cuda')
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise ValueError(f'LOCAL_RANK={local} but only {torch.cuda.device_count()} CUDA device(s) visible')
        torch.cuda.set_device(local)
        device = f'cuda:{local}'
    backend = 'nccl' if use_cuda else 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=_dt.timedelta(seconds=timeout_s))
    return DistInfo(rank=rank, local_rank=local, world_size=world, device=device, backend=backend)


def cleanup(info: DistInfo) -> None:
    """Destroy the process group (no-op for a single process)."""
    if info.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for all ranks (no-op for a single process)."""
    if info.distributed:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum(tensor, info: DistInfo):
    """Sum a tensor over ranks in place and return it (identity for a single process).

    Under NCCL a CPU tensor is reduced through a copy on this rank's GPU (NCCL only moves CUDA tensors).
    """
    if info.distributed:
        import torch.distributed as dist

        if info.backend == 'nccl' and tensor.device.type != 'cuda':
            staged = tensor.to(info.device)
            dist.all_reduce(staged, op=dist.ReduceOp.SUM)
            tensor.copy_(staged.cpu())
        else:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
