"""``pu-ros pipeline``: the ROS 2 pipeline in one process, fed by a bag (default: a fresh synthetic drive).

Runs the same node classes as ``launch/pipeline.launch.py`` with the same parameter file (``config/pipeline.yaml``)
in one process, without a ROS installation (rclpy from the PyPI wheels is enough); see
:mod:`pu_ros.ros.pipeline_runner` for how. Writes to ``--out DIR``:

- ``output/``: a rosbag2 (MCAP: ``output/output.mcap`` opens in Foxglove) with the labelled clouds
  (``/pu_ros/labelled_points``: x, y, z, intensity, label, rgb) and the bag's ``/tf_static``;
- ``render_XXXXXX.png``: every ``--render-every`` labelled frames, a bird's-eye view and the camera overlay coloured
  by class;
- ``summary.json``: frames in / out / dropped, per-stage and end-to-end latency percentiles, device, live mIoU and
  per-class IoU (null when the bag has no ground-truth ``label`` field), and the last ``~/debug/miou`` value.

Without ``--bag`` it first generates a small synthetic KITTI-like sequence (:mod:`pu_ros.data.synthetic`, 16 beams)
and converts it with ``pu-ros kitti-to-bag`` into ``DIR/input/``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import sys
import time

import numpy as np

STAGE_ORDER = ('sampler', 'upsampler', 'segmentation')
PERCENTILES = (50, 90, 99)


def add_arguments(parser) -> None:
    """Arguments of ``pu-ros pipeline``."""
    parser.add_argument('--bag', type=Path, default=None, metavar='BAG',
                        help='rosbag2 to feed (pu-ros kitti-to-bag layout); default: a fresh synthetic sequence')
    parser.add_argument('--out', type=Path, default=Path('pipeline_out'), metavar='DIR',
                        help='output folder (default: ./pipeline_out; its previous outputs are replaced)')
    parser.add_argument('--sampler', action='store_true', help='enable the SampleNet downsampling stage')
    parser.add_argument('--upsampler', action='store_true', help='enable the PU-Flow upsampling stage')
    parser.add_argument('--fused', action='store_true', help='camera-fused segmentation (needs image topics)')
    parser.add_argument('--rate', type=float, default=1.0, metavar='R',
                        help='playback speed factor (default %(default)s; 1.0 = the recording\'s rate, 10 Hz '
                             'for KITTI)')
    parser.add_argument('--config', type=Path, default=None, metavar='YAML',
                        help='node parameter file (default: config/pipeline.yaml of the package)')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default=None,
                        help='override the device parameter of every stage')
    parser.add_argument('--threads', type=int, default=0, metavar='T',
                        help='torch CPU threads (default %(default)s; 0: torch\'s choice); 1 is much faster on a '
                             'loaded CPU')
    parser.add_argument('--duration', type=float, default=None, metavar='S',
                        help='loop the bag for S seconds instead of playing it once')
    parser.add_argument('--render-every', type=int, default=5, metavar='N',
                        help='write a PNG every N labelled frames (default %(default)s; 0: none)')
    parser.add_argument('--max-renders', type=int, default=8, metavar='N', help='at most N PNGs (default 8)')
    parser.add_argument('--no-bag', action='store_true', help='do not write output/ (the labelled clouds)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    synth = parser.add_argument_group('synthetic input (without --bag)')
    synth.add_argument('--frames', type=int, default=20, metavar='N',
                       help='scans to generate (default %(default)s, 10 Hz)')
    synth.add_argument('--beams', type=int, default=16, metavar='N', help='LiDAR beams (default 16; KITTI: 64)')
    synth.add_argument('--azimuth-steps', type=int, default=1024, metavar='N',
                       help='azimuth steps per turn (default 1024; KITTI: ~2000)')
    synth.add_argument('--seed', type=int, default=0, metavar='S', help='scene seed (default 0)')


def _say(text: str = '') -> None:
    print(text, flush=True)


def _err(text: str) -> int:
    print(f'pu-ros pipeline: error: {text}', file=sys.stderr, flush=True)
    return 2


def _ros_environment() -> None:
    """Loopback discovery and the package's Fast DDS profile (big shared memory), unless already set."""
    from pu_ros.resources import config_path

    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    if not os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE'):
        try:
            os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(config_path('fastdds_profile.xml'))
        except FileNotFoundError:
            pass


