"""ipywidgets for exploring the mutants, the data and the predictions in JupyterLab or Colab.

In a headless run (``make reproduce`` and nbval set ``LOMIX_HEADLESS=1``) each widget draws its
first view as a plain figure and creates no widget at all: nbclient can block forever on a cell
whose widgets exchange messages with a kernel that has no front end (jupyter/nbclient#312), which
stalled the series twice.
"""
from __future__ import annotations

import os
from typing import Callable

import matplotlib.pyplot as plt
from matplotlib.patches import Patch
import numpy as np
import pandas as pd
import torch

from ..fusion import OPERATORS, mutant_name, original_names, parse_name, subsets
from ..supervision import LoMixLoss
from .viz import displayable, draw_labels

HEADLESS = "LOMIX_HEADLESS"


def headless() -> bool:
    return os.environ.get(HEADLESS) == "1"


def _interact(controls: dict[str, dict], draw: Callable[..., None]):
    """Controls (name → ``{"kind": Dropdown | IntSlider | Checkbox, **options}``) wired to
    ``draw(**values)``, which makes one figure. Headless: ``draw`` once with the first values."""
    first = {name: spec.get("value", (spec.get("options") or [spec.get("min", 0)])[0]) for name, spec in controls.items()}
    if headless():
        draw(**first)
        plt.show()
        return None
    import ipywidgets as widgets

    made = {name: getattr(widgets, spec["kind"])(description=name, **{k: v for k, v in spec.items() if k != "kind"})
            for name, spec in controls.items()}
    output = widgets.Output()

    def show(*_):
        with output:
            output.clear_output(wait=True)
            draw(**{name: widget.value for name, widget in made.items()})
            plt.show()

    for widget in made.values():
        widget.observe(show, names="value")
    show()
    return widgets.VBox([widgets.HBox(list(made.values())), output])


def _mark(ax, row: int, column: int) -> None:
    ax.plot([column], [row], marker="+", color="white", markersize=10, markeredgewidth=2)
    ax.plot([column], [row], marker="+", color="black", markersize=7, markeredgewidth=1)


