"""Point cloud files: ``.xyz``/``.txt`` (ASCII), ``.ply`` (ASCII or binary little-endian), ``.npy``, KITTI ``.bin``.

Clouds are (N, 3) x, y, z or (N, 4) x, y, z, intensity float32 arrays. KITTI ``.bin`` files are always 4 columns
(intensity 0 is written for a 3-column cloud). PLY vertices may carry an ``intensity`` (or ``scalar_intensity``)
property; other properties are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SUFFIXES = ('.xyz', '.txt', '.ply', '.npy', '.bin')
_PLY_TYPES = {'char': 'i1', 'int8': 'i1', 'uchar': 'u1', 'uint8': 'u1', 'short': 'i2', 'int16': 'i2',
              'ushort': 'u2', 'uint16': 'u2', 'int': 'i4', 'int32': 'i4', 'uint': 'u4', 'uint32': 'u4',
              'float': 'f4', 'float32': 'f4', 'double': 'f8', 'float64': 'f8'}
_INTENSITY = ('intensity', 'scalar_intensity', 'remission')


class CloudFileError(ValueError):
    """A point cloud file that cannot be read or written (the message names the file and the problem)."""


def _check(arr: np.ndarray, path: Path) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise CloudFileError(f'{path}: expected (N, 3) or (N, 4) points, got shape {arr.shape}')
    return np.ascontiguousarray(arr[:, :4], dtype=np.float32)


def _read_ply(path: Path) -> np.ndarray:
    with open(path, 'rb') as fh:
        if fh.readline().strip() != b'ply':
            raise CloudFileError(f'{path}: not a PLY file (no "ply" magic line)')
        fmt, n, props, in_vertex = None, None, [], False
        while True:
            line = fh.readline()
            if not line:
                raise CloudFileError(f'{path}: PLY header has no end_header')
            words = line.decode('ascii', 'replace').split()
            if not words or words[0] in ('comment', 'obj_info'):
                continue
            if words[0] == 'format':
                fmt = words[1]
            elif words[0] == 'element':
                in_vertex = words[1] == 'vertex'
                if in_vertex:
                    n = int(words[2])
                elif n is None:
                    raise CloudFileError(f'{path}: PLY elements before "vertex" are not supported')
            elif words[0] == 'property' and in_vertex:
                if words[1] == 'list' or words[1] not in _PLY_TYPES:
                    raise CloudFileError(f'{path}: unsupported PLY vertex property {" ".join(words[1:])!r}')
                props.append((words[2], _PLY_TYPES[words[1]]))
            elif words[0] == 'end_header':
                break
        names = [p[0] for p in props]
        if n is None or not {'x', 'y', 'z'} <= set(names):
            raise CloudFileError(f'{path}: PLY needs a vertex element with x, y, z properties')
        cols = ['x', 'y', 'z'] + [c for c in _INTENSITY if c in names][:1]
        if fmt == 'binary_little_endian':
            dtype = np.dtype([(name, '<' + t) for name, t in props])
            data = np.frombuffer(fh.read(dtype.itemsize * n), dtype=dtype)
            if len(data) != n:
                raise CloudFileError(f'{path}: truncated PLY body ({len(data)} of {n} vertices)')
            return np.stack([data[c].astype(np.float32) for c in cols], axis=1)
        if fmt == 'ascii':
            rows = np.loadtxt(fh, dtype=np.float64, max_rows=n, ndmin=2)
            if rows.shape[0] != n or rows.shape[1] < len(props):
                raise CloudFileError(f'{path}: truncated PLY body')
            return rows[:, [names.index(c) for c in cols]].astype(np.float32)
        raise CloudFileError(f'{path}: PLY format {fmt!r} not supported (ascii, binary_little_endian)')


def read_cloud(path: str | Path) -> np.ndarray:
    """Read a point cloud: (N, 3) or (N, 4) float32 (KITTI ``.bin``: always 4 columns).

    Raises:
        FileNotFoundError: no such file.
        CloudFileError: unknown suffix or malformed content.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'no such file: {path}')
    suffix = path.suffix.lower()
    try:
        if suffix in ('.xyz', '.txt'):
            return _check(np.loadtxt(path, dtype=np.float64, ndmin=2, delimiter=None), path)
        if suffix == '.npy':
            return _check(np.load(path, allow_pickle=False), path)
        if suffix == '.bin':
            size = path.stat().st_size
            if size % 16:
                raise CloudFileError(f'{path}: KITTI .bin size {size} bytes is not a multiple of 16 (x, y, z, i)')
            return np.fromfile(path, dtype='<f4').reshape(-1, 4).astype(np.float32)
        if suffix == '.ply':
            return _check(_read_ply(path), path)
    except (ValueError, OSError) as exc:
        if isinstance(exc, CloudFileError):
            raise
        raise CloudFileError(f'cannot read {path}: {exc}') from None
    raise CloudFileError(f'{path}: unsupported suffix {suffix!r} (use one of {", ".join(SUFFIXES)})')


def write_cloud(path: str | Path, points: np.ndarray) -> Path:
    """Write (N, 3) or (N, 4) points; ``.ply`` is binary little-endian float32 (intensity as a 4th property)."""
    path = Path(path)
    pts = _check(points, path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise CloudFileError(f'{path}: unsupported suffix {suffix!r} (use one of {", ".join(SUFFIXES)})')
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in ('.xyz', '.txt'):
        np.savetxt(path, pts, fmt='%.6f')
    elif suffix == '.npy':
        np.save(path, pts)
    elif suffix == '.bin':
        out = np.zeros((len(pts), 4), dtype='<f4')
        out[:, :pts.shape[1]] = pts
        out.tofile(path)
    else:
        names = ['x', 'y', 'z', 'intensity'][:pts.shape[1]]
        header = ['ply', 'format binary_little_endian 1.0', f'element vertex {len(pts)}']
        header += [f'property float {n}' for n in names] + ['end_header']
        with open(path, 'wb') as fh:
            fh.write(('\n'.join(header) + '\n').encode('ascii'))
            fh.write(pts.astype('<f4').tobytes())
    return path
