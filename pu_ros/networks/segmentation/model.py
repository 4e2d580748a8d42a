"""The 2DPASS-style segmentor: 3D point-voxel branch, optional 2D branch and multi-scale fusion (MSFSKD).

Following Yan et al., "2DPASS: 2D Priors Assisted Semantic Segmentation on LiDAR Point Clouds" (ECCV 2022):
during training the camera helps through *multi-scale fusion-to-single knowledge distillation*. For each scale s,
the 3D point features of the points that project into the image (M of them) and the 2D features at their pixels
are fused:

    learner = relu(Linear(f3d))                     "2D learner": 3D features mapped towards the 2D ones
    h       = Linear([f2d, learner])                 fusion
    fused   = f2d + relu(h * sigmoid(Linear(h)))     gated residual on the 2D features

A per-scale fused head and a per-scale 3D head classify; the fused predictions teach the 3D ones through a KL
term (see :mod:`pu_ros.networks.losses`). A fused head over all scales gives ``logits_fused`` and an image-only
head ``logits_2d``.

With ``cfg.fusion = 'residual'`` (our variant, for a 2D branch trained from scratch on little data) the fusion
is anchored on the 3D side instead:

    h       = relu(Linear([f3d, f2d]))
    fused   = f3d + sigmoid(Linear(h)) * Linear0(h)  Linear0 starts at zero (weights and bias)

and the fused head over all scales has the 3D classifier's layout and starts as a copy of it
(:meth:`Segmentor2DPASS.copy_3d_classifier_to_fused`). At initialisation the fused head therefore gives exactly
the 3D head's logits; training can only move it away where the camera helps the loss.

At inference the 3D branch alone segments every point (default); the *fused* mode (our extra) also runs the
camera and uses the fused head for the points that the camera sees.
"""

from __future__ import annotations

import torch
from torch import nn

from pu_ros.networks.segmentation.config import SegmentationConfig
from pu_ros.networks.segmentation.image_branch import ImageFCN, gather_pixel_features
from pu_ros.networks.segmentation.point_voxel import PointVoxelBranch, point_classifier

HEAD_HIDDEN = 128


def _head(in_channels: int, num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(in_channels, HEAD_HIDDEN), nn.ReLU(inplace=True), nn.Linear(HEAD_HIDDEN, num_classes)
    )


class ScaleFusion(nn.Module):
    """Fusion of one scale: 2D learner, gated fusion, fused head and 3D head (see the module docstring)."""

    def __init__(self, channels: int, num_classes: int):
        """Build the layers for ``channels`` features and ``num_classes`` outputs."""
        super().__init__()
        self.learner = nn.Linear(channels, channels)
        self.fuse = nn.Linear(2 * channels, channels)
        self.gate = nn.Linear(channels, channels)
        self.head_fused = _head(channels, num_classes)
        self.head_3d = _head(channels, num_classes)

    def forward(self, feat_3d: torch.Tensor, feat_2d: torch.Tensor) -> torch.Tensor:
        """(M, C) 3D and (M, C) 2D features of the same points -> (M, C) fused features."""
        learner = torch.relu(self.learner(feat_3d))
        h = self.fuse(torch.cat([feat_2d, learner], dim=1))
        return feat_2d + torch.relu(h * torch.sigmoid(self.gate(h)))


class ResidualScaleFusion(nn.Module):
    """Fusion of one scale anchored on the 3D features (``fusion: residual``, see the module docstring)."""

    def __init__(self, channels: int, num_classes: int):
        """Build the layers for ``channels`` features and ``num_classes`` outputs; the residual starts at zero."""
        super().__init__()
        self.fuse = nn.Linear(2 * channels, channels)
        self.gate = nn.Linear(channels, channels)
        self.residual = nn.Linear(channels, channels)
        nn.init.zeros_(self.residual.weight)
        nn.init.zeros_(self.residual.bias)
        self.head_fused = _head(channels, num_classes)
        self.head_3d = _head(channels, num_classes)

    def forward(self, feat_3d: torch.Tensor, feat_2d: torch.Tensor) -> torch.Tensor:
        """(M, C) 3D and (M, C) 2D features of the same points -> (M, C) fused features."""
        h = torch.relu(self.fuse(torch.cat([feat_3d, feat_2d], dim=1)))
        return feat_3d + torch.sigmoid(self.gate(h)) * self.residual(h)


