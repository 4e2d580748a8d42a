"""Fast writer of many synthetic scans: one SemanticKITTI root with several seeded drives, in parallel.

``pu-ros synth`` writes one drive (:func:`pu_ros.data.synthetic.write_sequence`). Training and the sim-to-real
measure want thousands of *different* scans instead: :func:`write_dataset` writes ``n_scans`` scans as
``ceil(n_scans / frames_per_sequence)`` drives ``ROOT/sequences/{first_sequence + k}`` (scene seed
``seed + k``), frames ``frame_stride`` seconds apart so consecutive scans of a drive see different street. Every
drive keeps the full odometry layout (``calib.txt``, ``times.txt``, ``poses.txt``, ``velodyne/``, ``labels/``,
optionally ``image_2/``), so every reader of the project opens it.

Frames are computed by a process pool (one task per frame, each worker caches the drive it is building), written
by the worker itself, and reported to a tqdm bar as they finish. Output is identical for any number of workers.
"""

from __future__ import annotations

from dataclasses import asdict, replace
import math
from pathlib import Path
import sys

from pu_ros.data.synthetic import write_sequence_metadata

_CACHE: dict = {}


def _seq_for(config_dict: dict):
    from pu_ros.data.synthetic import SceneConfig, SyntheticSequence

    key = tuple(sorted(config_dict.items()))
    seq = _CACHE.get(key)
    if seq is None:
        _CACHE.clear()  # one drive at a time per worker keeps memory flat
        seq = _CACHE[key] = SyntheticSequence(SceneConfig(**config_dict))
    return seq


def _write_frame(task) -> int:
    """Worker: compute frame ``i`` of the drive ``config_dict`` and write it into ``folder``; returns points."""
    config_dict, folder, i = task
    seq = _seq_for(config_dict)
    f = seq.frame(i)
    folder = Path(folder)
    f['points'].astype('<f4').tofile(folder / 'velodyne' / f'{i:06d}.bin')
    f['labels'].astype('<u4').tofile(folder / 'labels' / f'{i:06d}.label')
    if f['image'] is not None:
        from PIL import Image

        Image.fromarray(f['image'], 'RGB').save(folder / 'image_2' / f'{i:06d}.png', compress_level=6)
    return int(f['points'].shape[0])


def write_dataset(root: str | Path, n_scans: int, seed: int = 0, frames_per_sequence: int = 10,
                  frame_stride: float = 1.0, first_sequence: int = 100, workers: int | None = None,
                  progress: bool = True, config=None, style: str = 'kitti') -> dict:
    """Write ``n_scans`` synthetic scans as several seeded drives under ``ROOT/sequences/``.

    Args:
        root: dataset root (created).
        n_scans: total number of scans (>= 1).
        seed: seed of the first drive; drive ``k`` uses ``seed + k``.
        frames_per_sequence: scans per drive (the last drive may have fewer).
        frame_stride: seconds between the scans of a drive (``SceneConfig.frame_period``; 1 s = 10 m at 10 m/s).
        first_sequence: number of the first sequence folder (names are zero-padded to at least 2 digits).
        workers: processes (None: ``os.cpu_count()``; 0 or 1: in this process).
        progress: tqdm bar on stderr.
        config: a :class:`SceneConfig` whose other fields are kept (default: ``SceneConfig(render_image=False,
            style=style)``).
        style: generator style when ``config`` is None (``'kitti'``: the domain-randomised scenes).

    Returns:
        ``{'root', 'sequences' (list of names), 'scans', 'points'}``.
    """
    import os

    from tqdm import tqdm

    from pu_ros.data.synthetic import SceneConfig, SyntheticSequence

    n_scans, fps = int(n_scans), int(frames_per_sequence)
    if n_scans < 1 or fps < 1:
        raise ValueError('write_dataset: n_scans and frames_per_sequence must be >= 1')
    base = config if config is not None else SceneConfig(render_image=False, style=style)
    root = Path(root)
    tasks, names = [], []
    for k in range(math.ceil(n_scans / fps)):
        n = min(fps, n_scans - k * fps)
        cfg = replace(base, seed=int(seed) + k, n_frames=n, frame_period=float(frame_stride))
        name = f'{first_sequence + k:02d}'
        folder = root / 'sequences' / name
        write_sequence_metadata(folder, SyntheticSequence(cfg))
        names.append(name)
        tasks += [(asdict(cfg), str(folder), i) for i in range(n)]
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    total = 0
    bar = tqdm(total=len(tasks), desc='synth', unit='scan', disable=not progress, file=sys.stderr)
    if workers <= 1:
        for t in tasks:
            total += _write_frame(t)
            bar.update(1)
    else:
        import multiprocessing as mp

        with mp.get_context('spawn').Pool(workers) as pool:
            for n_points in pool.imap_unordered(_write_frame, tasks, chunksize=1):
                total += n_points
                bar.update(1)
    bar.close()
    return {'root': str(root), 'sequences': names, 'scans': len(tasks), 'points': total}
