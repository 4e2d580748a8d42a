"""``pu-ros upsample IN -o OUT --ratio R [--weights W]``: PU-Flow upsampling of one point cloud file.

Reads and writes ``.xyz``/``.txt``, ``.ply`` (ASCII or binary little-endian), ``.npy`` and KITTI ``.bin`` (with
intensity, carried to the new points by nearest neighbour). Errors in the input give one line on stderr and exit
code 2.
"""

from __future__ import annotations

import sys
import time


def add_arguments(parser) -> None:
    """Arguments of ``pu-ros upsample``."""
    from pu_ros.inference.upsampler import UpsamplerConfig

    d = UpsamplerConfig()
    parser.add_argument('input', help='point cloud (.xyz, .txt, .ply, .npy or KITTI .bin)')
    parser.add_argument('-o', '--output', required=True, help='output file (suffix chooses the format)')
    parser.add_argument('--ratio', type=int, default=d.ratio, help='output points per input point (2..16)')
    parser.add_argument('--weights', default=d.weights,
                        help="PU-Flow weights (ours or a published puflow-x4-*.pt); default models/"
                             'upsampling_puflow_lidar.pt')
    parser.add_argument('--device', default=d.device, choices=('auto', 'cpu', 'cuda'))
    parser.add_argument('--batch-size', type=int, default=d.batch_size, help='patches per forward pass')
    parser.add_argument('--patch-size', type=int, default=d.patch_size)
    parser.add_argument('--strategy', default=d.strategy, choices=('auto', 'weights', 'iterate'))
    parser.add_argument('--merge', default=d.merge, choices=('auto', 'parent', 'fps'))
    parser.add_argument('--patch-overlap', type=float, default=d.patch_overlap,
                        help='about how many patches cover each point (0 = auto)')
    parser.add_argument('--fps-keep', type=float, default=d.fps_keep,
                        help="merge fps: share of each patch whose children are pooled (1 = the reference's way)")
    parser.add_argument('--fps-relax', type=int, default=d.fps_relax,
                        help="merge fps: Lloyd steps after the FPS (0 = none, the reference's way)")
    parser.add_argument('--fps-relax-midpoints', type=float, default=d.fps_relax_midpoints,
                        help='merge fps: input-edge midpoints within this share of the edge length of a candidate '
                        'join the Lloyd candidates (0 = none)')
    parser.add_argument('--fps-relax-rotations', type=int, default=d.fps_relax_rotations,
                        help='merge fps: the network also sees this many - 1 rotated copies of the input; their '
                        'children join the Lloyd candidates (1 = none)')


def run(args) -> int:
    """Upsample ``args.input`` into ``args.output``."""
    from pu_ros.data.cloud_files import read_cloud, write_cloud
    from pu_ros.inference.upsampler import Upsampler, UpsamplerConfig
    from pu_ros.networks.checkpoint import CheckpointError

    try:
        cfg = UpsamplerConfig(ratio=args.ratio, weights=args.weights, device=args.device,
                              batch_size=args.batch_size, patch_size=args.patch_size, strategy=args.strategy,
                              merge=args.merge, patch_overlap=args.patch_overlap, fps_keep=args.fps_keep,
                              fps_relax=args.fps_relax, fps_relax_midpoints=args.fps_relax_midpoints,
                              fps_relax_rotations=args.fps_relax_rotations)
        points = read_cloud(args.input)
        up = Upsampler(cfg)
        t0 = time.perf_counter()
        dense = up.upsample(points)
        seconds = time.perf_counter() - t0
        write_cloud(args.output, dense)
    except (OSError, ValueError, CheckpointError) as exc:  # CloudFileError, WeightsError are ValueErrors
        print(f'upsample: {exc}', file=sys.stderr)
        return 2
    print(f'{args.input}: {len(points)} -> {len(dense)} points (x{args.ratio}, {up.device}, '
          f'{seconds:.1f} s) -> {args.output}')
    return 0
