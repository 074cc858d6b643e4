"""Student losses of Depth Anything V2: scale-and-shift-invariant + gradient matching, trimmed.

Both the prediction and the target are **affine-invariant inverse depth** (disparity). Each
image is normalised on its own labelled pixels (MiDaS, Ranftl et al. 2020, eq. 6):
``d* = (d - median(d)) / mean(|d - median(d)|)``, for the prediction and the target alike, so
that neither the scale nor the shift of either matters (for an even count the median is the
lower of the two middle values, as ``torch.nanmedian`` gives it). Then, per image:

* **SSI loss**: the (weighted) mean of ``|d*_pred - d*_target|`` over the labelled pixels after
  dropping the ``trim`` fraction with the largest residuals. Depth Anything V2 trains its
  students on pseudo labels this way (top 10 % of the loss ignored as label noise);
* **gradient matching loss**: over ``scales`` image pyramids (every ``2**k``-th pixel), the
  mean of ``|dx R| + |dy R|`` of the residual ``R = d*_pred - d*_target`` over neighbouring
  pixel pairs that are both labelled and both kept by the trimming (MiDaS eq. 11). It is what
  makes depth edges sharp on synthetic data.

The total is ``ssi + grad_weight * gm``; Depth Anything V2 weighs them 1 : 2. Images are
averaged with equal weight; an image with fewer than ``min_pixels`` labelled pixels does not
count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ['LossConfig', 'LossTerms', 'normalize_ssi', 'student_loss']


@dataclass(frozen=True)
class LossConfig:
    """Weights of the student loss."""

    grad_weight: float = 2.0  # gradient matching relative to SSI (Depth Anything V2: 2)
    trim: float = 0.1  # fraction of each image's largest-loss labelled pixels ignored
    scales: int = 4  # gradient matching pyramid levels
    min_pixels: int = 16  # fewer labelled pixels: the image does not count

    def validate(self) -> None:
        """Raise ValueError naming the field that is out of range."""
        if not self.grad_weight >= 0:
            raise ValueError(f'grad_weight must be >= 0, got {self.grad_weight}')
        if not 0 <= self.trim < 1:
            raise ValueError(f'trim must be in [0, 1), got {self.trim}')
        if self.scales < 1:
            raise ValueError(f'scales must be >= 1, got {self.scales}')
        if self.min_pixels < 2:
            raise ValueError(f'min_pixels must be >= 2, got {self.min_pixels}')


@dataclass(frozen=True)
class LossTerms:
    """The loss of one batch (0-d tensors; ``total`` carries the gradient)."""

    total: torch.Tensor
    ssi: torch.Tensor
    grad: torch.Tensor
    images: int  # images that counted


def normalize_ssi(d: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image median / mean-absolute-deviation normalisation over ``mask``.

    Parameters
    ----------
    d : Tensor [B, H, W]
        Inverse depth, any scale and shift.
    mask : Tensor [B, H, W] bool
        Labelled pixels.

    Returns
    -------
    normalized : Tensor [B, H, W]
        ``(d - t) / s``, 0 outside ``mask``.
    scale : Tensor [B]
        ``s`` (clamped to >= 1e-6; an image with no labelled pixel gets 1).
    """
    b = d.shape[0]
    flat = d.reshape(b, -1)
    m = mask.reshape(b, -1)
    nan = torch.full_like(flat, float('nan'))
    shift = torch.nanmedian(torch.where(m, flat, nan), dim=1).values  # [B]
    shift = torch.nan_to_num(shift, nan=0.0)
    dev = (flat - shift[:, None]).abs() * m
    count = m.sum(dim=1).clamp(min=1)
    scale = (dev.sum(dim=1) / count).clamp(min=1e-6)  # [B]
    out = (flat - shift[:, None]) / scale[:, None] * m
    return out.reshape(d.shape), scale


