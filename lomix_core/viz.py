"""Plots of results and of what the LoMix loss learned. Each returns its matplotlib Figure."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from .fusion import OPERATORS
from .supervision import LoMixLoss


def save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


METRIC_LABELS = {"test_dice": "test Dice (3-D, mean over classes) ↑", "test_hd95": "test HD95 (voxels) ↓"}


def plot_test_metrics(runs: pd.DataFrame, metrics: tuple[str, ...] = ("test_dice", "test_hd95")) -> plt.Figure:
    """One panel per metric: bars are the mean over seeds ± sd, dots the individual seeds."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        sns.barplot(data=runs, x="preset", y=metric, errorbar="sd", ax=ax, color="#9ecae1")
        sns.stripplot(data=runs, x="preset", y=metric, ax=ax, color="black", size=4)
        ax.set(xlabel="", ylabel=METRIC_LABELS.get(metric, metric))
        ax.tick_params(axis="x", labelrotation=20)
    fig.suptitle(f"Supervision presets, {runs['seed'].nunique()} seed(s): mean ± sd")
    fig.tight_layout()
    return fig


def map_weight_table(loss_fn: LoMixLoss) -> tuple[pd.Series, pd.DataFrame]:
    """The decoder maps' weights, and the mutants' weights as an operator × subset table."""
    weights = pd.Series(loss_fn.map_weights())
    originals = weights[[n for n in weights.index if "(" not in n]]
    mutants = weights.drop(originals.index)
    table = pd.DataFrame({"operator": [n.split("(")[0] for n in mutants.index],
                          "subset": [n.split("(")[1].rstrip(")") for n in mutants.index],
                          "weight": mutants.values})
    order = [op for op in OPERATORS if op in set(table["operator"])]
    pivot = table.pivot(index="operator", columns="subset", values="weight").loc[order]
    return originals, pivot[list(dict.fromkeys(table["subset"]))]


def plot_map_weights(loss_fn: LoMixLoss) -> plt.Figure:
    """Heatmap of the learned mutant weights (operator × subset) beside the decoder maps' weights."""
    originals, mutants = map_weight_table(loss_fn)
    fig, (ax_orig, ax_mut) = plt.subplots(1, 2, figsize=(12, 3.2), width_ratios=[1, 8])
    vmin, vmax = min(originals.min(), mutants.min().min()), max(originals.max(), mutants.max().max())
    sns.heatmap(originals.to_frame("decoder"), annot=True, fmt=".3f", cbar=False, vmin=vmin, vmax=vmax,
                cmap="viridis", ax=ax_orig)
    sns.heatmap(mutants, annot=True, fmt=".3f", vmin=vmin, vmax=vmax, cmap="viridis", ax=ax_mut,
                cbar_kws={"label": "weight"})
    ax_mut.set(xlabel="subset", ylabel="")
    ax_orig.set(xlabel="", ylabel="decoder map")
    fig.suptitle(f"Learned map weights ({loss_fn.weighting_name})")
    return fig


def plot_weight_trajectories(history: pd.DataFrame, ax: plt.Axes | None = None) -> plt.Figure:
    """Every map's weight over training steps, coloured by operator (decoder maps in black)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    columns = [c for c in history.columns if c.startswith("w:")]
    palette = dict(zip(OPERATORS, sns.color_palette("tab10", len(OPERATORS))))
    for column in columns:
        name = column[2:]
        operator = name.split("(")[0] if "(" in name else None
        ax.plot(history["step"], history[column], lw=0.8, alpha=0.8,
                color=palette.get(operator, "black"), label=operator or "decoder map")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8)
    ax.set(xlabel="step", ylabel="weight", title="Map weights during training")
    return ax.figure


def plot_training_curves(runs: dict, ax: plt.Axes | None = None) -> plt.Figure:
    """Validation Dice per epoch for each run (``{label: Run}``)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for label, run in runs.items():
        ax.plot(run.epochs["epoch"], run.epochs["val_dice"], marker="o", ms=3, label=str(label))
    ax.set(xlabel="epoch", ylabel="validation Dice", title="Validation Dice per epoch")
    ax.legend(fontsize=8)
    return ax.figure


