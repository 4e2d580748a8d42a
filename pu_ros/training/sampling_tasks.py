"""The two task settings SampleNet is trained in: batches and losses (the loop is in ``train_sampling``).

- :class:`ClsTask` (the paper's classification setting): a frozen PointNet classifier; SampleNet picks M of 1024
  points of a ModelNet40 shape so that the classifier still recognises it. Training shapes: the TRAIN split of the
  shared ModelNet40 sample, resampled (1024 of 10,000 points) with jitter, scaling and small rotations.
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
    """Classification setting. ``model`` is a :class:`WholeCloudSampleNet` (progressive when configured)."""

    def __init__(self, model_cfg: dict, t: dict, device):
        """Load the shapes and the frozen classifier."""
        from pu_ros.data.modelnet import load_modelnet
        from pu_ros.networks.sampling.pointnet import load_pointnet_cls

        self.t, self.device = t, device
        self.head = SampleNetConfig.from_dict({k: v for k, v in model_cfg.items() if k not in ('kind', 'patch_size')})
        self.model = WholeCloudSampleNet(self.head)
        self.task_net = load_pointnet_cls(t['task_weights'], device)
        self.shapes = load_modelnet(t['modelnet_root'], 'train')
        if not self.shapes:
            raise FileNotFoundError(f'no ModelNet40 training shapes under {t["modelnet_root"]}')
        self.weights = SamplingLossWeights(**t['loss'])
        m = self.head.num_out_points
        self.sizes = [s for s in (t.get('prefix_sizes') or []) if s <= m] if self.head.progressive else [m]
        self.sizes = self.sizes or [m]
        self.data_names = [s.name for s in self.shapes]

    def batch(self, rng: np.random.Generator) -> dict:
        """B augmented 1024-point clouds and their labels."""
        b, n = int(self.t['batch_size']), int(self.t['num_in_points'])
        pts, labels = [], []
        for k in rng.integers(0, len(self.shapes), b):
            s = self.shapes[k]
            p = s.points[rng.choice(len(s.points), n, replace=False)].astype(np.float64)
            p = p @ _rot(1, rng.uniform(-1, 1) * np.pi / 12).T  # y is up in ModelNet's resampled files
            p = p * rng.uniform(0.85, 1.15, 3) + np.clip(rng.normal(0, 0.01, p.shape), -0.03, 0.03)
            pts.append(p)
            labels.append(s.label)
        pts = torch.from_numpy(np.stack(pts).astype(np.float32)).to(self.device)
        return {'points': pts, 'labels': torch.as_tensor(labels, device=self.device)}

    def losses(self, net, batch: dict) -> dict:
        """Task (cross-entropy of the frozen PointNet on the projected points), simplification and projection."""
        out = net(batch['points'])
        task = simp = 0.0
        for m in self.sizes:
            logits = self.task_net(out['projected'][:, :m])
            task = task + F.cross_entropy(logits, batch['labels'])
            simp = simp + simplification_loss(out['simplified'][:, :m], batch['points'], self.weights)
        k = len(self.sizes)
        proj = projection_loss(self.model.net.project.sigma(), self.weights)
        return {'loss': task / k + simp / k + proj, 'task': task / k, 'simplification': simp / k, 'projection': proj}


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
