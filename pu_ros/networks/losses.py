"""Losses of the 2DPASS-style segmentor: cross-entropy, Lovász-softmax and the cross-modal KL distillation.

:class:`SegmentationLoss` turns the output dict of :class:`~pu_ros.networks.segmentation.Segmentor2DPASS` and the
batch into the training loss (the network's ``forward`` never computes a loss). With S scales:

``total = ce + λ_lovasz·lovasz                                  (3D head, all points)
        + seg3d_scales                                           (mean over S per-scale 3D heads, deep supervision)
        + λ_seg2d·seg2d                                          (2D-side heads on the points seen by the camera)
        + λ_xm·xm``                                              (mean over S of KL(fused_s ‖ 3D_s), camera points)

where every "seg" term is ``CE + λ_lovasz·Lovász`` and ``seg2d`` adds the fused head over all scales, the mean of
the per-scale fused heads, and the image-only head. The KL teacher (the fused prediction) is detached, so the
distillation only moves the 3D side, and it is the per-point KL divergence averaged over points (``batchmean``).
The last three terms need a batch with images and a model built with ``use_image``; otherwise they are 0.

Lovász-softmax (Berman, Rannen Triki, Blaschko, CVPR 2018): a convex surrogate of the per-class Jaccard loss.
Per class c, the point errors ``e = |[y == c] - p_c|`` are sorted in decreasing order and dotted with the
gradient of the Lovász extension of the Jaccard loss at that order, ``g_k = J(k) - J(k-1)`` with
``J(k) = 1 - |gt ∩ top-k| / |gt ∪ top-k|``. Here all classes are handled at once with one column-wise sort.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pu_ros.networks.segmentation.config import SegmentationConfig


def _valid(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int | None):
    if logits.dim() != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f'expected logits (N, C) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}')
    if ignore_index is None:
        return logits, labels
    keep = labels != ignore_index
    return logits[keep], labels[keep]


def lovasz_softmax(
    probs: torch.Tensor, labels: torch.Tensor, ignore_index: int | None = None, only_present: bool = True
) -> torch.Tensor:
    """Lovász-softmax loss, vectorised over classes.

    Args:
        probs: (N, C) class probabilities (softmax output), float.
        labels: (N,) int64 class ids in ``0..C-1``.
        ignore_index: label excluded from the loss (its points are dropped), or None.
        only_present: average over the classes present in ``labels`` (after dropping ignored points) only;
            otherwise over all classes except ``ignore_index``.

    Returns:
        Scalar tensor in [0, 1]; 0 (still attached to the graph) when no point is left.
    """
    probs, labels = _valid(probs, labels, ignore_index)
    num_classes = probs.shape[1]
    if probs.shape[0] == 0:
        return probs.sum() * 0.0
    fg = F.one_hot(labels, num_classes).to(probs.dtype)  # (N, C)
    errors = (fg - probs).abs()
    errors_sorted, order = torch.sort(errors, dim=0, descending=True)
    fg_sorted = fg.gather(0, order)
    gts = fg_sorted.sum(0)  # (C,)
    intersection = gts - fg_sorted.cumsum(0)
    union = gts + (1.0 - fg_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union  # union >= 1 from the first row on
    grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]], dim=0)
    per_class = (errors_sorted * grad.detach()).sum(0)  # (C,)
    if only_present:
        mask = gts > 0
    else:
        mask = torch.ones(num_classes, dtype=torch.bool, device=probs.device)
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            mask[ignore_index] = False
    # mean over the masked classes without a host sync (no boolean indexing, no bool()); 0 when none is masked
    count = mask.sum().clamp_min(1).to(per_class.dtype)
    return torch.where(mask, per_class, per_class.new_zeros(())).sum() / count


def cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None, ignore_index: int | None = None
) -> torch.Tensor:
    """Class-weighted cross-entropy, (N, C) logits and (N,) int64 labels -> scalar (0 when nothing is labelled).

    The mean is weighted like ``torch.nn.functional.cross_entropy`` (sum of w[y]·nll over sum of w[y]); when every
    labelled point has weight 0 the loss is 0 (not NaN). No host sync.
    """
    logits, labels = _valid(logits, labels, ignore_index)
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    if weight is None:
        return F.cross_entropy(logits, labels)
    total = F.cross_entropy(logits, labels, weight=weight, reduction='sum')
    norm = weight[labels].sum().to(total.dtype)
    return total / torch.where(norm > 0, norm, torch.ones_like(norm))  # all weights 0: total is 0, so is the loss


def kl_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean per-point ``KL(softmax(teacher) ‖ softmax(student))``; the teacher is detached. (M, C) x2 -> scalar >= 0."""
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(
            f'student and teacher logits must both be (M, C), got {tuple(student_logits.shape)} and '
            f'{tuple(teacher_logits.shape)}'
        )
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    teacher_log = F.log_softmax(teacher_logits.detach().float(), dim=1)
    student_log = F.log_softmax(student_logits.float(), dim=1)
    return F.kl_div(student_log, teacher_log, reduction='batchmean', log_target=True).clamp_min(0.0)


