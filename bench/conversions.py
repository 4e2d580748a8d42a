"""Benchmark: PointCloud2 <-> numpy conversions against a per-point struct loop and a bare memcpy.

Run from the repository root: ``python -m bench.conversions [--n 120000] [--repeats 60]``.

Prints one JSON line per comparison with keys ``what, n, device, median_ms, baseline, baseline_ms, ratio`` (plus
``bytes`` and ``repeats``). ``ratio = baseline_ms / median_ms``: above 1 means ours is faster than the baseline.
All sides run in the same process on the same message; each figure is the median over ``repeats`` runs
(the per-point loops over ``max(3, repeats // 10)``).

Baselines:
- ``struct_loop``: one ``struct.unpack_from`` (msg->array, collected into an (N, 4) float32 array) or
  ``struct.pack_into`` (array->msg, into a bytearray then ``msg.data``) per point.
- ``memcpy_bytes``: ``bytes(msg.data)``, a fresh 1.92 MB buffer plus one memcpy (what any copy of the payload costs).
- ``memcpy_copyto``: ``np.copyto`` into a preallocated buffer of the same size (memcpy alone, no allocation).
"""

from __future__ import annotations

import argparse
import array
import json
from pathlib import Path
import struct
import sys

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (``'unknown'`` when unreadable)."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'unknown'


def loop_msg_to_array(msg) -> np.ndarray:
    """Per-point baseline: ``struct.unpack_from`` for every point, then one (N, 4) float32 array."""
    data = bytes(msg.data)
    step, fmt = msg.point_step, '>ffff' if msg.is_bigendian else '<ffff'
    unpack = struct.unpack_from
    return np.array([unpack(fmt, data, off) for off in range(0, msg.width * step, step)], dtype=np.float32)


def loop_array_to_msg(points: np.ndarray, template):
    """Per-point baseline: ``struct.pack_into`` for every point, then ``msg.data``."""
    from sensor_msgs.msg import PointCloud2

    n = points.shape[0]
    buf = bytearray(16 * n)
    pack = struct.pack_into
    for i, p in enumerate(points.tolist()):
        pack('<ffff', buf, 16 * i, *p)
    msg = PointCloud2(header=template.header, height=1, width=n, fields=template.fields, is_bigendian=False,
                      point_step=16, row_step=16 * n, is_dense=True)
    out = array.array('B')
    out.frombytes(buf)
    msg.data = out
    return msg


def main(argv=None) -> int:
    """Run the benchmark and print JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--n', type=int, default=120_000, help='points per cloud')
    parser.add_argument('--repeats', type=int, default=60, help='timed runs per vectorized measurement')
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    from bench.timing import median_ms
    from pu_ros.ops.cloud_layout import xyzi_label_dtype
    from pu_ros.ros import conversions as cv

    n, reps = args.n, args.repeats
    loop_reps = max(3, reps // 10)
    device = cpu_model()
    rng = np.random.default_rng(0)
    points = (rng.standard_normal((n, 4)) * 20).astype(np.float32)
    msg = cv.xyzi_to_cloud(points, 'velo_link', stamp=0)
    nbytes = len(msg.data)
    structured = points.view(xyzi_label_dtype(label=False, rgb=False)).reshape(n)

    # Results must agree before anything is timed.
    assert np.array_equal(loop_msg_to_array(msg), cv.cloud_to_xyzi(msg))
    assert bytes(loop_array_to_msg(points, msg).data) == bytes(cv.xyzi_to_cloud(points, 'velo_link').data)

    src = np.frombuffer(msg.data, np.uint8)
    dst = np.empty_like(src)
    base = {
        'struct_loop_unpack': median_ms(lambda: loop_msg_to_array(msg), loop_reps, warmup=1),
        'struct_loop_pack': median_ms(lambda: loop_array_to_msg(points, msg), loop_reps, warmup=1),
        'memcpy_bytes': median_ms(lambda: bytes(msg.data), reps, warmup=2),
        'memcpy_copyto': median_ms(lambda: np.copyto(dst, src), reps, warmup=2),
    }
    ours = {
        'msg->array cloud_to_array (zero-copy view)': (lambda: cv.cloud_to_array(msg), 'struct_loop_unpack'),
        'msg->array cloud_to_array(copy=True)': (lambda: cv.cloud_to_array(msg, copy=True), 'struct_loop_unpack'),
        'msg->array cloud_to_xyzi(skip_nans=False) (N,4) copy': (
            lambda: cv.cloud_to_xyzi(msg, skip_nans=False), 'struct_loop_unpack'),
        'msg->array cloud_to_xyzi(skip_nans=True) (N,4) copy + NaN filter': (
            lambda: cv.cloud_to_xyzi(msg, skip_nans=True), 'struct_loop_unpack'),
        'array->msg xyzi_to_cloud (N,4) float32': (lambda: cv.xyzi_to_cloud(points, 'velo_link'), 'struct_loop_pack'),
        'array->msg xyzi_to_cloud (N,4) float32, is_dense computed': (
            lambda: cv.xyzi_to_cloud(points, 'velo_link', is_dense=None), 'struct_loop_pack'),
        'array->msg array_to_cloud structured (is_dense computed)': (
            lambda: cv.array_to_cloud(structured, 'velo_link'), 'struct_loop_pack'),
        'array->msg array_to_cloud structured (is_dense given)': (
            lambda: cv.array_to_cloud(structured, 'velo_link', is_dense=True), 'struct_loop_pack'),
    }
    for what, (fn, loop_name) in ours.items():
        ms = median_ms(fn, reps, warmup=2)
        for baseline in (loop_name, 'memcpy_bytes', 'memcpy_copyto'):
            print(json.dumps({
                'what': what, 'n': n, 'device': device, 'median_ms': round(ms, 4), 'baseline': baseline,
                'baseline_ms': round(base[baseline], 4), 'ratio': round(base[baseline] / ms, 2), 'bytes': nbytes,
                'repeats': reps,
            }), flush=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
