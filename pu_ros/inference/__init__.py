"""pu_ros.inference: numpy-in, numpy-out wrappers around the networks (device handling, checkpoints).

Importing this package loads neither torch nor spconv; they load when an inference object is created.
"""

from __future__ import annotations

__all__ = ['SampleResult', 'Sampler', 'SamplerConfig', 'SegmentationResult', 'Segmenter', 'SegmenterConfig']


def __getattr__(name):
    if name in ('Segmenter', 'SegmentationResult', 'SegmenterConfig'):
        from pu_ros.inference import segmenter

        return getattr(segmenter, name)
    if name in ('Sampler', 'SamplerConfig', 'SampleResult'):
        from pu_ros.inference import sampler

        return getattr(sampler, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