class SegmentationLoss:
    """Training loss of the 2DPASS-style segmentor (see the module docstring for the formula).

    Call it as ``loss(outputs, batch)`` with the dict returned by ``Segmentor2DPASS.forward`` and the batch dict
    (``labels`` (P,) int64 learning ids; ``pix_point_idx`` (M,) int64 when the outputs have 2D terms).
    """

    def __init__(self, cfg: SegmentationConfig):
        """Keep the weights of ``cfg`` (lambdas, class_weights, ignore_index)."""
        self.cfg = cfg
        self._weights_cpu = (
            torch.tensor(cfg.class_weights, dtype=torch.float32) if cfg.class_weights is not None else None
        )
        self._weights = {}

    def _class_weights(self, device: torch.device) -> torch.Tensor | None:
        if self._weights_cpu is None:
            return None
        if device not in self._weights:
            self._weights[device] = self._weights_cpu.to(device)
        return self._weights[device]

    def seg_terms(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cross-entropy, Lovász-softmax)`` of (N, C) logits against (N,) labels, ignoring ``ignore_index``."""
        ce = cross_entropy(logits, labels, self._class_weights(logits.device), self.cfg.ignore_index)
        lovasz = lovasz_softmax(F.softmax(logits.float(), dim=1), labels, self.cfg.ignore_index)
        return ce, lovasz

    def seg(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``CE + λ_lovasz·Lovász`` (scalar)."""
        ce, lovasz = self.seg_terms(logits, labels)
        return ce + self.cfg.lambda_lovasz * lovasz

    def __call__(self, outputs: dict, batch: dict) -> dict:
        """Compute the loss terms.

        Args:
            outputs: model outputs: ``logits`` (P, C); optionally ``logits_3d_scales`` (S x (P, C)),
                ``logits_fused_scales`` (S x (M, C)), ``logits_fused`` (M, C), ``logits_2d`` (M, C).
            batch: ``labels`` (P,) int64 learning ids; ``pix_point_idx`` (M,) int64 with the 2D terms.

        Returns:
            dict of scalar tensors: ``total`` (differentiable), ``ce``, ``lovasz``, ``seg3d_scales``, ``seg2d``,
            ``xm``.
        """
        logits = outputs['logits']
        labels = batch['labels'].to(device=logits.device, dtype=torch.int64)
        if labels.shape != (logits.shape[0],):
            raise ValueError(f'labels must be ({logits.shape[0]},) like the logits, got {tuple(labels.shape)}')
        zero = logits.new_zeros(())
        ce, lovasz = self.seg_terms(logits, labels)
        total = ce + self.cfg.lambda_lovasz * lovasz
        seg3d = seg2d = xm = zero
        scales_3d = outputs.get('logits_3d_scales') or []
        if scales_3d:
            seg3d = torch.stack([self.seg(lg, labels) for lg in scales_3d]).mean()
            total = total + seg3d
        if 'logits_fused' in outputs:
            if 'pix_point_idx' not in batch:
                raise ValueError('outputs have 2D terms but the batch has no pix_point_idx')
            pix = batch['pix_point_idx'].to(device=logits.device, dtype=torch.int64)
            pix_labels = labels[pix]
            seg2d = self.seg(outputs['logits_fused'], pix_labels)
            if 'logits_2d' in outputs:
                seg2d = seg2d + self.seg(outputs['logits_2d'], pix_labels)
            fused_scales = outputs.get('logits_fused_scales') or []
            if fused_scales:
                seg2d = seg2d + torch.stack([self.seg(lg, pix_labels) for lg in fused_scales]).mean()
                if scales_3d:
                    if len(scales_3d) != len(fused_scales):
                        raise ValueError(f'{len(scales_3d)} 3D scales but {len(fused_scales)} fused scales')
                    xm = torch.stack([kl_distillation(s3[pix], sf) for s3, sf in zip(scales_3d, fused_scales)]).mean()
            total = total + self.cfg.lambda_seg2d * seg2d + self.cfg.lambda_xm * xm
        return {
            'total': total,
            'ce': ce.detach(),
            'lovasz': lovasz.detach(),
            'seg3d_scales': seg3d.detach(),
            'seg2d': seg2d.detach(),
            'xm': xm.detach(),
        }