def _check_slice_logits(loss_fn: LoMixLoss, logits) -> torch.Tensor:
    """One slice's decoder maps as a float stack ``[n, 1, C, H, W]``, or a one-line ValueError."""
    if not isinstance(loss_fn, LoMixLoss) or loss_fn.mutant_generator is None:
        raise ValueError("mutant_explorer needs a LoMixLoss that builds mutants (supervision 'lomix' or 'mutation'), "
                         f"got {type(loss_fn).__name__}" + (" without operators" if isinstance(loss_fn, LoMixLoss) else ""))
    if isinstance(logits, torch.Tensor) or not all(isinstance(m, torch.Tensor) and m.dim() == 4 for m in logits):
        raise ValueError(f"logits must be the model's list of {loss_fn.num_maps} maps [1,C,H,W] for one slice, got "
                         f"{type(logits).__name__}" + (f" of shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor) else ""))
    logits = list(logits)
    if len(logits) != loss_fn.num_maps or logits[0].shape[0] != 1:
        raise ValueError(f"logits must be {loss_fn.num_maps} maps [1,C,H,W] for ONE slice, got {len(logits)} maps of "
                         f"shape {tuple(logits[0].shape)}: pass [m[i:i+1] for m in logits] to pick slice i")
    return torch.stack([m.detach().float().cpu() for m in logits])


def mutant_explorer(loss_fn: LoMixLoss, logits, image: np.ndarray | None = None, operator: str | None = None,
                    subset: str | None = None, class_names: list[str] | None = None):
    """Pick an operator, a subset and a pixel; see how the members make the mutant there.

    ``logits`` is the model's output for ONE slice: the list of ``loss_fn.num_maps`` decoder maps,
    each ``[1, C, H, W]`` (coarse → fine), as ``model(image[None])`` returns it. The figure shows
    the member maps and the mutant as arg-max segmentations with the pixel marked; the per-class
    softmax probabilities at that pixel for every member and the mutant; and, for ``wf``, each
    member's attention map α_j (its per-pixel weight in the fused map). ``operator`` and
    ``subset`` (names such as ``"p4,p3"``) pick the first view; by default wf (when the loss
    builds it) over all maps. ``class_names`` (one per class, e.g. ``dataset.class_names``) label the
    bars' class axis; without them the classes are numbered.
    """
    stacked = _check_slice_logits(loss_fn, logits)
    generator, n = loss_fn.mutant_generator, loss_fn.num_maps
    names = original_names(n)
    with torch.no_grad():
        maps = loss_fn.mutants(list(stacked))[:, 0].cpu()  # [M, C, H, W]
    num_classes, height, width = maps.shape[1:]
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names; expected one per class, {num_classes}")
    class_labels = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    subset_labels = [",".join(names[i] for i in s) for s in subsets(n)]
    operator = operator or ("wf" if "wf" in generator.operators else generator.operators[0])
    subset = subset or subset_labels[-1]
    if operator not in generator.operators:
        raise ValueError(f"operator {operator!r} is not built by this loss; expected one of {list(generator.operators)}")
    if subset not in subset_labels:
        raise ValueError(f"unknown subset {subset!r}; expected one of {subset_labels}")

    def draw(operator: str, subset: str, row: int, column: int):
        indices = generator.subset(subset)
        members = [names[i] for i in indices]
        panels = members + [mutant_name(operator, indices, n)]
        rows = 3 if operator == "wf" else 2
        fig = plt.figure(figsize=(2.3 * len(panels), 2.2 * rows + 0.4))
        grid = fig.add_gridspec(rows, len(panels), height_ratios=[1, 0.8] + [1] * (rows - 2))
        probabilities = []
        for j, name in enumerate(panels):
            ax = fig.add_subplot(grid[0, j])
            z = maps[loss_fn.map_names.index(name)]
            label = z.argmax(dim=0).numpy()
            if image is not None:
                ax.imshow(image, cmap="gray")
            draw_labels(ax, label, num_classes, alpha=0.6)
            _mark(ax, row, column)
            ax.set_title(name, fontsize=8)
            ax.axis("off")
            probabilities.append(z[:, row, column].softmax(dim=0).numpy())
        bars = fig.add_subplot(grid[1, :])
        width_each = 0.8 / len(panels)
        for j, (name, p) in enumerate(zip(panels, probabilities)):
            bars.bar(np.arange(num_classes) + (j - (len(panels) - 1) / 2) * width_each, p, width_each,
                     label=name, color="black" if j == len(panels) - 1 else plt.get_cmap("Blues")(0.35 + 0.6 * j / len(members)))
        bars.set(ylim=(0, 1), xlabel="class", ylabel="softmax p",
                 title=f"class probabilities at pixel (row {row}, column {column})")
        bars.set_xticks(range(num_classes), class_labels, fontsize=7, rotation=30 if class_names else 0)
        bars.legend(fontsize=7, ncol=len(panels))
        if operator == "wf":
            with torch.no_grad():
                alpha = generator.wf_attention(stacked, subset)[0].numpy()  # [k, H, W]
            for j, name in enumerate(members):
                ax = fig.add_subplot(grid[2, j])
                ax.imshow(alpha[j], cmap="magma", vmin=0, vmax=1)
                _mark(ax, row, column)
                ax.set_title(f"α of {name} (0 black, 1 white)\n{alpha[j, row, column]:.2f} at the pixel", fontsize=7)
                ax.axis("off")
            ax = fig.add_subplot(grid[2, -1])
            winner = alpha.argmax(axis=0)
            members_cmap = plt.get_cmap("viridis", len(members))
            ax.imshow(winner, cmap=members_cmap, vmin=-0.5, vmax=len(members) - 0.5, interpolation="nearest")
            _mark(ax, row, column)
            ax.set_title("member with the largest α", fontsize=7)
            ax.legend(handles=[Patch(color=members_cmap(i), label=name) for i, name in enumerate(members)],
                      fontsize=6, loc="lower left", bbox_to_anchor=(1.0, 0.0), frameon=False)
            ax.axis("off")
        fig.tight_layout()

    return _interact({"operator": {"kind": "Dropdown", "options": list(generator.operators), "value": operator},
                      "subset": {"kind": "Dropdown", "options": subset_labels, "value": subset},
                      "row": {"kind": "IntSlider", "min": 0, "max": height - 1, "value": height // 2},
                      "column": {"kind": "IntSlider", "min": 0, "max": width - 1, "value": width // 2}}, draw)


def weight_slider(history: pd.DataFrame):
    """Slide over the training steps of a run and watch its map weights move.

    ``history`` is ``run.history``: one row per step with a ``step`` column and one ``w:<map>``
    column per map weight. Top: every map's weight at the chosen step (decoder maps in black,
    mutants coloured by operator) on a y-range fixed over the whole run, with the first step's
    weights as ticks; bottom: the change since the first step, so small drifts show too.
    """
    if not isinstance(history, pd.DataFrame) or "step" not in history.columns:
        raise ValueError("history must be run.history: a DataFrame with a 'step' column and one 'w:<map>' column "
                         f"per map weight, got {type(history).__name__}")
    columns = [c for c in history.columns if c.startswith("w:")]
    if not columns or history.empty:
        raise ValueError("history has no rows or no 'w:<map>' weight columns; expected run.history of a training run")
    names = [c[2:] for c in columns]
    weights = history[columns].to_numpy(dtype=float)
    steps = history["step"].to_numpy()
    first, change = weights[0], weights - weights[0]
    top = max(weights.max() * 1.4, 1e-6)  # headroom above the bars for the legend
    spread = max(np.abs(change).max() * 1.1, 1e-6)
    colours = dict(zip(OPERATORS, plt.get_cmap("tab10").colors))
    colour = [colours.get(parse_name(name).operator, "black") for name in names]
    x = np.arange(len(names))

    def draw(step: int):
        i = int(np.searchsorted(steps, step))
        i = min(i, len(steps) - 1)
        fig, (ax, ax_change) = plt.subplots(2, 1, figsize=(max(6, 0.2 * len(names) + 2), 4.6), sharex=True,
                                            height_ratios=[1.3, 1])
        ax.bar(x, weights[i], color=colour)
        ax.scatter(x, first, marker="_", color="grey", s=60, zorder=3)
        ax.set(ylim=(0, top), ylabel="weight")
        present = ["decoder map"] + [op for op in OPERATORS if any(parse_name(n).operator == op for n in names)]
        ax.legend(handles=[Patch(color=colours.get(label, "black"), label=label) for label in present],
                  fontsize=7, ncol=len(present), loc="upper right")
        epoch = f", epoch {int(history['epoch'].iloc[i])}" if "epoch" in history.columns else ""
        ax.set_title(f"Map weights at step {int(steps[i])} of {int(steps[-1])}{epoch} (grey: first step)", fontsize=9)
        ax_change.bar(x, change[i], color=colour)
        ax_change.axhline(0, color="grey", lw=0.6)
        ax_change.set(ylim=(-spread, spread), ylabel="change since\nfirst step")
        ax_change.set_xticks(x, names, rotation=90, fontsize=6)
        fig.tight_layout()

    return _interact({"step": {"kind": "IntSlider", "min": int(steps[0]), "max": int(steps[-1]),
                               "value": int(steps[-1])}}, draw)


def _volume_controls(dataset) -> tuple[dict[str, list[int]], dict[str, dict]]:
    volumes = dataset.subject_slices()
    longest = max(len(v) for v in volumes.values())
    return volumes, {"volume": {"kind": "Dropdown", "options": list(volumes)},
                     "slice": {"kind": "IntSlider", "min": 0, "max": longest - 1, "value": 0}}


def slice_browser(dataset, alpha: float = 0.45):
    """Step through a dataset's volumes slice by slice, with the label overlaid (toggle it off to
    see the image alone). A slice number past a volume's end shows its last slice."""
    volumes, controls = _volume_controls(dataset)
    def draw(volume: str, slice: int, label: bool = True):
        i = volumes[volume][min(slice, len(volumes[volume]) - 1)]
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.imshow(displayable(dataset.images[i]), cmap="gray")
        if label:
            labels = dataset.labels[i].numpy()
            draw_labels(ax, labels, dataset.num_classes, alpha)
        present = [dataset.class_names[c] for c in dataset.labels[i].unique().tolist() if c > 0]
        ax.set_title(f"{volume}, slice {dataset.slice_index[i]}: {', '.join(present) or 'background'}", fontsize=8)
        ax.axis("off")

    return _interact({**controls, "label": {"kind": "Checkbox", "value": True}}, draw)


def prediction_browser(dataset, predictions: dict[str, torch.Tensor], alpha: float = 0.5):
    """Step through a dataset's volumes slice by slice: the ground truth beside each model's
    prediction (``predictions`` maps a name to class indices ``[N, H, W]`` for every slice)."""
    from ..pipeline.evaluation import slice_dice
    from .viz import plot_predictions

    volumes, controls = _volume_controls(dataset)

    def draw(volume: str, slice: int):
        i = volumes[volume][min(slice, len(volumes[volume]) - 1)]
        dice = {name: slice_dice(p[i], dataset.labels[i], dataset.num_classes) for name, p in predictions.items()}
        scores = [f"{name} {d:.2f}" for name, d in dice.items()] if None not in dice.values() else ["no foreground"]
        plot_predictions(dataset, predictions, [i], alpha=alpha,
                         titles=[f"z={dataset.slice_index[i]}; 2-D Dice: " + ", ".join(scores)])

    return _interact(controls, draw)
