"""``pu-ros eval upsampling``: the PU-Flow evaluation table (CD, HD, P2F ×10⁻³) under the PU-GAN protocol.

::

    pu-ros eval upsampling --weights models/upsampling_puflow_x4.pt \
        --weights ../shared/weights/puflow/puflow-x4-pugan.pt \
        --meshes ../shared/data/upsampling/pugan/mesh --out runs/eval_upsampling [--quick]

Protocol: every mesh is normalised to the unit sphere; the input is 2048 Poisson-disk points (the 2048-point
``.xyz`` shipped in ``--inputs``, default ``MESHES/../input``, when one exists for the mesh), the ground truth
2048·R Poisson-disk points; metrics of :mod:`pu_ros.training.metrics_upsampling` (CD and HD on squared distances,
P2F the mean Euclidean distance to the mesh), averaged over meshes. Rows (each for every model):

- ``xR``: ratio R for every ``--ratio`` (default 4 and 16; ratios above the trained ×4 iterate ×4 passes);
- ``noise p%``: Gaussian noise of σ = p % of the unit-sphere radius on the input (×4);
- ``n=...``: input sizes 512, 1024, 4096 (ground truth n·4);
- ``non-uniform``: 2048 inputs drawn with a density that varies by a factor ~10 along a random direction;
- ``K=4``/``K=16``: the latent interpolation mixes K neighbours instead of 8 (at inference, same weights).

Models: every ``--weights`` (published ``puflow-x4-*.pt`` files load through
:func:`pu_ros.networks.upsampling.load_puflow`; a ``decoder: mlp`` checkpoint is the MLP-decoder ablation), the naive
baseline (midpoints of kNN edges, :func:`pu_ros.inference.upsampler.midpoint_upsample`) and, where shipped beside the
inputs (``MESHES/../pugan_x4_output``), PU-GAN's own ×4 outputs. Time = mean wall time of one ``upsample`` call at
the ×4 row; peak memory = CUDA peak allocation, or on CPU the peak RSS growth during the calls (sampled every 5 ms).

Outputs in ``--out``: ``table.csv`` (one line per model × row × mesh and the mean), ``table.md``, ``renders/*.png``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
import sys
import threading
import time

import numpy as np

NOISE = (0.5, 1.0, 1.5)
SIZES = (512, 1024, 4096)
KS = (4, 16)


def nonuniform_subset(mesh, n: int, seed: int) -> np.ndarray:
    """``n`` points of ``mesh`` whose density changes by ~10× along a random direction: (n, 3) float32."""
    from pu_ros.data.meshes import sample_uniform

    rng = np.random.default_rng(seed)
    pool = sample_uniform(mesh, 8 * n, rng)
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    w = np.exp(1.15 * (pool @ d))  # e^(±1.15) at the poles: ~10x between the two sides
    return pool[rng.choice(len(pool), size=n, replace=False, p=w / w.sum())]


class PeakRSS:
    """Context manager: peak resident memory growth (MiB) of this process while active, sampled every 5 ms."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    @staticmethod
    def _rss() -> int:
        try:
            with open('/proc/self/statm') as fh:
                import os

                return int(fh.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
        except OSError:
            return 0

    def _watch(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._rss())
        self.mib = (self.peak - self.base) / 2 ** 20


class Model:
    """One column of the table: a callable ``(points (N, 3), ratio, K) -> (N·ratio, 3)``."""

    def __init__(self, name: str, weights: str | None, device: str, batch_size: int,
                 settings: dict | None = None):
        """``settings``: :class:`~pu_ros.inference.upsampler.UpsamplerConfig` fields given on the command line."""
        self.name = name
        self.up = None
        self.device = device
        if weights:
            from pu_ros.inference.upsampler import Upsampler

            extra = {k: v for k, v in (settings or {}).items() if v is not None}
            self.up = Upsampler(weights=str(weights), device=device, batch_size=batch_size, **extra)
            self.default_k = int(self.up.model.config.interp_k)
            self.decoder = self.up.model.config.decoder

    def __call__(self, points: np.ndarray, ratio: int, k: int | None = None) -> np.ndarray:
        import torch

        pts = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))
        if self.up is None:
            from pu_ros.inference.upsampler import midpoint_upsample

            return midpoint_upsample(pts[None], ratio)[0].numpy()
        k = k or self.default_k
        cfg = self.up.model.config
        old = cfg.interp_k
        cfg.interp_k = self.up.model.interp.k = int(k)
        self.up.config.ratio = int(ratio)
        try:
            return self.up.upsample(pts.numpy())
        finally:
            cfg.interp_k = self.up.model.interp.k = old