def _kept(residual: torch.Tensor, mask: torch.Tensor, trim: float) -> torch.Tensor:
    """``mask`` minus each image's ``trim`` fraction of largest residuals: [B, H, W] bool."""
    if trim <= 0:
        return mask
    b = residual.shape[0]
    r = torch.where(mask, residual, torch.full_like(residual, float('inf'))).reshape(b, -1)
    count = mask.reshape(b, -1).sum(dim=1)  # [B]
    keep = torch.floor(count.to(torch.float64) * (1.0 - trim)).to(torch.long)  # [B]
    order = torch.argsort(r, dim=1)  # ascending; unlabelled (inf) last
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(r.shape[1], device=r.device).expand(b, -1))
    return (rank < keep[:, None]).reshape(mask.shape) & mask


def _gradient_loss(residual: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                   scales: int) -> torch.Tensor:
    """Multi-scale gradient matching of the residual, per image: [B]."""
    total = torch.zeros(residual.shape[0], dtype=residual.dtype, device=residual.device)
    for k in range(scales):
        step = 2 ** k
        r = residual[:, ::step, ::step]
        m = mask[:, ::step, ::step]
        w = weight[:, ::step, ::step]
        if r.shape[1] < 2 or r.shape[2] < 2:
            break
        mx = m[:, :, 1:] & m[:, :, :-1]
        my = m[:, 1:, :] & m[:, :-1, :]
        wx = torch.minimum(w[:, :, 1:], w[:, :, :-1]) * mx
        wy = torch.minimum(w[:, 1:, :], w[:, :-1, :]) * my
        gx = (r[:, :, 1:] - r[:, :, :-1]).abs() * wx
        gy = (r[:, 1:, :] - r[:, :-1, :]).abs() * wy
        norm = (wx.sum(dim=(1, 2)) + wy.sum(dim=(1, 2))).clamp(min=1e-6)
        total = total + (gx.sum(dim=(1, 2)) + gy.sum(dim=(1, 2))) / norm
    return total


def student_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                 config: LossConfig = LossConfig()) -> LossTerms:
    """Depth Anything V2 student loss of a batch.

    Parameters
    ----------
    pred : Tensor [B, H, W]
        Predicted disparity (the network output, affine-invariant).
    target : Tensor [B, H, W]
        Target inverse depth (any scale and shift); ignored where ``weight`` is 0.
    weight : Tensor [B, H, W]
        Per-pixel weight >= 0: 0 = no label, 1 = full trust (e.g. from teacher uncertainty).
    config : LossConfig
        Loss weights and trimming.

    Returns
    -------
    LossTerms
        ``total = ssi + grad_weight * grad``, each the mean over images that count.
    """
    if pred.shape != target.shape or pred.shape != weight.shape or pred.ndim != 3:
        raise ValueError(f'pred, target and weight must all be [B, H, W], got '
                         f'{tuple(pred.shape)}, {tuple(target.shape)}, {tuple(weight.shape)}')
    weight = torch.nan_to_num(weight, nan=0.0).clamp(min=0)
    mask = (weight > 0) & torch.isfinite(target)
    target = torch.where(mask, target, torch.zeros_like(target))
    pred_n, _ = normalize_ssi(pred, mask)
    target_n, _ = normalize_ssi(target, mask)
    residual = pred_n - target_n  # [B, H, W]
    kept = _kept((residual.detach().abs() * weight), mask, config.trim)
    w = weight * kept
    wsum = w.sum(dim=(1, 2))
    ssi = (residual.abs() * w).sum(dim=(1, 2)) / wsum.clamp(min=1e-6)  # [B]
    grad = _gradient_loss(residual, kept, w, config.scales)  # [B]
    counts = mask.sum(dim=(1, 2))
    valid = (counts >= config.min_pixels) & (wsum > 0)
    n = int(valid.sum())
    if n == 0:
        zero = pred.sum() * 0.0  # keeps the graph, no gradient
        return LossTerms(zero, zero.detach(), zero.detach(), 0)
    ssi_mean = ssi[valid].mean()
    grad_mean = grad[valid].mean()
    total = ssi_mean + config.grad_weight * grad_mean
    return LossTerms(total, ssi_mean.detach(), grad_mean.detach(), n)
