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
import numpy as np
import torch

from .fusion import original_names, subsets
from .supervision import LoMixLoss
from .viz import displayable

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


def mutant_picker(loss_fn: LoMixLoss, maps: torch.Tensor, image: np.ndarray | None = None):
    """Pick an operator and a subset; see the member maps and the mutant they make.

    ``maps [M, C, H, W]`` are one slice's supervised maps in ``loss_fn.map_names`` order (for
    example ``loss_fn.mutants(logits)[:, 0]``).
    """
    names, n = loss_fn.map_names, loss_fn.num_maps
    subset_labels = [",".join(original_names(n)[i] for i in s) for s in subsets(n)]

    def draw(operator: str, subset: str):
        panels = subset.split(",") + [f"{operator}({subset})"]
        fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.6))
        for ax, name in zip(np.atleast_1d(axes), panels):
            label = maps[names.index(name)].argmax(dim=0).cpu().numpy()
            if image is not None:
                ax.imshow(image, cmap="gray")
            ax.imshow(np.where(label == 0, np.nan, label), cmap="tab10", vmin=0, vmax=maps.shape[1] - 1,
                      alpha=0.6, interpolation="nearest")
            ax.set_title(name, fontsize=8)
            ax.axis("off")

    return _interact({"operator": {"kind": "Dropdown", "options": list(loss_fn.operators)},
                      "subset": {"kind": "Dropdown", "options": subset_labels}}, draw)


def _volume_controls(dataset) -> tuple[dict[str, list[int]], dict[str, dict]]:
    volumes = dataset.subject_slices()
    longest = max(len(v) for v in volumes.values())
    return volumes, {"volume": {"kind": "Dropdown", "options": list(volumes)},
                     "slice": {"kind": "IntSlider", "min": 0, "max": longest - 1, "value": 0}}


def slice_browser(dataset, alpha: float = 0.45):
    """Step through a dataset's volumes slice by slice, with the label overlaid (toggle it off to
    see the image alone). A slice number past a volume's end shows its last slice."""
    volumes, controls = _volume_controls(dataset)
    cmap = plt.get_cmap("tab10", dataset.num_classes)

    def draw(volume: str, slice: int, label: bool = True):
        i = volumes[volume][min(slice, len(volumes[volume]) - 1)]
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.imshow(displayable(dataset.images[i]), cmap="gray")
        if label:
            labels = dataset.labels[i].numpy()
            ax.imshow(np.where(labels == 0, np.nan, labels), cmap=cmap, vmin=0, vmax=dataset.num_classes - 1,
                      alpha=alpha, interpolation="nearest")
        present = [dataset.class_names[c] for c in dataset.labels[i].unique().tolist() if c > 0]
        ax.set_title(f"{volume}, slice {dataset.slice_index[i]}: {', '.join(present) or 'background'}", fontsize=8)
        ax.axis("off")

    return _interact({**controls, "label": {"kind": "Checkbox", "value": True}}, draw)


def prediction_browser(dataset, predictions: dict[str, torch.Tensor], alpha: float = 0.5):
    """Step through a dataset's volumes slice by slice: the ground truth beside each model's
    prediction (``predictions`` maps a name to class indices ``[N, H, W]`` for every slice)."""
    from .evaluate import slice_dice
    from .viz import plot_predictions

    volumes, controls = _volume_controls(dataset)

    def draw(volume: str, slice: int):
        i = volumes[volume][min(slice, len(volumes[volume]) - 1)]
        dice = {name: slice_dice(p[i], dataset.labels[i], dataset.num_classes) for name, p in predictions.items()}
        scores = [f"{name} {d:.2f}" for name, d in dice.items()] if None not in dice.values() else ["no foreground"]
        plot_predictions(dataset, predictions, [i], alpha=alpha,
                         titles=[f"z={dataset.slice_index[i]}; 2-D Dice: " + ", ".join(scores)])

    return _interact(controls, draw)
