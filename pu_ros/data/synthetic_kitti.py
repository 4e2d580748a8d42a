"""KITTI-style street layouts with domain randomisation (``SceneConfig.style = 'kitti'``).

Steered by the statistics of the real labelled scans (:mod:`pu_ros.data.scan_stats`): in the seq-00 scans
vegetation and sidewalk each hold ~21 % of the points (the basic layout: 3 % and 8 %), cars 4 % (basic: 11 %),
and the road plane is tilted ~1.7° in the sensor frame. Per drive (:func:`street`): lane and sidewalk widths,
curb height (0.06-0.22 m), parking lane or none, lane markings, sensor pitch/roll (σ 1.2°) and height. Per 40 m
segment side (:func:`segment`), one archetype:

- ``residential``: front gardens (terrain lawns with low mounds), hedges, bushes, fences, set-back houses;
- ``urban``: facades at the sidewalk, dense parked-car rows, lamps and signs;
- ``green``: wide verges with tree rows (multi-ellipsoid canopies), bushes, sparse buildings far back.

Everywhere: parked-car rows of random density and angle (parallel, or perpendicular bays), trucks, street lamps
with arms, signs of several shapes and heights, standing people, parked bicycles, driveways. Moving objects
(:func:`movers`, :func:`place_movers`): cars and trucks in both lanes, cyclists near the kerb, walking people,
with moving-* labels (252, 253, 254, 258), positions a function of time.
"""

from __future__ import annotations

import numpy as np

from pu_ros.data.synthetic_layout import _car, _truck
from pu_ros.data.synthetic_scene import (
    BICYCLE,
    BUILDING,
    FENCE,
    MOVING_BICYCLIST,
    MOVING_CAR,
    MOVING_PERSON,
    MOVING_TRUCK,
    OTHER_GROUND,
    PARKING,
    PERSON,
    POLE,
    SEGMENT_LENGTH,
    SIDEWALK,
    TERRAIN,
    TRAFFIC_SIGN,
    TRUNK,
    VEGETATION,
)

ARCHETYPES = ('residential', 'urban', 'green')
MOVER_FIRST_INSTANCE = 1000  # instance ids of moving objects start here (static ones count from 1)


