"""``pu-ros demo``: the main job on embedded data, i.e. ``pu-ros pipeline`` with its defaults (``make demo``).

It is ``pu-ros pipeline`` (a fresh synthetic sequence through the segmentation node in one process; ``output/``,
renders and ``summary.json`` in ``./pipeline_out``) and takes the same options, with demo defaults: 12 scans
played at 0.2x (2 Hz) on one torch thread, so that most scans get labelled on a CPU.

``pu-ros demo --replay-check`` runs the transport check instead (the demo of earlier versions):

1. generate a synthetic KITTI-like sequence (:mod:`pu_ros.data.synthetic`, odometry layout with labels and
   ``image_2``),
2. convert it to a rosbag2 (:func:`pu_ros.data.kitti_to_bag.convert`),
3. subscribe to the KITTI topics in this process (:class:`pu_ros.ros.echo_node.KittiEcho`),
4. replay the bag with ``pu-ros play`` in a subprocess (it waits until every topic has a subscriber),
5. compare what arrived with the bag content (SHA-1 of points, labels, pixels; camera_info matrices) and the scans
   with the ``.bin`` files, and print a per-scan and a per-topic verdict.

The exit status is 0 only when every played message arrived intact and the player exited cleanly. Traffic stays on
this machine: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and the package's Fast DDS profile
(``config/fastdds_profile.xml``, big shared-memory segment, UDP on loopback) are used unless already set.
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time


def add_arguments(parser) -> None:
    """Arguments of ``pu-ros demo``: those of ``pu-ros pipeline`` plus the replay check's."""
    from pu_ros import pipeline

    pipeline.add_arguments(parser)
    # The demo: a short drive played at 2 Hz, so that a CPU labels most scans; one torch thread, because spconv's
    # multi-threaded CPU kernels slow down badly on a busy machine (pu-ros pipeline keeps 10 Hz and torch's choice).
    parser.set_defaults(frames=12, rate=0.2, threads=1, render_every=2)
    check = parser.add_argument_group('replay check (uses --frames, --seed, --rate, --azimuth-steps too)')
    check.add_argument('--replay-check', action='store_true',
                       help='instead of the pipeline: replay a synthetic bag with `pu-ros play` in a subprocess and '
                            'check that every message arrives intact over DDS')
    check.add_argument('--workdir', type=Path, default=None, metavar='DIR',
                       help='keep the sequence and the bag in DIR (default: a temporary folder, removed at the end)')
    check.add_argument('--best-effort', action='store_true',
                       help='subscribe with the best-effort sensor QoS the pipeline uses (may drop frames under '
                            'load; the default is reliable because the verdict counts every message)')
    check.add_argument('--timeout', type=float, default=120.0, metavar='S',
                       help='give up receiving after S seconds (default 120)')


def _say(text: str) -> None:
    print(text, flush=True)


def _ros_environment() -> dict[str, str]:
    """Loopback-only discovery and the big-SHM Fast DDS profile, unless the user set them (applied to os.environ)."""
    from pu_ros.resources import config_path

    chosen = {}
    if not os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE'):
        os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    chosen['ROS_AUTOMATIC_DISCOVERY_RANGE'] = os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']
    if not os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE'):
        try:
            os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(config_path('fastdds_profile.xml'))
        except FileNotFoundError:
            pass
    chosen['FASTDDS_DEFAULT_PROFILES_FILE'] = os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE', '(Fast DDS default)')
    chosen['ROS_DOMAIN_ID'] = os.environ.get('ROS_DOMAIN_ID', '0')
    return chosen


def _forward(stream, prefix: str, lines: list[str]) -> None:
    for raw in iter(stream.readline, ''):
        line = raw.rstrip()
        lines.append(line)
        print(f'{prefix}{line}', file=sys.stderr, flush=True)
    stream.close()


def _player_command(bag: Path, rate: float) -> list[str]:
    return [sys.executable, '-m', 'pu_ros.cli', 'play', str(bag), '--rate', repr(float(rate)),
            '--wait-for-subscribers', '30']


def _source_checksums(seq_dir: Path) -> list[str]:
    from pu_ros.data.kitti import read_points
    from pu_ros.ros.echo_node import points_checksum

    return [points_checksum(read_points(p)) for p in sorted((seq_dir / 'velodyne').glob('*.bin'))]


def run(args) -> int:
    """``pu-ros pipeline`` (see :mod:`pu_ros.pipeline`), or the replay check with ``--replay-check``."""
    if not args.replay_check:
        from pu_ros import pipeline

        return pipeline.run(args)
    return replay_check(args)