def latency_stats(values) -> dict | None:
    """``{'n', 'p50', 'p90', 'p99', 'max'}`` in ms (rounded to 0.01) of a list of latencies, or None when empty."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return None
    out = {'n': int(v.size)}
    for p in PERCENTILES:
        out[f'p{p}'] = round(float(np.percentile(v, p)), 2)
    out['max'] = round(float(v.max()), 2)
    return out


def _torch_threads() -> int | None:
    if 'torch' not in sys.modules:
        return None
    return int(sys.modules['torch'].get_num_threads())


def build_summary(result, stages: tuple[str, ...], label_names) -> dict:
    """The ``summary.json`` dict of a :class:`pu_ros.ros.pipeline_runner.RunResult`."""
    mon = result.monitor
    stage_info = {}
    for stage in STAGE_ORDER:
        if stage not in stages:
            stage_info[stage] = {'enabled': False}
            continue
        _, inp, out = next(link for link in mon.stages if link[0] == stage)
        stage_info[stage] = {
            'enabled': True,
            'input_topic': inp,
            'output_topic': out,
            'frames_in': mon.received(inp),
            'frames_out': mon.received(out),
            'latency_ms': latency_stats(mon.stage_ms[stage]),
            'processing_ms': _node_processing(result.node_stats.get(stage, {})),
        }
    miou = per_class = None
    if mon.confusion is not None:
        s = mon.confusion.summary(label_names)
        miou, per_class = round(float(s['miou']), 6), {k: round(v, 6) for k, v in s['iou'].items()}
    rss = [m for _, m in result.rss_mb]
    return {
        'bag': str(result.options.bag),
        'rate': result.options.rate,
        'frames_in': int(result.frames_in),
        'frames_out': int(result.frames_out),
        'frames_dropped': int(result.frames_dropped),
        'stages': stage_info,
        'end_to_end_ms': latency_stats(ms for _, ms in mon.end_to_end),
        'device': result.device,
        'cpu_threads': _torch_threads(),
        'miou': miou,
        'per_class_iou': per_class,
        'miou_frames': mon.gt_frames,
        'miou_debug_topic': None if mon.debug_miou is None else round(mon.debug_miou, 6),
        'memory_mib': {'start': round(rss[0], 1), 'max': round(max(rss), 1), 'end': round(rss[-1], 1)} if rss
        else None,
        'wall_s': round(result.wall_s, 2),
        'problems': dict(mon.errors),
    }


def _node_processing(stats: dict) -> dict | None:
    """The node's own callback time (``node.monitor`` 'total' stage), rounded like :func:`latency_stats`."""
    total = (stats.get('stages') or {}).get('total')
    if not total or not total.get('n'):
        return None
    return {k: (int(total[k]) if k == 'n' else round(float(total[k]), 2)) for k in ('n', 'p50', 'p90', 'p99', 'max')
            if k in total}


def _calibration_lookup(bag: Path, topics: dict):
    """``stamp -> (image, Calibration)`` for renders, read from the input bag (None without camera topics)."""
    from pu_ros.data import bag as bagio
    from pu_ros.geometry.calibration import Calibration

    if not topics.get('image') or not topics.get('camera_info'):
        return None
    T_cam_lidar = None
    images, infos = {}, {}
    wanted = [topics['image'], topics['camera_info']] + ([topics['tf_static']] if topics.get('tf_static') else [])
    for topic, msgtype, stamp, raw in bagio.read_bag(bag, topics=wanted):
        if topic == topics['tf_static']:
            for tf in bagio.deserialize(raw, msgtype).transforms:
                T_cam_lidar = np.linalg.inv(bagio.transform_to_matrix(tf.transform))
        elif topic == topics['image']:
            images[stamp] = raw
        else:
            infos[stamp] = raw
    if T_cam_lidar is None or not images:
        return None

    def lookup(stamp_ns: int):
        best = min(images, key=lambda s: abs(s - stamp_ns))
        if abs(best - stamp_ns) > 60_000_000 or best not in infos:
            return None
        msg = bagio.deserialize(images[best], 'sensor_msgs/msg/Image')
        try:
            img = bagio.image_to_array(msg)
        except ValueError:
            return None
        info = bagio.deserialize(infos[best], 'sensor_msgs/msg/CameraInfo')
        calib = Calibration(P=np.asarray(info.p).reshape(3, 4), T_cam_lidar=T_cam_lidar, width=int(info.width),
                            height=int(info.height))
        return img, calib

    return lookup