def street(seed: int) -> dict:
    """Per-drive street parameters (same keys as the basic layout, plus curb, lanes, tilt and height offset)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 10]))
    road = rng.uniform(2.8, 5.0)
    park = 2.2 if rng.random() < 0.5 else 0.0
    side = {}
    for s in (1, -1):
        walk = rng.uniform(2.0, 5.0)
        terr = rng.uniform(1.0, 8.0)
        side[s] = (road, road + park, road + park + walk, road + park + walk + terr)
    lanes = [(0.0, True)] if rng.random() < 0.7 else []
    if rng.random() < 0.5:
        lanes += [(road - 0.3, False), (-road + 0.3, False)]
    return {'road': road, 'park': park, 'side': side, 'phase': rng.uniform(0, 2 * np.pi),
            'curb': rng.uniform(0.06, 0.22), 'lanes': lanes, 'pitch': rng.normal(0.0, np.radians(1.2)),
            'roll': rng.normal(0.0, np.radians(1.2)), 'dh': rng.uniform(-0.08, 0.08)}


def _person(b, rng, x, y, z0, cls=PERSON):
    label, height = b.instance(cls), rng.uniform(1.5, 1.95)
    b.cyl(x, y, rng.uniform(0.16, 0.24), z0, z0 + 0.83 * height, label, rng)
    b.ell((x, y, z0 + height - 0.12), (0.11, 0.12, 0.13), label, rng)


def _cyclist(b, rng, x, y, yaw, cls=MOVING_BICYCLIST):
    label = b.instance(cls)
    c, s = np.cos(yaw), np.sin(yaw)
    b.box((x, y, 0.55), (0.85, 0.05, 0.4), label, rng, yaw)  # bicycle frame and wheels (side view)
    b.cyl(x - 0.15 * c, y - 0.15 * s, 0.2, 0.9, 1.55, label, rng)  # rider torso
    b.ell((x - 0.05 * c, y - 0.05 * s, 1.72), (0.11, 0.11, 0.13), label, rng)


def _tree(b, rng, x, y):
    trunk_h, rz = rng.uniform(1.8, 3.5), rng.uniform(1.2, 2.6)
    rxy = rng.uniform(1.2, 3.0)
    b.cyl(x, y, rng.uniform(0.1, 0.25), 0.0, trunk_h + 0.4 * rz, TRUNK, rng)
    for _ in range(int(rng.integers(2, 5))):
        off = rng.normal(0.0, 0.45 * rxy, 2)
        r = rxy * rng.uniform(0.6, 1.0)
        b.ell((x + off[0], y + off[1], trunk_h + rz * rng.uniform(0.4, 0.9)), (r, r * rng.uniform(0.8, 1.2),
              rz * rng.uniform(0.6, 1.0)), VEGETATION, rng)  # fmt: skip


def _bushes(b, rng, x, y, spread):
    for _ in range(int(rng.integers(1, 5))):
        r = rng.uniform(0.4, 1.3)
        b.ell((x + rng.normal(0, spread), y + rng.normal(0, 0.3 * spread), rng.uniform(-0.2, 0.3)),
              (r * rng.uniform(0.8, 1.6), r, rng.uniform(0.5, 1.3)), VEGETATION, rng)  # fmt: skip


def _sign(b, rng, x, y, s):
    h = rng.uniform(2.0, 3.2)
    b.cyl(x, y, rng.uniform(0.03, 0.06), 0.0, h + 0.3, POLE, rng)
    w, hh = rng.choice([(0.34, 0.34), (0.3, 0.45), (0.45, 0.25), (0.6, 0.3)], axis=0) * rng.uniform(0.8, 1.2)
    yaw = rng.choice([0.0, np.pi / 2]) + rng.normal(0, 0.15)
    b.box((x, y, h), (0.02, w, hh), TRAFFIC_SIGN, rng, yaw)
    if rng.random() < 0.3:
        b.box((x, y, h - hh - 0.25), (0.02, w * 0.8, 0.15), TRAFFIC_SIGN, rng, yaw)


def _lamp(b, rng, x, y, s):
    h = rng.uniform(5.0, 10.0)
    b.cyl(x, y, rng.uniform(0.07, 0.16), 0.0, h, POLE, rng)
    if rng.random() < 0.6:
        arm = rng.uniform(0.8, 2.0)
        b.box((x, y - s * arm / 2, h - 0.1), (0.08, arm / 2, 0.06), POLE, rng)


def _parked_row(b, rng, x0, x1, y_in, y_out, s, zone_cls):
    """Cars (and rarely a truck) in a parking strip between |y| = y_in and y_out, parallel or perpendicular."""
    b.zone(x0, x1, s * y_in, s * y_out, zone_cls)
    density = rng.uniform(0.1, 0.7)
    perpendicular = (y_out - y_in) > 4.5
    xc = x0 + rng.uniform(0.2, 1.5)
    while True:
        if perpendicular:
            if xc + 2.6 > x1:
                break
            if rng.random() < density:
                _car(b, rng, xc + 1.2, s * (y_in + y_out) / 2, np.pi / 2 * rng.choice([1, -1]) + rng.normal(0, 0.06))
            xc += rng.uniform(2.5, 3.0)
            continue
        yaw = (0.0 if s > 0 else np.pi) + rng.normal(0, 0.04)
        if rng.random() < 0.06 and x1 - xc > 9.4:
            _truck(b, rng, xc + 4.6, s * (y_in + y_out) / 2 + rng.normal(0, 0.1), yaw)
            xc += 9.2 + rng.uniform(0.8, 2.0)
        elif x1 - xc > 4.8:
            if rng.random() < density:
                _car(b, rng, xc + 2.4, s * ((y_in + y_out) / 2 + rng.normal(0, 0.12)), yaw)
            xc += 4.8 + rng.uniform(0.5, 2.5)
        else:
            break


def segment(b, st: dict, seed: int, k: int) -> None:
    """Static primitives of street segment ``k`` (x in [40k, 40k + 40)), KITTI style."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11, k + (1 << 20)]))
    x0, x1 = k * SEGMENT_LENGTH, (k + 1) * SEGMENT_LENGTH
    curb = st['curb']
    for s in (1, -1):
        arche = ARCHETYPES[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
        y_road, y_park, y_walk, y_fac = st['side'][s]
        b.box(((x0 + x1) / 2, s * (y_park + y_walk) / 2, curb / 2),
              (SEGMENT_LENGTH / 2, (y_walk - y_park) / 2, curb / 2), SIDEWALK, rng)  # fmt: skip
        if y_park > y_road:  # parking lane: bays with rows
            cursor = x0 + rng.uniform(0, 4)
            while cursor < x1 - 6:
                end = min(cursor + rng.uniform(10, 30), x1 - 0.3)
                _parked_row(b, rng, cursor, end, y_road, y_park, s, PARKING)
                cursor = end + rng.uniform(2, 12)
        elif rng.random() < 0.15:  # cars parked at the road edge
            _parked_row(b, rng, x0 + 2, x1 - 2, y_road - 2.1, y_road - 0.1, s, 40)
        xd = rng.uniform(x0 + 2, x1 - 8) if rng.random() < 0.6 else -1e9  # driveway
        wd = rng.uniform(3, 6)
        if xd > x0:
            b.zone(xd, xd + wd, s * y_walk, s * (y_fac + 12), OTHER_GROUND)
            if arche != 'urban' and rng.random() < 0.3:  # a parking lot beside the drive
                _parked_row(b, rng, xd + wd + 1, min(xd + wd + 20, x1), y_fac + 1, y_fac + 6.5, s, PARKING)
        for _ in range(int(rng.integers(1, 4))):
            _lamp(b, rng, rng.uniform(x0, x1), s * (y_park + rng.uniform(0.3, 0.6)), s)
        for _ in range(int(rng.poisson(1.2))):
            _sign(b, rng, rng.uniform(x0, x1), s * (y_park + rng.uniform(0.25, 0.6)), s)
        for _ in range(int(rng.poisson(1.0))):  # standing people
            _person(b, rng, rng.uniform(x0, x1), s * rng.uniform(y_park + 0.5, y_walk - 0.3), curb)
        if rng.random() < 0.3:  # parked bicycles
            xb = rng.uniform(x0, x1)
            for j in range(int(rng.integers(1, 4))):
                b.box((xb + 0.7 * j, s * (y_walk - 0.5), curb + 0.5), (0.05, 0.85, 0.4), BICYCLE, rng,
                      rng.normal(0, 0.1))
        # verge between sidewalk and facade line: trees, bushes, mounds
        tree_gap = {'residential': (4, 10), 'urban': (8, 20), 'green': (3, 7)}[arche]
        cursor = x0 + rng.uniform(0, 5)
        while cursor < x1:
            if not xd - 1.0 < cursor < xd + wd + 1.0 and rng.random() < 0.85:
                _tree(b, rng, cursor, s * rng.uniform(y_walk + 0.6, max(y_walk + 0.7, y_fac - 0.5)))
            cursor += rng.uniform(*tree_gap)
        for _ in range(int(rng.poisson({'residential': 7, 'urban': 2, 'green': 9}[arche]))):
            xb = rng.uniform(x0, x1)
            if not xd - 1.0 < xb < xd + wd + 1.0:
                _bushes(b, rng, xb, s * rng.uniform(y_walk + 0.5, y_fac + 3), rng.uniform(0.5, 2.0))
        for _ in range(int(rng.poisson(0.8 if arche != 'urban' else 0.2))):
            r = rng.uniform(1.0, 3.5)
            b.ell((rng.uniform(x0, x1), s * rng.uniform(y_walk + r / 2, y_fac + 6), 0.0),
                  (r * rng.uniform(1, 2), r, rng.uniform(0.15, 0.5)), TERRAIN, rng)  # fmt: skip
        if rng.random() < 0.12:  # low fence between sidewalk and verge
            a, e = sorted(rng.uniform(x0, x1, 2))
            b.box(((a + e) / 2, s * (y_walk + 0.1), 0.45), ((e - a) / 2, 0.03, rng.uniform(0.3, 0.6)), FENCE, rng)
        # property line: hedges / fences, then the buildings
        setback = {'residential': (2, 7), 'urban': (0, 1), 'green': (4, 14)}[arche]
        cursor = x0 + rng.uniform(0, 3)
        while cursor < x1 - 2:
            end = min(cursor + rng.uniform(5, 25), x1)
            if not xd - 1.0 < (cursor + end) / 2 < xd + wd + 1.0:
                u = rng.random()
                if arche != 'urban' and u < 0.6:
                    h, w = rng.uniform(0.8, 2.4), rng.uniform(0.4, 1.2)
                    b.box(((cursor + end) / 2, s * (y_fac + w / 2), h / 2), ((end - cursor) / 2, w / 2, h / 2),
                          VEGETATION, rng)  # fmt: skip
                elif u < 0.72:
                    fh = rng.uniform(0.6, 2.2)
                    b.box(((cursor + end) / 2, s * (y_fac + 0.1), fh / 2), ((end - cursor) / 2, 0.04, fh / 2),
                          FENCE, rng)  # fmt: skip
            cursor = end + rng.uniform(0.5, 6)
        cursor = x0 + rng.uniform(0, 4)
        while cursor < x1 - 3:
            end = min(cursor + rng.uniform(8, 24), x1 - 0.3)
            depth, height = rng.uniform(6, 15), rng.uniform(4, 18 if arche == 'urban' else 10)
            back = y_fac + rng.uniform(*setback)
            b.box(((cursor + end) / 2, s * (back + depth / 2), height / 2),
                  ((end - cursor) / 2, depth / 2, height / 2), BUILDING, rng)  # fmt: skip
            if rng.random() < 0.4:  # a bay window / annex
                a = rng.uniform(cursor, end - 2)
                b.box((a + 1.5, s * (back - 0.6), height * 0.3), (1.5, 0.6, height * 0.3), BUILDING, rng)
            cursor = end + rng.uniform(0.5, 10 if arche != 'urban' else 3)


def movers(st: dict, seed: int, k: int) -> list[tuple]:
    """Moving objects born in segment ``k``: ``(kind, object seed, x0, y, yaw, speed)`` (speed along ``yaw``)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 12, k + (1 << 20)]))
    x0 = k * SEGMENT_LENGTH
    out = []
    road = st['road']
    for _ in range(int(rng.poisson(0.5))):
        forward = rng.random() < 0.5
        kind = 'truck' if rng.random() < 0.12 else 'car'
        y = (-road / 2 if forward else road / 2) + rng.normal(0, 0.15)
        out.append((kind, int(rng.integers(1 << 30)), rng.uniform(x0, x0 + SEGMENT_LENGTH), y,
                    0.0 if forward else np.pi, rng.uniform(4.0, 14.0)))
    for _ in range(int(rng.poisson(0.35))):
        forward = rng.random() < 0.5
        y = (-(road - 0.7) if forward else road - 0.7)
        out.append(('cyclist', int(rng.integers(1 << 30)), rng.uniform(x0, x0 + SEGMENT_LENGTH), y,
                    0.0 if forward else np.pi, rng.uniform(3.0, 6.5)))
    for _ in range(int(rng.poisson(0.8))):
        s = rng.choice([1, -1])
        _, y_park, y_walk, _ = st['side'][s]
        out.append(('person', int(rng.integers(1 << 30)), rng.uniform(x0, x0 + SEGMENT_LENGTH),
                    s * rng.uniform(y_park + 0.4, y_walk - 0.3), rng.choice([0.0, np.pi]), rng.uniform(0.8, 1.7)))
    return out


def place_movers(b, specs: list[tuple], t: float, curb: float, x_min: float, x_max: float) -> None:
    """Add the moving objects of ``specs`` at time ``t`` (s) whose position lies in [x_min, x_max]."""
    for kind, obj_seed, x, y, yaw, speed in specs:
        xt = x + np.cos(yaw) * speed * t
        rng = np.random.default_rng(obj_seed)
        if not x_min <= xt <= x_max:  # keep instance ids stable: one id per spec, placed or not
            _skip_instance(b, kind)
            continue
        if kind == 'car':
            _car(b, rng, xt, y, yaw, MOVING_CAR)
        elif kind == 'truck':
            _truck(b, rng, xt, y, yaw, MOVING_TRUCK)
        elif kind == 'cyclist':
            _cyclist(b, rng, xt, y, yaw)
        else:
            _person(b, rng, xt, y, curb, MOVING_PERSON)


def _skip_instance(b, kind):
    cls = {'car': MOVING_CAR, 'truck': MOVING_TRUCK, 'cyclist': MOVING_BICYCLIST, 'person': MOVING_PERSON}[kind]
    b.instance(cls)


def mover_builder(builder_cls):
    """A fresh builder whose instance ids start at :data:`MOVER_FIRST_INSTANCE` for the moving classes."""
    b = builder_cls()
    for cls in (MOVING_CAR, MOVING_TRUCK, MOVING_BICYCLIST, MOVING_PERSON):
        b.next_instance[cls] = MOVER_FIRST_INSTANCE
    return b