def replay_check(args) -> int:
    """Run the replay check; 0 when every scan, label set, image and camera_info arrived intact."""
    if args.frames < 1 or args.rate <= 0 or args.timeout <= 0:
        print('pu-ros demo --replay-check: error: --frames must be >= 1, --rate and --timeout > 0', file=sys.stderr)
        return 2
    env = _ros_environment()
    from tqdm import tqdm

    from pu_ros.data.kitti_to_bag import convert
    from pu_ros.data.synthetic import SceneConfig, write_sequence
    from pu_ros.ros.echo_node import EchoSession, bag_records, compare_records, format_summary

    own_tmp = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix='pu_ros_demo_')) if own_tmp else Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    seq_dir, bag_dir = workdir / 'sequence', workdir / 'kitti.bag'
    player = None
    try:
        _say(f'pu-ros demo --replay-check: {args.frames} synthetic frames, seed {args.seed}, '
             f'replay rate {args.rate:g}, work folder {workdir}')
        _say('  DDS: ' + ', '.join(f'{k}={v}' for k, v in env.items()))

        _say('[1/5] generating the synthetic KITTI-like sequence ...')
        t0 = time.monotonic()
        if seq_dir.exists():
            shutil.rmtree(seq_dir)
        config = SceneConfig(seed=args.seed, n_frames=args.frames, n_azimuth=args.azimuth_steps)
        write_sequence(seq_dir, config, progress=True)
        _say(f'      {seq_dir} ({time.monotonic() - t0:.1f} s)')

        _say('[2/5] converting it to a rosbag2 (pu-ros kitti-to-bag) ...')
        t0 = time.monotonic()
        summary = convert(seq_dir, bag_dir, overwrite=True, progress=True)
        _say(f'      {bag_dir}: {summary["clouds"]} clouds ({summary["labelled_clouds"]} labelled), '
             f'{summary["images"]} images ({time.monotonic() - t0:.1f} s)')

        expected, skipped = bag_records(bag_dir)
        for topic, reason in sorted(skipped.items()):
            _say(f'      {topic}: not played here ({reason})')
        expected_counts: dict[str, int] = {}
        for rec in expected:
            expected_counts[rec['topic']] = expected_counts.get(rec['topic'], 0) + 1
        topics = sorted(expected_counts)

        _say(f'[3/5] subscribing to {", ".join(topics)} '
             f'({"best effort" if args.best_effort else "reliable"}) ...')
        bar = tqdm(total=len(expected), desc='received', unit='msg', file=sys.stderr, leave=False)
        settings = {'topics': topics, 'reliable': not args.best_effort, 'depth': 50}
        with EchoSession(settings, on_record=lambda rec: bar.update(1)) as echo:
            _say('[4/5] replaying the bag in a subprocess: pu-ros ' + ' '.join(_player_command(bag_dir, args.rate)[3:]))
            player = subprocess.Popen(_player_command(bag_dir, args.rate), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, bufsize=1)
            player_lines: list[str] = []
            forward = threading.Thread(target=_forward, args=(player.stdout, '      player | ', player_lines),
                                       daemon=True)
            forward.start()

            def complete() -> bool:
                return all(echo.node.counts.get(t, 0) >= n for t, n in expected_counts.items())

            def stop() -> bool:
                return complete() or player.poll() is not None

            echo.spin_until(stop, timeout=args.timeout)
            if not complete() and player.poll() is not None:
                echo.spin_until(complete, timeout=2.0)  # messages still in flight when the player exited
            received = list(echo.node.records)
        bar.close()
        try:
            player_rc = player.wait(timeout=15)
        except subprocess.TimeoutExpired:
            player_rc = _stop(player)
        forward.join(timeout=5)

        _say('[5/5] checking what arrived against the bag and the .bin files ...')
        result = compare_records(expected, received)
        sources = _source_checksums(seq_dir)
        ok = _report(expected, received, result, sources)
        _say('')
        _say(format_summary(received) if received else 'nothing was received')
        _say('')
        if player_rc != 0:
            _say(f'player exited with status {player_rc}')
            ok = False
        n_scans = sum(r['type'].endswith('/PointCloud2') for r in expected)
        n_camera = sum(r['type'].endswith(('/Image', '/CameraInfo')) for r in expected)
        n_other = len(expected) - n_scans - n_camera
        if ok:
            _say(f'RESULT: OK - all {n_scans} scans and {n_camera} camera messages arrived intact'
                 + (f', and {n_other} /tf_static message(s)' if n_other else ''))
        else:
            _say('RESULT: FAILED - see the lines marked above')
        return 0 if ok else 1
    except KeyboardInterrupt:
        return 130
    finally:
        if player is not None and player.poll() is None:
            _stop(player)
        if own_tmp:
            shutil.rmtree(workdir, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> int:
    """SIGINT, then SIGKILL after 5 s: a DDS process killed outright can leave Fast DDS shared memory half made."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _report(expected: list[dict], received: list[dict], result: dict, sources: list[str]) -> bool:
    """Print one line per scan and per topic; returns True when everything is intact."""
    ok = result['ok']
    got = {(r['topic'], r['stamp_ns']): r for r in received}
    scans = [r for r in expected if r['type'].endswith('PointCloud2')]
    for i, rec in enumerate(scans):
        other = got.get((rec['topic'], rec['stamp_ns']))
        source_ok = i < len(sources) and rec.get('points_sha1') == sources[i]
        if other is None:
            verdict = 'MISSING'
        elif any(other.get(k) != rec.get(k) for k in ('points', 'points_sha1', 'labels_sha1')):
            verdict = 'CORRUPT'
        else:
            verdict = 'intact'
        if not source_ok:
            verdict += ' (bag differs from the .bin file)'
            ok = False
        labels = 'labels' if rec.get('labels_sha1') else 'no labels'
        _say(f'      scan {i:3d}  stamp {rec["stamp_ns"] / 1e9:.3f} s  {rec.get("points", 0):7d} points  '
             f'{labels:9s}  {verdict}')
    for topic, t in sorted(result['topics'].items()):
        problems = [f'{len(t[k])} {k}' for k in ('missing', 'corrupt', 'unexpected') if t[k]]
        status = 'OK' if not problems else 'PROBLEM: ' + ', '.join(problems)
        _say(f'      {topic}: sent {t["expected"]}, received {t["received"]}, intact {t["intact"]}  {status}')
    return ok
