"""``pu-ros demo --replay-check`` end to end on a small synthetic sequence: generate, convert, replay over DDS, verify.

(``pu-ros demo`` without ``--replay-check`` is ``pu-ros pipeline``: see test/test_pipeline_runner.py.)
"""

import os
from pathlib import Path
import subprocess
import sys

from procs import stop
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.ros


def _demo(tmp_path, *extra, timeout=90):
    env = dict(os.environ)
    env['PYTHONPATH'] = str(ROOT) + os.pathsep + env.get('PYTHONPATH', '')
    cmd = [sys.executable, '-m', 'pu_ros.cli', 'demo', '--replay-check', '--workdir', str(tmp_path / 'work'),
           *map(str, extra)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_demo_three_frames_arrive_intact(tmp_path):
    res = _demo(tmp_path, '--frames', 3, '--rate', 2)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert 'RESULT: OK - all 3 scans and 6 camera messages arrived intact' in out
    scan_lines = [line for line in out.splitlines() if line.strip().startswith('scan ')]
    assert len(scan_lines) == 3 and all(line.rstrip().endswith('intact') for line in scan_lines)
    for topic in ('/kitti/velo/pointcloud', '/kitti/camera_color_left/image_raw',
                  '/kitti/camera_color_left/camera_info'):
        assert f'{topic}: sent 3, received 3, intact 3  OK' in out
    # --workdir keeps the generated sequence and the bag
    assert (tmp_path / 'work' / 'kitti.bag' / 'metadata.yaml').is_file()
    assert len(list((tmp_path / 'work' / 'sequence' / 'velodyne').glob('*.bin'))) == 3


def test_demo_rejects_bad_arguments(tmp_path):
    res = _demo(tmp_path, '--frames', 0, timeout=30)
    assert res.returncode == 2
    assert '--frames must be >= 1' in res.stderr


# ------------------------------------------------------------------ the verdict and the echo tool the demo relies on


def _cloud(n=5, seed=0, labels=True):
    import numpy as np

    from pu_ros.ros.conversions import xyzi_to_cloud

    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 4)).astype(np.float32)
    lab = rng.integers(0, 300, n).astype(np.uint32) if labels else None
    return xyzi_to_cloud(pts, 'velo_link', stamp=1_000 + seed, labels=lab), pts, lab


def test_summarize_records_checksums_that_match_the_source_arrays():
    import numpy as np

    from pu_ros.ros.echo_node import labels_checksum, points_checksum, summarize

    msg, pts, lab = _cloud()
    rec = summarize(msg, '/p')
    assert rec['points'] == 5 and rec['stamp_ns'] == 1_000 and rec['frame_id'] == 'velo_link'
    assert rec['points_sha1'] == points_checksum(pts) and rec['labels_sha1'] == labels_checksum(lab)
    ids, counts = np.unique(lab, return_counts=True)
    assert rec['label_histogram'] == {str(i): int(c) for i, c in zip(ids, counts)}
    msg.data = msg.data[:-1]  # wrong length: recorded as an error, not raised
    assert 'error' in summarize(msg, '/p')


def test_compare_records_flags_missing_corrupt_and_unexpected_messages():
    from pu_ros.ros.echo_node import compare_records, summarize

    sent = [summarize(_cloud(seed=s)[0], '/p') for s in range(3)]
    assert compare_records(sent, [dict(r) for r in sent])['ok']
    assert not compare_records(sent, [])['ok']
    assert not compare_records([], [])['ok']  # nothing sent is not a success

    missing = compare_records(sent, sent[:2])
    assert not missing['ok'] and missing['topics']['/p']['missing'] == [sent[2]['stamp_ns']]

    bad = [dict(r) for r in sent]
    bad[1]['points_sha1'] = '0' * 40
    corrupt = compare_records(sent, bad)
    assert not corrupt['ok'] and corrupt['topics']['/p']['corrupt'] == [sent[1]['stamp_ns']]
    assert corrupt['topics']['/p']['intact'] == 2

    extra = compare_records(sent, sent + [sent[0]])
    assert not extra['ok'] and extra['topics']['/p']['unexpected'] == [sent[0]['stamp_ns']]


def test_echo_cli_writes_json_records_of_a_replayed_bag(tmp_path):
    import json

    from pu_ros.data.kitti_to_bag import convert
    from pu_ros.data.synthetic import SceneConfig, write_sequence
    from pu_ros.ros.echo_node import bag_records, compare_records

    seq = write_sequence(tmp_path / 'seq', SceneConfig(seed=5, n_frames=4, n_azimuth=64, image_width=32,
                                                        image_height=16), progress=False)
    bag = tmp_path / 'bag'
    convert(seq, bag, progress=False)
    env = dict(os.environ)
    env['PYTHONPATH'] = str(ROOT) + os.pathsep + env.get('PYTHONPATH', '')
    cli = [sys.executable, '-m', 'pu_ros.cli']
    echo = subprocess.Popen(cli + ['echo', '--count', '12', '--timeout', '25', '--reliable', '--json',
                                   str(tmp_path / 'echo.json')], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        play = subprocess.run(cli + ['play', str(bag), '--wait-for-subscribers', '20'], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=40)
        out = echo.communicate(timeout=30)[0]
    finally:
        if echo.poll() is None:
            stop(echo)
    assert play.returncode == 0, play.stderr
    assert echo.returncode == 0, out
    assert 'PointCloud2  4' in out  # the summary table
    records = json.loads((tmp_path / 'echo.json').read_text())['messages']
    expected, skipped = bag_records(bag)
    assert '/tf_static' in skipped or any(r['topic'] == '/tf_static' for r in expected)
    expected = [r for r in expected if r['topic'] != '/tf_static']
    assert compare_records(expected, records)['ok']
