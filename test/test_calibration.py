"""Calibration dataclass: validation and projection against an obvious per-point twin."""

import numpy as np
import pytest

from pu_ros.geometry import Calibration

P2 = np.array([[721.5, 0.0, 609.6, 44.9], [0.0, 721.5, 172.9, 0.2], [0.0, 0.0, 1.0, 0.003]])
T = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, -0.08], [1.0, 0.0, 0.0, -0.27], [0.0, 0.0, 0.0, 1.0]])


def _project_one(calib, p):
    cam = calib.T_cam_lidar @ np.append(p, 1.0)
    pix = calib.P @ cam
    return pix[:2] / pix[2], cam[2]


def test_project_matches_per_point_twin():
    calib = Calibration(P2, T, 1242, 375)
    rng = np.random.default_rng(0)
    pts = rng.uniform([-20, -20, -3], [40, 20, 3], size=(500, 3))
    uv, depth, inside = calib.project(pts)
    for i in range(len(pts)):
        ref_uv, ref_depth = _project_one(calib, pts[i])
        assert depth[i] == pytest.approx(ref_depth)
        if ref_depth > 0.1:
            np.testing.assert_allclose(uv[i], ref_uv, rtol=1e-9, atol=1e-6)
        expected = ref_depth > 0.1 and 0 <= ref_uv[0] < 1242 and 0 <= ref_uv[1] < 375
        assert inside[i] == expected
    assert inside.any() and not inside.all()


def test_points_behind_camera_are_never_inside():
    calib = Calibration(P2, T, 1242, 375)
    _, depth, inside = calib.project(np.array([[-10.0, 0.0, 0.0], [10.0, 0.0, 0.0]]))
    assert depth[0] < 0 < depth[1]
    assert not inside[0] and inside[1]


def test_k_is_left_block_of_p():
    calib = Calibration(P2, T, 1242, 375)
    np.testing.assert_array_equal(calib.K, P2[:, :3])


@pytest.mark.parametrize('kwargs, message', [
    (dict(P=np.zeros(11)), 'P must have 12 values'),
    (dict(P=np.full((3, 4), np.nan)), 'NaN'),
    (dict(P=P2, T_cam_lidar=np.ones((4, 4))), 'homogeneous'),
    (dict(P=P2, width=-1), 'non-negative'),
])
def test_bad_calibration_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Calibration(**kwargs)
