"""Cross-entropy + soft Dice of a stack of maps, with a hand-derived backward pass.

For each map ``m`` of a stack ``z [M, B, C, H, W]`` with softmax ``p`` and one-hot target
``y``, over the ``n = B·H·W`` pixels:

    CE_m   = -(1/n) Σ_x log p_y(x)
    Dice_m = 1 - (1/C) Σ_c (2 I_c + ε) / (P_c + Y_c + ε),
             I_c = Σ_x p_c y_c,  P_c = Σ_x p_c²,  Y_c = Σ_x y_c     (TransUNet's soft Dice)
    L_m    = a · CE_m + b · Dice_m

Autograd would store the log-probabilities, the probabilities and a one-hot gather buffer, and
run about eight passes over the stack backwards. The gradient has a closed form, so the
backward recomputes ``p`` from the saved logits and needs about five:

    ∂L/∂p_c = b (γ_c p_c - β_c y_c),  γ_c = 2 (2 I_c + ε) / (C D_c²),  β_c = 2 / (C D_c),
    D_c = P_c + Y_c + ε, and through the softmax, with s = Σ_c p_c ∂L/∂p_c,
    ∂L/∂z_c = p_c (∂L/∂p_c - s) + (a / n) (p_c - y_c).

The result matches autograd of the plain formula (checked by ``gradcheck`` in the tests). On a
CPU in fp32 the same statistics and gradient run in C (:mod:`lomix_core.cpu_kernels`), one read
of the stack forward and one read and one write backward; elsewhere in PyTorch.
"""
from __future__ import annotations

import torch

from . import cpu_kernels

DICE_SMOOTH = 1e-5


def ce_dice_losses(maps: torch.Tensor, target: torch.Tensor, ce_weight: float, dice_weight: float) -> torch.Tensor:
    """``a·CE + b·Dice`` of every map in ``maps [M,B,C,H,W]`` against ``target [B,H,W]`` → ``[M]``.

    Computed in fp32 (or fp64 if ``maps`` is fp64) whatever the autocast dtype: the Dice sums run
    over every pixel of the batch.
    """
    if maps.dtype not in (torch.float32, torch.float64):
        maps = maps.float()
    return _StackedCEDice.apply(maps, target, ce_weight, dice_weight)


def _true_class_index(target: torch.Tensor, num_maps: int) -> torch.Tensor:
    return target[None, :, None].expand(num_maps, -1, 1, -1, -1)


class _StackedCEDice(torch.autograd.Function):
    @staticmethod
    def forward(ctx, maps, target, ce_weight, dice_weight):
        if cpu_kernels.applies(maps):
            ce_sum, intersection, prob_sq = (t.to(maps.dtype) for t in cpu_kernels.statistics(maps, target))
            ce = ce_sum / target.numel()
            label_sum = class_pixels(target, maps)
        else:
            ce, intersection, prob_sq, label_sum = _statistics(maps, target)
        losses, denominator = losses_from_statistics(ce, intersection, prob_sq, label_sum, ce_weight, dice_weight)
        ctx.save_for_backward(maps, target, intersection, denominator)
        ctx.weights = (ce_weight, dice_weight)
        return losses

    @staticmethod
    def backward(ctx, grad_losses):
        maps, target, intersection, denominator = ctx.saved_tensors
        a, gamma, beta = gradient_coefficients(grad_losses, intersection, denominator, target.numel(), *ctx.weights)
        if cpu_kernels.applies(maps):
            return cpu_kernels.gradient(maps, target, a, gamma, beta), None, None, None
        return _gradient(maps, target, a, gamma, beta), None, None, None


def losses_from_statistics(ce, intersection, prob_sq, label_sum, ce_weight: float, dice_weight: float):
    """``a·CE + b·Dice`` per map ``[M]`` from the mean CE ``[M]`` and the sums I, P ``[M,C]``, Y ``[C]``;
    also the Dice denominators ``D [M,C]`` the backward needs."""
    denominator = prob_sq + label_sum + DICE_SMOOTH
    dice = (2 * intersection + DICE_SMOOTH) / denominator
    return ce_weight * ce + dice_weight * (1 - dice.mean(dim=1)), denominator


def gradient_coefficients(grad_losses, intersection, denominator, pixels: int, ce_weight: float, dice_weight: float):
    """The gradient's coefficients ``a [M]``, ``γ, β [M,C]`` (module docstring), each map's upstream
    gradient folded in: one multiply per [M,C] entry instead of one per pixel."""
    num_classes = intersection.shape[1]
    a = (ce_weight / pixels) * grad_losses  # [M]
    b = dice_weight * grad_losses[:, None]  # [M,1]
    gamma = b * 2 * (2 * intersection + DICE_SMOOTH) / (num_classes * denominator ** 2)  # [M,C]
    beta = b * 2 / (num_classes * denominator)  # [M,C]
    return a, gamma, beta


def class_pixels(target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Y_c, the pixels of each class. A scatter, not torch.bincount: on CUDA bincount reads the
    maximum back to the host."""
    flat = target.reshape(-1)
    return like.new_zeros(like.shape[2]).scatter_add_(0, flat, like.new_ones(()).expand(flat.numel()))


def _statistics(maps: torch.Tensor, target: torch.Tensor):
    """CE_m, I_c, P_c and Y_c in PyTorch, for every map."""
    num_maps = maps.shape[0]
    index = _true_class_index(target, num_maps)
    log_probs = maps.log_softmax(dim=2)
    log_p_true = log_probs.gather(2, index)
    probs = log_probs.exp_()  # reuses the buffer: log_probs is not needed any more
    labels = target.reshape(1, -1).expand(num_maps, -1)
    intersection = maps.new_zeros(num_maps, maps.shape[2]).scatter_add_(1, labels, log_p_true.exp().reshape(num_maps, -1))
    prob_sq = torch.linalg.vector_norm(probs, dim=(1, 3, 4)).square()
    return -log_p_true.mean(dim=(1, 2, 3, 4)), intersection, prob_sq, class_pixels(target, maps)


def _gradient(maps, target, a, gamma, beta):
    """The closed-form gradient in PyTorch, from the folded coefficients."""
    num_maps = maps.shape[0]
    index = _true_class_index(target, num_maps)
    as_map = (lambda t: t[:, None, :, None, None])  # [M,C] → broadcast over [M,B,C,H,W]
    probs = maps.softmax(dim=2)
    p_true = probs.gather(2, index)
    beta_true = beta.gather(1, target.reshape(1, -1).expand(num_maps, -1)).view_as(p_true)
    gamma_p = as_map(gamma) * probs
    s = (gamma_p * probs).sum(dim=2, keepdim=True) - beta_true * p_true  # Σ_c p_c ∂L/∂p_c
    # p_c (γ_c p_c - s + a), written as one fused multiply-add over the stack
    grad = torch.addcmul(probs * (a[:, None, None, None, None] - s), gamma_p, probs)
    grad.scatter_add_(2, index, -beta_true * p_true - a[:, None, None, None, None].expand_as(p_true))
    return grad
