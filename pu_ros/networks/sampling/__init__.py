"""SampleNet (Lang, Manor, Avidan, CVPR 2020): learned task-aware point-cloud sampling.

- :mod:`.samplenet`: the simplification network, soft projection, and the SampleNet module (optionally
  progressive: any prefix of its output is a sample).
- :mod:`.projection`: inference on the device: hard projection, de-duplication, farthest-point completion.
- :mod:`.patches`: LiDAR scale: the scan cut into fixed-size spatial patches served by one shared small head.
- :mod:`.losses`: simplification and projection losses (never inside ``forward``).
- :mod:`.pointnet`: the PointNet classifier (no T-Net) used as a frozen task network.
"""

from __future__ import annotations

from pu_ros.networks.sampling.samplenet import SampleNet, SampleNetConfig, SoftProjection

__all__ = ['SampleNet', 'SampleNetConfig', 'SoftProjection']
