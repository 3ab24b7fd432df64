"""ipywidgets for exploring the mutants interactively in JupyterLab or Colab."""
from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from .fusion import original_names, subsets
from .supervision import LoMixLoss
from .viz import displayable


def mutant_picker(loss_fn: LoMixLoss, maps: torch.Tensor, image: np.ndarray | None = None) -> widgets.VBox:
    """Pick an operator and a subset; see the member maps and the mutant they make.

    ``maps [M, C, H, W]`` are one slice's supervised maps in ``loss_fn.map_names`` order (for
    example ``loss_fn.mutants(logits)[:, 0]``).
    """
    names = loss_fn.map_names
    operators = list(loss_fn.operators)
    n = loss_fn.num_maps
    subset_labels = [",".join(original_names(n)[i] for i in s) for s in subsets(n)]
    operator = widgets.Dropdown(options=operators, description="operator")
    subset = widgets.Dropdown(options=subset_labels, description="subset")
    output = widgets.Output()

    def show(*_):
        members = subset.value.split(",")
        panels = members + [f"{operator.value}({subset.value})"]
        with output:
            output.clear_output(wait=True)
            fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.6))
            for ax, name in zip(np.atleast_1d(axes), panels):
                label = maps[names.index(name)].argmax(dim=0).cpu().numpy()
                if image is not None:
                    ax.imshow(image, cmap="gray")
                ax.imshow(np.where(label == 0, np.nan, label), cmap="tab10", vmin=0, vmax=maps.shape[1] - 1,
                          alpha=0.6, interpolation="nearest")
                ax.set_title(name, fontsize=8)
                ax.axis("off")
            plt.show()

    operator.observe(show, names="value")
    subset.observe(show, names="value")
    show()
    return widgets.VBox([widgets.HBox([operator, subset]), output])


def slice_browser(dataset, alpha: float = 0.45) -> widgets.VBox:
    """Step through a dataset's volumes slice by slice, with the label overlaid (toggle it off to
    see the image alone)."""
    volumes = dataset.subject_slices()
    volume = widgets.Dropdown(options=list(volumes), description="volume")
    position = widgets.IntSlider(min=0, max=len(volumes[volume.value]) - 1, description="slice")
    overlay = widgets.Checkbox(value=True, description="label")
    output = widgets.Output()
    cmap = plt.get_cmap("tab10", dataset.num_classes)

    def show(*_):
        position.max = len(volumes[volume.value]) - 1
        i = volumes[volume.value][min(position.value, position.max)]
        with output:
            output.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(4, 4))
            ax.imshow(displayable(dataset.images[i]), cmap="gray")
            if overlay.value:
                label = dataset.labels[i].numpy()
                ax.imshow(np.where(label == 0, np.nan, label), cmap=cmap, vmin=0, vmax=dataset.num_classes - 1,
                          alpha=alpha, interpolation="nearest")
            present = [dataset.class_names[c] for c in dataset.labels[i].unique().tolist() if c > 0]
            ax.set_title(f"{volume.value}, slice {dataset.slice_index[i]}: {', '.join(present) or 'background'}",
                         fontsize=8)
            ax.axis("off")
            plt.show()

    for control in (volume, position, overlay):
        control.observe(show, names="value")
    show()
    return widgets.VBox([widgets.HBox([volume, position, overlay]), output])


def prediction_browser(dataset, predictions: dict[str, torch.Tensor], alpha: float = 0.5) -> widgets.VBox:
    """Step through a dataset's volumes slice by slice: the ground truth beside each model's
    prediction (``predictions`` maps a name to class indices ``[N, H, W]`` for every slice)."""
    from .evaluate import dice_per_class
    from .viz import plot_predictions

    volumes = dataset.subject_slices()
    volume = widgets.Dropdown(options=list(volumes), description="volume")
    position = widgets.IntSlider(min=0, max=len(volumes[volume.value]) - 1, description="slice")
    output = widgets.Output()

    def show(*_):
        position.max = len(volumes[volume.value]) - 1
        i = volumes[volume.value][min(position.value, position.max)]
        present = torch.bincount(dataset.labels[i].reshape(-1), minlength=dataset.num_classes)[1:] > 0
        scores = [f"{name} {dice_per_class(p[i], dataset.labels[i], dataset.num_classes)[present].mean():.2f}"
                  for name, p in predictions.items()] if present.any() else ["no foreground"]
        with output:
            output.clear_output(wait=True)
            plot_predictions(dataset, predictions, [i], titles=[f"z={dataset.slice_index[i]}; 2-D Dice: "
                                                               + ", ".join(scores)])
            plt.show()

    for control in (volume, position):
        control.observe(show, names="value")
    show()
    return widgets.VBox([widgets.HBox([volume, position]), output])
