"""Primitives and vectorised ray casting of the synthetic street scenes (see :mod:`pu_ros.data.synthetic`).

Classes (raw SemanticKITTI ids), their rendering colours and base reflectivities, the primitive collector
:class:`_Builder` (boxes, vertical cylinders, ellipsoids, ground zones) and :class:`_Scene`, which casts rays from
one origin against everything (array operations per azimuth sector, no per-ray loop).
"""

from __future__ import annotations

import numpy as np

# raw SemanticKITTI ids
CAR, TRUCK, PERSON = 10, 18, 30
ROAD, PARKING, SIDEWALK, OTHER_GROUND = 40, 44, 48, 49
BUILDING, FENCE, VEGETATION, TRUNK, TERRAIN, POLE, TRAFFIC_SIGN = 50, 51, 70, 71, 72, 80, 81
BICYCLE, BICYCLIST = 11, 31
MOVING_CAR, MOVING_BICYCLIST, MOVING_PERSON, MOVING_TRUCK = 252, 253, 254, 258
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
    BICYCLE: ((245, 130, 200), 0.35),
    BICYCLIST: ((255, 90, 120), 0.30),
}
_STYLE.update({MOVING_CAR: _STYLE[CAR], MOVING_TRUCK: _STYLE[TRUCK], MOVING_PERSON: _STYLE[PERSON],
               MOVING_BICYCLIST: _STYLE[BICYCLIST]})
CLASS_COLORS = {k: v[0] for k, v in _STYLE.items()}
_COLOR_LUT = np.zeros((260, 3), np.float64)
_REFL_LUT = np.zeros(260, np.float64)
for _k, (_c, _r) in _STYLE.items():
    _COLOR_LUT[_k], _REFL_LUT[_k] = _c, _r

SEGMENT_LENGTH = 40.0  # m of street drawn from one random stream
_CURB = 0.15  # sidewalk height (m)
_EPS = 1e-6
_N_SECTORS = 360  # azimuth sectors for culling primitives per ray bundle
_SUN = np.array([-0.35, 0.45, 0.82]) / np.linalg.norm([-0.35, 0.45, 0.82])


class _Builder:
    """Collects primitives; ``finish`` turns them into arrays."""

    def __init__(self):
        self.boxes, self.cyls, self.ells, self.zones = [], [], [], []
        self.next_instance = {CAR: 1, TRUCK: 1, PERSON: 1}
        self.factor = None  # optional callable(u) mapping the per-primitive draw u ~ U(0.88, 1) to a brightness

    def instance(self, cls):
        inst = self.next_instance.setdefault(cls, 1)
        self.next_instance[cls] += 1
        return (inst << 16) | cls

    def _bright(self, rng):
        u = rng.uniform(0.88, 1.0)
        return u if self.factor is None else self.factor(u)

    def box(self, center, half, label, rng, yaw=0.0):
        self.boxes.append((*center, *half, yaw, label, self._bright(rng)))

    def cyl(self, x, y, r, z0, z1, label, rng):
        self.cyls.append((x, y, r, z0, z1, label, self._bright(rng)))

    def ell(self, center, radii, label, rng):
        self.ells.append((*center, *radii, label, self._bright(rng)))

    def zone(self, x0, x1, y0, y1, label):
        self.zones.append((min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1), label))



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
