"""k-nearest neighbours and farthest point sampling in torch: the one kNN and the one FPS of the package.

Both run on whatever device their inputs live on (CUDA or CPU), batched, with no host round trip. Shapes follow
pytorch3d's conventions: B batches, N reference points, M query points, D coordinates (usually 3).

The slow, obvious twins used to check them live in ``test/test_neighbors.py``.
"""

from __future__ import annotations

#: Upper bound on the temporary (B, chunk, N) distance block of :func:`knn_points`, in elements: ~256 MiB fp32 on
#: a GPU (few, large kernels); 4 MiB on the CPU (at least 32 query rows), where blocks that stay in cache are faster
#: (``bench/neighbors.py``, one thread, two runs: 51k queries against 8192 points 2.6-3.1x, 35k points k = 16
#: 1.1-2.6x).
KNN_BLOCK_ELEMENTS = 64 * 1024 * 1024
KNN_BLOCK_ELEMENTS_CPU = 1024 * 1024


def knn_points(query, ref, k: int, *, block_elements: int | None = None):
    """The ``k`` nearest ``ref`` points of every ``query`` point (brute force, exact, chunked over the queries).

    Distances are computed with a matrix product on coordinates centred on the reference cloud's mean (cheap and
    well conditioned for LiDAR scans tens of metres from the origin), then the ``k`` selected ones are recomputed
    exactly from coordinate differences, so returned distances carry no cancellation error.

    Args:
        query: (B, M, D) or (M, D) float tensor.
        ref: (B, N, D) or (N, D) float tensor on the same device, ``N >= k``.
        k: neighbours per query point.
        block_elements: cap on B·chunk·N, bounding peak memory whatever M and N (None: by device, see
            :data:`KNN_BLOCK_ELEMENTS`).

    Returns:
        ``(dist2, idx)``: (B, M, k) squared Euclidean distances, ascending, and (B, M, k) int64 indices into ``ref``
        (without the batch dimension when the inputs had none).

    Raises:
        ValueError: mismatched shapes or ``k`` outside ``1..N``.
    """
    import torch

    squeeze = query.dim() == 2
    if squeeze:
        query, ref = query[None], ref[None]
    if query.dim() != 3 or ref.dim() != 3 or query.shape[0] != ref.shape[0] or query.shape[2] != ref.shape[2]:
        raise ValueError(f'knn_points: query (B, M, D) and ref (B, N, D) expected, got {tuple(query.shape)} and '
                         f'{tuple(ref.shape)}')
    b, m, _ = query.shape
    n = ref.shape[1]
    if not 1 <= k <= n:
        raise ValueError(f'knn_points: k={k} must be in 1..{n} (reference points)')
    centre = ref.mean(dim=1, keepdim=True)
    q_c, r_c = query - centre, ref - centre
    r_sq = (r_c * r_c).sum(-1)  # (B, N)
    if block_elements is None:  # on the CPU: small blocks, but at least 32 query rows while under the GPU cap
        block_elements = (max(KNN_BLOCK_ELEMENTS_CPU, min(KNN_BLOCK_ELEMENTS, 32 * b * n))
                          if query.device.type == 'cpu' else KNN_BLOCK_ELEMENTS)
    chunk = max(1, min(m, int(block_elements) // max(1, b * n)))
    # outputs allocated once: small result tensors allocated between the big per-chunk temporaries fragment the CPU
    # heap (the process's peak memory grew by 0.5-2.4 GB over 400 chunks that way)
    dist2 = torch.empty((b, m, k), dtype=q_c.dtype, device=q_c.device)
    idx = torch.empty((b, m, k), dtype=torch.long, device=q_c.device)
    for s in range(0, m, chunk):
        q = q_c[:, s:s + chunk]
        d = r_sq[:, None, :] - 2.0 * torch.bmm(q, r_c.transpose(1, 2))  # |q|^2 left out: same for the whole row
        if k == 1:  # a plain min is several times cheaper than topk over long rows
            sel = d.argmin(dim=2, keepdim=True)
        else:
            sel = d.topk(k, dim=2, largest=False, sorted=True).indices  # (B, c, k)
        del d
        nb = torch.gather(r_c, 1, sel.reshape(b, -1, 1).expand(-1, -1, r_c.shape[2])).reshape(b, q.shape[1], k, -1)
        exact, order = ((nb - q[:, :, None, :]) ** 2).sum(-1).sort(dim=2)
        dist2[:, s:s + chunk] = exact
        idx[:, s:s + chunk] = torch.gather(sel, 2, order)
    return (dist2[0], idx[0]) if squeeze else (dist2, idx)


def knn_points_tiled(query, ref, k: int = 1, *, tile: float = 1.0, levels: int = 4):
    """Exact :func:`knn_points` for large, spread-out (N, D) clouds (LiDAR scans), by square cells of the x-y plane.

    Queries and references are bucketed into ``tile`` x ``tile`` cells (one sort each); the queries of a cell search,
    with :func:`knn_points`, only the references of the 3 x 3 cells around it. A query whose k-th distance is at most
    ``tile`` has all its true neighbours there, so its answer is exact; the others are searched again with cells
    four times larger, up to ``levels`` times, then against the whole reference cloud. One Python iteration per
    occupied cell, none per point; the cost grows with the local density instead of with M·N.

    Args:
        query: (M, D) float tensor, D >= 2.
        ref: (N, D) float tensor on the same device, ``N >= k``.
        k: neighbours per query point.
        tile: cell size of the first level, in the units of the coordinates.
        levels: number of cell sizes tried before the brute-force search.

    Returns:
        ``(dist2, idx)``: (M, k) squared distances, ascending, and (M, k) int64 indices into ``ref``, as
        :func:`knn_points` gives them (ties aside).
    """
    import torch

    if query.dim() != 2 or ref.dim() != 2 or query.shape[1] != ref.shape[1] or query.shape[1] < 2:
        raise ValueError(f'knn_points_tiled: query (M, D) and ref (N, D) expected, got {tuple(query.shape)} and '
                         f'{tuple(ref.shape)}')
    if not 1 <= k <= ref.shape[0]:
        raise ValueError(f'knn_points_tiled: k={k} must be in 1..{ref.shape[0]} (reference points)')
    if tile <= 0:
        raise ValueError('knn_points_tiled: tile must be > 0')
    m = query.shape[0]
    if levels <= 0 or m == 0:
        return knn_points(query, ref, k) if m else (query.new_zeros((0, k)), torch.zeros((0, k), dtype=torch.int64))
    dist2 = torch.full((m, k), float('inf'), dtype=query.dtype, device=query.device)
    idx = torch.zeros((m, k), dtype=torch.int64, device=query.device)
    q_cell = torch.floor(query[:, :2] / tile).to(torch.int64)
    r_cell = torch.floor(ref[:, :2] / tile).to(torch.int64)
    low = torch.minimum(q_cell.min(0).values, r_cell.min(0).values) - 1
    width = int(torch.maximum(q_cell.max(0).values, r_cell.max(0).values)[1] - low[1]) + 2

    def key(c):
        return (c[..., 0] - low[0]) * width + (c[..., 1] - low[1])

    r_key, r_order = torch.sort(key(r_cell), stable=True)
    q_key, q_order = torch.sort(key(q_cell), stable=True)
    cells, counts = torch.unique_consecutive(q_key, return_counts=True)
    offs = torch.tensor([-width - 1, -width, -width + 1, -1, 0, 1, width - 1, width, width + 1], device=query.device)
    around = cells[:, None] + offs[None]  # (G, 9) keys of the 3 x 3 block
    lo = torch.searchsorted(r_key, around, right=False).tolist()
    hi = torch.searchsorted(r_key, around, right=True).tolist()
    start = 0
    for g, c in enumerate(counts.tolist()):
        q_ids = q_order[start:start + c]
        start += c
        spans = [(a, b) for a, b in zip(lo[g], hi[g]) if b > a]
        if sum(b - a for a, b in spans) < k:
            continue  # searched again at the next level
        cand = torch.cat([r_order[a:b] for a, b in spans])
        d, i = knn_points(query[q_ids], ref[cand], k)
        dist2[q_ids], idx[q_ids] = d, cand[i]
    redo = (dist2[:, -1] > tile * tile).nonzero()[:, 0]
    if redo.numel():
        dist2[redo], idx[redo] = knn_points_tiled(query[redo], ref, k, tile=4 * tile, levels=levels - 1)
    return dist2, idx


def farthest_point_sample(points, m: int, *, selected=None, num_selected=None):
    """Farthest point sampling: ``m`` indices, each the point farthest from all chosen before it.

    Args:
        points: (B, N, D) or (N, D) float tensor.
        m: number of indices to return per batch, ``1 <= m <= N``.
        selected: optional (B, S) or (S,) int64 indices already chosen (``S <= m``, duplicates allowed only if
            the caller accepts them in the output). They come first in the result and the sampling continues from
            them (completion of a partial sample, as SampleNet's inference needs). Without it the first index
            is 0, as in the reference implementations.
        num_selected: optional (B,) int64, ``1 <= num_selected[b] <= S``: only the first ``num_selected[b]``
            entries of row ``b`` of ``selected`` count; the rest of the row is ignored and filled by the sampling
            (a batch of partial samples of different lengths, e.g. after per-row de-duplication).

    Returns:
        (B, m) int64 indices into ``points`` ((m,) without a batch dimension).

    Raises:
        ValueError: ``m`` outside ``1..N``, ``selected`` longer than ``m`` or ``num_selected`` out of range.
    """
    import torch

    squeeze = points.dim() == 2
    if squeeze:
        points = points[None]
        if selected is not None:
            selected = selected[None]
        if num_selected is not None:
            num_selected = num_selected.reshape(1)
    b, n, _ = points.shape
    if not 1 <= m <= n:
        raise ValueError(f'farthest_point_sample: m={m} must be in 1..{n}')
    out = torch.empty(b, m, dtype=torch.int64, device=points.device)
    ar = torch.arange(b, device=points.device)
    if selected is None or selected.shape[1] == 0:
        out[:, 0] = 0
        start = 1
        dist = ((points - points[:, :1]) ** 2).sum(-1)
    else:
        s = selected.shape[1]
        if s > m:
            raise ValueError(f'farthest_point_sample: {s} pre-selected indices but m={m}')
        if num_selected is not None:
            num_selected = num_selected.to(device=points.device, dtype=torch.int64)
            if num_selected.shape != (b,) or bool(((num_selected < 1) | (num_selected > s)).any()):
                raise ValueError(f'farthest_point_sample: num_selected must be (B,) in 1..{s}')
            keep = torch.arange(s, device=points.device)[None] < num_selected[:, None]
            selected = torch.where(keep, selected, selected[:, :1])  # ignored slots: a copy of a chosen point
            start = int(num_selected.min())
        else:
            start = s
        out[:, :s] = selected
        seeds = torch.gather(points, 1, selected[:, :, None].expand(-1, -1, points.shape[2]))
        dist = knn_points(points, seeds, 1)[0][..., 0]  # (B, N): squared distance to the nearest chosen point
    # Coordinate planes and reused buffers: one fused pass per coordinate and no (B, N, D) temporaries, which is
    # several times faster than ((points - p) ** 2).sum(-1) (a reduction over a size-3 axis) on the CPU.
    planes = [points[:, :, d].contiguous() for d in range(points.shape[2])]
    new_d, tmp = torch.empty_like(dist), torch.empty_like(dist)
    n_sel = selected.shape[1] if selected is not None else 0
    for i in range(start, m):
        nxt = dist.argmax(dim=1)
        torch.sub(planes[0], planes[0][ar, nxt][:, None], out=new_d)
        new_d.mul_(new_d)
        for plane in planes[1:]:
            torch.sub(plane, plane[ar, nxt][:, None], out=tmp)
            new_d.addcmul_(tmp, tmp)
        if num_selected is not None and i < n_sel:
            active = num_selected <= i  # (B,) rows whose pre-selected part ended before slot i
            out[:, i] = torch.where(active, nxt, out[:, i])
            new_d = torch.where(active[:, None], new_d, dist)
        else:
            out[:, i] = nxt
        torch.minimum(dist, new_d, out=dist)
    return out[0] if squeeze else out
