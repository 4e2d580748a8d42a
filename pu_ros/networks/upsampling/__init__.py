"""pu_ros.networks.upsampling: the PU-Flow upsampling network (normalizing flow + learned latent interpolation).

Exports load lazily (importing the package does not import torch).
"""

from importlib import import_module

_EXPORTS = {
    'PUFlow': 'model',
    'PUFlowConfig': 'model',
    'FlowBlock': 'flow',
    'ActNorm': 'flow',
    'InvertibleLinear': 'flow',
    'AdditiveCoupling': 'flow',
    'AffineInjector': 'flow',
    'standard_normal_logp': 'flow',
    'DenseEdgeConv': 'features',
    'MergeUnit': 'features',
    'LatentInterpolation': 'interpolation',
    'WeightsError': 'weights',
    'convert_published': 'weights',
    'load_puflow': 'weights',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    """Import an exported name on first use."""
    if name in _EXPORTS:
        return getattr(import_module(f'{__name__}.{_EXPORTS[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