class Segmentor2DPASS(nn.Module):
    """2DPASS-style LiDAR segmentor; ``forward(batch) -> dict`` of outputs, no loss inside.

    The batch is a dict of tensors on one device:
        ``points`` (P, 4) float32 x, y, z, intensity inside ``cfg.point_range``; ``batch_idx`` (P,) int64;
        ``batch_size`` int; optionally ``images`` (B, 3, H, W) float32 normalised, ``pix_point_idx`` (M,) int64
        indices into ``points`` of the points seen by their sample's camera, ``pix_uv`` (M, 2) int64 their pixel
        (u = column, v = row). ``labels`` is only read by the loss.
    """

    def __init__(self, cfg: SegmentationConfig | None = None):
        """Build the 3D branch, and with ``cfg.use_image`` the 2D branch and the fusion."""
        super().__init__()
        self.cfg = cfg if cfg is not None else SegmentationConfig()
        self.backbone_3d = PointVoxelBranch(self.cfg)
        self.use_image = bool(self.cfg.use_image)
        if self.use_image:
            c, k = self.cfg.hidden_size, self.cfg.num_classes
            n = len(self.cfg.scale_list)
            self.backbone_2d = ImageFCN(c, self.cfg.scale_list)
            self.head_2d = _head(n * c, k)
            if self.cfg.fusion == 'residual':
                self.fusion = nn.ModuleList(ResidualScaleFusion(c, k) for _ in range(n))
                self.head_fused = point_classifier(n * c, k)
                self.copy_3d_classifier_to_fused()
            else:
                self.fusion = nn.ModuleList(ScaleFusion(c, k) for _ in range(n))
                self.head_fused = _head(n * c, k)

    def copy_3d_classifier_to_fused(self) -> bool:
        """With ``fusion: residual``, set the fused head to a copy of the 3D classifier; returns whether it did.

        Call it again after loading 3D weights into a model whose fused head was not trained (``train.init_from``
        of a 3D-only checkpoint), so the fused head starts equal to the 3D head.
        """
        if not self.use_image or self.cfg.fusion != 'residual':
            return False
        self.head_fused.load_state_dict(self.backbone_3d.classifier.state_dict())
        return True

    def parameter_count_3d(self) -> int:
        """Parameters of the 3D branch alone (what 3D-only inference needs)."""
        return sum(p.numel() for p in self.backbone_3d.parameters())

    def _pixels(self, batch: dict, num_points: int, batch_idx: torch.Tensor):
        images = batch['images']
        for key in ('pix_point_idx', 'pix_uv'):
            if key not in batch:
                raise ValueError(f'batch has images but no {key}')
        pix = batch['pix_point_idx'].to(device=images.device, dtype=torch.int64)
        uv = batch['pix_uv'].to(device=images.device, dtype=torch.int64)
        if pix.dim() != 1 or uv.shape != (pix.shape[0], 2):
            raise ValueError(f'pix_point_idx must be (M,) and pix_uv (M, 2), got {tuple(pix.shape)}, {tuple(uv.shape)}')
        if images.dim() != 4 or images.shape[0] != int(batch['batch_size']):
            raise ValueError(f'images must be (batch_size, 3, H, W), got {tuple(images.shape)}')
        if pix.shape[0]:
            h, w = images.shape[2:]
            stats = torch.stack([pix.min(), pix.max(), uv[:, 0].min(), uv[:, 0].max(), uv[:, 1].min(), uv[:, 1].max()])
            p_lo, p_hi, u_lo, u_hi, v_lo, v_hi = stats.tolist()
            if p_lo < 0 or p_hi >= num_points:
                raise ValueError(f'pix_point_idx must be in 0..{num_points - 1}, got {p_lo}..{p_hi}')
            if u_lo < 0 or u_hi >= w or v_lo < 0 or v_hi >= h:
                raise ValueError(f'pix_uv outside the {w}x{h} image: u {u_lo}..{u_hi}, v {v_lo}..{v_hi}')
        return images, pix, uv, batch_idx[pix]

    def forward(self, batch: dict, use_image: bool | None = None, aux_3d: bool = True) -> dict:
        """Run the network.

        Args:
            batch: see the class docstring.
            use_image: run the 2D branch and fusion; default: when the model has them and the batch has images.
            aux_3d: also return the per-scale 3D heads' logits on all points (training; the loss needs them).

        Returns:
            dict with ``logits`` (P, num_classes) from the 3D head; with the 2D branch also ``logits_fused``
            (M, num_classes), ``logits_2d`` (M, num_classes), ``logits_fused_scales`` (S x (M, num_classes)) and,
            with ``aux_3d``, ``logits_3d_scales`` (S x (P, num_classes)).
        """
        for key in ('points', 'batch_idx', 'batch_size'):
            if key not in batch:
                raise ValueError(f'batch has no {key!r}')
        points = batch['points']
        batch_idx = batch['batch_idx'].to(device=points.device, dtype=torch.int64)
        out_3d = self.backbone_3d(points, batch_idx, int(batch['batch_size']))
        outputs = {'logits': out_3d['logits']}
        if use_image is None:
            use_image = self.use_image and batch.get('images') is not None
        if not use_image:
            return outputs
        if not self.use_image:
            raise ValueError('this model was built with use_image=False; it has no 2D branch')
        if batch.get('images') is None:
            raise ValueError('the 2D branch needs batch["images"]')
        images, pix, uv, sample = self._pixels(batch, points.shape[0], batch_idx)
        maps = self.backbone_2d(images)
        fused_feats, img_feats, fused_scales, aux = [], [], [], []
        for i, fusion in enumerate(self.fusion):
            f3d_all = out_3d['point_feats'][i]
            f2d = gather_pixel_features(maps[i], self.backbone_2d.strides[i], sample, uv)
            fused = fusion(f3d_all[pix], f2d)
            fused_feats.append(fused)
            img_feats.append(f2d)
            fused_scales.append(fusion.head_fused(fused))
            if aux_3d:
                aux.append(fusion.head_3d(f3d_all))
        outputs['logits_fused'] = self.head_fused(torch.cat(fused_feats, dim=1))
        outputs['logits_2d'] = self.head_2d(torch.cat(img_feats, dim=1))
        outputs['logits_fused_scales'] = fused_scales
        if aux_3d:
            outputs['logits_3d_scales'] = aux
        return outputs

    @torch.no_grad()
    def predict(self, batch: dict, fused: bool = False) -> torch.Tensor:
        """Per-point class scores in eval mode (the module's train/eval state is restored afterwards).

        Args:
            batch: see the class docstring (images and pixel maps only needed with ``fused``).
            fused: use the camera: the points in ``pix_point_idx`` get the fused head's logits, the others the
                3D head's. Needs a model built with ``use_image`` and a batch with images.

        Returns:
            (P, num_classes) float logits.
        """
        if fused and not self.use_image:
            raise ValueError('fused prediction needs a model built with use_image=True')
        if fused and batch.get('images') is None:
            raise ValueError('fused prediction needs batch["images"], "pix_point_idx" and "pix_uv"')
        was_training = self.training
        self.eval()
        try:
            out = self.forward(batch, use_image=fused, aux_3d=False)
        finally:
            self.train(was_training)
        logits = out['logits']
        if fused:
            logits = logits.clone()
            logits[batch['pix_point_idx'].to(device=logits.device, dtype=torch.int64)] = out['logits_fused']
        return logits
