"""The two task settings SampleNet is trained in: batches and losses (the loop is in ``train_sampling``).

- :class:`ClsTask` (the paper's classification setting): a frozen PointNet classifier; SampleNet picks M of 1024
  points of a shape so that the classifier still recognises it. Training shapes: the TRAIN split of the shared
  ModelNet40 sample and synthetic shapes, fresh 1024-point draws with augmentation, distilled from the classifier's
  own prediction on the full cloud.
- :class:`LidarTask` (the pipeline setting): our frozen segmentation network; SampleNet picks points of a scan crop
  so that segmenting the sampled points and carrying the labels back to every point keeps the segmentation.
  Targets are the segmentation's own predictions on the full scan (self-distillation).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pu_ros.networks.sampling.losses import SamplingLossWeights, projection_loss, simplification_loss
from pu_ros.networks.sampling.patches import PatchSampleNet, WholeCloudSampleNet, make_patches, normalise_patches
from pu_ros.networks.sampling.samplenet import SampleNetConfig
from pu_ros.ops.neighbors import knn_points
from pu_ros.ops.voxelize import in_range_mask


def _rot(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


class ClsTask:
    """Classification setting. ``model`` is a :class:`WholeCloudSampleNet` (progressive when configured).

    Recipe (``train`` keys): every step draws ``batch_size`` fresh clouds of ``num_in_points`` points from a pool of
    point sets (the ModelNet40 TRAIN shapes less ``val_shapes`` held out for validation, plus ``synthetic_shapes``
    random superquadric/torus unions of :mod:`pu_ros.data.shapes`, ``synthetic_fraction`` of each batch), augments them
    (rotation of up to ``rotate_deg`` about the up axis, anisotropic scale in ``scale_range``, clipped jitter
    ``jitter``) and normalises each to the unit ball, as evaluation does. With ``targets: distill`` the task loss is
    the KL divergence from the frozen PointNet's own prediction on the full cloud (temperature ``distill_t``), which
    needs no label and so works on synthetic shapes; ``targets: feature`` adds the relative squared error between the
    classifier's max-pooled global feature of the sampled points and of the full cloud (1024 targets per cloud instead
    of 40: the sample should realise the maxima the classifier reads); ``targets: label`` is the published
    cross-entropy (ModelNet only).
    ``freeze_bn`` keeps SampleNet's BatchNorms in inference mode (fixed affine layers at their initial statistics):
    tried because an early checkpoint scored far better with batch statistics than in inference mode.
    """

    def __init__(self, model_cfg: dict, t: dict, device):
        """Load the shapes, the frozen classifier and the synthetic pool."""
        from pu_ros.data.modelnet import load_modelnet
        from pu_ros.networks.sampling.pointnet import load_pointnet_cls

        self.t, self.device = t, device
        self.head = SampleNetConfig.from_dict({k: v for k, v in model_cfg.items() if k not in ('kind', 'patch_size')})
        self.model = WholeCloudSampleNet(self.head)
        self.task_net = load_pointnet_cls(t['task_weights'], device)
        shapes = load_modelnet(t['modelnet_root'], 'train')
        if not shapes:
            raise FileNotFoundError(f'no ModelNet40 training shapes under {t["modelnet_root"]}')
        if t['targets'] not in ('distill', 'label', 'feature'):
            raise ValueError(f'train.targets must be distill, label or feature, got {t["targets"]!r}')
        n_val = min(int(t['val_shapes']), len(shapes) - 1)
        order = np.random.default_rng(12345).permutation(len(shapes))  # a fixed hold-out, independent of train.seed
        self.val = [shapes[i] for i in sorted(order[:n_val])]
        self.shapes = [shapes[i] for i in sorted(order[n_val:])]
        self.synthetic = self._synthetic_pool(int(t['synthetic_shapes']), int(t['seed']))
        self.weights = SamplingLossWeights(**t['loss'])
        m = self.head.num_out_points
        self.sizes = [s for s in (t.get('prefix_sizes') or []) if s <= m] if self.head.progressive else [m]
        self.sizes = self.sizes or [m]
        self.data_names = [s.name for s in self.shapes] + ([f'synthetic x{len(self.synthetic)}'] if self.synthetic
                                                           else [])

    @staticmethod
    def _synthetic_pool(count: int, seed: int) -> list[np.ndarray]:
        """``count`` (10000, 3) point sets on random shapes (seeds 50000 + seed * count + i), y up like ModelNet."""
        from pu_ros.data.meshes import sample_uniform
        from pu_ros.data.modelnet import unit_sphere
        from pu_ros.data.shapes import random_shape

        rng = np.random.default_rng([seed, 7])
        return [unit_sphere(sample_uniform(random_shape(50000 + seed * count + i), 10000, rng)[:, [0, 2, 1]])
                for i in range(count)]

    def _draw(self, pts: np.ndarray, rng: np.random.Generator, augment: bool = True) -> np.ndarray:
        """One (N, 3) float32 cloud: random subset, augmentation, unit-ball normalisation."""
        p = pts[rng.choice(len(pts), int(self.t['num_in_points']), replace=False)].astype(np.float64)
        if augment:
            p = p @ _rot(1, rng.uniform(-1, 1) * np.deg2rad(float(self.t['rotate_deg']))).T  # y is up in ModelNet
            lo, hi = self.t['scale_range']
            p = p * rng.uniform(lo, hi, 3)
            j = float(self.t['jitter'])
            p = p + np.clip(rng.normal(0, j, p.shape), -3 * j, 3 * j)
        p = p - p.mean(0)
        return (p / max(float(np.linalg.norm(p, axis=1).max()), 1e-9)).astype(np.float32)

    def batch(self, rng: np.random.Generator) -> dict:
        """B augmented clouds, their labels (-1 for synthetic) and the teacher's probabilities on them."""
        b = int(self.t['batch_size'])
        pts, labels = [], []
        for _ in range(b):
            if self.synthetic and rng.random() < float(self.t['synthetic_fraction']):
                pts.append(self._draw(self.synthetic[int(rng.integers(len(self.synthetic)))], rng))
                labels.append(-1)
            else:
                s = self.shapes[int(rng.integers(len(self.shapes)))]
                pts.append(self._draw(s.points, rng))
                labels.append(s.label)
        pts = torch.from_numpy(np.stack(pts)).to(self.device)
        with torch.no_grad():
            features = self.task_net.feature_model(pts)                                    # (B, 1024)
            teacher = torch.softmax(self.task_net.classify(features) / float(self.t['distill_t']), dim=1)
        return {'points': pts, 'labels': torch.as_tensor(labels, device=self.device), 'teacher': teacher,
                'features': features}

    def _task_loss(self, sampled: torch.Tensor, batch: dict) -> torch.Tensor:
        """Task loss of the (B, M, 3) projected points against the batch's targets."""
        features = self.task_net.feature_model(sampled)                                   # (B, 1024)
        logits = self.task_net.classify(features)
        if self.t['targets'] == 'label':
            keep = batch['labels'] >= 0
            return F.cross_entropy(logits[keep], batch['labels'][keep]) if bool(keep.any()) else logits.sum() * 0
        temp = float(self.t['distill_t'])
        kl = F.kl_div(F.log_softmax(logits / temp, dim=1), batch['teacher'], reduction='batchmean') * temp ** 2
        if self.t['targets'] == 'distill':
            return kl
        # feature: the sampled cloud's max-pooled feature should equal the full cloud's (relative squared error),
        # i.e. the M points should realise the maxima the classifier reads, plus the KL term
        ref = batch['features']
        return kl + ((features - ref) ** 2).sum(1).mean() / (ref ** 2).sum(1).mean().clamp_min(1e-9)

    def losses(self, net, batch: dict) -> dict:
        """Task loss (distillation or cross-entropy) on the projected points, simplification and projection."""
        if self.t['freeze_bn']:  # BatchNorm as fixed affine layers: no batch dependence, training == inference
            for mod in self.model.modules():
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                    mod.eval()
        out = net(batch['points'])
        task = simp = 0.0
        for m in self.sizes:
            task = task + self._task_loss(out['projected'][:, :m], batch)
            simp = simp + simplification_loss(out['simplified'][:, :m], batch['points'], self.weights)
        k = len(self.sizes)
        proj = projection_loss(self.model.net.project.sigma(), self.weights)
        return {'loss': task / k + simp / k + proj, 'task': task / k, 'simplification': simp / k, 'projection': proj}

    @torch.no_grad()
    def validate(self, model, draws: int = 8) -> dict:
        """Accuracy on the held-out TRAIN shapes (fixed draws, no augmentation), SampleNet and FPS at the top size."""
        if not self.val:
            return {}
        from pu_ros.networks.sampling.projection import match_and_complete
        from pu_ros.ops.neighbors import farthest_point_sample

        rng = np.random.default_rng(999)
        pts = torch.from_numpy(np.stack([self._draw(s.points, rng, augment=False) for s in self.val
                                         for _ in range(draws)])).to(self.device)
        lab = torch.as_tensor([s.label for s in self.val for _ in range(draws)], device=self.device)
        m = max(self.sizes)
        was = model.training
        model.eval()
        idx = {'samplenet': match_and_complete(pts, model.net.simplify(pts), m), 'fps': farthest_point_sample(pts, m)}
        model.train(was)
        return {f'val_{k}_{m}': float((self.task_net(torch.gather(pts, 1, ix[..., None].expand(-1, -1, 3))).argmax(1)
                                       == lab).float().mean()) for k, ix in idx.items()}


