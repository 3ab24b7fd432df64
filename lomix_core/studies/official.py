"""The official code and the kit, side by side: one table, each row checked against the kit's code.

The kit matches the official implementation (github.com/SLDGroup/LoMix, commit 464a945, the first
whose ``--supervision lomix`` trains LoMix: before it the trainer's branches knew only
``mutation`` and ``deep_supervision``, so a LoMix run supervised the last layer alone; and the
first public commits imported modules that were never released, ``lib.networks_mobile`` and
``trainer_mutation``). Each row of :data:`DIFFERENCES` says what the official code does, what the
kit does by default, and what ``protocol="official"`` (the ``full`` profile) does, with a
``check`` that reads the kit's code, so that a row cannot go on claiming what the code no longer
does. ``python -m lomix_core.studies.official`` prints the table that docs/official_vs_kit.md holds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

OFFICIAL_COMMIT = "464a945"
STATUSES = ("same", "defect fixed", "differs")


@dataclass(frozen=True)
class Difference:
    aspect: str
    official: str  # what the official code does, at OFFICIAL_COMMIT
    kit: str  # the kit's default (protocol="kit")
    official_protocol: str  # protocol="official", as the full profile runs it
    status: str  # of protocol="official" against the official code: one of STATUSES
    check: Callable[[], bool]  # True while the kit's code does what the row says


def _rules(name: str):
    from ..pipeline.config import PROTOCOLS

    return PROTOCOLS[name]


def _full():
    from ..pipeline.profiles import comparison

    return comparison("full", dataset="synapse")[0]


def _concat_is_trained() -> bool:
    from ..supervision import LoMixLoss

    loss = LoMixLoss(num_maps=4, num_classes=3, supervision="lomix")
    return any("concat" in name and p.requires_grad for name, p in loss.named_parameters())


def _last_batch_kept() -> bool:
    from ..pipeline.config import TrainConfig, epoch_steps

    return (epoch_steps(TrainConfig(protocol="official", batch_size=6), 2211) == 369
            and epoch_steps(TrainConfig(protocol="kit", batch_size=6), 2211) == 368)


DIFFERENCES: tuple[Difference, ...] = (
    Difference("training cases (Synapse)", "all 18", "16; 2 held out for validation", "all 18", "same",
               lambda: _rules("official").joins_validation and not _rules("kit").joins_validation),
    Difference("model selection", "the epoch with the best **test** Dice (defect)", "best validation Dice",
               "the last epoch; best-on-test reported beside it, labelled optimistic", "defect fixed",
               lambda: _rules("official").joins_validation and _full().track_test),
    Difference("train mode after validation", "never restored: BatchNorm statistics and drop-path frozen from "
               "epoch 2 (defect)", "restored", "restored", "defect fixed",
               lambda: not _full().official_eval_mode_bug),
    Difference("concat mutant", "a new random 1×1 conv on every call, never trained (defect)",
               "a learned 1×1 conv per subset, saved", "as the kit", "defect fixed", _concat_is_trained),
    Difference("wf (attention fusion) modules", "one per subset size (3)", "one per subset (11)",
               "one per subset size", "same", lambda: _rules("official").wf_sharing == "size"),
    Difference("network: MSCB activation, decoder init, grey→RGB stem, PVT-v2 drop-path",
               "ReLU6, N(0, 0.02), 1×1 conv + BN + ReLU, 0.1", "ReLU, PyTorch's init, channel-mean conv, 0",
               "the official ones (same logits as the official decoder with the same weights)", "same",
               lambda: _rules("official").official_network),
    Difference("augmentation: transforms", "50 % rot90 + flip, else 25 % integer-angle rotation in [-20, 19] "
               "(nearest)", "rot90, flip, ±20° rotation (bilinear image)", "the official transforms and frequencies",
               "same", lambda: _rules("official").augment == "official"),
    Difference("augmentation: where it runs", "on the stored 512² slice, then zoomed to 224 (image cubic, order 3; "
               "label nearest)", "on the model grid (slices resized once when loaded)", "on the slice as stored, "
               "then the official zoom (volume datasets; the 2-D image sets and the phantom are stored at the "
               "model grid)", "same", lambda: _augments_before_the_zoom()),
    Difference("augmentation: random generator", "numpy's and Python's, re-seeded per loader worker",
               "torch's (seeded and resumed runs repeat)", "as the kit", "differs",
               lambda: _rules("official").augment == "official"),
    Difference("last partial batch of an epoch", "kept (369 steps an epoch on Synapse)", "dropped (368)",
               "kept (369)", "same", _last_batch_kept),
    Difference("test-time scoring at the scan's grid", "argmax at 224, zoomed back with nearest (order 0)",
               "logits resampled to the scan's grid, then argmax", "argmax at the model grid, zoomed back with "
               "scipy's order-0 mapping (pixel for pixel the official prediction: test_official_scoring)", "same",
               lambda: _rules("official").scoring == "zoom" and _rules("kit").scoring == "logits"),
    Difference("test-time input resizing", "each slice zoomed to 224 with scipy's cubic spline (order 3)",
               "bilinear, antialiased (the slices are stored at the model grid)", "as the kit", "differs",
               lambda: _input_resizing_differs()),
    Difference("precision", "fp32", "fp32 (cpu); AMP on the colab profile", "fp32", "same", lambda: not _full().amp),
    Difference("optimiser and schedule", "AdamW, lr 1e-4 constant, weight decay 1e-4, 300 epochs, batch 6",
               "the same rule; budgets per profile", "the same", "same",
               lambda: (_full().lr, _full().weight_decay, _full().epochs, _full().batch_size) == (1e-4, 1e-4, 300, 6)),
    Difference("loss arithmetic", "a loop over 48 maps × 9 classes with a `.item()` per class (432 host syncs "
               "a step)", "one vectorised pass, same values to 1e-6", "as the kit", "differs",
               lambda: _loop_loss_agrees()),
    Difference("what is reported", "the best test Dice over epochs of one run (seed 2222)",
               "mean ± sd over seeds of the validation-selected test Dice", "mean ± sd over 5 seeds of the last "
               "epoch's test Dice, best-on-test beside it", "differs", lambda: len(_full_seeds()) == 5),
)


def _augments_before_the_zoom() -> bool:
    """A training slice under the official augmentation is the official order's pixels (rotate the
    stored 20² slice, then zoom it to 8²), and not those of rotating the 8² model-grid copy."""
    import numpy as np
    import torch
    from scipy import ndimage

    from ..data.augment import OfficialRotFlip
    from ..data.preprocessing import Preprocessing
    from ..data.volumes import stack_subjects

    image = np.random.default_rng(0).random((1, 20, 20)).astype(np.float32)
    label = (image > 0.5).astype(np.uint8)
    grid = Preprocessing(size=8, class_names=("background", "bright"), intensity=({"kind": "unit"},),
                         aspect="stretch")
    dataset = stack_subjects([("s", image, label)], grid, "check", "train", augment="official")
    turn = dict(angle=13, order=0, reshape=False)
    official = ndimage.zoom(ndimage.rotate(image[0], **turn), 8 / 20, order=3)
    model_grid_first = OfficialRotFlip().apply(dataset.images[0], dataset.labels[0], {"angle": 13})[0][0].numpy()
    def draws(seed: int) -> dict:
        torch.manual_seed(seed)
        return OfficialRotFlip().draw()

    with torch.random.fork_rng():
        torch.manual_seed(next(seed for seed in range(1000) if draws(seed) == {"angle": 13}))
        kit = dataset[0][0][0].numpy()
    return np.allclose(kit, official, atol=1e-6) and not np.allclose(model_grid_first, official, atol=1e-3)


def _input_resizing_differs() -> bool:
    """The kit's slice resizing is not the official cubic zoom (while it is not, the row says so)."""
    import numpy as np
    from scipy import ndimage

    from ..data.preprocessing import to_model_grid

    image = np.random.default_rng(0).random((1, 20, 20)).astype(np.float32)
    kit = to_model_grid(image, 8, label=False, aspect="stretch")[0, 0].numpy()
    return not np.allclose(kit, ndimage.zoom(image[0], 8 / 20, order=3), atol=1e-3)


