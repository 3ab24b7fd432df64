"""Fusion operators and the mixed-scale "mutant" maps of LoMix.

A decoder emits ``n`` logits maps, ordered coarse → fine (``p4, p3, p2, p1`` for n = 4). For
every operator and every subset of 2..n maps (``itertools.combinations`` order) LoMix builds
one extra map:

* ``add``    — sum of the member logits;
* ``mul``    — elementwise product of the member logits;
* ``concat`` — channel concatenation followed by a learned 1×1 conv (k·C → C), one per subset;
* ``wf``     — attention-weighted fusion: a learned 1×1 conv C → 1 scores each member, the
  scores are softmaxed across members per pixel, and the output is the weighted sum.

Each learned subset owns a registered module (:class:`LearnedConcat`, :class:`WeightedFusion`)
so its parameters are trained by the optimiser and saved in the ``state_dict``. The official
code instead builds a fresh random ``nn.Conv2d`` inside ``forward``: its concat mutant is noise.

Each module's ``forward`` is the readable one-subset definition. :class:`MutantGenerator`
computes the same maps for all subsets at once from the modules' parameters.

``wf_sharing`` says who owns a wf module. ``"subset"`` (the kit's default): every subset has
its own. ``"size"`` (the official code): one :class:`WeightedFusion` per subset size k = 2..n,
shared by all subsets of that size, member j of a subset scored by scorer j. For n = 4 that is
2 + 3 + 4 = 9 scorers instead of 28, and e.g. p4 in (p4,p3) and p3 in (p3,p2) share scorer 0.
"""
from __future__ import annotations

from itertools import combinations
from typing import NamedTuple, Sequence

import torch
from torch import nn

from . import cpu_kernels

OPERATORS = ("add", "mul", "concat", "wf")
WF_SHARING = ("subset", "size")


def original_names(num_maps: int) -> list[str]:
    """Names of the decoder maps in coarse → fine order: ``['p4', 'p3', 'p2', 'p1']`` for 4."""
    return [f"p{num_maps - i}" for i in range(num_maps)]


def subsets(num_maps: int) -> list[tuple[int, ...]]:
    """Every subset of 2..n map indices, in ``itertools.combinations`` order (11 for n = 4)."""
    return [s for k in range(2, num_maps + 1) for s in combinations(range(num_maps), k)]


def mutant_name(operator: str, subset: Sequence[int], num_maps: int) -> str:
    """A readable, stable name such as ``add(p4,p3)``."""
    names = original_names(num_maps)
    return f"{operator}({','.join(names[i] for i in subset)})"


class MapName(NamedTuple):
    """A supervised map's name taken apart: ``operator`` is None for a decoder map."""

    operator: str | None
    members: tuple[str, ...]


def parse_name(name: str) -> MapName:
    """The inverse of :func:`mutant_name`, for decoder maps too: ``"add(p4,p3)"`` →
    ``MapName("add", ("p4", "p3"))``, ``"p1"`` → ``MapName(None, ("p1",))``."""
    operator, bracket, rest = name.partition("(")
    if not bracket:
        if not _is_map(name):
            raise ValueError(f"cannot parse map name {name!r}; expected a decoder map such as 'p1' or a mutant "
                             f"such as 'add(p4,p3)'")
        return MapName(None, (name,))
    members = tuple(rest.removesuffix(")").split(","))
    if operator not in OPERATORS or not rest.endswith(")") or len(members) < 2 or not all(map(_is_map, members)):
        raise ValueError(f"cannot parse map name {name!r}; expected operator(members) with an operator of "
                         f"{OPERATORS} and 2 or more decoder maps, such as 'add(p4,p3)'")
    return MapName(operator, members)


def _is_map(name: str) -> bool:
    return name.startswith("p") and name[1:].isdigit() and int(name[1:]) >= 1


def check_operators(operators: Sequence[str]) -> tuple[str, ...]:
    operators = tuple(operators)
    unknown = [op for op in operators if op not in OPERATORS]
    if unknown:
        raise ValueError(f"unknown fusion operator(s) {unknown}; expected a subset of {OPERATORS}")
    if len(set(operators)) != len(operators):
        raise ValueError(f"fusion operators must not repeat, got {list(operators)}")
    return operators


def check_wf_sharing(wf_sharing: str) -> str:
    if not isinstance(wf_sharing, str) or wf_sharing not in WF_SHARING:
        raise ValueError(f"unknown wf_sharing {wf_sharing!r}; expected one of {WF_SHARING} (one wf module per "
                         f"subset, or one per subset size as in the official code)")
    return wf_sharing


