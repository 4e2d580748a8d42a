"""kNN block size on the CPU: :func:`pu_ros.ops.neighbors.knn_points` with its default block against the 256 MiB block.

Prints JSON lines: ``what``, ``m`` (queries), ``n`` (references), ``k``, ``device``, ``threads``, ``median_ms`` (the
default block), ``baseline`` (``block_64M``: the GPU-sized block, the CPU default before), ``baseline_ms`` and
``ratio_ms`` (baseline_ms / median_ms: above 1 means the default is faster). Both sides run in the same process on
the same points (a unit sphere: 8192 points, queried by 51k candidates, the sizes of the FPS merge's Lloyd steps
for a 2048-point object ×4; and k = 16 of a 35k-point cloud against itself).

    python bench/neighbors.py [--repeats N] [--threads T]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys


def main(argv=None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=3, help='timed runs per measurement (median reported)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch decides)')
    args = parser.parse_args(argv)
    import torch

    from bench.timing import median_ms
    from pu_ros.ops.device import device_name
    from pu_ros.ops.neighbors import KNN_BLOCK_ELEMENTS, knn_points

    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    sphere = torch.nn.functional.normalize(torch.randn(51200, 3, generator=gen), dim=1)
    cloud = torch.randn(35000, 3, generator=gen) * torch.tensor([20.0, 20.0, 1.0])
    cases = [('lloyd_step', sphere, sphere[:8192], 1), ('cloud_self_k16', cloud, cloud, 16)]
    for what, query, ref, k in cases:
        ms = median_ms(lambda q=query, r=ref, k=k: knn_points(q, r, k), args.repeats)
        base = median_ms(lambda q=query, r=ref, k=k: knn_points(q, r, k, block_elements=KNN_BLOCK_ELEMENTS),
                         args.repeats)
        print(json.dumps({'what': what, 'm': int(query.shape[0]), 'n': int(ref.shape[0]), 'k': k,
                          'device': device_name(torch.device('cpu')), 'threads': torch.get_num_threads(),
                          'median_ms': round(ms, 1), 'baseline': 'block_64M', 'baseline_ms': round(base, 1),
                          'ratio_ms': round(base / ms, 3)}), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