def _rows(ratios: list[int], quick: bool) -> list[dict]:
    """The table's rows, most informative first (a run stopped early keeps the first ones)."""
    base = {'ratio': 4, 'n': 2048, 'noise': 0.0, 'k': None, 'kind': 'poisson'}
    rows = [{**base, 'row': f'x{r}', 'ratio': r} for r in ratios]
    rows.append({**base, 'row': 'noise 1.0%', 'noise': 1.0})
    rows.append({**base, 'row': 'non-uniform', 'kind': 'nonuniform'})
    rows.append({**base, 'row': f'n={SIZES[0]}', 'n': SIZES[0]})
    rows.append({**base, 'row': f'K={KS[0]}', 'k': KS[0]})
    rows += [{**base, 'row': f'noise {p}%', 'noise': p} for p in NOISE if p != 1.0]
    rows += [{**base, 'row': f'n={n}', 'n': n} for n in (SIZES[2:] if quick else SIZES[1:])]
    rows += [{**base, 'row': f'K={k}', 'k': k} for k in KS[1:]]
    return rows


class MeshData:
    """A normalised mesh with its cached inputs / ground truths (``cache/<mesh>_<what>.npy``)."""

    def __init__(self, path: Path, cache: Path, inputs_dir: Path | None):
        from pu_ros.data.meshes import normalize_unit_sphere, read_off

        self.mesh = normalize_unit_sphere(read_off(path))
        self.name = path.stem
        self.cache = cache
        self.shipped = inputs_dir / f'{self.name}.xyz' if inputs_dir else None

    def _cached(self, what: str, make):
        f = self.cache / f'{self.name}_{what}.npy'
        if f.exists():
            return np.load(f)
        arr = make()
        self.cache.mkdir(parents=True, exist_ok=True)
        np.save(f, arr)
        return arr

    def input(self, row: dict) -> np.ndarray:
        from pu_ros.data.meshes import read_points, sample_poisson_disk

        if row['kind'] == 'nonuniform':
            pts = self._cached('nonuniform2048', lambda: nonuniform_subset(self.mesh, 2048, 7))
        elif row['n'] == 2048 and self.shipped is not None and self.shipped.exists():
            pts = read_points(self.shipped)
        else:
            pts = self._cached(f'in{row["n"]}', lambda: sample_poisson_disk(self.mesh, row['n'], seed=11))
        if row['noise']:
            rng = np.random.default_rng(int(row['noise'] * 100))
            pts = pts + rng.normal(0.0, row['noise'] / 100.0, pts.shape).astype(np.float32)
        return pts

    def gt(self, n: int) -> np.ndarray:
        from pu_ros.data.meshes import sample_poisson_disk

        return self._cached(f'gt{n}', lambda: sample_poisson_disk(self.mesh, n, seed=5))