class LearnedConcat(nn.Module):
    """Concatenate k maps along channels and mix them with a trained 1×1 conv (k·C → C)."""

    def __init__(self, num_members: int, num_classes: int):
        super().__init__()
        self.num_members, self.num_classes = num_members, num_classes
        self.conv = nn.Conv2d(num_members * num_classes, num_classes, kernel_size=1)

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.conv(torch.cat(list(maps), dim=1))

    def member_weights(self) -> torch.Tensor:
        """The conv weight as ``[k, C_out, C_in]``: member j's block of input channels."""
        k, c = self.num_members, self.num_classes
        return self.conv.weight.view(c, k, c).transpose(0, 1)


class WeightedFusion(nn.Module):
    """Attention-weighted fusion: per-pixel softmax over members of a learned score per member."""

    def __init__(self, num_members: int, num_classes: int):
        super().__init__()
        self.scorers = nn.ModuleList(nn.Conv2d(num_classes, 1, kernel_size=1) for _ in range(num_members))

    def attention(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Each member's per-pixel weight ``α [B, k, H, W]``: the softmax over members of the
        scores ``a_j = w_j·z_j + b_j``; it sums to 1 over members at every pixel."""
        maps = list(maps)
        if len(maps) != len(self.scorers):
            raise ValueError(f"this WeightedFusion has {len(self.scorers)} members, got {len(maps)} maps; "
                             f"expected one [B,C,H,W] map per member")
        scores = torch.cat([score(m) for score, m in zip(self.scorers, maps)], dim=1)  # [B,k,H,W]
        return scores.softmax(dim=1)

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        maps = list(maps)
        attention = self.attention(maps)
        return sum(attention[:, j : j + 1] * m for j, m in enumerate(maps))

    def member_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Scorer weights ``[k, C]`` and biases ``[k]``."""
        weight = torch.stack([s.weight.view(-1) for s in self.scorers])
        bias = torch.cat([s.bias for s in self.scorers])
        return weight, bias


def _key(subset: Sequence[int]) -> str:
    return "_".join(map(str, subset))


class MutantGenerator(nn.Module):
    """Builds every mutant map of the chosen operators from a stack of decoder maps.

    ``forward`` takes the maps stacked as ``[n, B, C, H, W]`` (coarse → fine) and returns the
    mutants as ``[len(operators) * num_subsets, B, C, H, W]`` in :attr:`names` order:
    operator-major, then subsets in ``itertools.combinations`` order.

    Each operator runs over all subsets at once. A 0/1 membership matrix ``[subsets, n]`` turns
    add into one matrix product; concat and wf use their per-subset weights scattered into
    ``[subsets, n, ...]`` with zeros for non-members, so they too are one product over all
    maps. mul reuses the product of each subset's prefix, which ``combinations`` lists first.

    ``wf_sharing``: ``"subset"`` (one wf module per subset, keyed ``"0_1"``) or ``"size"`` (one per
    subset size, keyed ``"2"``, shared as in the official code; see the module docstring).
    """

    def __init__(self, num_maps: int, num_classes: int, operators: Sequence[str] = OPERATORS,
                 wf_sharing: str = "subset"):
        super().__init__()
        self.num_maps, self.num_classes = num_maps, num_classes
        self.operators = check_operators(operators)
        self.wf_sharing = check_wf_sharing(wf_sharing)
        self.subsets = subsets(num_maps)
        self.names = [mutant_name(op, s, num_maps) for op in self.operators for s in self.subsets]
        membership = torch.zeros(len(self.subsets), num_maps, dtype=torch.bool)
        for row, subset in enumerate(self.subsets):
            membership[row, list(subset)] = True
        self.register_buffer("membership", membership, persistent=False)
        # Where each subset's members sit in a flattened [subsets × n] table (see _scatter); a
        # buffer, so it moves with the module and no index is copied to the device per call.
        positions = [row * num_maps + j for row, subset in enumerate(self.subsets) for j in subset]
        self.register_buffer("member_positions", torch.tensor(positions), persistent=False)
        if "concat" in self.operators:
            self.concat = nn.ModuleDict({_key(s): LearnedConcat(len(s), num_classes) for s in self.subsets})
        if "wf" in self.operators:
            owners = {self._wf_key(s): len(s) for s in self.subsets}  # key → members, in subsets order
            self.wf = nn.ModuleDict({key: WeightedFusion(k, num_classes) for key, k in owners.items()})

    def __len__(self) -> int:
        return len(self.names)

    def _wf_key(self, subset: Sequence[int]) -> str:
        return str(len(subset)) if self.wf_sharing == "size" else _key(subset)

    def subset(self, subset: Sequence[int] | str) -> tuple[int, ...]:
        """A subset given as map indices ``(0, 1)`` or as names ``"p4,p3"``, as indices."""
        names = original_names(self.num_maps)
        if isinstance(subset, str):
            unknown = [name for name in subset.split(",") if name.strip() not in names]
            if unknown:
                raise ValueError(f"unknown map name(s) {unknown} in subset {subset!r}; expected names from {names}")
            subset = [names.index(name.strip()) for name in subset.split(",")]
        subset = tuple(int(i) for i in subset)
        if subset not in self.subsets:
            raise ValueError(f"{subset} is not a subset of 2..{self.num_maps} maps in increasing order; expected one "
                             f"of {self.subsets} (or names such as 'p4,p3')")
        return subset

    def learned(self, operator: str, subset: Sequence[int] | str) -> nn.Module:
        """The trained module of one subset: a :class:`LearnedConcat` for ``"concat"``, a
        :class:`WeightedFusion` for ``"wf"`` (``subset`` as indices ``(0, 1)`` or names ``"p4,p3"``).
        With ``wf_sharing="size"`` the wf module is the one shared by every subset of that size."""
        if operator not in ("concat", "wf") or operator not in self.operators:
            learned = [op for op in ("concat", "wf") if op in self.operators]
            raise ValueError(f"no learned module for operator {operator!r}; expected one of {learned} "
                             f"(the learned operators this generator builds)")
        subset = self.subset(subset)
        return self.concat[_key(subset)] if operator == "concat" else self.wf[self._wf_key(subset)]

    def wf_attention(self, stacked: torch.Tensor, subset: Sequence[int] | str) -> torch.Tensor:
        """wf's per-pixel weights over the members of ``subset``: ``[B, k, H, W]``, summing to 1
        over the k members. ``stacked`` is the decoder maps ``[n, B, C, H, W]`` (coarse → fine)."""
        if not isinstance(stacked, torch.Tensor) or stacked.dim() != 5 or stacked.shape[0] != self.num_maps:
            raise ValueError(f"stacked must be the {self.num_maps} decoder maps as one tensor [n,B,C,H,W], got "
                             f"{tuple(getattr(stacked, 'shape', ())) or type(stacked).__name__}: use torch.stack(logits)")
        members = self.subset(subset)
        return self.learned("wf", members).attention([stacked[i] for i in members])

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.per_operator(stacked))

    def per_operator(self, stacked: torch.Tensor) -> list[torch.Tensor]:
        """The mutants as one ``[num_subsets, B, C, H, W]`` tensor per operator (no concatenation:
        the loss consumes them group by group, which saves copying every mutant once more)."""
        return [getattr(self, f"_{op}")(stacked) for op in self.operators]

    def _add(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("sn,nbchw->sbchw", self.membership.to(x.dtype), x)

    def _mul(self, x: torch.Tensor) -> torch.Tensor:
        # unbind, not x[i]: the backward of each x[i] would write a zero-filled copy of all of x
        maps = x.unbind(0)
        products: dict[tuple[int, ...], torch.Tensor] = {}
        for s in self.subsets:
            head = products[s[:-1]] if len(s) > 2 else maps[s[0]]
            products[s] = head * maps[s[-1]]
        return torch.stack(list(products.values()))

    def _scatter(self, per_subset: list[torch.Tensor]) -> torch.Tensor:
        """Per-subset tensors ``[k, ...]`` → one ``[subsets, n, ...]`` with zeros for non-members."""
        values = torch.cat(per_subset)
        rows, shape = len(self.subsets), values.shape[1:]
        full = values.new_zeros(rows * self.num_maps, *shape).index_copy(0, self.member_positions, values)
        return full.view(rows, self.num_maps, *shape)

    def concat_parameters(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Every subset's concat conv as weight ``[s, n, C_out, C_in]`` (zeros for non-members) and
        bias ``[s, C_out]``; differentiable, so gradients reach each subset's module."""
        modules = [self.concat[_key(s)] for s in self.subsets]
        weight = self._scatter([m.member_weights() for m in modules]).to(dtype)
        return weight, torch.stack([m.conv.bias for m in modules]).to(dtype)

    def wf_parameters(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Every subset's wf scorers as weight ``[s, n, C]`` and bias ``[s, n]`` (zeros for non-members).
        A shared module is gathered once per subset of its size, so its scorers get the gradient
        of every one of those subsets."""
        params = [self.wf[self._wf_key(s)].member_weights() for s in self.subsets]
        return self._scatter([w for w, _ in params]).to(dtype), self._scatter([b for _, b in params]).to(dtype)

    def _concat(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.concat_parameters(x.dtype)
        return torch.einsum("snoc,nbchw->sbohw", weight, x) + bias[:, None, :, None, None]

    def _wf(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.wf_parameters(x.dtype)
        scores = torch.einsum("snc,nbchw->snbhw", weight, x) + bias[:, :, None, None, None]
        scores = scores.masked_fill(~self.membership[:, :, None, None, None], float("-inf"))
        attention = scores.softmax(dim=1)  # non-members get exactly 0
        if cpu_kernels.applies(attention, x):
            return cpu_kernels.WeightedSum.apply(attention, x, self.membership)
        return sum(attention[:, i, :, None] * x[i] for i in range(self.num_maps))
