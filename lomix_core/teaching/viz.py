"""Plots of results and of what the LoMix loss learned. Each returns its matplotlib Figure."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from ..data.preprocessing import as_float
from ..fusion import OPERATORS, parse_name
from ..supervision import LoMixLoss


def save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


METRIC_LABELS = {"test_dice": "test Dice (3-D, mean over classes) ↑", "test_hd95": "test HD95 (voxels of the scan) ↓"}


def plot_test_metrics(runs: pd.DataFrame, metrics: tuple[str, ...] = ("test_dice", "test_hd95"),
                      by: str = "preset", title: str = "Supervision presets") -> plt.Figure:
    """One panel per metric: bars are the mean over seeds ± sd, dots the individual seeds."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(5.5, 0.6 * runs[by].nunique()) * len(metrics), 3.5),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        sns.barplot(data=runs, x=by, y=metric, errorbar="sd", ax=ax, color="#9ecae1")
        sns.stripplot(data=runs, x=by, y=metric, ax=ax, color="black", size=4)
        ax.set(xlabel="", ylabel=METRIC_LABELS.get(metric, metric))
        ax.tick_params(axis="x", labelrotation=30)
    fig.suptitle(f"{title}, {runs['seed'].nunique()} seed(s): mean ± sd")
    fig.tight_layout()
    return fig