def write_renders(result, out_dir: Path, label_map) -> list[Path]:
    """One screenshot-style PNG per frame the monitor kept; returns the paths."""
    from pu_ros.data import render

    lookup = _calibration_lookup(Path(result.options.bag), result.topics)
    paths = []
    for k, frame in enumerate(result.monitor.kept):
        colors = label_map.colorize(frame['labels'])
        bev = render.bird_eye_view(frame['points'], colors)
        overlay = None
        cam = lookup(frame['stamp_ns']) if lookup is not None else None
        if cam is not None:
            overlay = render.camera_overlay(cam[0], frame['points'], colors, cam[1], radius=1)
        legend = render.legend_for(frame['labels'], label_map.names, label_map.colors)
        title = (f'pu-ros pipeline  |  frame stamp {frame["stamp_ns"] / 1e9:.1f} s  |  '
                 f'{frame["points"].shape[0]} points  |  stages: {", ".join(result.options.stages)}')
        path = out_dir / f'render_{k:03d}.png'
        render.panel(bev, overlay, title=title, legend=legend).save(path, optimize=True)
        paths.append(path)
    return paths


def format_summary(summary: dict) -> str:
    """The one-screen text summary printed at the end."""
    def fmt(stats):
        if not stats:
            return 'no samples'
        return f'p50 {stats["p50"]:.1f}  p90 {stats["p90"]:.1f}  p99 {stats["p99"]:.1f}  max {stats["max"]:.1f} ms'

    lines = [
        f'frames: {summary["frames_in"]} in, {summary["frames_out"]} labelled, {summary["frames_dropped"]} dropped '
        f'(rate {summary["rate"]:g}); device {summary["device"] or "?"}'
        + (f', {summary["cpu_threads"]} CPU thread(s)' if summary.get('cpu_threads') else '')
        + f'; {summary["wall_s"]:.1f} s',
    ]
    for stage, info in summary['stages'].items():
        if info['enabled']:
            own = info.get('processing_ms')
            lines.append(f'  {stage:12s} {info["frames_in"]:5d} in {info["frames_out"]:5d} out  '
                         f'{fmt(info["latency_ms"])}' + (f'  (in the node: p50 {own["p50"]:.1f} ms)' if own else ''))
        else:
            lines.append(f'  {stage:12s} off')
    lines.append(f'  {"end to end":12s} {"":20s}{fmt(summary["end_to_end_ms"])}')
    if summary['miou'] is None:
        lines.append('live mIoU: n/a (the bag has no ground-truth label field)')
    else:
        lines.append(f'live mIoU: {summary["miou"]:.4f} over {summary["miou_frames"]} frames '
                     f'(~/debug/miou said {summary["miou_debug_topic"]})')
        best = sorted(summary['per_class_iou'].items(), key=lambda kv: -kv[1])
        lines.append('  ' + ', '.join(f'{k} {v:.2f}' for k, v in best[:10]))
    mem = summary['memory_mib']
    if mem:
        lines.append(f'memory: {mem["start"]:.0f} MiB at start, {mem["max"]:.0f} MiB max')
    for problem, count in summary['problems'].items():
        lines.append(f'PROBLEM: {problem} ({count}x)')
    return '\n'.join(lines)


