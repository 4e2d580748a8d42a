"""Synthetic KITTI-like street scenes: a simulated HDL-64E scan and a colour camera over analytic primitives.

The embedded default data of the demo and of every test that must run without ``../shared``. A straight street
(road, parking bays, raised sidewalks, terrain, driveways) lined with buildings, fences, trees, bushes, poles,
traffic signs, parked cars and trucks and pedestrians is built from boxes, vertical cylinders and ellipsoids;
everything is a pure function of the seed. The street is cut into 40 m segments, each drawn from its own random
stream, so frame ``i`` of a seed is the same whatever the length of the sequence.

Frames (velodyne frame: x forward, y left, z up, sensor 1.73 m above the road):

- LiDAR: ``n_beams`` lasers at HDL-64E-like elevations (upper block +2.0°…-8.33°, lower block -8.83°…-24.9°)
  × ``n_azimuth`` steps per turn, every ray cast against every primitive near it (array operations per azimuth
  sector, no per-ray loop); Gaussian noise along the ray, random dropouts, remission from the material and the
  angle of incidence. Labels are raw SemanticKITTI ids, instance id in the upper 16 bits for cars, trucks, people.
- Camera: the colour camera ``image_2`` rendered by casting one ray per pixel through ``P2`` (pixel centres at
  integer coordinates), flat per-class colours with Lambert shading and a sky gradient, so a LiDAR point of class
  X projected with :attr:`SyntheticSequence.calib` lands on a pixel of class X's colour (:data:`CLASS_COLORS`).

Written layout (:func:`write_sequence`, KITTI odometry / SemanticKITTI): ``velodyne/%06d.bin`` (float32 x, y, z,
remission), ``labels/%06d.label`` (uint32), ``image_2/%06d.png`` (RGB), ``calib.txt`` (``P0..P3``, ``Tr``),
``times.txt`` (``i * 0.1`` s) and ``poses.txt``: the camera-0 pose of frame ``i`` in the camera-0 frame of frame 0,
``Tr · pose_velo_i · Tr⁻¹``, where ``pose_velo_i`` is the LiDAR pose in the first LiDAR frame (what
``pu_ros.data.kitti`` gives back as ``Frame.pose``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import sys

import numpy as np

from pu_ros.geometry.calibration import Calibration

# raw SemanticKITTI ids
CAR, TRUCK, PERSON = 10, 18, 30
ROAD, PARKING, SIDEWALK, OTHER_GROUND = 40, 44, 48, 49
BUILDING, FENCE, VEGETATION, TRUNK, TERRAIN, POLE, TRAFFIC_SIGN = 50, 51, 70, 71, 72, 80, 81
SCENE_CLASSES = (CAR, TRUCK, PERSON, ROAD, PARKING, SIDEWALK, OTHER_GROUND, BUILDING, FENCE, VEGETATION, TRUNK,
                 TERRAIN, POLE, TRAFFIC_SIGN)  # fmt: skip

# raw id -> (RGB colour of the rendered image, LiDAR reflectivity). Colours differ in hue or brightness enough
# that shading (a factor 0.4…1) never turns one class into another.
_STYLE = {
    CAR: ((30, 70, 200), 0.45),
    TRUCK: ((180, 50, 180), 0.40),
    PERSON: ((220, 30, 30), 0.30),
    ROAD: ((80, 80, 105), 0.22),
    PARKING: ((110, 100, 70), 0.26),
    SIDEWALK: ((210, 195, 165), 0.33),
    OTHER_GROUND: ((215, 135, 45), 0.28),
    BUILDING: ((185, 95, 85), 0.38),
    FENCE: ((120, 70, 150), 0.35),
    VEGETATION: ((40, 125, 45), 0.50),
    TRUNK: ((105, 70, 40), 0.40),
    TERRAIN: ((150, 170, 60), 0.45),
    POLE: ((175, 175, 175), 0.50),
    TRAFFIC_SIGN: ((235, 205, 20), 0.90),
}
CLASS_COLORS = {k: v[0] for k, v in _STYLE.items()}
_COLOR_LUT = np.zeros((256, 3), np.float64)
_REFL_LUT = np.zeros(256, np.float64)
for _k, (_c, _r) in _STYLE.items():
    _COLOR_LUT[_k], _REFL_LUT[_k] = _c, _r

SEGMENT_LENGTH = 40.0  # m of street drawn from one random stream
_CURB = 0.15  # sidewalk height (m)
_EPS = 1e-6
_N_SECTORS = 360  # azimuth sectors for culling primitives per ray bundle
_SUN = np.array([-0.35, 0.45, 0.82]) / np.linalg.norm([-0.35, 0.45, 0.82])


@dataclass
class SceneConfig:
    """Settings of a synthetic sequence.

    Attributes:
        seed: scene and noise seed; the same seed gives bit-identical frames.
        n_frames: number of frames (10 Hz).
        n_beams: LiDAR lasers (64 = HDL-64E elevation table; others spread over the same two blocks).
        n_azimuth: azimuth steps per revolution (HDL-64E at 10 Hz: about 2000).
        max_range: LiDAR range limit (m).
        noise_std: Gaussian range noise along the ray (m).
        dropout: probability that a return is lost.
        intensity_noise: Gaussian noise on the remission (0..1 scale).
        speed: ego speed along the street (m/s).
        frame_period: seconds between frames.
        sensor_height: LiDAR height above the road (m).
        image_width: camera image width (px).
        image_height: camera image height (px).
        render_image: render the camera image (False: ``image`` is None, nothing is written to ``image_2``).
        camera_far: camera ray length (m); beyond it is sky.
    """

    seed: int = 0
    n_frames: int = 10
    n_beams: int = 64
    n_azimuth: int = 2000
    max_range: float = 100.0
    noise_std: float = 0.02
    dropout: float = 0.03
    intensity_noise: float = 0.02
    speed: float = 10.0
    frame_period: float = 0.1
    sensor_height: float = 1.73
    image_width: int = 1242
    image_height: int = 375
    render_image: bool = True
    camera_far: float = 200.0

    def __post_init__(self):
        checks = [
            (int(self.seed) >= 0, 'seed must be >= 0'),
            (int(self.n_frames) >= 1, 'n_frames must be >= 1'),
            (2 <= int(self.n_beams) <= 512, 'n_beams must be in 2..512'),
            (8 <= int(self.n_azimuth) <= 20000, 'n_azimuth must be in 8..20000'),
            (5.0 <= self.max_range <= 300.0, 'max_range must be in 5..300 m'),
            (0.0 <= self.noise_std <= 1.0, 'noise_std must be in 0..1 m'),
            (0.0 <= self.dropout < 1.0, 'dropout must be in [0, 1)'),
            (0.0 <= self.intensity_noise <= 1.0, 'intensity_noise must be in 0..1'),
            (0.0 <= self.speed <= 40.0, 'speed must be in 0..40 m/s'),
            (self.frame_period > 0.0, 'frame_period must be > 0'),
            (0.5 <= self.sensor_height <= 4.0, 'sensor_height must be in 0.5..4 m'),
            (int(self.image_width) >= 16 and int(self.image_height) >= 16, 'image size must be at least 16x16'),
            (self.camera_far > 1.0, 'camera_far must be > 1 m'),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f'SceneConfig: {message}')


def hdl64_elevations(n_beams: int = 64) -> np.ndarray:
    """Laser elevations like a Velodyne HDL-64E: (n_beams,) float64 radians, top beam first.

    The upper half spans +2.0°…-8.33° (about 1/3° apart), the lower half -8.83°…-24.9° (about 1/2° apart).
    """
    upper = n_beams // 2
    deg = np.concatenate([np.linspace(2.0, -8.33, upper), np.linspace(-8.83, -24.9, n_beams - upper)])
    return np.deg2rad(deg)


def kitti_like_calibration(width: int = 1242, height: int = 375) -> tuple[dict[str, np.ndarray], Calibration]:
    """Plausible KITTI-like camera set-up (our own rounded numbers, not a real rig).

    Returns:
        ``(matrices, calib)``: ``matrices`` maps ``'P0'..'P3'`` to (3, 4) float64 projections in camera-0
        coordinates and ``'Tr'`` to the (4, 4) float64 velodyne→camera-0 transform; ``calib`` is the
        :class:`Calibration` of the colour camera ``image_2`` (``P2``, ``Tr``, image size).
    """
    K = np.array([[721.5, 0.0, 609.6], [0.0, 721.5, 172.9], [0.0, 0.0, 1.0]])
    offsets = {'P0': (0.0, 0.0, 0.0), 'P1': (-0.537, 0.0, 0.0), 'P2': (0.0602, -0.0003, 0.0027),
               'P3': (-0.4751, 0.0024, 0.0049)}  # fmt: skip
    mats = {k: np.round(np.hstack([K, (K @ np.asarray(t))[:, None]]), 6) for k, t in offsets.items()}
    axes = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # camera x right, y down, z forward
    a, b, c = np.deg2rad([0.25, -0.35, 0.1])  # small mounting errors about x, y, z
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    Tr = np.eye(4)
    Tr[:3, :3] = rx @ ry @ rz @ axes
    Tr[:3, 3] = (-0.0120, -0.0750, -0.2700)  # camera 0.27 m ahead of and 7.5 cm below the LiDAR
    mats['Tr'] = Tr
    return mats, Calibration(mats['P2'], Tr, width, height)


# --------------------------------------------------------------------------------------------------- scene


class _Builder:
    """Collects primitives; ``finish`` turns them into arrays."""

    def __init__(self):
        self.boxes, self.cyls, self.ells, self.zones = [], [], [], []
        self.next_instance = {CAR: 1, TRUCK: 1, PERSON: 1}

    def instance(self, cls):
        inst = self.next_instance[cls]
        self.next_instance[cls] += 1
        return (inst << 16) | cls

    def box(self, center, half, label, rng, yaw=0.0):
        self.boxes.append((*center, *half, yaw, label, rng.uniform(0.88, 1.0)))

    def cyl(self, x, y, r, z0, z1, label, rng):
        self.cyls.append((x, y, r, z0, z1, label, rng.uniform(0.88, 1.0)))

    def ell(self, center, radii, label, rng):
        self.ells.append((*center, *radii, label, rng.uniform(0.88, 1.0)))

    def zone(self, x0, x1, y0, y1, label):
        self.zones.append((min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1), label))


def _street(seed):
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    road = rng.uniform(3.4, 4.2)
    park = 2.3
    side = {}
    for s in (1, -1):
        walk = rng.uniform(2.2, 3.2)
        terr = rng.uniform(3.0, 5.0)
        side[s] = (road, road + park, road + park + walk, road + park + walk + terr)  # y of the edges
    return {'road': road, 'park': park, 'side': side, 'phase': rng.uniform(0, 2 * np.pi)}


def _car(b, rng, x, y, yaw):
    label = b.instance(CAR)
    length, width = rng.uniform(3.9, 4.7), rng.uniform(1.70, 1.85)
    top, roof = rng.uniform(0.95, 1.05), rng.uniform(1.40, 1.55)
    c, s = np.cos(yaw), np.sin(yaw)
    b.box((x, y, (0.30 + top) / 2), (length / 2, width / 2, (top - 0.30) / 2), label, rng, yaw)
    back = -0.08 * length
    b.box((x + back * c, y + back * s, (top + roof) / 2), (0.27 * length, 0.44 * width, (roof - top) / 2), label,
          rng, yaw)  # fmt: skip
    for fx in (-0.32, 0.32):
        for fy in (-1, 1):
            lx, ly = fx * length, fy * (width / 2 - 0.13)
            b.box((x + lx * c - ly * s, y + lx * s + ly * c, 0.33), (0.33, 0.12, 0.33), label, rng, yaw)
    return length


def _truck(b, rng, x, y, yaw):
    label = b.instance(TRUCK)
    length, width, height = rng.uniform(6.5, 9.0), rng.uniform(2.35, 2.5), rng.uniform(3.0, 3.6)
    c, s = np.cos(yaw), np.sin(yaw)
    cab = 2.0
    cargo = length - cab - 0.2
    off = -length / 2 + cargo / 2  # cargo box at the back, cab at the front (+x)
    b.box((x + off * c, y + off * s, (0.8 + height) / 2), (cargo / 2, width / 2, (height - 0.8) / 2), label, rng, yaw)
    off = length / 2 - cab / 2
    b.box((x + off * c, y + off * s, (0.6 + 2.8) / 2), (cab / 2, width / 2 - 0.05, 1.1), label, rng, yaw)
    for fx in (-0.38, -0.25, 0.38):
        for fy in (-1, 1):
            lx, ly = fx * length, fy * (width / 2 - 0.2)
            b.box((x + lx * c - ly * s, y + lx * s + ly * c, 0.45), (0.45, 0.15, 0.45), label, rng, yaw)
    return length


def _segment(b, street, seed, k):
    """Primitives of street segment ``k`` (x in [40k, 40k + 40))."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, k + (1 << 20)]))
    x0 = k * SEGMENT_LENGTH
    x1 = x0 + SEGMENT_LENGTH
    truck_side = rng.choice([1, -1]) if (k % 2 == 0 or rng.random() < 0.3) else 0
    sign_side = rng.choice([1, -1])
    drive_side = rng.choice([1, -1])
    for s in (1, -1):
        y_road, y_park, y_walk, y_fac = street['side'][s]
        # sidewalk slab
        b.box(((x0 + x1) / 2, s * (y_park + y_walk) / 2, _CURB / 2),
              (SEGMENT_LENGTH / 2, (y_walk - y_park) / 2, _CURB / 2), SIDEWALK, rng)  # fmt: skip
        # parking bays with parked cars (and a truck)
        cursor = x0 + rng.uniform(0, 6)
        first = True
        while cursor < x1 - 10:
            bay_end = min(cursor + rng.uniform(11, 22), x1 - 0.5)
            b.zone(cursor, bay_end, s * y_road, s * y_park, PARKING)
            xc = cursor + 0.4
            while True:
                yaw = (0.0 if s > 0 else np.pi) + rng.normal(0, 0.03)
                if first and truck_side == s and bay_end - xc > 9.4:
                    _truck(b, rng, xc + 4.6, s * (y_road + y_park) / 2, yaw)
                    xc += 9.2 + rng.uniform(0.8, 2.0)
                elif bay_end - xc > 4.8:
                    if rng.random() < 0.8:
                        _car(b, rng, xc + 2.4, s * (y_road + y_park) / 2, yaw)
                    xc += 4.8 + rng.uniform(0.7, 2.5)
                else:
                    break
                first = False
            cursor = bay_end + rng.uniform(4, 14)
        # driveway of other-ground across the terrain
        xd = rng.uniform(x0 + 2, x1 - 8)
        if drive_side == s or rng.random() < 0.4:
            b.zone(xd, xd + rng.uniform(3, 5), s * y_walk, s * (y_fac + 0.5), OTHER_GROUND)
        else:
            xd = -1e9
        # street lamps / poles near the curb
        for _ in range(1 + int(rng.random() < 0.5)):
            b.cyl(rng.uniform(x0, x1), s * (y_park + 0.45), rng.uniform(0.08, 0.14), 0.0, rng.uniform(6, 9), POLE,
                  rng)  # fmt: skip
        # traffic sign facing the oncoming (+x travelling) traffic
        if sign_side == s or rng.random() < 0.3:
            xs, ys = rng.uniform(x0 + 1, x1 - 1), s * (y_park + 0.35)
            b.cyl(xs, ys, 0.04, 0.0, 2.9, POLE, rng)
            b.box((xs - 0.07, ys, 2.45), (0.02, 0.34, 0.34), TRAFFIC_SIGN, rng)
        # pedestrians on the sidewalk
        for _ in range(int(s == 1) + rng.poisson(1.5)):
            px, py = rng.uniform(x0, x1), s * rng.uniform(y_park + 1.0, y_walk - 0.4)
            label, height = b.instance(PERSON), rng.uniform(1.6, 1.9)
            b.cyl(px, py, rng.uniform(0.18, 0.24), _CURB, _CURB + 0.83 * height, label, rng)
            b.ell((px, py, _CURB + height - 0.12), (0.11, 0.12, 0.13), label, rng)
        # trees in the terrain strip
        cursor = x0 + rng.uniform(0, 6)
        while cursor < x1:
            if rng.random() < 0.8 and not xd - 1.0 < cursor < xd + 6.0:
                ty = s * ((y_walk + y_fac) / 2 + rng.uniform(-0.4, 0.4))
                trunk_h, rz = rng.uniform(2.2, 3.5), rng.uniform(1.4, 2.4)
                rxy = rng.uniform(1.2, min(2.6, (y_fac - y_walk) / 2 + 1.0))
                b.cyl(cursor, ty, rng.uniform(0.12, 0.22), 0.0, trunk_h + 0.3 * rz, TRUNK, rng)
                b.ell((cursor, ty, trunk_h + 0.5 * rz), (rxy, rxy, rz), VEGETATION, rng)
            cursor += rng.uniform(7, 14)
        # buildings along the facade line, fences in some of the gaps, bushes in front
        cursor = x0 + rng.uniform(0, 4)
        while cursor < x1 - 3:
            end = min(cursor + rng.uniform(8, 22), x1 - 0.3)
            depth, height = rng.uniform(8, 14), rng.uniform(5, 18)
            b.box(((cursor + end) / 2, s * (y_fac + depth / 2), height / 2),
                  ((end - cursor) / 2, depth / 2, height / 2), BUILDING, rng)  # fmt: skip
            gap = rng.uniform(1.5, 9)
            if gap > 2.5 and rng.random() < 0.65:
                fh = rng.uniform(1.2, 2.0)
                b.box((end + gap / 2, s * (y_fac + 0.3), fh / 2), (gap / 2, 0.04, fh / 2), FENCE, rng)
            cursor = end + gap
        for _ in range(rng.integers(0, 4)):
            b.ell((rng.uniform(x0, x1), s * (y_fac - rng.uniform(0.7, 1.1)), 0.1),
                  (rng.uniform(0.8, 1.8), rng.uniform(0.5, 0.8), rng.uniform(0.6, 1.1)), VEGETATION, rng)  # fmt: skip
    # a few cars standing in the oncoming lane
    if rng.random() < 0.35:
        _car(b, rng, rng.uniform(x0 + 3, x1 - 3), street['road'] / 2 + rng.normal(0, 0.1), np.pi + rng.normal(0, 0.02))


