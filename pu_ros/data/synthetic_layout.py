"""The basic street layout of the synthetic scenes (``SceneConfig.style = 'basic'``, the original generator).

A straight street (road, parking bays, raised sidewalks, terrain, driveways) lined with buildings, fences, trees,
bushes, poles, traffic signs, parked cars, trucks and pedestrians, cut into 40 m segments each drawn from its own
random stream (``SeedSequence([seed, 1, k + 2**20])``), so frames do not depend on the sequence length.
"""

from __future__ import annotations

import numpy as np

from pu_ros.data.synthetic_scene import (
    _CURB,
    BUILDING,
    CAR,
    FENCE,
    OTHER_GROUND,
    PARKING,
    PERSON,
    POLE,
    SEGMENT_LENGTH,
    SIDEWALK,
    TRAFFIC_SIGN,
    TRUCK,
    TRUNK,
    VEGETATION,
)


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


def _car(b, rng, x, y, yaw, cls=CAR):
    label = b.instance(cls)
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


def _truck(b, rng, x, y, yaw, cls=TRUCK):
    label = b.instance(cls)
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