def _loop_loss_agrees() -> bool:
    """The kit's vectorised loss gives the official loop's value (which costs speed only)."""
    import torch

    from ..official_style import OfficialStyleLoMixLoss
    from ..supervision import LoMixLoss

    generator = torch.Generator().manual_seed(0)
    loss = LoMixLoss(num_maps=4, num_classes=3, supervision="lomix")
    maps = [torch.randn(2, 3, 8, 8, generator=generator) for _ in range(4)]
    target = torch.randint(3, (2, 8, 8), generator=generator)
    return torch.allclose(loss(maps, target), OfficialStyleLoMixLoss(loss)(maps, target), rtol=1e-5)


def _full_seeds() -> list[int]:
    from ..pipeline.profiles import comparison

    return comparison("full", dataset="synapse")[1]


def failing_rows() -> list[str]:
    """The aspects whose row no longer matches the kit's code (empty while the table is true)."""
    return [row.aspect for row in DIFFERENCES if not row.check()]


def markdown() -> str:
    """The table as markdown, as docs/official_vs_kit.md holds it."""
    lines = [f"| aspect | official code ({OFFICIAL_COMMIT}) | kit default | `protocol=\"official\"` (full profile) "
             f"| status |", "|---|---|---|---|---|"]
    lines += [f"| {r.aspect} | {r.official} | {r.kit} | {r.official_protocol} | {r.status} |" for r in DIFFERENCES]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
