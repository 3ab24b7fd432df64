"""nnU-Net's default deep supervision against ``nnUNetTrainerLoMix`` on one kit dataset (chapter 08).

A study is one folder holding nnU-Net's three roots (``raw``, ``preprocessed``, ``results``) for one
export of a kit dataset. :meth:`NnUNetStudy.run` exports, plans and preprocesses (2D only), makes
fold 0 the kit's train/val split, trains each trainer once per replicate and predicts the kit's test
scans, all through nnU-Net's own commands (``nnUNetv2_plan_and_preprocess``, ``nnUNetv2_train``,
``nnUNetv2_predict``), as a user would run them. Every step is skipped when its output is there,
so an interrupted study resumes where it stopped.

nnU-Net has no seed option: a run's initial network, patches and augmentation differ from any
other run's. Replicate ``k`` of every trainer lives in its own results root (``results/rep<k>``,
nnU-Net's folder names have no room for it), and the replicates are paired by index: the pairing
removes nothing (unlike the kit's seeds, which share data order and initial network), so the paired
test here is as cautious as an unpaired one.

Scores are the kit's: Dice per test volume and class on the exported grid
(:func:`lomix_core.pipeline.evaluation.volume_metrics`, HD95 in voxels), summarised per run as
:func:`~lomix_core.pipeline.evaluation.mean_dice`, gathered into a :class:`~lomix_core.studies.comparisons.Comparison`
(``by="trainer"``) so that the chapter reads its verdicts from :mod:`lomix_core.studies.statistics`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import nnunet_raw
from ..studies.comparisons import Comparison
from ..pipeline.evaluation import mean_dice, mean_hd95, volume_metrics
from ..foundations.records import save_json

DEFAULT_TRAINER, LOMIX_TRAINER = "nnUNetTrainer", "nnUNetTrainerLoMix"
# profile → the export's image side, the trainers' budget (a suffix of nnunet.BUDGETS; None: nnU-Net's
# own 1000 epochs of 250 iterations) and the replicates
SETTINGS = {
    "smoke": dict(size=48, budget="1epoch_2its", replicates=(0,)),
    "cpu": dict(size=64, budget="20epochs_50its", replicates=(0, 1, 2)),
    "colab": dict(size=224, budget="5epochs", replicates=(0, 1, 2)),
    "full": dict(size=224, budget=None, replicates=(0, 1, 2, 3, 4)),
}


def settings(profile: str) -> dict:
    from ..pipeline.profiles import resolve

    return dict(SETTINGS[resolve(profile)])


def trainer_names(budget: str | None) -> dict[str, str]:
    """Label → nnU-Net trainer class name, for the default and the LoMix trainer at ``budget``."""
    if budget is None:
        return {"nnU-Net default": DEFAULT_TRAINER, "LoMix": LOMIX_TRAINER}
    return {"nnU-Net default": f"nnUNetTrainerBudget_{budget}", "LoMix": f"{LOMIX_TRAINER}_{budget}"}


def _bin(command: str) -> str:
    """nnU-Net's console script beside this interpreter (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / command
    return str(beside) if beside.exists() else command


