"""Ring recovery, beam decimation and ring interpolation on synthetic scans (ring known) and real KITTI scans."""

import numpy as np
import pytest

from pu_ros.data.beams import decimate_beams, elevation, interpolate_rings, ring_from_elevation, ring_index
from pu_ros.data.synthetic import SceneConfig, SyntheticSequence


@pytest.mark.parametrize('n_beams,n_azimuth,seed', [(64, 400, 0), (64, 700, 2), (32, 900, 1)])
def test_ring_index_recovers_synthetic_rings_exactly(n_beams, n_azimuth, seed):
    seq = SyntheticSequence(SceneConfig(seed=seed, n_beams=n_beams, n_azimuth=n_azimuth, n_frames=1,
                                        render_image=False))
    pts, _ = seq.scan(0)
    truth = ring_from_elevation(pts, seq.elevations)  # elevation table, top first: exact (noise is along the ray)
    found = ring_index(pts)
    assert len(np.unique(truth)) == n_beams
    np.testing.assert_array_equal(found, truth)
    sparse, mask, ring = decimate_beams(pts, 4)
    assert set(np.unique(truth[mask])) == set(range(0, n_beams, 4))
    assert sparse.shape[1] == 4 and mask.sum() == sparse.shape[0]


def test_interpolate_rings_lies_between_rings():
    seq = SyntheticSequence(SceneConfig(seed=0, n_beams=16, n_azimuth=300, n_frames=1, render_image=False))
    pts, _ = seq.scan(0)
    ring = ring_index(pts)
    dense = interpolate_rings(pts, ring, 4)
    assert dense.shape[1] == 4 and 2.5 * len(pts) < len(dense) <= 4 * len(pts)
    np.testing.assert_array_equal(dense[:len(pts)], pts)
    new_el = elevation(dense[len(pts):])
    assert new_el.max() <= seq.elevations.max() + 1e-6 and new_el.min() >= seq.elevations.min() - 1e-6
    # a new point's elevation falls strictly between two laser elevations (never on a ring)
    gap = np.abs(new_el[:, None] - seq.elevations[None]).min(1)
    assert np.median(gap) > 0.2 * np.abs(np.diff(seq.elevations)).min()


@pytest.mark.data
def test_ring_index_on_real_kitti_scans(seq00):
    from pu_ros.data.kitti import read_points

    for name in ('000000', '000007'):
        pts = read_points(seq00 / 'velodyne' / f'{name}.bin')
        ring = ring_index(pts)
        assert ring.max() + 1 == 64
        el = elevation(pts)
        med = np.array([np.median(el[ring == r]) for r in range(64)])
        assert np.all(np.diff(med) < 0)  # numbered top to bottom
        # rings are consecutive runs of the file that start just after azimuth 0 (the HDL-64's seam in KITTI)
        starts = np.flatnonzero(np.diff(ring)) + 1
        assert len(starts) == 63
        az = np.degrees(np.arctan2(pts[starts, 1], pts[starts, 0]))
        assert np.median(np.abs(az)) < 1.0
        counts = np.bincount(ring, minlength=64)
        assert counts.min() > 500
        sparse, mask, _ = decimate_beams(pts, 4, ring=ring)
        assert 0.2 < len(sparse) / len(pts) < 0.3
