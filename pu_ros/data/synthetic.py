"""Synthetic KITTI-like street scenes: a simulated HDL-64E scan and a colour camera over analytic primitives.

The embedded default data of the demo and of every test that must run without ``../shared``. A straight street
(road, parking bays, raised sidewalks, terrain, driveways) lined with buildings, fences, trees, bushes, poles,
traffic signs, parked cars and trucks and pedestrians is built from boxes, vertical cylinders and ellipsoids;
everything is a pure function of the seed. The street is cut into 40 m segments, each drawn from its own random
stream, so frame ``i`` of a seed is the same whatever the length of the sequence.

Two styles (``SceneConfig.style``): ``'basic'``, the street above (the default; its files are unchanged since
before issue 8), and ``'kitti'``, steered by the statistics of real SemanticKITTI scans
(:mod:`pu_ros.data.scan_stats`): domain-randomised layouts (:mod:`pu_ros.data.synthetic_kitti`), sensor tilt and
height, moving cars, trucks, cyclists and people, porous vegetation and a per-material remission model with range
fall-off, zero returns and lane markings (:mod:`pu_ros.data.remission`). Primitives and ray casting live in
:mod:`pu_ros.data.synthetic_scene`, the basic layout in :mod:`pu_ros.data.synthetic_layout`; many scans in
parallel: :func:`pu_ros.data.synthetic_writer.write_dataset`.

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

from pu_ros.data import synthetic_kitti
from pu_ros.data.remission import lane_marking, object_factor
from pu_ros.data.remission import remission as remission_model
from pu_ros.data.synthetic_layout import _segment, _street  # noqa: F401
from pu_ros.data.synthetic_scene import (  # noqa: F401  (re-exported: the public names of the generator)
    _COLOR_LUT,
    _REFL_LUT,
    _SUN,
    BICYCLE,
    BICYCLIST,
    BUILDING,
    CAR,
    CLASS_COLORS,
    FENCE,
    OTHER_GROUND,
    PARKING,
    PERSON,
    POLE,
    ROAD,
    SCENE_CLASSES,
    SEGMENT_LENGTH,
    SIDEWALK,
    TERRAIN,
    TRAFFIC_SIGN,
    TRUCK,
    TRUNK,
    VEGETATION,
    _Builder,
    _Scene,
)
from pu_ros.geometry.calibration import Calibration

STYLES = ('basic', 'kitti')


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
        style: ``'basic'`` (the original street, the default: files stay byte-identical) or ``'kitti'``: domain
            randomised layouts, sensor tilt and height, moving objects, porous vegetation and the per-material
            remission model (:mod:`pu_ros.data.synthetic_kitti`, :mod:`pu_ros.data.remission`).
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
    style: str = 'basic'

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
            (self.style in STYLES, f'style must be one of {STYLES}'),
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



# --------------------------------------------------------------------------------------------------- sequence


def _rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


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
        kitti = config.style == 'kitti'
        self._street = synthetic_kitti.street(config.seed) if kitti else _street(config.seed)
        self._reach = reach = max(config.max_range, config.camera_far if config.render_image else 0.0) + 10.0
        x_end = config.speed * config.frame_period * (config.n_frames - 1)
        b = _Builder()
        if kitti:
            b.factor = object_factor
        for k in range(int(np.floor(-reach / SEGMENT_LENGTH)), int(np.floor((x_end + reach) / SEGMENT_LENGTH)) + 1):
            (synthetic_kitti.segment if kitti else _segment)(b, self._street, config.seed, k)
        self._scene = _Scene(b, self._street)
        self._dyn_cache: tuple = (None, None)

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
        if cfg.style == 'kitti':  # mounting tilt (the road looks sloped from the sensor) and height
            st = self._street
            pose[:3, :3] = pose[:3, :3] @ _rot_x(st['roll']) @ _rot_y(st['pitch'])
            pose[2, 3] += st['dh']
        return pose

    def _dynamic(self, i: int):
        """The moving objects of frame ``i`` as a :class:`_Scene` (None when there are none or style is basic).

        Instance ids of moving objects are unique within a frame (from 1000 on), not tracked across frames.
        """
        if self.config.style != 'kitti':
            return None
        if self._dyn_cache[0] == i:
            return self._dyn_cache[1]
        cfg, st = self.config, self._street
        t = i * cfg.frame_period
        ego_x = cfg.speed * t
        lo, hi = ego_x - self._reach - 15.0 * t, ego_x + self._reach + 15.0 * t
        b = synthetic_kitti.mover_builder(_Builder)
        b.factor = object_factor
        for k in range(int(np.floor(lo / SEGMENT_LENGTH)), int(np.floor(hi / SEGMENT_LENGTH)) + 1):
            specs = synthetic_kitti.movers(st, cfg.seed, k)
            synthetic_kitti.place_movers(b, specs, t, st['curb'], ego_x - self._reach, ego_x + self._reach)
        scene = _Scene(b, st) if (b.boxes or b.cyls or b.ells) else None
        self._dyn_cache = (i, scene)
        return scene

    def _trace(self, i, origin, dirs, far):
        """Cast against the static street and the moving objects of frame ``i``.

        Returns:
            ``(t, kind, index, moving)``: as :meth:`_Scene.cast`, ``moving`` (R,) bool marks hits whose ``index``
            refers to the moving-object scene.
        """
        t, kind, index = self._scene.cast(origin, dirs, far)
        moving = np.zeros(t.shape, bool)
        dyn = self._dynamic(i)
        if dyn is not None:
            t2, k2, i2 = dyn.cast(origin, dirs, far)
            moving = (k2 > 1) & (t2 < t)
            t, kind, index = np.where(moving, t2, t), np.where(moving, k2, kind), np.where(moving, i2, index)
        return t, kind, index, moving

    def _surface(self, i, kind, index, moving, points, dirs):
        """:meth:`_Scene.surface` of hits from :meth:`_trace` (all hits, ``kind > 0``)."""
        if not moving.any():
            return self._scene.surface(kind, index, points, dirs)
        n = kind.shape[0]
        label, normal, bright = np.zeros(n, np.uint32), np.zeros((n, 3)), np.ones(n)
        for scene, m in ((self._scene, ~moving), (self._dynamic(i), moving)):
            label[m], normal[m], bright[m] = scene.surface(kind[m], index[m], points[m], dirs[m])
        return label, normal, bright

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
        t, kind, index, moving = self._trace(i, pose[:3, 3], dirs_w, cfg.max_range)
        ok = (kind > 0) & (keep_draw >= cfg.dropout)
        t, kind, index, moving, d, dw = t[ok], kind[ok], index[ok], moving[ok], dirs[ok], dirs_w[ok]
        hit_w = pose[:3, 3] + t[:, None] * dw
        label, normal, bright = self._surface(i, kind, index, moving, hit_w, dw)
        cos_inc = np.abs(np.einsum('nk,nk->n', normal, dw))
        if cfg.style == 'kitti':
            cls = label & 0xFFFF
            # porous vegetation: returns from inside the canopy, and some rays pass through (dropped)
            veg = cls == VEGETATION
            t = t + np.where(veg, rng.exponential(0.12, t.shape), 0.0)
            keep = ~veg | (rng.random(t.shape) >= 0.1)
            marking = (cls == ROAD) & lane_marking(hit_w[:, 0], hit_w[:, 1], self._street['lanes'])
            remission = remission_model(cls, bright, cos_inc, t, rng, marking)
            r = t + cfg.noise_std * noise[ok]
            points = np.empty((r.size, 4), np.float32)
            points[:, :3] = d * r[:, None]
            points[:, 3] = remission
            return points[keep], label[keep]
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
        t, kind, index, moving = self._trace(i, origin, dirs, cfg.camera_far)
        hit = kind > 0
        label = np.zeros(dirs.shape[0], np.uint32)
        lab, normal, bright = self._surface(i, kind[hit], index[hit], moving[hit], origin + t[hit, None] * dirs[hit],
                                            dirs[hit])
        if cfg.style == 'kitti':
            bright = np.clip(bright, 0.6, 1.2)  # keep rendered colours within the class palette
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


def write_sequence_metadata(folder: str | Path, seq) -> None:
    """Write ``calib.txt``, ``times.txt`` and ``poses.txt`` of a :class:`SyntheticSequence` and its folders."""
    folder = Path(folder)
    names = ['velodyne', 'labels'] + (['image_2'] if seq.config.render_image else [])
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    m = seq.matrices
    lines = [f'{k}: {_fmt(m[k])}' for k in ('P0', 'P1', 'P2', 'P3')] + [f'Tr: {_fmt(m["Tr"][:3])}']
    (folder / 'calib.txt').write_text('\n'.join(lines) + '\n')
    (folder / 'times.txt').write_text(''.join(f'{seq.stamp(i):.6e}\n' for i in range(len(seq))))
    (folder / 'poses.txt').write_text(''.join(_fmt(seq.camera_pose(i)[:3]) + '\n' for i in range(len(seq))))


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
    write_sequence_metadata(out, seq)
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
    parser.add_argument('--style', default='basic', choices=STYLES,
                        help="'basic' (default, the original street) or 'kitti' (domain-randomised, moving objects, "
                             'material remission)')


def run(args) -> int:
    """Write a synthetic sequence; returns the exit status."""
    try:
        config = SceneConfig(
            seed=args.seed, n_frames=args.frames, n_azimuth=args.azimuth_steps, render_image=not args.no_image,
            style=args.style,
        )
    except ValueError as exc:
        print(f'pu-ros synth: {exc}', file=sys.stderr)
        return 2
    out = write_sequence(args.output, config)
    print(f'wrote {config.n_frames} synthetic frames to {out}')
    return 0