class _Scene:
    """Primitive arrays of a street, with vectorised ray casting."""

    def __init__(self, b: _Builder, street):
        self.street = street
        box = np.asarray(b.boxes, np.float64).reshape(-1, 9)
        self.box_c, self.box_h = box[:, 0:3], box[:, 3:6]
        self.box_cos, self.box_sin = np.cos(box[:, 6]), np.sin(box[:, 6])
        cyl = np.asarray(b.cyls, np.float64).reshape(-1, 7)
        self.cyl_xy, self.cyl_r, self.cyl_z0, self.cyl_z1 = cyl[:, 0:2], cyl[:, 2], cyl[:, 3], cyl[:, 4]
        ell = np.asarray(b.ells, np.float64).reshape(-1, 8)
        self.ell_c, self.ell_r = ell[:, 0:3], ell[:, 3:6]
        self.label = {
            'box': box[:, 7].astype(np.uint32),
            'cyl': cyl[:, 5].astype(np.uint32),
            'ell': ell[:, 6].astype(np.uint32),
        }
        self.bright = {'box': box[:, 8], 'cyl': cyl[:, 6], 'ell': ell[:, 7]}
        rxy = np.abs(self.box_cos)[:, None] * self.box_h[:, :1] + np.abs(self.box_sin)[:, None] * self.box_h[:, 1:2]
        ryx = np.abs(self.box_sin)[:, None] * self.box_h[:, :1] + np.abs(self.box_cos)[:, None] * self.box_h[:, 1:2]
        self.aabb = {  # xy bounds (P, 4): xmin, xmax, ymin, ymax
            'box': np.hstack([self.box_c[:, :1] - rxy, self.box_c[:, :1] + rxy,
                              self.box_c[:, 1:2] - ryx, self.box_c[:, 1:2] + ryx]),
            'cyl': np.hstack([self.cyl_xy[:, :1] - self.cyl_r[:, None], self.cyl_xy[:, :1] + self.cyl_r[:, None],
                              self.cyl_xy[:, 1:2] - self.cyl_r[:, None], self.cyl_xy[:, 1:2] + self.cyl_r[:, None]]),
            'ell': np.hstack([self.ell_c[:, :1] - self.ell_r[:, :1], self.ell_c[:, :1] + self.ell_r[:, :1],
                              self.ell_c[:, 1:2] - self.ell_r[:, 1:2], self.ell_c[:, 1:2] + self.ell_r[:, 1:2]]),
        }  # fmt: skip
        self.zones = np.asarray(b.zones, np.float64).reshape(-1, 5)

    # -- culling ---------------------------------------------------------------------------------------------
    @staticmethod
    def _sector_mask(aabb, origin, far):
        """(S, P) bool: primitive p may be hit by a ray of azimuth sector s from ``origin`` within ``far``."""
        n_sec = _N_SECTORS
        if aabb.shape[0] == 0:
            return np.zeros((n_sec, 0), bool)
        ox, oy = origin[0], origin[1]
        dx = np.maximum(np.maximum(aabb[:, 0] - ox, ox - aabb[:, 1]), 0.0)
        dy = np.maximum(np.maximum(aabb[:, 2] - oy, oy - aabb[:, 3]), 0.0)
        near = np.hypot(dx, dy) <= far
        inside = (dx == 0) & (dy == 0)
        cx, cy = (aabb[:, 0] + aabb[:, 1]) / 2 - ox, (aabb[:, 2] + aabb[:, 3]) / 2 - oy
        ac = np.arctan2(cy, cx)
        corners = np.arctan2(aabb[:, [2, 2, 3, 3]] - oy, aabb[:, [0, 1, 0, 1]] - ox)
        delta = np.angle(np.exp(1j * (corners - ac[:, None])))
        half = np.pi / n_sec
        centres = -np.pi + (np.arange(n_sec) + 0.5) * 2 * half
        dd = np.angle(np.exp(1j * (centres[:, None] - ac[None, :])))
        mask = (dd >= delta.min(axis=1) - half) & (dd <= delta.max(axis=1) + half)
        return (mask | inside[None, :]) & near[None, :]

    # -- intersection kernels: origin (3,), dirs (R, 3), primitive indices (P,) -> t (R,), index (R,) -----------
    def _hit_box(self, o, d, sel):
        rel = o - self.box_c[sel]
        cs, sn, h = self.box_cos[sel], self.box_sin[sel], self.box_h[sel]
        ol = (cs * rel[:, 0] + sn * rel[:, 1], cs * rel[:, 1] - sn * rel[:, 0], rel[:, 2])
        dx, dy = d[:, 0:1], d[:, 1:2]
        dl = (dx * cs + dy * sn, dy * cs - dx * sn, d[:, 2:3])
        t_near = np.full((d.shape[0], sel.size), -np.inf)
        t_far = np.full((d.shape[0], sel.size), np.inf)
        for axis in range(3):
            inv = 1.0 / np.where(np.abs(dl[axis]) < 1e-12, 1e-12, dl[axis])
            t1 = (-h[:, axis] - ol[axis]) * inv
            t2 = (h[:, axis] - ol[axis]) * inv
            t_near = np.maximum(t_near, np.minimum(t1, t2))
            t_far = np.minimum(t_far, np.maximum(t1, t2))
        return np.where((t_near <= t_far) & (t_near > _EPS), t_near, np.inf)

    def _hit_cyl(self, o, d, sel):
        rx, ry = o[0] - self.cyl_xy[sel, 0], o[1] - self.cyl_xy[sel, 1]
        r2, z0, z1 = self.cyl_r[sel] ** 2, self.cyl_z0[sel], self.cyl_z1[sel]
        dx, dy, dz = d[:, 0:1], d[:, 1:2], d[:, 2:3]
        a = np.maximum(dx * dx + dy * dy, 1e-12)
        b = dx * rx + dy * ry
        disc = b * b - a * (rx * rx + ry * ry - r2)
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        z = o[2] + t * dz
        t = np.where((disc >= 0) & (t > _EPS) & (z >= z0) & (z <= z1), t, np.inf)
        tc = (z1 - o[2]) / np.where(np.abs(dz) < 1e-12, 1e-12, dz)  # top cap
        px, py = rx + tc * dx, ry + tc * dy
        tc = np.where((tc > _EPS) & (px * px + py * py <= r2), tc, np.inf)
        return np.minimum(t, tc)

    def _hit_ell(self, o, d, sel):
        r = self.ell_r[sel]
        oo = (o - self.ell_c[sel]) / r  # (P, 3)
        dd = d[:, None, :] / r[None]  # (R, P, 3)
        a = np.einsum('rpk,rpk->rp', dd, dd)
        b = np.einsum('rpk,pk->rp', dd, oo)
        disc = b * b - a * (np.einsum('pk,pk->p', oo, oo) - 1.0)
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        return np.where((disc >= 0) & (t > _EPS), t, np.inf)

    def cast(self, origin, dirs, far):
        """First hit of rays from one origin.

        Args:
            origin: (3,) float64 world point.
            dirs: (R, 3) float64 unit directions (world).
            far: rays hit nothing beyond this distance.

        Returns:
            ``(t, kind, index)``: (R,) float64 distance (inf: no hit), (R,) int8 kind (0 none, 1 ground, 2 box,
            3 cylinder, 4 ellipsoid) and (R,) int64 primitive index within its kind.
        """
        n = dirs.shape[0]
        with np.errstate(divide='ignore'):
            t_best = np.where(dirs[:, 2] < -1e-9, -origin[2] / dirs[:, 2], np.inf)
        kind = np.where(np.isfinite(t_best), 1, 0).astype(np.int8)
        index = np.zeros(n, np.int64)
        sector = np.floor((np.arctan2(dirs[:, 1], dirs[:, 0]) + np.pi) / (2 * np.pi) * _N_SECTORS).astype(np.int64)
        sector %= _N_SECTORS
        order = np.argsort(sector, kind='stable')
        bounds = np.concatenate([[0], np.cumsum(np.bincount(sector, minlength=_N_SECTORS))])
        kernels = [(2, 'box', self._hit_box), (3, 'cyl', self._hit_cyl), (4, 'ell', self._hit_ell)]
        masks = {name: self._sector_mask(self.aabb[name], origin, far) for _, name, _ in kernels}
        for s in np.flatnonzero(bounds[1:] > bounds[:-1]):
            rays = order[bounds[s] : bounds[s + 1]]
            d = dirs[rays]
            for code, name, kernel in kernels:
                sel = np.flatnonzero(masks[name][s])
                if sel.size == 0:
                    continue
                t = kernel(origin, d, sel)
                j = np.argmin(t, axis=1)
                tj = t[np.arange(rays.size), j]
                better = tj < t_best[rays]
                hit = rays[better]
                t_best[hit], kind[hit], index[hit] = tj[better], code, sel[j[better]]
        miss = t_best > far
        t_best[miss], kind[miss] = np.inf, 0
        return t_best, kind, index

    def ground_label(self, x, y):
        """(N,) uint32 class of ground points at world ``x, y`` (N,)."""
        road, park = self.street['road'], self.street['park']
        label = np.where(np.abs(y) <= road + park, ROAD, TERRAIN).astype(np.uint32)
        for s in (1, -1):
            _, y_park, y_walk, _ = self.street['side'][s]
            label[(s * y > y_park) & (s * y <= y_walk)] = SIDEWALK
        for x0, x1, y0, y1, cls in self.zones:
            label[(x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)] = int(cls)
        return label

    def surface(self, kind, index, points, dirs):
        """Label, normal and brightness factor at hit points.

        Args:
            kind: (N,) int8 from :meth:`cast` (all > 0).
            index: (N,) int64 from :meth:`cast`.
            points: (N, 3) float64 world hit points.
            dirs: (N, 3) float64 ray directions.

        Returns:
            ``(label (N,) uint32, normal (N, 3) float64 facing the ray, bright (N,) float64)``.
        """
        n = kind.shape[0]
        label, bright = np.zeros(n, np.uint32), np.ones(n)
        normal = np.zeros((n, 3))
        normal[:, 2] = 1.0
        g = kind == 1
        label[g] = self.ground_label(points[g, 0], points[g, 1])
        m = kind == 2
        if m.any():
            i = index[m]
            rel = points[m] - self.box_c[i]
            cs, sn = self.box_cos[i], self.box_sin[i]
            local = np.stack([cs * rel[:, 0] + sn * rel[:, 1], cs * rel[:, 1] - sn * rel[:, 0], rel[:, 2]], 1)
            axis = np.argmax(np.abs(local) / self.box_h[i], axis=1)
            nl = np.zeros_like(local)
            nl[np.arange(axis.size), axis] = np.sign(local[np.arange(axis.size), axis])
            normal[m] = np.stack([cs * nl[:, 0] - sn * nl[:, 1], sn * nl[:, 0] + cs * nl[:, 1], nl[:, 2]], 1)
        m = kind == 3
        if m.any():
            i = index[m]
            radial = points[m, :2] - self.cyl_xy[i]
            cap = points[m, 2] >= self.cyl_z1[i] - 1e-6
            nrm = np.zeros((i.size, 3))
            nrm[:, :2] = radial / np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-12)
            nrm[cap] = (0.0, 0.0, 1.0)
            normal[m] = nrm
        m = kind == 4
        if m.any():
            i = index[m]
            nrm = (points[m] - self.ell_c[i]) / self.ell_r[i] ** 2
            normal[m] = nrm / np.linalg.norm(nrm, axis=1, keepdims=True)
        for code, name in ((2, 'box'), (3, 'cyl'), (4, 'ell')):
            m = kind == code
            label[m], bright[m] = self.label[name][index[m]], self.bright[name][index[m]]
        flip = np.einsum('nk,nk->n', normal, dirs) > 0
        normal[flip] *= -1.0
        return label, normal, bright