def map_weight_table(loss_fn: LoMixLoss) -> tuple[pd.Series, pd.DataFrame]:
    """The decoder maps' weights, and the mutants' weights as an operator × subset table."""
    weights = pd.Series(loss_fn.map_weights())
    parsed = {name: parse_name(name) for name in weights.index}
    originals = weights[[n for n in weights.index if parsed[n].operator is None]]
    mutants = weights.drop(originals.index)
    table = pd.DataFrame({"operator": [parsed[n].operator for n in mutants.index],
                          "subset": [",".join(parsed[n].members) for n in mutants.index],
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
        operator = parse_name(name).operator
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
    """``[C, H, W]`` (float, or uint8 as compact datasets store it) → what imshow wants: ``[H, W]`` for
    one channel (shown grey), ``[H, W, 3]`` for RGB."""
    image = as_float(image)
    return image[0].numpy() if image.shape[0] == 1 else image[:3].permute(1, 2, 0).clamp(0, 1).numpy()


def label_colours(num_classes: int) -> ListedColormap:
    """One colour per class for ``imshow(labels, cmap=..., vmin=0, vmax=num_classes - 1)``: class ``c``
    gets colour ``c``. None is grey, so no class vanishes on a greyscale scan (tab10's own grey
    fell on the liver of the CT datasets). Index 0, background, is never drawn."""
    palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]
    palette += [c for i, c in enumerate(plt.get_cmap("tab20").colors) if i % 2 and i != 15]  # lighter shades
    if num_classes - 1 > len(palette):
        palette = list(plt.get_cmap("hsv")(np.linspace(0, 1, num_classes - 1, endpoint=False)))
    return ListedColormap([(0.0, 0.0, 0.0, 0.0), *palette[:max(1, num_classes - 1)]])


def draw_labels(ax: plt.Axes, label: np.ndarray, num_classes: int, alpha: float = 0.5) -> None:
    """Overlay a label map (class indices) on ``ax``, background left clear."""
    ax.imshow(np.where(label == 0, np.nan, label), cmap=label_colours(num_classes), vmin=0, vmax=num_classes - 1,
              alpha=alpha, interpolation="nearest")


def plot_slices(dataset, indices, alpha: float = 0.45) -> plt.Figure:
    """Images of a dataset with their labels overlaid, one column per index."""
    cmap = label_colours(dataset.num_classes)
    fig, axes = plt.subplots(2, len(indices), figsize=(2.2 * len(indices), 4.6), squeeze=False)
    for col, i in enumerate(indices):
        image, label = displayable(dataset.images[i]), dataset.labels[i].numpy()
        for row in range(2):
            axes[row, col].imshow(image, cmap="gray")
            axes[row, col].axis("off")
        draw_labels(axes[1, col], label, dataset.num_classes, alpha)
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
        draw_labels(ax, label, num_classes, alpha=0.6 if image is not None else 1.0)
        ax.set_title(name, fontsize=7)
    fig.tight_layout()
    return fig


def plot_step_times(table: pd.DataFrame) -> plt.Figure:
    """Training-step and loss-only time per preset, from :func:`lomix_core.pipeline.timing.step_times`."""
    long = table.melt(id_vars="preset", value_vars=["step_ms", "loss_ms"], var_name="what", value_name="ms")
    long["what"] = long["what"].map({"step_ms": "training step", "loss_ms": "loss fwd+bwd"})
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.barplot(data=long, x="preset", y="ms", hue="what", ax=ax)
    for preset, ratio in zip(table["preset"], table["step_vs_last_layer"]):
        ax.annotate(f"{ratio:.2f}×", (list(table["preset"]).index(preset), 0), xytext=(0, -24),
                    textcoords="offset points", ha="center", fontsize=8)
    ax.set(xlabel="", ylabel="milliseconds (median)", title="Cost per training step (ratio: step / last_layer)")
    return fig


def plot_low_data(curve: pd.DataFrame, metric_label: str = "test Dice") -> plt.Figure:
    """Mean over seeds against the number of training subjects, one line per preset, with the 95 %
    t interval as a band (from :meth:`lomix_core.studies.comparisons.LowData.curve`)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for preset, rows in curve.groupby("preset", sort=False):
        line, = ax.plot(rows["train_subjects"], rows["mean"], marker="o", label=preset)
        ax.fill_between(rows["train_subjects"], rows["ci95_low"], rows["ci95_high"], color=line.get_color(), alpha=0.15)
    ax.set(xscale="log", xlabel="training subjects (log scale)", ylabel=f"{metric_label} (mean, 95 % CI)",
           title=f"Less data: {int(curve['count'].max())} seed(s) per point")
    ax.set_xticks(sorted(curve["train_subjects"].unique()), labels=sorted(curve["train_subjects"].unique()))
    ax.legend(fontsize=8)
    return fig


def plot_gains(gains: pd.DataFrame, method: str = "lomix") -> plt.Figure:
    """``method`` minus each baseline, paired by seed, against training-set size (mean, 95 % CI)."""
    baselines = list(dict.fromkeys(gains["baseline"]))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    offsets = np.linspace(-0.06, 0.06, len(baselines)) if len(baselines) > 1 else [0.0]
    for offset, baseline in zip(offsets, baselines):
        rows = gains[gains["baseline"] == baseline]
        x = rows["train_subjects"] * 10 ** offset  # a small shift on the log axis keeps bars apart
        ax.errorbar(x, rows["mean_difference"], yerr=[rows["mean_difference"] - rows["ci95_low"],
                                                       rows["ci95_high"] - rows["mean_difference"]],
                    marker="o", capsize=3, label=f"{method} − {baseline}")
    ax.axhline(0, color="grey", lw=0.8)
    sizes = sorted(gains["train_subjects"].unique())
    ax.set(xscale="log", xlabel="training subjects (log scale)", ylabel="test Dice gain (mean, 95 % CI)",
           title=f"Gain of {method} over each baseline, paired by seed")
    ax.set_xticks(sizes, labels=sizes)
    ax.legend(fontsize=8)
    return fig


def plot_map_dice(table: pd.DataFrame) -> plt.Figure:
    """Each supervised map's validation Dice against its learned weight, coloured by operator
    (from :func:`lomix_core.pipeline.evaluation.evaluate_maps`), with the rank correlation in the title."""
    from scipy import stats

    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.scatterplot(data=table, x="weight", y="dice", hue="operator", style="operator", s=60, ax=ax)
    rho, p = stats.spearmanr(table["weight"], table["dice"])
    for name in ("p1", table["dice"].idxmax()):
        ax.annotate(name, (table.loc[name, "weight"], table.loc[name, "dice"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set(xlabel="learned weight", ylabel="validation Dice of the map alone",
           title=f"Does the weight rank the maps? Spearman ρ = {rho:.2f} (p = {p:.2g})")
    ax.legend(fontsize=7)
    return fig


def plot_weightings(histories: dict[str, pd.DataFrame]) -> plt.Figure:
    """Side by side, the map-weight trajectories under each weighting: ``{name: run.history}``."""
    fig, axes = plt.subplots(1, len(histories), figsize=(4 * len(histories), 3.4), squeeze=False, sharex=True)
    for ax, (name, history) in zip(axes[0], histories.items()):
        plot_weight_trajectories(history, ax=ax)
        ax.set_title(name)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.tight_layout()
    return fig


def plot_predictions(dataset, predictions: dict[str, torch.Tensor], indices: list[int],
                     titles: list[str] | None = None, alpha: float = 0.5) -> plt.Figure:
    """One row per slice: the image, the ground truth, then each model's prediction overlaid.
    ``predictions`` maps a name to class indices ``[N, H, W]`` for every slice of ``dataset``."""
    columns = ["ground truth", *predictions]
    fig, axes = plt.subplots(len(indices), len(columns) + 1, figsize=(2.1 * (len(columns) + 1), 2.2 * len(indices)),
                             squeeze=False)
    for row, i in enumerate(indices):
        image = displayable(dataset.images[i])
        labels = [dataset.labels[i], *(p[i] for p in predictions.values())]
        axes[row, 0].imshow(image, cmap="gray")
        axes[row, 0].set_title(titles[row] if titles else f"{dataset.subjects[i]} z={dataset.slice_index[i]}", fontsize=7)
        for col, (name, label) in enumerate(zip(columns, labels), start=1):
            label = label.cpu().numpy()
            axes[row, col].imshow(image, cmap="gray")
            draw_labels(axes[row, col], label, dataset.num_classes, alpha)
            axes[row, col].set_title(name, fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig
