"""Frozen sub-networks during training (``train.freeze`` of ``pu-ros train segmentation``).

A frozen submodule gets no gradient and no optimizer state, and it always runs in evaluation mode, whatever
``model.train()`` says: its BatchNorm layers normalise with their stored running statistics and never update them,
so it computes during training exactly the features it computes at inference. That is what a head trained on
top of it (e.g. the fused head on a frozen 3D branch) must see. ``recalibrate_batchnorm`` leaves frozen norms
untouched for the same reason (their passes run in evaluation mode, so they count as not reached).
"""

from __future__ import annotations

from pu_ros.training.common import TrainConfigError


def _keep_eval(module, _inputs) -> None:
    """Forward pre-hook: put the module (and its children) back in evaluation mode before it runs."""
    if module.training:
        module.eval()


def freeze_modules(model, names) -> int:
    """Freeze the submodules of ``model`` called ``names`` (``model.named_modules()`` names, e.g. ``backbone_3d``).

    Args:
        model: the ``torch.nn.Module`` (before the optimizer is built and before any DDP wrapping).
        names: iterable of submodule names; empty or None freezes nothing.

    Returns:
        The number of parameters frozen.

    Raises:
        TrainConfigError: a name that is not a submodule of ``model``.
    """
    if not names:
        return 0
    if isinstance(names, str):
        names = [names]
    modules = dict(model.named_modules())
    frozen = 0
    for name in names:
        if not name or name not in modules:
            known = sorted(n for n in modules if n and '.' not in n)
            raise TrainConfigError(f'train.freeze: {name!r} is not a submodule of the network (top level: {known})')
        module = modules[name]
        for p in module.parameters():
            if p.requires_grad:
                p.requires_grad_(False)
                frozen += p.numel()
        module.register_forward_pre_hook(_keep_eval)
        module.eval()
    return frozen