# --------------------------------------------------------------------------------------------------- sequence


def _rot_z(yaw):
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class SyntheticSequence:
    """A deterministic synthetic KITTI-like drive.

    Attributes:
        config: the :class:`SceneConfig`.
        calib: :class:`Calibration` of ``image_2`` (``P2``, velodyne→camera-0 ``Tr``, image size).
        matrices: ``'P0'..'P3'`` (3, 4) and ``'Tr'`` (4, 4) float64, as written to ``calib.txt``.
        elevations: (n_beams,) float64 laser elevations (rad), top first.
    """

    def __init__(self, config: SceneConfig | None = None):
        """Build the street that the whole drive can see."""
        self.config = config = SceneConfig() if config is None else config
        self.matrices, self.calib = kitti_like_calibration(config.image_width, config.image_height)
        self.elevations = hdl64_elevations(config.n_beams)
        self._street = _street(config.seed)
        reach = max(config.max_range, config.camera_far if config.render_image else 0.0) + 10.0
        x_end = config.speed * config.frame_period * (config.n_frames - 1)
        b = _Builder()
        for k in range(int(np.floor(-reach / SEGMENT_LENGTH)), int(np.floor((x_end + reach) / SEGMENT_LENGTH)) + 1):
            _segment(b, self._street, config.seed, k)
        self._scene = _Scene(b, self._street)

    def __len__(self) -> int:
        """Number of frames."""
        return self.config.n_frames

    def _check(self, i):
        i = int(i)
        if not 0 <= i < self.config.n_frames:
            raise IndexError(f'frame {i} out of range for {self.config.n_frames} frames')
        return i

    def world_pose(self, i: int) -> np.ndarray:
        """(4, 4) float64 LiDAR pose of frame ``i`` in the street frame (road plane z = 0, street along x)."""
        cfg = self.config
        t = self._check(i) * cfg.frame_period
        omega, amp = 2 * np.pi / 8.0, 0.25  # gentle weaving within the lane
        phase = self._street['phase']
        pose = np.eye(4)
        pose[:3, :3] = _rot_z(np.arctan2(amp * omega * np.cos(omega * t + phase), max(cfg.speed, 1e-3)))
        pose[:3, 3] = (cfg.speed * t, -self._street['road'] / 2 + amp * np.sin(omega * t + phase), cfg.sensor_height)
        return pose

    def pose(self, i: int) -> np.ndarray:
        """(4, 4) float64 LiDAR pose of frame ``i`` in the LiDAR frame of frame 0 (``Frame.pose`` of the reader)."""
        return np.linalg.inv(self.world_pose(0)) @ self.world_pose(i)

    def camera_pose(self, i: int) -> np.ndarray:
        """(4, 4) float64 camera-0 pose of frame ``i`` in camera-0 of frame 0 (a ``poses.txt`` line)."""
        Tr = self.matrices['Tr']
        return Tr @ self.pose(i) @ np.linalg.inv(Tr)

    def stamp(self, i: int) -> float:
        """Seconds from the start of the drive (``times.txt``)."""
        return self._check(i) * self.config.frame_period

    def scan(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Simulate the LiDAR scan of frame ``i``.

        Returns:
            ``(points, labels)``: (N, 4) float32 ``x, y, z, remission`` in the velodyne frame, beam-major (top
            beam first, azimuth clockwise from behind), and (N,) uint32 raw labels (instance << 16 | class).
        """
        cfg = self.config
        i = self._check(i)
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2, i]))
        phase = rng.random()
        az = np.pi - 2 * np.pi * (np.arange(cfg.n_azimuth) + phase) / cfg.n_azimuth
        el = self.elevations[:, None]
        dirs = np.stack(np.broadcast_arrays(np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)), -1)
        dirs = dirs.reshape(-1, 3)
        n = dirs.shape[0]
        keep_draw, noise, inoise = rng.random(n), rng.normal(0.0, 1.0, n), rng.normal(0.0, 1.0, n)
        pose = self.world_pose(i)
        dirs_w = dirs @ pose[:3, :3].T
        t, kind, index = self._scene.cast(pose[:3, 3], dirs_w, cfg.max_range)
        ok = (kind > 0) & (keep_draw >= cfg.dropout)
        t, kind, index, d, dw = t[ok], kind[ok], index[ok], dirs[ok], dirs_w[ok]
        label, normal, bright = self._scene.surface(kind, index, pose[:3, 3] + t[:, None] * dw, dw)
        cos_inc = np.abs(np.einsum('nk,nk->n', normal, dw))
        remission = _REFL_LUT[label & 0xFFFF] * bright * (0.25 + 0.75 * cos_inc) + cfg.intensity_noise * inoise[ok]
        r = t + cfg.noise_std * noise[ok]
        points = np.empty((r.size, 4), np.float32)
        points[:, :3] = d * r[:, None]
        points[:, 3] = np.clip(remission, 0.0, 1.0)
        return points, label

    def _camera_rays(self, i):
        cfg = self.config
        K = self.matrices['P2'][:, :3]
        centre_cam0 = -np.linalg.solve(K, self.matrices['P2'][:, 3])  # camera-2 centre in camera-0 coordinates
        u, v = np.meshgrid(np.arange(cfg.image_width, dtype=np.float64), np.arange(cfg.image_height, dtype=np.float64))
        pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], 1)
        rays = np.linalg.solve(K, pix.T).T
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        Tr = self.matrices['Tr']
        velo_from_cam = np.linalg.inv(Tr)
        pose = self.world_pose(i) @ velo_from_cam
        return pose[:3, :3] @ centre_cam0 + pose[:3, 3], rays @ pose[:3, :3].T

    def render(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Render the colour camera (``image_2``) of frame ``i``.

        Returns:
            ``(image, image_labels)``: (H, W, 3) uint8 RGB and (H, W) uint32 raw label per pixel (0 = sky).
        """
        cfg = self.config
        i = self._check(i)
        origin, dirs = self._camera_rays(i)
        t, kind, index = self._scene.cast(origin, dirs, cfg.camera_far)
        hit = kind > 0
        label = np.zeros(dirs.shape[0], np.uint32)
        lab, normal, bright = self._scene.surface(kind[hit], index[hit], origin + t[hit, None] * dirs[hit], dirs[hit])
        label[hit] = lab
        shade = bright * (0.45 + 0.55 * np.clip(normal @ _SUN, 0.0, 1.0))
        up = np.clip(dirs[:, 2], 0.0, 1.0)[:, None]
        rgb = (1 - 2.5 * up).clip(0, 1) * np.array([200.0, 215.0, 235.0]) + (2.5 * up).clip(0, 1) * np.array(
            [110.0, 160.0, 220.0]
        )
        rgb[hit] = _COLOR_LUT[lab & 0xFFFF] * shade[:, None]
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 3, i]))
        rgb += rng.normal(0.0, 2.0, rgb.shape)
        image = np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(cfg.image_height, cfg.image_width, 3)
        return image, label.reshape(cfg.image_height, cfg.image_width)

    def frame(self, i: int) -> dict:
        """Everything of frame ``i``.

        Returns:
            dict with ``points`` (N, 4) float32, ``labels`` (N,) uint32, ``image`` (H, W, 3) uint8 RGB or None,
            ``image_labels`` (H, W) uint32 or None, ``pose`` (4, 4) float64 LiDAR pose in the first LiDAR frame,
            ``pose_cam`` (4, 4) float64 camera-0 pose (``poses.txt``), ``stamp`` float seconds.
        """
        points, labels = self.scan(i)
        image = image_labels = None
        if self.config.render_image:
            image, image_labels = self.render(i)
        return {
            'points': points,
            'labels': labels,
            'image': image,
            'image_labels': image_labels,
            'pose': self.pose(i),
            'pose_cam': self.camera_pose(i),
            'stamp': self.stamp(i),
        }