def evaluate(models: list[Model], meshes: list[MeshData], rows: list[dict], device: str, extra_outputs=None,
             progress: bool = True, renders: Path | None = None, partial: Path | None = None) -> list[dict]:
    """Run every model on every row and mesh; returns CSV records (per mesh, and ``mesh='mean'``).

    With ``partial`` (a folder), ``table.csv`` there is rewritten after every (row, model), so an interrupted run
    leaves its completed rows (``--merge`` turns them into a table).
    """
    import torch
    from tqdm import tqdm

    from pu_ros.training.metrics_upsampling import evaluate_set

    records = []
    total = len(models) * len(meshes) * len(rows)
    bar = tqdm(total=total, desc='eval', file=sys.stderr, disable=not progress)
    shown: dict = {}
    for name, arr in (extra_outputs or {}).items():  # PU-GAN's shipped x4 outputs: the x4 row only
        per = []
        for md in meshes:
            if md.name in arr:
                m = evaluate_set(arr[md.name], md.gt(2048 * 4), md.mesh)
                rec = {'model': name, 'row': 'x4', 'mesh': md.name, 'n_in': 2048, 'n_out': len(arr[md.name]),
                       **{k: round(v, 4) for k, v in m.items()}, 'time_s': '', 'peak_mib': ''}
                records.append(rec)
                per.append(rec)
                shown.setdefault(md.name, {})[name] = arr[md.name]
        if per:
            records.append(_mean_record(name, 'x4', per))
    for row in rows:  # row-major: a run stopped early still has complete rows (see ``partial``)
        for model in models:
            if row['k'] and model.up is None:
                bar.update(len(meshes))
                continue
            per = []
            for md in meshes:
                inp = md.input(row)
                gt = md.gt(row['n'] * row['ratio'])
                if device.startswith('cuda'):
                    torch.cuda.reset_peak_memory_stats()
                with PeakRSS() as mem:
                    t0 = time.perf_counter()
                    out = model(inp, row['ratio'], row['k'])
                    if device.startswith('cuda'):
                        torch.cuda.synchronize()
                    dt = time.perf_counter() - t0
                peak = torch.cuda.max_memory_allocated() / 2 ** 20 if device.startswith('cuda') else mem.mib
                m = evaluate_set(out, gt, md.mesh)
                rec = {'model': model.name, 'row': row['row'], 'mesh': md.name, 'n_in': len(inp), 'n_out': len(out),
                       **{k: round(v, 4) for k, v in m.items()}, 'time_s': round(dt, 3), 'peak_mib': round(peak, 1)}
                records.append(rec)
                per.append(rec)
                if renders is not None and row['row'] == 'x4' and len(shown.setdefault(md.name, {})) < 9:
                    shown[md.name].setdefault('input', inp)
                    shown[md.name][model.name] = out
                    shown[md.name].setdefault('ground truth', gt)
                bar.update(1)
            records.append(_mean_record(model.name, row['row'], per))
            if partial is not None:
                _write_csv(records, partial)
        if row['row'] == 'x4' and renders is not None:
            from pu_ros.training.render import render_grid

            for mesh_name, sets in shown.items():
                if 'input' in sets:
                    render_grid({'input': sets.pop('input'), **sets}, renders / f'{mesh_name}_x4.png')
    bar.close()
    return records


def _mean_record(model: str, row: str, per: list[dict]) -> dict:
    out = {'model': model, 'row': row, 'mesh': 'mean', 'n_in': per[0]['n_in'] if per else '',
           'n_out': per[0]['n_out'] if per else ''}
    for key in ('cd', 'hd', 'p2f', 'p2f_std', 'time_s', 'peak_mib'):
        vals = [r[key] for r in per if r.get(key) not in (None, '')]
        out[key] = round(float(np.mean(vals)), 4) if vals else ''
    return out


