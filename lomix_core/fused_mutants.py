"""Every supervised map's CE + soft-Dice loss without building a mutant: the fused path on a CPU.

The plain path stacks the decoder maps, builds every add/mul/concat/wf mutant as a
``[S, B, C, H, W]`` tensor per operator (44 maps for 4 decoder maps), then takes their statistics
in :mod:`lomix_core.map_loss`; autograd keeps the mutants and their intermediates and reads them
again backwards. Here one C kernel (:mod:`lomix_core.cpu_kernels`) reads the decoder maps where
they are and, block of pixels by block of pixels, takes the originals' softmax, CE and Dice sums
in place and builds each mutant in a buffer that stays in cache to take its sums there;
backwards it builds them again, forms each map's gradient from the closed form of
:mod:`lomix_core.map_loss` and pushes a mutant's through its operator:

* add:    ``∂/∂x_j = g``;
* mul:    ``∂/∂x_j = g · Π_{i ≠ j} x_i``;
* concat: ``∂/∂x_j = W_jᵀ g``, ``∂/∂W_j = Σ_pixels g x_jᵀ``, ``∂/∂b = Σ_pixels g``;
* wf:     with ``α`` the members' attention and ``d_j = g · x_j``, ``∂/∂x_j = α_j g + s_j w_j`` where
  ``s_j = α_j (d_j - Σ_i α_i d_i)`` is the gradient of member j's score, ``∂/∂w_j = Σ_pixels s_j x_j``,
  ``∂/∂b_j = Σ_pixels s_j``.

Nothing of the size of the mutants is allocated, forward or backward, and no stack of the maps:
each map's gradient is written once, block by block. Values and gradients equal the readable
loop's (:mod:`lomix_core.reference`) to 1e-6 (``tests/test_fused_mutants.py``).
"""
from __future__ import annotations

from typing import Sequence

import torch

from . import cpu_kernels
from .fusion import MutantGenerator
from .map_loss import class_pixels, gradient_coefficients, losses_from_statistics


def applies(generator: MutantGenerator, maps: Sequence[torch.Tensor]) -> bool:
    """Whether the fused kernel can take these maps: fp32 on a CPU with the kernels built, and no
    more maps than the kernel's lists hold."""
    return len(maps) <= cpu_kernels.MAX_MAPS and cpu_kernels.applies(*maps)


def supervised_losses(generator: MutantGenerator, maps: Sequence[torch.Tensor], target: torch.Tensor,
                      originals: Sequence[int], ce_weight: float, dice_weight: float) -> torch.Tensor:
    """``a·CE + b·Dice`` of the decoder maps ``originals`` (indices into ``maps``), then of every
    mutant of ``maps`` (N tensors ``[B,C,H,W]``) in ``generator.names`` order, ``[M]``: the same values
    as ``ce_dice_losses(torch.cat([stack[originals], *generator.per_operator(stack)]), ...)`` with
    ``stack = torch.stack(maps)``, and no stack built."""
    concat = generator.concat_parameters(maps[0].dtype) if "concat" in generator.operators else (None, None)
    wf = generator.wf_parameters(maps[0].dtype) if "wf" in generator.operators else (None, None)
    return _FusedLosses.apply(target, *concat, *wf, generator.operators, generator.membership, tuple(originals),
                              ce_weight, dice_weight, *(m.contiguous() for m in maps))


class _FusedLosses(torch.autograd.Function):
    @staticmethod
    def forward(ctx, target, concat_weight, concat_bias, wf_weight, wf_bias, operators, member, originals,
                ce_weight, dice_weight, *maps):
        concat = (concat_weight, concat_bias) if concat_weight is not None else None
        wf = (wf_weight, wf_bias) if wf_weight is not None else None
        ce_sum, intersection, prob_sq = (t.to(maps[0].dtype) for t in cpu_kernels.mutant_statistics(
            maps, target, originals, operators, member, concat, wf))
        losses, denominator = losses_from_statistics(ce_sum / target.numel(), intersection, prob_sq,
                                                     class_pixels(target, maps[0][None]), ce_weight, dice_weight)
        ctx.save_for_backward(target, concat_weight, concat_bias, wf_weight, wf_bias, member, intersection,
                              denominator, *maps)
        ctx.settings = (operators, originals, ce_weight, dice_weight)
        return losses

    @staticmethod
    def backward(ctx, grad_losses):
        target, concat_weight, concat_bias, wf_weight, wf_bias, member, intersection, denominator, *maps = \
            ctx.saved_tensors
        operators, originals, ce_weight, dice_weight = ctx.settings
        a, gamma, beta = gradient_coefficients(grad_losses, intersection, denominator, target.numel(), ce_weight,
                                               dice_weight)
        concat = (concat_weight, concat_bias) if concat_weight is not None else None
        wf = (wf_weight, wf_bias) if wf_weight is not None else None
        d_maps, d_concat, d_wf = cpu_kernels.mutant_gradient(maps, target, originals, operators, member, concat, wf,
                                                             a, gamma, beta)
        return (None, *(d_concat or (None, None)), *(d_wf or (None, None)), None, None, None, None, None, *d_maps)