def _synthetic_bag(args, input_dir: Path) -> Path:
    from pu_ros.data.kitti_to_bag import convert
    from pu_ros.data.synthetic import SceneConfig, write_sequence

    if input_dir.exists():
        shutil.rmtree(input_dir)
    input_dir.mkdir(parents=True)
    config = SceneConfig(seed=args.seed, n_frames=args.frames, n_beams=args.beams, n_azimuth=args.azimuth_steps,
                         image_width=621, image_height=188)
    t0 = time.monotonic()
    write_sequence(input_dir / 'sequence', config, progress=not args.no_progress)
    bag = input_dir / 'kitti.bag'
    convert(input_dir / 'sequence', bag, progress=False)
    _say(f'  synthetic sequence: {args.frames} scans, {args.beams} beams, seed {args.seed} -> {bag} '
         f'({time.monotonic() - t0:.1f} s)')
    return bag


def _check_args(args) -> str | None:
    if not 0.01 <= args.rate <= 100.0:
        return f'--rate must be in 0.01..100 (the bag player\'s range), got {args.rate:g}'
    if args.duration is not None and args.duration <= 0:
        return '--duration must be > 0'
    if args.bag is None and (args.frames < 1 or not 2 <= args.beams <= 512):
        return '--frames must be >= 1 and --beams in 2..512'
    if args.bag is not None and not Path(args.bag).exists():
        return f'bag {args.bag} does not exist'
    if args.config is not None and not Path(args.config).is_file():
        return f'config file {args.config} does not exist'
    if args.threads < 0:
        return '--threads must be >= 0'
    if args.render_every < 0 or args.max_renders < 0:
        return '--render-every and --max-renders must be >= 0'
    return None


def run(args) -> int:
    """Run the pipeline; 0 when labelled clouds came out, 1 when none did, 2 for bad input."""
    problem = _check_args(args)
    if problem:
        return _err(problem)
    _ros_environment()
    from tqdm import tqdm

    from pu_ros.data.bag import BagError
    from pu_ros.data.labels import LabelMap
    from pu_ros.resources import config_path
    from pu_ros.ros.pipeline_runner import PipelineError, RunnerOptions, run_pipeline

    stages = tuple(s for s in STAGE_ORDER if s == 'segmentation' or getattr(args, s))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    config = args.config
    if config is None:
        try:
            config = config_path('pipeline.yaml')
        except FileNotFoundError:
            config = None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob('render_*.png')) + [out / 'summary.json']:
        old.unlink(missing_ok=True)
    _say(f'pu-ros pipeline: stages {" -> ".join(stages)}, rate {args.rate:g}, parameters {config or "(defaults)"}'
         + (f', {args.threads} CPU thread(s)' if args.threads else ''))
    bag = Path(args.bag) if args.bag is not None else _synthetic_bag(args, out / 'input')
    params = {}
    if args.device is not None:
        from pu_ros.ros.pipeline_runner import STAGE_NODES

        params = {STAGE_NODES[s][2]: {f'{s}.device': args.device} for s in stages}
    options = RunnerOptions(bag=bag, config=config, stages=stages, fused=args.fused, rate=args.rate,
                            duration_s=args.duration, output_bag=None if args.no_bag else out / 'output',
                            keep_every=args.render_every, max_keep=args.max_renders if args.render_every else 0,
                            parameters=params)
    bar = None
    if not args.no_progress:
        bar = tqdm(desc='labelled', unit='frame', file=sys.stderr, dynamic_ncols=True)

    def progress(sent: int, labelled: int) -> None:
        bar.n = labelled
        bar.set_postfix_str(f'{sent} sent, {max(0, sent - labelled)} not (yet) labelled', refresh=False)
        bar.refresh()

    try:
        result = run_pipeline(options, on_progress=progress if bar is not None else None)
    except (PipelineError, BagError) as exc:
        return _err(str(exc))
    finally:
        if bar is not None:
            bar.close()
    label_map = LabelMap.load()
    summary = build_summary(result, stages, label_map.names)
    renders = write_renders(result, out, label_map)
    summary['outputs'] = {
        'bag': None if args.no_bag else str(out / 'output'),
        'mcap': None if args.no_bag else str(out / 'output' / 'output.mcap'),
        'renders': [str(p) for p in renders],
    }
    (out / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
    _say('')
    _say(format_summary(summary))
    _say(f'wrote {out / "summary.json"}' + ('' if args.no_bag else f', {out / "output" / "output.mcap"}')
         + (f', {len(renders)} render(s) {out}/render_*.png' if renders else ''))
    return 0 if result.frames_out > 0 else 1
