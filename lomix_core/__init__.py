"""LoMix kit: learnable weighted multi-scale logits mixing for medical image segmentation.

Data flows one way: ``data`` → ``models`` → logits → ``supervision`` (``LoMixLoss``) →
``training`` → ``evaluation`` → ``viz``; ``inference`` applies a trained model to new scans.
The functions ``lx.train``, ``lx.evaluate`` and ``lx.predict`` live in the modules
``lx.training``, ``lx.evaluation`` and ``lx.inference``.
"""
from . import config, data, fusion, machine, models, supervision
from . import benchmark, chapter, claims, comparisons, executors, findings, profiles, report, runs, runtime, statistics
from . import weight_movement
from .evaluation import CONVENTION, evaluate, mean_dice, mean_hd95
from .inference import TrainedModel, load_checkpoint, predict
from .supervision import PRESETS, LoMixLoss
from .training import Run, TrainConfig, train

__version__ = machine.kit_version()


def __getattr__(name: str):
    # The plotting modules pull in matplotlib, seaborn and ipywidgets; training, the CLI and the
    # tests' subprocesses start faster when they load on first use (lx.viz, lx.widgets).
    if name in ("viz", "widgets"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lomix_core' has no attribute {name!r}")
__all__ = ["CONVENTION", "LoMixLoss", "PRESETS", "Run", "TrainConfig", "TrainedModel", "benchmark", "chapter", "claims",
           "comparisons", "config", "data", "evaluate", "executors", "findings", "fusion", "load_checkpoint", "machine",
           "mean_dice", "mean_hd95", "models", "predict", "profiles", "report", "runs", "runtime", "statistics",
           "supervision", "train", "viz", "weight_movement", "widgets"]
