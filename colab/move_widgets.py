"""Every widget of the kit, live, with every control moved (run in a Jupyter kernel by
runtime_check.py, under the ipywidgets that Colab preinstalls).

A move passes when it draws a new figure whose pixels differ from the figure before it.
"""
import hashlib
import os
import warnings

import matplotlib

matplotlib.use("Agg")  # figures stay in memory to be compared; the kernel has no front end to show them
import ipywidgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import lomix_core as lx  # noqa: E402

os.environ.pop("LOMIX_HEADLESS", None)  # live widgets, not the headless figure
warnings.filterwarnings("ignore", message=".*non-interactive.*")  # plt.show() under Agg


def picture() -> str:
    """The newest figure's pixels, as a hash; every figure is closed afterwards."""
    assert plt.get_fignums(), "nothing was drawn"
    figure = plt.figure(plt.get_fignums()[-1])
    figure.canvas.draw()
    digest = hashlib.sha1(bytes(figure.canvas.buffer_rgba())).hexdigest()
    plt.close("all")
    return digest


def moves(control):
    """Set ``control`` to each of its other values in turn (a dropdown's options, a slider's ends, a
    checkbox's other state), yielding a description of each move."""
    if isinstance(control, ipywidgets.Checkbox):
        control.value = not control.value
        yield f"{control.description}={control.value}"
    elif isinstance(control, ipywidgets.Dropdown):
        for index in [i for i in range(len(control.options)) if i != control.index]:
            control.index = index
            yield f"{control.description}={control.value}"
    elif isinstance(control, ipywidgets.IntSlider):
        for value in [v for v in (control.max, control.min) if v != control.value]:
            control.value = value
            yield f"{control.description}={control.value}"
    else:
        raise TypeError(f"no moves for a {type(control).__name__}")


def move_every_control(name: str, widget) -> int:
    """Move each control of ``widget`` (a VBox of a row of controls and an output) through its values."""
    assert isinstance(widget, ipywidgets.VBox), f"{name}: expected a live widget, got {type(widget).__name__}"
    before, count = picture(), 0
    for control in widget.children[0].children:
        for move in moves(control):
            after = picture()
            assert after != before, f"{name}: {move} drew the same figure as before"
            before, count = after, count + 1
    print(f"{name}: {len(widget.children[0].children)} controls, {count} moves, each drew a new figure")
    return count


torch.manual_seed(0)
loss_fn = lx.LoMixLoss(num_maps=4, num_classes=5)
logits = [3 * torch.randn(1, 5, 12, 10) for _ in range(4)]
steps = np.arange(12)
history = pd.DataFrame({"step": steps + 1, "epoch": steps // 4 + 1, "loss": np.ones(12)})
for i, map_name in enumerate(loss_fn.map_names):
    history[f"w:{map_name}"] = 0.693 - 1e-3 * steps * (1 + i % 5)
brain = lx.data.load("brain_aal", split="test", size=32)
shifted = {"label shifted by 2 px": torch.roll(brain.labels, 2, dims=-1)}

total = sum(move_every_control(name, make()) for name, make in [
    ("mutant_explorer", lambda: lx.widgets.mutant_explorer(loss_fn, logits)),
    ("weight_slider", lambda: lx.widgets.weight_slider(history)),
    ("slice_browser", lambda: lx.widgets.slice_browser(brain)),
    ("prediction_browser", lambda: lx.widgets.prediction_browser(brain, shifted)),
])
print(f"ipywidgets {ipywidgets.__version__}: 4 widgets, {total} moves, every one redrew")
