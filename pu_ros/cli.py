"""The ``pu-ros`` command line: one entry point, one sub-command per job.

Each sub-command lives in its own module, which provides ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported only when their sub-command runs, so ``pu-ros --help`` needs neither torch nor rclpy.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (command words, module, one-line help)
COMMANDS = [
    (('synth',), 'pu_ros.data.synthetic', 'generate a synthetic KITTI-like sequence (odometry layout)'),
    (('kitti-to-bag',), 'pu_ros.data.kitti_to_bag', 'convert a KITTI odometry/object/raw folder to a rosbag2'),
    (('play',), 'pu_ros.ros.player_node', 'replay a rosbag2 over ROS 2 (rclpy) in real time'),
    (('echo',), 'pu_ros.ros.echo_node', 'subscribe to the KITTI topics and summarise what arrives'),
    (('pipeline',), 'pu_ros.pipeline', 'run the ROS 2 pipeline in one process on a bag (default: synthetic data)'),
    (('demo',), 'pu_ros.demo', 'run the main job on the embedded default data'),
    (('train', 'segmentation'), 'pu_ros.training.train_segmentation', 'train the 2DPASS-style segmentation network'),
    (('eval', 'segmentation'), 'pu_ros.training.eval_segmentation', 'evaluate a segmentation checkpoint'),
    (('train', 'pseudo-labels'), 'pu_ros.training.pseudo_labels',
     'self-training: confident predictions of unlabelled scans as .label files'),
    (('eval', 'sim2real'), 'pu_ros.training.sim2real', 'train on synthetic scans only, evaluate on real ones'),
    (('eval', 'robustness'), 'pu_ros.training.robustness', 'segmentation mIoU under 8 LiDAR corruptions x 3 levels'),
    (('train', 'sampling'), 'pu_ros.training.train_sampling', 'train SampleNet (classification or LiDAR setting)'),
    (('eval', 'sampling'), 'pu_ros.training.eval_sampling', 'SampleNet vs FPS/random/voxel: propagated mIoU by ratio'),
    (('eval', 'sampling-cls'), 'pu_ros.training.eval_sampling_cls', 'SampleNet vs FPS/random: accuracy by M'),
    (('upsample',), 'pu_ros.inference.upsample_cli', 'upsample a point cloud file with PU-Flow (.xyz/.ply/.npy/.bin)'),
    (('convert-weights', 'puflow'), 'pu_ros.networks.upsampling.weights',
     'convert published PU-Flow weights (puflow-x4-*.pt) to our checkpoint format'),
    (('train', 'upsampling'), 'pu_ros.training.train_upsampling', 'train PU-Flow (object patches or LiDAR scans)'),
    (('eval', 'upsampling'), 'pu_ros.training.eval_upsampling', 'the PU-Flow evaluation table (CD, HD, P2F)'),
    (('eval', 'densify'), 'pu_ros.training.eval_densify', 'sparse-LiDAR table: CD and mIoU after upsampling'),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='pu-ros', description=__doc__.splitlines()[0])
    top = parser.add_subparsers(dest='command', metavar='COMMAND')
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, module, help_text in COMMANDS:
        if len(words) == 1:
            sub = top.add_parser(words[0], help=help_text, description=help_text)
        else:
            if words[0] not in groups:
                grp = top.add_parser(words[0], help=f'{words[0]} a network')
                groups[words[0]] = grp.add_subparsers(dest='target', metavar='NETWORK', required=True)
            sub = groups[words[0]].add_parser(words[1], help=help_text, description=help_text)
        sub.set_defaults(_module=module)
        sub.set_defaults(_add_arguments_pending=True)
    return parser


def _parser_for(argv):
    """Build the parser, loading the arguments of the selected sub-command only."""
    parser = build_parser()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    words = [w for w in argv if not w.startswith('-')][:2]
    for cmd_words, module, _ in COMMANDS:
        if tuple(words[: len(cmd_words)]) == cmd_words:
            sub = top.choices[cmd_words[0]]
            if len(cmd_words) == 2:
                inner = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction))
                sub = inner.choices[cmd_words[1]]
            importlib.import_module(module).add_arguments(sub)
            break
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser_for(argv)
    args = parser.parse_args(argv)
    if not getattr(args, '_module', None):
        parser.print_help()
        return 2
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