# --------------------------------------------------------------------------------------------------- writing


def _fmt(values) -> str:
    return ' '.join(f'{v:.12e}' for v in np.asarray(values, np.float64).ravel())


def write_sequence(out_dir: str | Path, config: SceneConfig | None = None, progress: bool = True) -> Path:
    """Generate a sequence and write it in the KITTI odometry / SemanticKITTI layout.

    Args:
        out_dir: folder that receives ``velodyne/``, ``labels/``, ``image_2/`` (unless ``render_image`` is off),
            ``calib.txt``, ``times.txt`` and ``poses.txt`` directly (created if needed).
        config: scene settings (default :class:`SceneConfig`).
        progress: show a tqdm bar on stderr.

    Returns:
        ``out_dir`` as a Path.
    """
    from tqdm import tqdm

    config = SceneConfig() if config is None else config
    seq = SyntheticSequence(config)
    out = Path(out_dir)
    folders = ['velodyne', 'labels'] + (['image_2'] if config.render_image else [])
    for name in folders:
        (out / name).mkdir(parents=True, exist_ok=True)
    m = seq.matrices
    calib_lines = [f'{k}: {_fmt(m[k])}' for k in ('P0', 'P1', 'P2', 'P3')] + [f'Tr: {_fmt(m["Tr"][:3])}']
    (out / 'calib.txt').write_text('\n'.join(calib_lines) + '\n')
    (out / 'times.txt').write_text(''.join(f'{seq.stamp(i):.6e}\n' for i in range(len(seq))))
    (out / 'poses.txt').write_text(''.join(_fmt(seq.camera_pose(i)[:3]) + '\n' for i in range(len(seq))))
    for i in tqdm(range(len(seq)), desc='synth', unit='frame', disable=not progress, file=sys.stderr):
        f = seq.frame(i)
        f['points'].astype('<f4').tofile(out / 'velodyne' / f'{i:06d}.bin')
        f['labels'].astype('<u4').tofile(out / 'labels' / f'{i:06d}.label')
        if f['image'] is not None:
            from PIL import Image

            Image.fromarray(f['image'], 'RGB').save(out / 'image_2' / f'{i:06d}.png', compress_level=6)
    return out


# --------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser) -> None:
    """Options of ``pu-ros synth``."""
    parser.add_argument('-o', '--output', required=True, help='folder that receives the odometry layout')
    parser.add_argument('--frames', type=int, default=10, help='number of frames (10 Hz), default 10')
    parser.add_argument('--seed', type=int, default=0, help='scene seed, default 0')
    parser.add_argument('--azimuth-steps', type=int, default=2000, help='LiDAR azimuth steps per turn (default 2000)')
    parser.add_argument('--no-image', action='store_true', help='do not render image_2')


def run(args) -> int:
    """Write a synthetic sequence; returns the exit status."""
    try:
        config = SceneConfig(
            seed=args.seed, n_frames=args.frames, n_azimuth=args.azimuth_steps, render_image=not args.no_image
        )
    except ValueError as exc:
        print(f'pu-ros synth: {exc}', file=sys.stderr)
        return 2
    out = write_sequence(args.output, config)
    print(f'wrote {config.n_frames} synthetic frames to {out}')
    return 0
