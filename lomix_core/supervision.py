"""Supervision of multi-scale logits: the LoMix loss, its baselines and its weightings.

Every supervised map i gets ``L_i = ce_weight · CE + dice_weight · soft-Dice`` and the total is
``Σ w_i · L_i``. The presets differ in which maps are supervised and how they are weighted:

==================  =============================================  ==========  ======
preset              maps                                           weighting   count
==================  =============================================  ==========  ======
last_layer          p1 (the finest, the one used at inference)     equal       1
deep_supervision    the n decoder maps                             equal       n
nnunet              the n decoder maps                             1/2^i       n
mutation            decoder maps + add-mutants (MERIT/EMCAD)       equal       15
lomix               decoder maps + add/mul/concat/wf mutants       softplus    48
==================  =============================================  ==========  ======

The loss is computed for all maps at once on a ``[M, B, C, H, W]`` stack by
:func:`lomix_core.map_loss.ce_dice_losses`: one softmax, one gather for the cross-entropy and one
set of per-class sums for the Dice, with a closed-form backward (on a CPU, in C, where the
mutants are never built: :mod:`lomix_core.fused_mutants`). No Python loop
over maps or classes and no host synchronisation (the official code makes 432 ``.item()`` calls per step).
The per-map loop is the readable reference, :mod:`lomix_core.reference`.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import fused_mutants
from .foundations.arguments import is_int
from .fusion import OPERATORS, MutantGenerator, check_operators, check_wf_sharing, original_names
from .map_loss import ce_dice_losses


# --------------------------------------------------------------------------------------------
# Weightings: each maps the per-map losses [M] to one scalar and reports its weights.
# --------------------------------------------------------------------------------------------
class FixedWeighting(nn.Module):
    """Constant weights (all ones for "equal", or a user-given list)."""

    def __init__(self, weights: Sequence[float]):
        super().__init__()
        self.register_buffer("fixed", torch.as_tensor(list(weights), dtype=torch.float32))

    def weights(self) -> torch.Tensor:
        return self.fixed

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return (self.fixed * losses).sum()


class SoftplusWeighting(nn.Module):
    """The paper's weighting: ``w_i = softplus(θ_i)``, θ_i initialised to 0 (w ≈ 0.693).

    These weights can only shrink. ``∂(Σ w_j L_j)/∂θ_i = sigmoid(θ_i) · L_i`` and every L_i is
    positive, so the gradient on every θ is positive and gradient descent lowers all of them,
    whatever their map's usefulness. Under Adam the step is about ``lr`` per iteration regardless
    of the gradient's size, so after the paper's ~110k steps at lr 1e-4 every weight is near 0
    and their ratios reflect gradient noise more than usefulness. Kept because it is the paper's
    method; see ``softmax`` and ``uncertainty`` for weightings that cannot collapse.
    """

    def __init__(self, num_maps: int):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(num_maps))

    def weights(self) -> torch.Tensor:
        return F.softplus(self.theta)

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return (self.weights() * losses).sum()


class SoftmaxWeighting(nn.Module):
    """``w = M · softmax(θ)``: the weights sum to M always, so they can move but not collapse."""

    def __init__(self, num_maps: int):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(num_maps))

    def weights(self) -> torch.Tensor:
        return self.theta.numel() * self.theta.softmax(dim=0)

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return (self.weights() * losses).sum()


class UncertaintyWeighting(nn.Module):
    """Kendall et al. (2018): ``Σ L_i / (2σ_i²) + log σ_i`` with ``s_i = log σ_i²`` learned.

    The ``log σ`` term penalises large σ, so a weight ``1/(2σ²)`` settles where it balances its
    map's loss instead of drifting to zero. Weights start at 0.5 (s = 0).
    """

    def __init__(self, num_maps: int):
        super().__init__()
        self.log_var = nn.Parameter(torch.zeros(num_maps))

    def weights(self) -> torch.Tensor:
        return 0.5 * torch.exp(-self.log_var)

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return (self.weights() * losses + 0.5 * self.log_var).sum()


WEIGHTINGS = ("softplus", "equal", "softmax", "uncertainty")


def make_weighting(weighting: str | Sequence[float], num_maps: int) -> nn.Module:
    if isinstance(weighting, str):
        if weighting == "equal":
            return FixedWeighting([1.0] * num_maps)
        learned = {"softplus": SoftplusWeighting, "softmax": SoftmaxWeighting, "uncertainty": UncertaintyWeighting}
        if weighting not in learned:
            raise ValueError(f"unknown weighting {weighting!r}; expected one of {WEIGHTINGS}, 'nnunet' (with "
                             f"supervision='nnunet') or a list of {num_maps} floats")
        return learned[weighting](num_maps)
    weights = list(weighting)
    if len(weights) != num_maps:
        raise ValueError(f"weighting lists {len(weights)} weights but the preset supervises {num_maps} maps; "
                         f"expected {num_maps} floats")
    return FixedWeighting(weights)


def nnunet_weights(num_maps: int) -> list[float]:
    """nnU-Net v2's deep-supervision weights: 1/2^i (i = 0 for the finest map), the coarsest map's set
    to 0, normalised to sum 1 (nnunetv2's nnUNetTrainer._build_loss: ``weights[-1] = 0``, its outputs
    listed fine → coarse). 4 maps: 0, 1/7, 2/7, 4/7 from p4 to p1."""
    raw = [0.5 ** (num_maps - 1 - i) for i in range(num_maps)]  # coarse → fine
    if num_maps > 1:  # one map has nothing coarser to drop
        raw[0] = 0.0
    return [w / sum(raw) for w in raw]


# preset → (supervise every decoder map?, default operators, default weighting)
PRESETS = {
    "last_layer": (False, (), "equal"),
    "deep_supervision": (True, (), "equal"),
    "nnunet": (True, (), "nnunet"),
    "mutation": (True, ("add",), "equal"),
    "lomix": (True, OPERATORS, "softplus"),
}


# --------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------
class LoMixLoss(nn.Module):
    """Weighted CE + soft-Dice over the decoder maps and their mutants.

    Args:
        num_maps: decoder maps the model emits (coarse → fine).
        num_classes: C, including background.
        supervision: a preset of :data:`PRESETS`.
        operators: fusion operators for the mutants; default per preset.
        weighting: "softplus" | "equal" | "softmax" | "uncertainty" | a list of M floats.
        ce_weight, dice_weight: mix of the two terms in every map's loss.
        check_values: check labels are in [0, C) and logits finite (one host sync per call).
        wf_sharing: "subset" (one wf module per subset) or "size" (the official code: one per
            subset size, shared by the subsets of that size); see :mod:`lomix_core.fusion`.

    Call it with a sequence of ``num_maps`` tensors ``[B, C, H, W]`` at the target's size and an
    integer target ``[B, H, W]``.
    """

    def __init__(self, num_maps: int, num_classes: int, supervision: str = "lomix",
                 operators: Sequence[str] | None = None, weighting: str | Sequence[float] | None = None,
                 ce_weight: float = 0.3, dice_weight: float = 0.7, check_values: bool = True,
                 wf_sharing: str = "subset"):
        super().__init__()
        if not isinstance(supervision, str) or supervision not in PRESETS:
            raise ValueError(f"unknown supervision preset {supervision!r}; expected one of {tuple(PRESETS)}")
        if not (is_int(num_maps) and is_int(num_classes)) or num_maps < 1 or num_classes < 2:
            raise ValueError(f"need integers num_maps >= 1 (the model's num_maps) and num_classes >= 2, "
                             f"got {num_maps!r} and {num_classes!r}")
        if isinstance(operators, str):
            raise TypeError(f"operators must be a list such as [{operators!r}], got the string {operators!r}")
        all_originals, default_ops, default_weighting = PRESETS[supervision]
        self.num_maps, self.num_classes, self.supervision = num_maps, num_classes, supervision
        self.ce_weight, self.dice_weight, self.check_values = ce_weight, dice_weight, check_values
        self.operators = check_operators(default_ops if operators is None else operators)
        self.wf_sharing = check_wf_sharing(wf_sharing)  # checked even when no wf mutant is built
        if self.operators and num_maps < 2:
            raise ValueError(f"mutants need at least 2 maps, got num_maps={num_maps}")

        self.original_indices = list(range(num_maps)) if all_originals else [num_maps - 1]
        self.mutant_generator = (MutantGenerator(num_maps, num_classes, self.operators, wf_sharing)
                                 if self.operators else None)
        names = original_names(num_maps)
        self.map_names = [names[i] for i in self.original_indices] + (
            self.mutant_generator.names if self.mutant_generator else [])

        weighting = default_weighting if weighting is None else weighting
        if weighting == "nnunet":
            if self.mutant_generator is not None or not all_originals:
                raise ValueError("the nnunet weighting applies to the decoder maps alone (supervision='nnunet')")
            weighting = nnunet_weights(num_maps)
        self.weighting_name = weighting if isinstance(weighting, str) else "fixed"
        self.weighting = make_weighting(weighting, len(self.map_names))

    @property
    def num_supervised(self) -> int:
        return len(self.map_names)

    # ---- maps ---------------------------------------------------------------------------------
    def mutants(self, logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """All supervised maps, ``[M, B, C, H, W]`` in :attr:`map_names` order."""
        return self._supervised_maps(self._sources(logits))

    def _sources(self, logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """The stack the loss reads: every map when mutants are built, else the supervised ones."""
        return torch.stack(self._source_maps(logits))

    def _source_maps(self, logits: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        logits = self._check_logits(logits)
        # Half precision goes up to fp32 here: under fp16 autocast a product of four maps overflows
        # once |logit| > 16 (16^4 > 65504), and the losses are accumulated in fp32 anyway.
        return [logits[i].to(torch.promote_types(logits[i].dtype, torch.float32)) for i in self._source_indices]

    @property
    def _source_indices(self) -> list[int]:
        return list(range(self.num_maps)) if self.mutant_generator is not None else self.original_indices

    def _supervised_groups(self, sources: torch.Tensor) -> list[torch.Tensor]:
        """The supervised maps in :attr:`map_names` order, as a few stacked groups: the decoder
        maps, then one group per operator."""
        if self.mutant_generator is None:
            return [sources]
        originals = sources if len(self.original_indices) == self.num_maps else sources[-1:]
        return [originals, *self.mutant_generator.per_operator(sources)]

    def _supervised_maps(self, sources: torch.Tensor) -> torch.Tensor:
        return torch.cat(self._supervised_groups(sources))

    def map_weights(self) -> dict[str, float]:
        """Current weight of every supervised map (a host sync: for logging, not the hot path)."""
        return dict(zip(self.map_names, self.weighting.weights().detach().cpu().tolist()))

    # ---- losses -------------------------------------------------------------------------------
    def per_map_losses(self, logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Unweighted ``ce_weight·CE + dice_weight·Dice`` of every supervised map, shape ``[M]``."""
        maps = self._source_maps(logits)
        target = self._check_target(target, maps)
        generator = self.mutant_generator
        if generator is not None and fused_mutants.applies(generator, maps):
            # On a CPU the mutants are never built: one kernel takes every map's loss from the maps.
            return fused_mutants.supervised_losses(generator, maps, target, self.original_indices, self.ce_weight,
                                                   self.dice_weight)
        return torch.cat([ce_dice_losses(group, target, self.ce_weight, self.dice_weight)
                          for group in self._supervised_groups(torch.stack(maps))])

    def forward(self, logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        return self.weighting(self.per_map_losses(logits, target))

    # ---- validation ---------------------------------------------------------------------------
    def _check_logits(self, logits: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if isinstance(logits, torch.Tensor) and logits.dim() == 4:
            raise TypeError(f"expected a sequence of {self.num_maps} logits maps [B,C,H,W] (coarse → fine), "
                            f"got a single tensor of shape {tuple(logits.shape)}")
        logits = list(logits)
        if len(logits) != self.num_maps:
            raise ValueError(f"got {len(logits)} logits maps, expected {self.num_maps} logits maps (num_maps="
                             f"{self.num_maps}, coarse → fine): build the loss with num_maps=model.num_maps")
        first = logits[0]
        for i, m in enumerate(logits):
            if not isinstance(m, torch.Tensor) or m.dim() != 4:
                raise TypeError(f"logits map {i} must be a tensor [B,C,H,W], got {getattr(m, 'shape', type(m))}")
            if m.shape[1] != self.num_classes:
                raise ValueError(f"logits map {i} has {m.shape[1]} classes, expected num_classes={self.num_classes}")
            if m.shape != first.shape:
                raise ValueError(f"logits map {i} has shape {tuple(m.shape)} but map 0 has {tuple(first.shape)}; "
                                 "upsample every map to the target size first")
        return logits

    def _check_target(self, target: torch.Tensor, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        if not isinstance(target, torch.Tensor) or target.dtype.is_floating_point or target.dtype == torch.bool \
                or target.is_complex():
            raise TypeError(f"target must be an integer tensor of class indices, got {getattr(target, 'dtype', type(target))}")
        expected = (maps[0].shape[0], *maps[0].shape[2:])
        if tuple(target.shape) != expected:
            raise ValueError(f"target has shape {tuple(target.shape)}, expected [B,H,W] = {expected} to match the logits")
        if self.check_values:
            self._check_values(target, maps)
        return target.long()

    def _check_values(self, target: torch.Tensor, maps: Sequence[torch.Tensor]) -> None:
        # One host sync for all three checks. The source maps are enough to check: every
        # mutant is computed from them. A NaN or inf logit makes their sum NaN or inf, and the sum
        # costs a thirtieth of isfinite(...).all() on a CPU; the exact check below runs only when
        # the sum is not finite, which finite logits can also cause by overflowing it.
        flags = torch.stack([(target < 0).any(), (target >= self.num_classes).any(),
                             ~torch.isfinite(sum(m.sum() for m in maps))]).tolist()
        if flags[0] or flags[1]:
            lo, hi = int(target.min()), int(target.max())
            raise ValueError(f"target values must be in [0, {self.num_classes}) for num_classes={self.num_classes}, "
                             f"found min {lo} and max {hi}")
        if flags[2]:
            # The error path only: find which map, for a message that says where to look.
            names = original_names(self.num_maps)
            bad = [(names[i], m) for i, m in zip(self._source_indices, maps) if not torch.isfinite(m).all()]
            if not bad:  # finite logits whose sum overflowed
                return
            name, first = bad[0]
            where = f"{name} has {int(first.isnan().sum())} NaN and {int(first.isinf().sum())} inf" + (
                f", and {len(bad) - 1} more maps have some" if len(bad) > 1 else "")
            raise ValueError(f"logits hold NaN or inf values ({where}); expected finite logits: check the inputs "
                             f"and the learning rate, or use AMP with a GradScaler")
