"""The mutants' CE + soft-Dice losses without the mutants: the fused path on a CPU.

The plain path builds every add/mul/concat/wf mutant as a ``[S, B, C, H, W]`` tensor per
operator (44 maps for 4 decoder maps), then takes their statistics in
:mod:`lomix_core.map_loss`; autograd keeps the mutants and their intermediates and reads them
again backwards. Here one C kernel (:mod:`lomix_core.cpu_kernels`) builds the mutants of a block
of pixels in a buffer that stays in cache and takes their softmax, CE and Dice sums there;
backwards it builds them again, forms each mutant's gradient from the closed form of
:mod:`lomix_core.map_loss` and pushes it through its operator:

* add:    ``∂/∂x_j = g``;
* mul:    ``∂/∂x_j = g · Π_{i ≠ j} x_i``;
* concat: ``∂/∂x_j = W_jᵀ g``, ``∂/∂W_j = Σ_pixels g x_jᵀ``, ``∂/∂b = Σ_pixels g``;
* wf:     with ``α`` the members' attention and ``d_j = g · x_j``, ``∂/∂x_j = α_j g + s_j w_j`` where
  ``s_j = α_j (d_j - Σ_i α_i d_i)`` is the gradient of member j's score, ``∂/∂w_j = Σ_pixels s_j x_j``,
  ``∂/∂b_j = Σ_pixels s_j``.

Nothing of the size of the mutants is allocated, forward or backward. Values and gradients equal
the readable loop's (:mod:`lomix_core.reference`) to 1e-6 (``tests/test_fused_mutants.py``).
"""
from __future__ import annotations

import torch

from . import cpu_kernels
from .fusion import MutantGenerator
from .map_loss import class_pixels, gradient_coefficients, losses_from_statistics


def applies(generator: MutantGenerator, sources: torch.Tensor) -> bool:
    """Whether the fused kernel can take these sources: fp32 on a CPU with the kernels built, and
    no more maps than the kernel's member lists hold."""
    return sources.shape[0] <= cpu_kernels.MAX_MAPS and cpu_kernels.applies(sources)


def mutant_losses(generator: MutantGenerator, sources: torch.Tensor, target: torch.Tensor, ce_weight: float,
                  dice_weight: float) -> torch.Tensor:
    """``a·CE + b·Dice`` of every mutant of ``sources [N,B,C,H,W]`` in ``generator.names`` order, ``[M]``:
    the same values as ``ce_dice_losses(torch.cat(generator.per_operator(sources)), ...)``."""
    concat = generator.concat_parameters(sources.dtype) if "concat" in generator.operators else (None, None)
    wf = generator.wf_parameters(sources.dtype) if "wf" in generator.operators else (None, None)
    return _FusedMutantLosses.apply(sources, target, *concat, *wf, generator.operators, generator.membership,
                                    ce_weight, dice_weight)


class _FusedMutantLosses(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sources, target, concat_weight, concat_bias, wf_weight, wf_bias, operators, member,
                ce_weight, dice_weight):
        concat = (concat_weight, concat_bias) if concat_weight is not None else None
        wf = (wf_weight, wf_bias) if wf_weight is not None else None
        ce_sum, intersection, prob_sq = (t.to(sources.dtype) for t in cpu_kernels.mutant_statistics(
            sources, target, operators, member, concat, wf))
        losses, denominator = losses_from_statistics(ce_sum / target.numel(), intersection, prob_sq,
                                                     class_pixels(target, sources), ce_weight, dice_weight)
        ctx.save_for_backward(sources, target, concat_weight, concat_bias, wf_weight, wf_bias, member,
                              intersection, denominator)
        ctx.settings = (operators, ce_weight, dice_weight)
        return losses

    @staticmethod
    def backward(ctx, grad_losses):
        sources, target, concat_weight, concat_bias, wf_weight, wf_bias, member, intersection, denominator = \
            ctx.saved_tensors
        operators, ce_weight, dice_weight = ctx.settings
        a, gamma, beta = gradient_coefficients(grad_losses, intersection, denominator, target.numel(), ce_weight,
                                               dice_weight)
        concat = (concat_weight, concat_bias) if concat_weight is not None else None
        wf = (wf_weight, wf_bias) if wf_weight is not None else None
        d_sources, d_concat, d_wf = cpu_kernels.mutant_gradient(sources, target, operators, member, concat, wf,
                                                                a, gamma, beta)
        return (d_sources, None, *(d_concat or (None, None)), *(d_wf or (None, None)), None, None, None, None)
