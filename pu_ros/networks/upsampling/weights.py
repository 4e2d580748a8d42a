"""Published PU-Flow weights (unknownue/puflow ``puflow-x4-*.pt``) onto our modules, and loading either format.

The published files are bare state dicts of the reference implementation (Conv2d 1x1 layers, Sequential indices).
:func:`convert_published` renames every tensor to our module names by the rules in ``_RULES``, squeezes 1x1
convolution kernels into Linear weights and checks that every published tensor is used exactly once, that every
tensor of our model is filled, and that shapes agree; the first problem raises :class:`WeightsError` naming it.

CLI: ``pu-ros convert-weights puflow SRC DST`` writes our checkpoint format (weights_only-safe). Converted files
come from third-party weights: never commit them.
"""

from __future__ import annotations

from pathlib import Path
import re
import sys

from pu_ros.networks.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


class WeightsError(CheckpointError):
    """A weights file that does not fit the PU-Flow architecture (the message names the first mismatch)."""


_DENSE = r'(?P<j>\d+)'
_PBN = r'(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)'
# (published name pattern, our name template); {i}, {j}, {p} come from the match.
_EDGE_RULES = [
    (r'convs\.' + _DENSE + r'\.0\.(?P<p>weight|bias)', 'layers.{j}.conv.{p}'),
    (r'convs\.' + _DENSE + r'\.1\.' + _PBN, 'layers.{j}.bn.{p}'),
    (r'conv_out\.(?P<p>weight|bias)', 'out.{p}'),
]
_MLP3 = {'0': 'layer1.conv', '1': 'layer1.bn', '3': 'layer2.conv', '4': 'layer2.bn', '6': 'out'}
_FC = {'0': 'fc1', '2': 'fc2', '4': 'fc3'}
_P = r'(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)'
_RULES = (
    [(r'feat_convs\.(?P<i>\d+)\.' + pat, 'features_units.{i}.' + tpl) for pat, tpl in _EDGE_RULES]
    + [(r'interp\.knn_context\.feat_conv\.' + pat, 'interp.edge.' + tpl) for pat, tpl in _EDGE_RULES]
    + [
        (r'merge_convs\.(?P<i>\d+)\.conv(?P<j>[12])\.(?P<p>weight|bias)', 'merges.{i}.fc{j}.{p}'),
        (r'flow_blocks\.(?P<i>\d+)\.actnorm\.logs', 'blocks.{i}.actnorm.log_scale'),
        (r'flow_blocks\.(?P<i>\d+)\.actnorm\.bias', 'blocks.{i}.actnorm.bias'),
        (r'flow_blocks\.(?P<i>\d+)\.permutate1\.permutater\.W', 'blocks.{i}.mix.weight'),
        (r'flow_blocks\.(?P<i>\d+)\.permutate2\.permutater\.direct_idx', 'blocks.{i}.reverse.perm'),
        (r'flow_blocks\.(?P<i>\d+)\.permutate2\.permutater\.inverse_idx', 'blocks.{i}.reverse.inv_perm'),
        (r'flow_blocks\.(?P<i>\d+)\.coupling1\.bias_net\.layers\.(?P<j>[024])\.(?P<p>weight|bias)',
         'blocks.{i}.coupling.shift_net.{fc}.{p}'),
        (r'flow_blocks\.(?P<i>\d+)\.coupling2\.bias_net\.layers\.(?P<j>[024])\.(?P<p>weight|bias)',
         'blocks.{i}.injector.shift_net.{fc}.{p}'),
        (r'flow_blocks\.(?P<i>\d+)\.coupling2\.scale_net\.layers\.(?P<j>[024])\.(?P<p>weight|bias)',
         'blocks.{i}.injector.log_scale_net.{fc}.{p}'),
        (r'interp\.knn_context\.distance_encoder\.mlp\.(?P<j>[01346])\.' + _P, 'interp.distance.{mlp}.{p}'),
        (r'interp\.weight_unit\.mlp\.(?P<j>[01346])\.' + _P, 'interp.weights.{mlp}.{p}'),
    ]
)
_COMPILED = [(re.compile(pat + r'$'), tpl) for pat, tpl in _RULES]
#: Our tensors with no published counterpart, and the value the converter gives them.
_OURS_ONLY = re.compile(r'blocks\.\d+\.actnorm\.initialized$')


def published_to_ours(name: str) -> str | None:
    """Our tensor name for a published one, or None when no rule matches."""
    for pat, tpl in _COMPILED:
        m = pat.match(name)
        if m:
            g = m.groupdict()
            j = g.get('j')
            return tpl.format(i=g.get('i'), j=j, p=g.get('p'), fc=_FC.get(j, ''), mlp=_MLP3.get(j, ''))
    return None


def is_published_state_dict(obj) -> bool:
    """True for a bare reference-implementation state dict (as in ``puflow-x4-*.pt``)."""
    return isinstance(obj, dict) and any(str(k).startswith('flow_blocks.') for k in obj)