def markdown(records: list[dict], meshes: list[str]) -> str:
    """The Markdown table: one row per condition, one column per model with ``CD / HD / P2F`` (×10⁻³)."""
    means = [r for r in records if r['mesh'] == 'mean']
    models = list(dict.fromkeys(r['model'] for r in means))
    rows = list(dict.fromkeys(r['row'] for r in means))
    cell = {(r['model'], r['row']): r for r in means}
    lines = [f'Mean over {len(meshes)} meshes ({", ".join(meshes)}); each cell CD / HD / P2F, ×10⁻³ '
             '(CD, HD on squared distances; P2F Euclidean).', '',
             '| condition | ' + ' | '.join(models) + ' |', '|---|' + '---|' * len(models)]
    for row in rows:
        vals = []
        for m in models:
            r = cell.get((m, row))
            vals.append(f'{r["cd"]:.3f} / {r["hd"]:.2f} / {r["p2f"]:.2f}' if r else '-')
        lines.append(f'| {row} | ' + ' | '.join(vals) + ' |')
    lines += ['', '| model | time per cloud at x4 (s) | peak memory at x4 (MiB) |', '|---|---|---|']
    for m in models:
        r = cell.get((m, 'x4'))
        if r and r['time_s'] != '':
            lines.append(f'| {m} | {r["time_s"]:.3f} | {r["peak_mib"]} |')
    return '\n'.join(lines) + '\n'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pu-ros eval upsampling``."""
    parser.add_argument('--weights', action='append', default=[], metavar='W',
                        help='PU-Flow weights (ours or a published puflow-x4-*.pt); repeat to compare')
    parser.add_argument('--meshes', default=None, metavar='DIR', help='folder of .off meshes (PU-GAN test set)')
    parser.add_argument('--merge', nargs='+', default=None, metavar='CSV',
                        help='no evaluation: combine table.csv files of earlier runs into OUT/table.{csv,md}')
    parser.add_argument('--ratio', action='append', type=int, default=None, help='ratios (default 4 and 16)')
    parser.add_argument('--inputs', default=None, help='folder of shipped 2048-point inputs (default MESHES/../input)')
    parser.add_argument('--out', default='runs/eval_upsampling', help='output folder (CSV, Markdown, PNG, cache)')
    parser.add_argument('--quick', action='store_true', help='the first 2 meshes with shipped inputs (else the first '
                        '2) and no n=1024 row')
    parser.add_argument('--max-meshes', type=int, default=0, help='use at most this many meshes (0 = all)')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    parser.add_argument('--batch-size', type=int, default=32, help='patches per forward pass')
    parser.add_argument('--patch-overlap', type=float, default=0.0,
                        help='patches per point of the Upsampler (0 = its default: 8 with the FPS merge, 4 when '
                        "--fps-keep 1 as in the reference, 2 with the parent merge)")
    parser.add_argument('--fps-keep', type=float, default=None,
                        help="FPS merge: share of each patch whose children are pooled (default: the Upsampler's "
                        "0.25; 1 = the reference's procedure)")
    parser.add_argument('--fps-relax', type=int, default=None,
                        help="FPS merge: Lloyd steps after the FPS (default: the Upsampler's 3; 0 = the reference's "
                        'procedure)')
    parser.add_argument('--fps-relax-midpoints', type=float, default=None,
                        help="FPS merge: input-edge midpoints within this share of the edge length of a candidate join "
                        "the Lloyd candidates (default: the Upsampler's 0.25; 0 = none)")
    parser.add_argument('--fps-relax-rotations', type=int, default=None,
                        help="FPS merge: the network also sees this many - 1 rotated copies of the input; their "
                        "children join the Lloyd candidates (default: the Upsampler's 4; 1 = none)")
    parser.add_argument('--only', action='append', default=None, metavar='ROW',
                        help="evaluate only these rows (e.g. --only x4 --only 'noise 1.0%%' --only K=4)")
    parser.add_argument('--no-baseline', action='store_true', help='leave out the naive midpoint baseline')
    parser.add_argument('--no-progress', action='store_true')


def run(args) -> int:
    """Entry point of ``pu-ros eval upsampling``."""
    from pu_ros.data.meshes import MeshFormatError, list_meshes, read_points
    from pu_ros.ops.device import device_name, resolve_device

    if args.merge:
        return merge_tables(args.merge, Path(args.out))
    if not args.weights or not args.meshes:
        print('pu-ros eval upsampling: --weights and --meshes are required (or --merge CSV ...)', file=sys.stderr)
        return 2
    try:
        device = resolve_device(args.device)
        paths = list_meshes(args.meshes)
        if not paths:
            raise FileNotFoundError(f'no .off meshes in {args.meshes}')
        for w in args.weights:
            if not Path(w).is_file():
                raise FileNotFoundError(f'weights not found: {w}')
    except (ValueError, FileNotFoundError) as exc:
        print(f'pu-ros eval upsampling: {exc}', file=sys.stderr)
        return 2
    inputs_dir = Path(args.inputs) if args.inputs else Path(args.meshes).parent / 'input'
    inputs_dir = inputs_dir if inputs_dir.is_dir() else None
    if args.quick:
        with_input = [p for p in paths if inputs_dir and (inputs_dir / f'{p.stem}.xyz').exists()]
        paths = (with_input or paths)[:2]
    if args.max_meshes:
        paths = paths[:args.max_meshes]
    out = Path(args.out)
    try:
        meshes = [MeshData(p, out / 'cache', inputs_dir) for p in paths]
        settings = {'patch_overlap': args.patch_overlap or None, 'fps_keep': args.fps_keep, 'fps_relax': args.fps_relax,
                    'fps_relax_midpoints': args.fps_relax_midpoints, 'fps_relax_rotations': args.fps_relax_rotations}
        models = [Model(_label(w, args.weights), w, device, args.batch_size, settings) for w in args.weights]
    except (ValueError, MeshFormatError, FileNotFoundError) as exc:
        print(f'pu-ros eval upsampling: {exc}', file=sys.stderr)
        return 2
    if not args.no_baseline:
        models.append(Model('midpoint baseline', None, device, args.batch_size))
    extra = {}
    shipped = Path(args.meshes).parent / 'pugan_x4_output'
    if shipped.is_dir():
        extra['PU-GAN outputs (shipped)'] = {p.stem: read_points(p) for p in shipped.glob('*.xyz')}
    ratios = args.ratio or [4, 16]
    rows = [r for r in _rows(ratios, args.quick) if not args.only or r['row'] in args.only]
    if not rows:
        print(f'pu-ros eval upsampling: no row matches --only {args.only}', file=sys.stderr)
        return 2
    records = evaluate(models, meshes, rows, device, extra, progress=not args.no_progress,
                       renders=out / 'renders', partial=out)
    _write_csv(records, out)
    md = markdown(records, [m.name for m in meshes])
    md += f'\nDevice: {device_name(device)}. Command: `pu-ros eval upsampling {" ".join(sys.argv[3:])}`\n'
    (out / 'table.md').write_text(md)
    print(md)
    print(f'wrote {out / "table.csv"}, {out / "table.md"} and {out / "renders"}/*.png')
    return 0


KEYS = ['model', 'row', 'mesh', 'n_in', 'n_out', 'cd', 'hd', 'p2f', 'p2f_std', 'time_s', 'peak_mib']


def _write_csv(records: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / 'table.csv', 'w', newline='') as fh:
        w = csv.DictWriter(fh, fieldnames=KEYS)
        w.writeheader()
        w.writerows(records)


def merge_tables(paths: list[str], out: Path) -> int:
    """Combine the ``table.csv`` of several runs (same meshes) into ``out/table.csv`` and ``out/table.md``."""
    records = []
    for p in paths:
        try:
            with open(p, newline='') as fh:
                for r in csv.DictReader(fh):
                    for k in ('cd', 'hd', 'p2f', 'p2f_std', 'time_s', 'peak_mib'):
                        r[k] = float(r[k]) if r.get(k) not in (None, '') else ''
                    records.append(r)
        except OSError as exc:
            print(f'pu-ros eval upsampling: cannot read {p}: {exc.strerror}', file=sys.stderr)
            return 2
    seen, unique = set(), []
    for r in records:  # the first file wins for a repeated (model, row, mesh)
        key = (r['model'], r['row'], r['mesh'])
        if key not in seen:
            seen.add(key)
            unique.append(r)
    _write_csv(unique, out)
    meshes = sorted({r['mesh'] for r in unique if r['mesh'] != 'mean'})
    md = markdown(unique, meshes) + f'\nMerged from: {", ".join(paths)}\n'
    (out / 'table.md').write_text(md)
    print(md)
    return 0


def _label(path: str, all_paths: list[str]) -> str:
    stem = Path(path).stem
    if sum(Path(p).stem == stem for p in all_paths) > 1:
        return str(path)
    return stem