@dataclass
class NnUNetStudy:
    root: Path
    dataset: str = "brain_aal"
    dataset_id: int = 901
    size: int | None = None
    processes: int = 1  # nnU-Net's worker processes (planning, export of predictions); 0 for data augmentation
    log: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.root = Path(self.root).resolve()
        self.name = nnunet_raw.dataset_name(self.dataset, self.dataset_id)

    # ---- nnU-Net's folders and environment --------------------------------------------------------
    @property
    def raw(self) -> Path:
        return self.root / "raw" / self.name

    @property
    def preprocessed(self) -> Path:
        return self.root / "preprocessed" / self.name

    def results_root(self, replicate: int) -> Path:
        return self.root / "results" / f"rep{replicate}"

    def fold_folder(self, trainer: str, replicate: int) -> Path:
        return self.results_root(replicate) / self.name / f"{trainer}__nnUNetPlans__2d" / "fold_0"

    def prediction_folder(self, trainer: str, replicate: int) -> Path:
        return self.root / "predictions" / f"rep{replicate}" / trainer

    def env(self, replicate: int = 0) -> dict[str, str]:
        kit = str(Path(__file__).resolve().parents[2])  # nnU-Net's processes import the shim's lomix_core
        return {**os.environ, "nnUNet_raw": str(self.root / "raw"), "nnUNet_preprocessed": str(self.root / "preprocessed"),
                "nnUNet_results": str(self.results_root(replicate)), "nnUNet_n_proc_DA": "0",
                "nnUNet_def_n_proc": str(max(1, self.processes)),
                "PYTHONPATH": os.pathsep.join(filter(None, [kit, os.environ.get("PYTHONPATH")]))}

    def _run(self, *command: str, replicate: int = 0, planning: bool = False) -> float:
        env = self.env(replicate)
        if planning:  # nnU-Net's planner sets torch's threads to nnUNet_n_proc_DA, which must then be positive
            env["nnUNet_n_proc_DA"] = str(max(1, self.processes))
        start = time.perf_counter()
        result = subprocess.run([_bin(command[0]), *command[1:]], env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        self.log.append(f"{' '.join(command).replace(str(self.root), '<study>')}: {seconds:.0f} s")
        if result.returncode != 0:
            tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
            raise RuntimeError(f"{command[0]} failed (exit {result.returncode}): {tail}")
        return seconds

    # ---- steps -----------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Export, plan and preprocess the 2D configuration, and set fold 0 to the kit's split."""
        if not (self.raw / "dataset.json").is_file():
            nnunet_raw.export(self.dataset, self.root / "raw", dataset_id=self.dataset_id, size=self.size, overwrite=True)
        if not (self.preprocessed / "nnUNetPlans_2d").is_dir():
            n = str(max(1, self.processes))
            self._run("nnUNetv2_plan_and_preprocess", "-d", str(self.dataset_id), "-c", "2d", "-npfp", n, "-np", n,
                      "--verify_dataset_integrity", planning=True)
        nnunet_raw.use_kit_split(self.raw, self.preprocessed)

    def train(self, trainer: str, replicate: int) -> float | None:
        """Train ``trainer`` on fold 0 (CPU unless a GPU is there); None when it was trained before."""
        if (self.fold_folder(trainer, replicate) / "checkpoint_final.pth").is_file():
            return None
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._run("nnUNetv2_train", str(self.dataset_id), "2d", "0", "-tr", trainer, "-device", device,
                         replicate=replicate)

    def predict(self, trainer: str, replicate: int) -> Path:
        out = self.prediction_folder(trainer, replicate)
        cases = sorted(p.name for p in (self.raw / "labelsTs").glob("*.nii.gz"))
        if not cases:
            raise ValueError(f"{self.raw} has no labelsTs; expected a dataset with a test split")
        if not all((out / c).is_file() for c in cases):
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
            self._run("nnUNetv2_predict", "-i", str(self.raw / "imagesTs"), "-o", str(out), "-d", str(self.dataset_id),
                      "-c", "2d", "-f", "0", "-tr", trainer, "-device", device, "-npp", "0", "-nps", "0",
                      "--disable_progress_bar", replicate=replicate)
        return out

    def score(self, trainer: str, replicate: int) -> pd.DataFrame:
        """The kit's tidy test results of one run: volume, class_name, dice, hd95 (voxels), gt_present."""
        import nibabel as nib

        class_names = list(_labels(self.raw))
        frames = []
        for truth in sorted((self.raw / "labelsTs").glob("*.nii.gz")):
            target = np.asarray(nib.load(truth).dataobj)
            pred = np.asarray(nib.load(self.prediction_folder(trainer, replicate) / truth.name).dataobj)
            metrics = volume_metrics(pred.astype(np.int64), target.astype(np.int64), len(class_names))
            metrics.insert(0, "volume", truth.name[:-len(".nii.gz")])
            metrics.insert(2, "class_name", [class_names[c] for c in metrics["class_index"]])
            frames.append(metrics)
        return pd.concat(frames, ignore_index=True)

    def run(self, trainers: dict[str, str], replicates, progress=print) -> Comparison:
        """Every trainer (label → class name) once per replicate, scored on the test scans. The
        nnU-Net commands it ran, with their times, are in :attr:`log` (``<study>`` is :attr:`root`)."""
        from . import nnunet_shim

        nnunet_shim.install_trainers()  # nnU-Net's commands find the kit's trainers by name only
        self.prepare()
        results, rows = [], []
        for replicate in replicates:
            for label, trainer in trainers.items():
                seconds = self.train(trainer, replicate)
                self.predict(trainer, replicate)
                test = self.score(trainer, replicate)
                results.append(test.assign(trainer=label, seed=replicate))
                rows.append({"trainer": label, "seed": replicate, "test_dice": mean_dice(test),
                             "test_hd95": mean_hd95(test), "test_hd95_mm": float("nan"),
                             "supervised_maps": _supervised_maps(self.fold_folder(trainer, replicate)),
                             "train_time_s": seconds if seconds is not None else float("nan")})
                progress(f"replicate {replicate}, {label} ({trainer}): test Dice {rows[-1]['test_dice']:.3f}"
                         + (f", trained in {seconds:.0f} s" if seconds is not None else ", trained before"))
        results = pd.concat(results, ignore_index=True)[["trainer", "seed", "volume", "class_name", "dice", "hd95",
                                                         "hd95_mm", "gt_present"]]
        comparison = Comparison(results, pd.DataFrame(rows), {}, by="trainer")
        save_json({"runs": rows, "log": self.log}, self.root / "study.json")
        return comparison


def _labels(raw: Path) -> dict[str, int]:
    import json

    labels = json.loads((raw / "dataset.json").read_text())["labels"]
    return dict(sorted(labels.items(), key=lambda kv: kv[1]))


def _supervised_maps(fold: Path) -> int | float:
    """How many maps the run's loss supervised: LoMix's from its checkpoint, nnU-Net's from its plan."""
    import torch

    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    from .nnunet import LOSS_STATE_KEY

    state = checkpoint.get(LOSS_STATE_KEY)
    if state is not None:
        for key in ("lomix.weighting.theta", "lomix.weighting.fixed", "lomix.weighting.log_var"):
            if key in state:
                return int(state[key].numel())
    plans = checkpoint["init_args"]["plans"]
    strides = plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["strides"]
    return len(strides) - 1  # nnU-Net supervises every decoder output (the coarsest with weight 0)