def displayable(image: torch.Tensor) -> np.ndarray:
    """``[C, H, W]`` → what imshow wants: ``[H, W]`` for one channel (shown grey), ``[H, W, 3]`` for RGB."""
    return image[0].numpy() if image.shape[0] == 1 else image[:3].permute(1, 2, 0).clamp(0, 1).numpy()


def plot_slices(dataset, indices, alpha: float = 0.45) -> plt.Figure:
    """Images of a dataset with their labels overlaid, one column per index."""
    cmap = plt.get_cmap("tab10", dataset.num_classes)
    fig, axes = plt.subplots(2, len(indices), figsize=(2.2 * len(indices), 4.6), squeeze=False)
    for col, i in enumerate(indices):
        image, label = displayable(dataset.images[i]), dataset.labels[i].numpy()
        for row in range(2):
            axes[row, col].imshow(image, cmap="gray")
            axes[row, col].axis("off")
        axes[1, col].imshow(np.where(label == 0, np.nan, label),
                            cmap=cmap, vmin=0, vmax=dataset.num_classes - 1, alpha=alpha, interpolation="nearest")
        axes[0, col].set_title(f"{dataset.subjects[i]} z={dataset.slice_index[i]}", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(c)) for c in range(1, dataset.num_classes)]
    fig.legend(handles, dataset.class_names[1:], loc="lower center", ncol=min(8, len(handles)), fontsize=8)
    return fig


def plot_class_statistics(statistics: dict[str, pd.DataFrame]) -> plt.Figure:
    """Share of voxels per class (log scale) for each split: ``{split: dataset.class_statistics()}``."""
    frame = pd.concat([table.assign(split=split) for split, table in statistics.items()], ignore_index=True)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    sns.barplot(data=frame, x="class_name", y="fraction", hue="split", ax=ax)
    ax.set(yscale="log", xlabel="", ylabel="share of voxels", title="Class balance per split")
    ax.tick_params(axis="x", labelrotation=25)
    fig.tight_layout()
    return fig


def plot_map_gallery(maps: torch.Tensor, names: list[str], image=None, ncols: int = 8) -> plt.Figure:
    """The arg-max segmentation of every map (``maps [M, C, H, W]`` for one slice), one panel each."""
    labels = maps.argmax(dim=1).cpu().numpy()
    num_classes = maps.shape[1]
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.75 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, name, label in zip(axes.flat, names, labels):
        if image is not None:
            ax.imshow(image, cmap="gray")
        ax.imshow(np.where(label == 0, np.nan, label), cmap="tab10", vmin=0, vmax=num_classes - 1,
                  alpha=0.6 if image is not None else 1.0, interpolation="nearest")
        ax.set_title(name, fontsize=7)
    fig.tight_layout()
    return fig


def plot_step_times(table: pd.DataFrame) -> plt.Figure:
    """Training-step and loss-only time per preset, from :func:`lomix_core.benchmark.step_times`."""
    long = table.melt(id_vars="preset", value_vars=["step_ms", "loss_ms"], var_name="what", value_name="ms")
    long["what"] = long["what"].map({"step_ms": "training step", "loss_ms": "loss fwd+bwd"})
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.barplot(data=long, x="preset", y="ms", hue="what", ax=ax)
    for preset, ratio in zip(table["preset"], table["step_vs_last_layer"]):
        ax.annotate(f"{ratio:.2f}×", (list(table["preset"]).index(preset), 0), xytext=(0, -24),
                    textcoords="offset points", ha="center", fontsize=8)
    ax.set(xlabel="", ylabel="milliseconds (median)", title="Cost per training step (ratio: step / last_layer)")
    return fig