class LidarTask:
    """Pipeline setting. ``model`` is a :class:`PatchSampleNet` trained on fixed-size crops of scans."""

    def __init__(self, model_cfg: dict, t: dict, device, data_root: str | None):
        """Load the scans and the frozen segmentation network and compute its targets on every full scan."""
        from pu_ros.inference.segmenter import Segmenter

        self.t, self.device = t, device
        cfg = dict(model_cfg)
        cfg.pop('kind', None)
        self.patch_size = int(cfg.pop('patch_size', 256))
        self.head = SampleNetConfig.from_dict(cfg)
        self.model = PatchSampleNet(self.head, self.patch_size)
        self.weights = SamplingLossWeights(**t['loss'])
        seg = Segmenter(t['segmentation_checkpoint'] or None, device=str(device))
        self.seg_model, self.seg_cfg = seg.model, seg.cfg
        for p in self.seg_model.parameters():
            p.requires_grad_(False)
        self.scans, self.data_names = [], []
        for name, pts in self._load_scans(data_root):
            res = seg.segment(pts, probs=False)
            keep = res.in_range
            self.scans.append((torch.from_numpy(pts[keep]).to(device), torch.from_numpy(
                res.labels[keep].astype(np.int64)).to(device)))
            self.data_names.append(name)
        if not self.scans:
            raise FileNotFoundError('no training scans (check --data and train.frames / train.synthetic_scans)')

    def _load_scans(self, data_root):
        from pathlib import Path

        from pu_ros.data.synthetic import SceneConfig, SyntheticSequence

        if data_root:
            seq = Path(data_root) / 'sequences' / str(self.t['sequence'])
            for f in self.t['frames']:
                path = seq / 'velodyne' / f'{int(f):06d}.bin'
                if not path.is_file():
                    raise FileNotFoundError(f'training scan {path} not found')
                yield f'{seq.name}/{int(f):06d}', np.fromfile(path, np.float32).reshape(-1, 4)
        n_syn = int(self.t['synthetic_scans'])
        if n_syn:
            syn = SyntheticSequence(SceneConfig(seed=int(self.t['seed']) + 100, n_frames=n_syn, render_image=False))
            for i in range(n_syn):
                yield f'synthetic/{i}', syn.scan(i)[0]

    def batch(self, rng: np.random.Generator) -> dict:
        """A crop of ``crop_points`` nearest points around a random point of a random scan, rotated about z."""
        pts, tgt = self.scans[int(rng.integers(len(self.scans)))]
        k = min(int(self.t['crop_points']), pts.shape[0])
        centre = pts[int(rng.integers(pts.shape[0])), :3]
        idx = knn_points(centre[None], pts[:, :3], k)[1][0]
        crop = pts[idx].clone()
        r = torch.as_tensor(_rot(2, rng.uniform(0, 2 * np.pi)), dtype=crop.dtype, device=crop.device)
        centre_xy = crop[:, :3].mean(0)
        crop[:, :3] = (crop[:, :3] - centre_xy) @ r.T + centre_xy  # keep the crop where it was (in range)
        ratio = float(rng.choice(self.t['ratios']))
        return {'points': crop, 'target': tgt[idx], 'ratio': ratio}

    def losses(self, net, batch: dict) -> dict:
        """Task loss: NLL of the segmentation of the sampled points carried back to every crop point."""
        pts, target = batch['points'], batch['target']
        index, _ = make_patches(pts[:, :3], self.patch_size)
        local, centre, scale = normalise_patches(pts[:, :3], index)
        m = max(1, min(self.head.num_out_points, int(round(batch['ratio'] * self.patch_size))))
        out = net(local, pts[index][..., 3:], prefix=m)
        xyz = (out['projected'] * scale + centre).reshape(-1, 3)
        sampled = torch.cat([xyz, out['projected_features'].reshape(-1, 1)], dim=1)
        inside = in_range_mask(sampled.detach(), self.seg_cfg)  # rotated crops may poke out of the network's range
        if not bool(inside.all()):
            xyz, sampled = xyz[inside], sampled[inside]
        logits = self.seg_model.predict({'points': sampled, 'batch_idx': torch.zeros(
            sampled.shape[0], dtype=torch.int64, device=sampled.device), 'batch_size': 1})
        prob = torch.softmax(logits.float(), dim=1)
        with torch.no_grad():
            _, nb = knn_points(pts[:, :3], xyz.detach(), 3)
        d2 = ((pts[:, None, :3] - xyz[nb]) ** 2).sum(-1)
        w = 1.0 / (d2 + 1e-3)
        w = w / w.sum(1, keepdim=True)
        carried = (w[..., None] * prob[nb]).sum(1)
        valid = target != 0
        task = F.nll_loss(torch.log(carried[valid] + 1e-6), target[valid]) if bool(valid.any()) else prob.sum() * 0
        simp = simplification_loss(out['simplified'], local, self.weights)
        proj = projection_loss(self.model.net.project.sigma(), self.weights)
        return {'loss': task + simp + proj, 'task': task, 'simplification': simp, 'projection': proj}