def convert_published(published: dict, config=None) -> dict:
    """Map a published state dict onto a :class:`PUFlow` state dict.

    Args:
        published: name -> Tensor from a ``puflow-x4-*.pt`` file.
        config: :class:`PUFlowConfig` of the target (default: the published architecture).

    Returns:
        Our state dict (every tensor of ``PUFlow(config).state_dict()``).

    Raises:
        WeightsError: a published tensor without a place, used twice or of the wrong shape, or one of our
            tensors left unfilled; the message names the first one.
    """
    import torch

    from pu_ros.networks.upsampling.model import PUFlow, PUFlowConfig

    target = PUFlow(config or PUFlowConfig()).state_dict()
    out = {}
    for name, tensor in published.items():
        if not isinstance(tensor, torch.Tensor):
            raise WeightsError(f'published entry {name!r} is a {type(tensor).__name__}, not a tensor')
        ours = published_to_ours(name)
        if ours is None or ours not in target:
            where = 'matches no PU-Flow rule' if ours is None else f'maps to {ours!r}, absent from our model'
            raise WeightsError(f'unexpected tensor {name!r} {tuple(tensor.shape)}: {where} '
                               '(not a discrete PU-Flow x4 checkpoint?)')
        if ours in out:
            raise WeightsError(f'tensor {name!r} maps to {ours!r}, which is already filled')
        want = target[ours].shape
        value = tensor
        if value.dim() == 4 and value.shape[2:] == (1, 1):  # 1x1 convolution kernel -> Linear weight
            value = value[:, :, 0, 0]
        if tuple(value.shape) != tuple(want):
            raise WeightsError(f'shape mismatch: published {name!r} {tuple(tensor.shape)} -> our {ours!r} '
                               f'expects {tuple(want)}')
        out[ours] = value.to(target[ours].dtype).clone()
    for name, tensor in target.items():
        if name in out:
            continue
        if _OURS_ONLY.match(name):
            out[name] = torch.ones_like(tensor)  # published flows are past their data-dependent initialisation
            continue
        raise WeightsError(f'our tensor {name!r} {tuple(tensor.shape)} has no counterpart in the published file')
    return out


def load_puflow(path: str | Path, map_location='cpu'):
    """Build a :class:`PUFlow` from our checkpoint format or a published ``puflow-x4-*.pt`` (``weights_only``).

    Returns:
        ``(model, meta)``: the model in eval mode on ``map_location``, and the checkpoint's meta dict
        (``{'source': 'published', 'trained_ratio': 4}`` for a published file).

    Raises:
        FileNotFoundError: no such file.
        WeightsError / CheckpointError: unreadable or not a PU-Flow checkpoint (the message names the problem).
    """
    import torch

    from pu_ros.networks.upsampling.model import PUFlow, PUFlowConfig

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'PU-Flow weights not found: {path}')
    try:
        raw = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, zipfile errors...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise WeightsError(f'cannot load {path}: {type(exc).__name__}: {first[:300]}') from None
    if is_published_state_dict(raw):
        config = PUFlowConfig()
        state = convert_published(raw, config)
        meta = {'source': 'published', 'file': path.name, 'trained_ratio': 4}
    elif isinstance(raw, dict) and 'state_dict' in raw:
        ckpt = load_checkpoint(path)
        model_cfg = (ckpt['config'] or {}).get('model', {})
        config = PUFlowConfig.from_dict(model_cfg)
        state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt['state_dict'].items()}
        meta = dict(ckpt['meta'])
        meta.setdefault('trained_ratio', config.trained_ratio)
    else:
        raise WeightsError(f'{path} is neither a pu_ros checkpoint nor a published PU-Flow state dict')
    model = PUFlow(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        what = f'missing {missing[0]!r}' if missing else f'unexpected {unexpected[0]!r}'
        raise WeightsError(f'{path}: does not fit PUFlow({config}): {what}')
    return model.to(map_location).eval(), meta


def add_arguments(parser) -> None:
    """CLI: ``pu-ros convert-weights puflow SRC DST``."""
    parser.add_argument('src', help='published PU-Flow state dict (e.g. puflow-x4-pugan.pt)')
    parser.add_argument('dst', help='output checkpoint in pu_ros format (do not commit third-party weights)')


def run(args) -> int:
    """Convert a published file; exit code 2 with one line on stderr for a bad input."""
    import torch

    from pu_ros.networks.upsampling.model import PUFlowConfig

    src = Path(args.src)
    try:
        if not src.is_file():
            raise FileNotFoundError(f'no such file: {src}')
        raw = torch.load(src, map_location='cpu', weights_only=True)
        if not is_published_state_dict(raw):
            raise WeightsError(f'{src} is not a published PU-Flow state dict (no flow_blocks.* tensors)')
        config = PUFlowConfig()
        state = convert_published(raw, config)
    except (OSError, WeightsError, RuntimeError) as exc:
        print(f'convert-weights: {exc}', file=sys.stderr)
        return 2
    except Exception as exc:  # unpickling errors of a file that is not a torch checkpoint
        print(f'convert-weights: cannot load {src}: {type(exc).__name__}: {str(exc)[:200]}', file=sys.stderr)
        return 2
    save_checkpoint(args.dst, state, {'model': config.to_dict()},
                    {'source': 'published', 'file': src.name, 'trained_ratio': 4,
                     'origin': 'unknownue/puflow pretrained weights, converted by pu-ros convert-weights'})
    n = sum(v.numel() for v in state.values())
    print(f'converted {len(raw)} tensors ({n} values) from {src} -> {args.dst}')
    return 0
